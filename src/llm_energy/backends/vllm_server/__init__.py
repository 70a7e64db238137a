"""vLLM behind its OpenAI-compatible server (``vllm serve``), the way it is deployed: the job
owns a server process and replays requests to it over HTTP at their arrival times."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llm_energy.backends.base import Backend
    from llm_energy.measure.job import EngineSpec, ModelSpec

EXTRA = "vllm"
REQUIRES = ("vllm", "aiohttp")
# The server is vLLM's own: its jobs run in vLLM's environment (envs/vllm.yaml,
# interpreters.vllm).
ENVIRONMENT = "vllm"
# No configuration names it: the served families derive its engines from vLLM ones.
CONFIGURABLE = False
# Each request of a batch at its own lengths: a short one leaves the batch early.
PADDED_BATCHES = False
INSTALL = (
    "pip install 'llm-energy[vllm]' into an environment of its own and name its python under "
    "config interpreters.vllm, or run the job in envs/vllm.yaml"
)


def create(model: ModelSpec, engine: EngineSpec, device: str, dtype: str) -> Backend:
    from llm_energy.backends.vllm_server.backend import VllmServerBackend

    return VllmServerBackend(model, engine, device, dtype)
