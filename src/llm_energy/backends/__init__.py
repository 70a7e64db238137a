"""Inference backends. ``make_backend`` imports only the backend that a job asks for."""

from __future__ import annotations

from llm_energy.backends.base import Backend
from llm_energy.errors import ConfigError
from llm_energy.spec import EngineSpec, ModelSpec

BACKENDS = ("transformers", "vllm")

__all__ = ["BACKENDS", "Backend", "make_backend"]


def make_backend(model: ModelSpec, engine: EngineSpec, device: str, dtype: str) -> Backend:
    if engine.backend == "transformers":
        from llm_energy.backends.transformers_backend import TransformersBackend

        backend = TransformersBackend(model, engine, device, dtype)
        if engine.tensor_parallel_size > 1:
            from llm_energy.backends import tensor_parallel

            if tensor_parallel.launched():
                return tensor_parallel.TensorParallelDriver(backend)
        return backend
    if engine.backend == "vllm":
        try:
            from llm_energy.backends.vllm_backend import VllmBackend  # type: ignore[import-not-found]
        except ImportError as exc:
            raise ConfigError(
                f"engine '{engine.name}' uses backend 'vllm', which cannot be imported in this "
                f"environment ({exc})"
            ) from exc
        return VllmBackend(model, engine, device, dtype)
    raise ConfigError(f"unknown backend '{engine.backend}' (known: {', '.join(BACKENDS)})")
