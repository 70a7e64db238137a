"""vLLM: the study's optimised engine (paged KV cache, continuous batching, CUDA graphs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llm_energy.backends.base import Backend
    from llm_energy.measure.job import EngineSpec, ModelSpec

EXTRA = "vllm"
REQUIRES = ("vllm",)
# Each request of a batch at its own lengths: a short one leaves the batch early.
PADDED_BATCHES = False
# vLLM pins its own torch: its jobs usually run in an environment of their own.
INSTALL = (
    "pip install 'llm-energy[vllm]' into an environment of its own and name its python under "
    "config interpreters.vllm, or run the job in envs/vllm.yaml"
)


def create(model: ModelSpec, engine: EngineSpec, device: str, dtype: str) -> Backend:
    from llm_energy.backends.vllm.backend import VllmBackend

    return VllmBackend(model, engine, device, dtype)
