"""Hugging Face transformers on PyTorch, with and without ``torch.compile``; tensor
parallelism runs one process per GPU under torchrun (``tensor_parallel``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from llm_energy.backends.transformers import ranks
from llm_energy.errors import LlmEnergyError
from llm_energy.measure import stop

if TYPE_CHECKING:
    from llm_energy.backends.base import Backend
    from llm_energy.measure.job import EngineSpec, JobPlan, ModelSpec

EXTRA = "transformers"
REQUIRES = ("torch", "transformers")
INSTALL = "pip install 'llm-energy[transformers]', or run the job in envs/transformers.yaml"


def create(model: ModelSpec, engine: EngineSpec, device: str, dtype: str) -> Backend:
    from llm_energy.backends.transformers.backend import TransformersBackend

    backend = TransformersBackend(model, engine, device, dtype)
    if engine.tensor_parallel_size > 1 and ranks.launched():
        from llm_energy.backends.transformers.tensor_parallel import TensorParallelDriver

        return TensorParallelDriver(backend)
    return backend


def times_feed_forward(engine: EngineSpec) -> bool:
    """Eager models on one GPU: ``TransformersBackend.feed_forward_time_share`` times their
    blocks; compiled ones fuse across the blocks, and rank 0 of a tensor-parallel job does
    not forward the timing to its followers."""
    return not engine.torch_compile and engine.tensor_parallel_size == 1


def launch(
    plan: JobPlan,
    argv: Sequence[str],
    run_job: Callable[[], None],
    claim_gpus: Callable[[], None],
) -> None:
    """One process per GPU: the first process claims the GPUs and starts itself again under
    torchrun; rank 0 runs the job, the other ranks follow its calls."""
    if not ranks.launched():
        claim_gpus()
    size = plan.engine.tensor_parallel_size
    if size == 1:
        run_job()
        return
    from llm_energy.backends.transformers import tensor_parallel

    if not ranks.launched():
        code = tensor_parallel.relaunch(argv, size)
        if code != 0 and stop.requested():
            raise stop.Stopped(
                f"stopped by {stop.requested()}: the job's {size} tensor-parallel processes "
                "stopped, and rank 0 said above what the journal keeps"
            )
        if code != 0:
            raise LlmEnergyError(f"the job's {size} tensor-parallel processes failed")
        return
    if ranks.rank() != 0:
        tensor_parallel.follow(plan)
        return
    try:
        run_job()
    finally:
        tensor_parallel.release_followers(plan)
