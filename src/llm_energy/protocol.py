"""The measurement protocol for one point.

1. Warm up at the exact shape (``warmup_repetitions`` full generations, one prefill-only).
2. Prefill window: generate one token per sequence, repeated until the window lasts at least
   ``min_duration_s`` and holds at least ``min_repetitions`` repetitions.
3. Full window: the same with ``output_tokens`` tokens.
4. Per batch: energy = window energy / repetitions; prefill energy from step 2; decode energy =
   full - prefill. Spread is the standard deviation over repetitions (laps); with a counter that
   ticks at 10 Hz, per-repetition energies of repetitions shorter than a second are quantised,
   while the window mean is not.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from llm_energy.meters.base import EnergyMeter, Measurement
from llm_energy.spec import ProtocolSpec


@dataclass(frozen=True)
class WindowResult:
    """Repeated laps of one generation shape."""

    laps: tuple[Measurement, ...]
    cross_check_energy_j: dict[str, float] = field(default_factory=dict)

    @property
    def repetitions(self) -> int:
        return len(self.laps)

    @property
    def total_duration_s(self) -> float:
        return sum(m.duration_s for m in self.laps)

    @property
    def total_energy_j(self) -> float:
        return sum(m.energy_j for m in self.laps)

    @property
    def duration_s(self) -> float:
        return self.total_duration_s / self.repetitions

    @property
    def energy_j(self) -> float:
        return self.total_energy_j / self.repetitions

    @property
    def duration_std_s(self) -> float:
        return _std([m.duration_s for m in self.laps])

    @property
    def energy_std_j(self) -> float:
        return _std([m.energy_j for m in self.laps])

    def cross_check_per_rep_j(self, meter: str) -> float:
        return self.cross_check_energy_j.get(meter, math.nan) / self.repetitions


def _std(values: Sequence[float]) -> float:
    if len(values) < 2 or any(math.isnan(v) for v in values):
        return math.nan
    return statistics.stdev(values)


def measure_window(
    run_once: Callable[[], object],
    meter: EnergyMeter,
    protocol: ProtocolSpec,
    cross_check: Sequence[EnergyMeter] = (),
) -> WindowResult:
    """Repeat ``run_once`` until the window lasts ``min_duration_s`` and holds
    ``min_repetitions`` repetitions (at most ``max_repetitions``), one meter lap per repetition.

    ``run_once`` must return only when the device has finished. Cross-check meters see the whole
    window as one lap.
    """
    for other in cross_check:
        other.start()
    meter.start()
    laps: list[Measurement] = []
    elapsed = 0.0
    while len(laps) < protocol.max_repetitions and (
        len(laps) < protocol.min_repetitions or elapsed < protocol.min_duration_s
    ):
        run_once()
        lap = meter.lap()
        laps.append(lap)
        elapsed += lap.duration_s
    checks = {other.name: other.lap().energy_j for other in cross_check}
    return WindowResult(laps=tuple(laps), cross_check_energy_j=checks)


def measure_idle_power_w(meter: EnergyMeter, duration_s: float) -> float:
    """Mean power of the job's devices while nothing runs (NaN when the meter has no energy)."""
    if duration_s <= 0:
        return math.nan
    meter.start()
    time.sleep(duration_s)
    return meter.lap().mean_power_w
