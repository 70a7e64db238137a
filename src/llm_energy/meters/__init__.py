"""Energy meters. ``make_meter`` picks one by name and imports only what it needs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llm_energy.errors import ConfigError
from llm_energy.meters.base import EnergyMeter, Measurement

METERS = ("nvml", "codecarbon", "none")

__all__ = ["METERS", "EnergyMeter", "Measurement", "make_meter"]


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
        from llm_energy.meters.nvml import NvmlMeter

        return NvmlMeter(gpu_uuids=gpu_uuids, gpu_count=gpu_count)
    if name == "codecarbon":
        from llm_energy.meters.codecarbon_meter import CodeCarbonMeter

        gpu_ids = list(range(gpu_count)) if device.startswith("cuda") else None
        return CodeCarbonMeter(device=device, gpu_ids=gpu_ids, **(codecarbon or {}))
    if name == "none":
        from llm_energy.meters.null import NullMeter

        return NullMeter()
    raise ConfigError(f"unknown meter '{name}' (known: {', '.join(METERS)})")
