"""A meter that measures time only. Its rows say so: energy is NaN, never zero."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from llm_energy.meters.base import EnergyMeter, Measurement


class NullMeter(EnergyMeter):
    name = "none"
    energy_source = "none"

    def __init__(self) -> None:
        self._t0 = time.perf_counter()

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def lap(self) -> Measurement:
        t1 = time.perf_counter()
        m = Measurement(duration_s=t1 - self._t0, energy_j=math.nan)
        self._t0 = t1
        return m

    def info(self) -> dict[str, Any]:
        return {"meter_detail": "time only; energy not measured"}


# The meter's name in a configuration; it needs no library, and reads no energy, so it
# cross-checks nothing.
NAME = "none"
EXTRA = None
REQUIRES: tuple[str, ...] = ()
READS_ENERGY = False


def create(
    device: str, gpu_uuids: Sequence[str] | None, gpu_count: int, codecarbon: dict[str, Any]
) -> NullMeter:
    return NullMeter()
