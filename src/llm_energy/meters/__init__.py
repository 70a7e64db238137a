"""Energy meters. ``make_meter`` picks one by name and imports only what it needs.

Like a backend, a meter that needs a library declares the pip extra that installs it
(``EXTRAS``) and the importable top-level modules it needs (``REQUIRES``).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from typing import Any

from llm_energy.errors import ConfigError, MissingExtraError
from llm_energy.meters.base import EnergyMeter, Measurement

METERS = ("nvml", "codecarbon", "none")
EXTRAS = {"nvml": "nvml", "codecarbon": "codecarbon"}
REQUIRES: dict[str, tuple[str, ...]] = {"nvml": ("pynvml",), "codecarbon": ("codecarbon",)}

__all__ = ["METERS", "EnergyMeter", "Measurement", "make_meter", "require_meter"]


def _importable(module: str) -> bool:
    if sys.modules.get(module) is not None:  # already imported (or a stand-in put there)
        return True
    return importlib.util.find_spec(module) is not None


def require_meter(name: str) -> None:
    """Stop with one line naming the extra to install when meter ``name`` cannot run here."""
    missing = [m for m in REQUIRES.get(name, ()) if not _importable(m)]
    if missing:
        raise MissingExtraError(
            f"meter '{name}' needs {', '.join(missing)}: not installed in this environment "
            f"(pip install 'llm-energy[{EXTRAS[name]}]')"
        )


def make_meter(
    name: str,
    device: str,
    gpu_uuids: Sequence[str] | None = None,
    gpu_count: int = 1,
    codecarbon: dict[str, Any] | None = None,
) -> EnergyMeter:
    """Build the meter called ``name`` for a job on ``device`` using the given GPUs."""
    if name == "nvml":
        if not device.startswith("cuda"):
            raise ConfigError(
                f"meter 'nvml' measures GPU energy but the job runs on device '{device}'"
            )
        require_meter(name)
        from llm_energy.meters.nvml import NvmlMeter

        return NvmlMeter(gpu_uuids=gpu_uuids, gpu_count=gpu_count)
    if name == "codecarbon":
        require_meter(name)
        from llm_energy.meters.codecarbon_meter import CodeCarbonMeter

        gpu_ids = list(range(gpu_count)) if device.startswith("cuda") else None
        return CodeCarbonMeter(device=device, gpu_ids=gpu_ids, **(codecarbon or {}))
    if name == "none":
        from llm_energy.meters.null import NullMeter

        return NullMeter()
    raise ConfigError(f"unknown meter '{name}' (known: {', '.join(METERS)})")
