"""Inference backends. Each is one folder, ``llm_energy/backends/<name>/``, plus one
environment file, ``envs/<name>.yaml``; its ``__init__`` declares the pip extra and the
modules it needs, and builds the engine. Heavy libraries are imported only when a backend is
built, so that planning and the CPU-only analysis never import them.

A backend package provides:

- ``EXTRA``: the pip extra that installs what it needs (``pip install 'llm-energy[EXTRA]'``);
- ``REQUIRES``: the importable top-level modules it needs;
- ``create(model, engine, device, dtype) -> Backend``;
- optionally ``launch(plan, argv, run_job, claim_gpus)``, for engines that run one job as
  several processes (the default claims the GPUs and runs the job in this process);
- optionally ``ENVIRONMENT``, the backend whose environment (``envs/{name}.yaml``, config
  ``interpreters``) its jobs run in, when it has none of its own;
- optionally ``CONFIGURABLE = False``, for a backend that no configuration names (a family
  derives its engines), which an engine's ``backend`` then cannot take;
- optionally ``PADDED_BATCHES = False``, for an engine that serves each request of a static
  batch at its own lengths, so that a short one leaves the batch early (vLLM's paged cache),
  where the default pads the batch to its longest prompt and runs it until its longest output
  (transformers); the GPU-time plan times a request stream by it;
- optionally ``times_feed_forward(engine) -> bool``, whether ``engine``'s
  ``feed_forward_time_share`` times its model's feed-forward blocks (none by default), so that
  a row it measured without that share is not complete where a job asks for it.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING

from llm_energy.backends.base import Backend
from llm_energy.errors import ConfigError, MissingExtraError

if TYPE_CHECKING:
    from llm_energy.measure.job import EngineSpec, JobPlan, ModelSpec

# Every folder of this package is a backend, found by its name.
BACKENDS = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg))

__all__ = [
    "BACKENDS",
    "Backend",
    "configurable",
    "environment",
    "launch",
    "make_backend",
    "missing_modules",
    "pads_batches",
    "times_feed_forward",
]


def backend_module(name: str) -> ModuleType:
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend '{name}' (known: {', '.join(BACKENDS)})")
    return importlib.import_module(f"llm_energy.backends.{name}")


def configurable() -> list[str]:
    """The backends that a configuration's engines may name."""
    return [b for b in BACKENDS if getattr(backend_module(b), "CONFIGURABLE", True)]


def environment(name: str) -> str:
    """The backend whose environment runs the jobs of backend ``name`` (its own by default)."""
    return getattr(backend_module(name), "ENVIRONMENT", name)


def pads_batches(name: str) -> bool:
    """Whether backend ``name`` pads a static batch to its longest prompt and output."""
    return getattr(backend_module(name), "PADDED_BATCHES", True)


def times_feed_forward(engine: EngineSpec) -> bool:
    """Whether ``engine`` times its model's feed-forward blocks
    (``Backend.feed_forward_time_share``)."""
    timed = getattr(backend_module(engine.backend), "times_feed_forward", None)
    return bool(timed and timed(engine))


def missing_modules(name: str) -> list[str]:
    """The modules that backend ``name`` needs and this environment cannot import."""
    return [m for m in backend_module(name).REQUIRES if importlib.util.find_spec(m) is None]


def require(name: str, engine: str = "") -> None:
    """Stop with one line naming the extra to install when backend ``name`` cannot run here."""
    missing = missing_modules(name)
    if missing:
        module = backend_module(name)
        what = f"engine '{engine}' uses backend '{name}'" if engine else f"backend '{name}'"
        raise MissingExtraError(
            f"{what}, which needs {', '.join(missing)}: not installed in this environment "
            f"({module.INSTALL})"
        )


def make_backend(model: ModelSpec, engine: EngineSpec, device: str, dtype: str) -> Backend:
    require(engine.backend, engine.name)
    return backend_module(engine.backend).create(model, engine, device, dtype)


def launch(
    plan: JobPlan,
    argv: Sequence[str],
    run_job: Callable[[], None],
    claim_gpus: Callable[[], None],
) -> None:
    """Run one measurement job: in this process, or as the backend's own launcher runs it."""
    module = backend_module(plan.engine.backend)
    custom = getattr(module, "launch", None)
    if custom is None:
        claim_gpus()
        run_job()
        return
    custom(plan, argv, run_job, claim_gpus)
