"""The measurement protocol for one point.

1. Warm up at the exact shape (``warmup_repetitions`` full generations, one prefill-only).
2. Prefill window: generate one token per sequence, repeated until the window lasts at least
   ``min_duration_s`` and holds at least ``min_repetitions`` repetitions.
3. Full window: the same with ``output_tokens`` tokens.
4. Per batch: energy = window energy / repetitions; prefill energy from step 2; decode energy =
   full - prefill. Time spread is the standard deviation over repetitions. Energy is read per
   repetition (giving its spread) only when a repetition lasts at least
   ``per_repetition_energy_min_s``: a counter that ticks at 10 Hz cannot resolve shorter ones,
   and each read costs milliseconds. The window mean is exact either way.

Over every window the meter watches the devices (throttling, clocks, temperature, errors; see
:mod:`llm_energy.measure.health`), from just before the window opens to just after it closes.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from llm_energy.measure import stop
from llm_energy.measure.job import ProtocolSpec
from llm_energy.meters.base import EnergyMeter, WindowHealth


@dataclass(frozen=True)
class WindowResult:
    """Repeated runs of one generation shape.

    ``durations_s`` are host-clock times of each repetition. ``total_energy_j`` is the meter's
    reading over the whole window; ``energies_j`` holds per-repetition readings when they were
    taken (empty otherwise). ``health`` is what the meter saw of the devices meanwhile.
    """

    durations_s: tuple[float, ...]
    total_energy_j: float
    energies_j: tuple[float, ...] = ()
    cross_check_energy_j: dict[str, float] = field(default_factory=dict)
    health: WindowHealth = field(default_factory=WindowHealth)

    @property
    def repetitions(self) -> int:
        return len(self.durations_s)

    @property
    def total_duration_s(self) -> float:
        return sum(self.durations_s)

    @property
    def duration_s(self) -> float:
        return self.total_duration_s / self.repetitions

    @property
    def energy_j(self) -> float:
        return self.total_energy_j / self.repetitions

    @property
    def duration_std_s(self) -> float:
        return _std(self.durations_s)

    @property
    def energy_std_j(self) -> float:
        """Spread over repetitions; NaN when energy was read per window only."""
        return _std(self.energies_j)


def _std(values: Sequence[float]) -> float:
    if len(values) < 2 or any(math.isnan(v) for v in values):
        return math.nan
    return statistics.stdev(values)


def measure_window(
    run_once: Callable[[], object],
    meter: EnergyMeter,
    protocol: ProtocolSpec,
    cross_check: Sequence[EnergyMeter] = (),
    per_repetition_energy_min_s: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> WindowResult:
    """Repeat ``run_once`` until the window lasts ``min_duration_s`` and holds
    ``min_repetitions`` repetitions (at most ``max_repetitions``).

    ``run_once`` must return only when the device has finished. The meter is read at the two
    edges of the window, and after every repetition too when the window's first repetition
    lasted at least ``per_repetition_energy_min_s`` (never when it is None): a read costs
    milliseconds (about 3.5 ms for NVML on an H100), so per-repetition reads are worth it only
    for repetitions long enough for the counter to resolve them. Cross-check meters see the
    whole window as one lap. A stop asked for by a signal (:mod:`llm_energy.measure.stop`)
    abandons the window at the end of the current repetition.
    """
    watch = meter.watch()
    try:
        for other in cross_check:
            other.start()
        meter.start()
        durations: list[float] = []
        energies: list[float] = []
        per_rep = False
        elapsed = 0.0
        while len(durations) < protocol.max_repetitions and (
            len(durations) < protocol.min_repetitions or elapsed < protocol.min_duration_s
        ):
            t0 = clock()
            run_once()
            dt = clock() - t0
            if not durations:
                per_rep = (
                    per_repetition_energy_min_s is not None and dt >= per_repetition_energy_min_s
                )
            durations.append(dt)
            elapsed += dt
            stop.check()  # a repetition's end is a safe place to abandon the window
            if per_rep:
                energies.append(meter.lap().energy_j)
        total = sum(energies) if per_rep else meter.lap().energy_j
        checks = {other.name: other.lap().energy_j for other in cross_check}
    finally:
        # Also when the window fails: the watch's thread must not outlive it.
        health = watch.stop()
    return WindowResult(
        durations_s=tuple(durations),
        total_energy_j=total,
        energies_j=tuple(energies),
        cross_check_energy_j=checks,
        health=health,
    )


def timed(run_once: Callable[[], object]) -> float:
    """Wall time of one call (warm-ups, which also tell how long a repetition takes)."""
    t0 = time.perf_counter()
    run_once()
    return time.perf_counter() - t0


def measure_idle_power_w(meter: EnergyMeter, duration_s: float) -> float:
    """Mean power of the job's devices while nothing runs (NaN when the meter has no energy)."""
    if duration_s <= 0:
        return math.nan
    meter.start()
    time.sleep(duration_s)
    return meter.lap().mean_power_w
