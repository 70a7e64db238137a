"""The energy-meter interface.

A meter measures consecutive *laps*: ``start()`` opens the first lap, each ``lap()`` closes the
current one and opens the next, and returns its :class:`Measurement`. The protocol calls
``lap()`` once per repetition, so the laps of one window add up to the whole window.

A meter that can see the devices also watches them over a window: ``watch()`` starts watching
and the returned :class:`HealthWatch`'s ``stop()`` gives the window's :class:`WindowHealth`
(throttling, clocks, temperature, errors). A meter that cannot see them says it does not know.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

EnergySource = Literal["measured", "estimate", "none"]


@dataclass(frozen=True)
class Measurement:
    """Energy and time of one lap. ``energy_j`` is NaN when the meter does not measure energy."""

    duration_s: float
    energy_j: float

    @property
    def mean_power_w(self) -> float:
        return self.energy_j / self.duration_s if self.duration_s > 0 else math.nan


@dataclass(frozen=True)
class WindowHealth:
    """What the measured devices went through during one window. Anything the meter could not
    read is None (NaN for numbers): never a zero that was not measured.

    ``clock_event_reasons`` are NVML's clock-event (throttle) reasons seen on any of the GPUs
    (names as in :data:`llm_energy.meters.nvml.CLOCK_EVENT_REASONS`); ``ecc_errors_new`` the
    uncorrected ECC errors counted during the window; ``xid_errors`` the Xid codes NVML
    reported; ``energy_counter_backwards`` whether an energy counter read less than the read
    before it (a driver or GPU reset).
    """

    clock_event_reasons: frozenset[str] | None = None
    sm_clock_min_mhz: float = math.nan
    sm_clock_max_mhz: float = math.nan
    gpu_temp_max_c: float = math.nan
    ecc_errors_new: int | None = None
    xid_errors: tuple[int, ...] | None = None
    energy_counter_backwards: bool | None = None

    def merge(self, other: WindowHealth) -> WindowHealth:
        """Both windows as one: what either saw, and unknown where either could not tell."""

        def both(a: Any, b: Any, join: Any) -> Any:
            return None if a is None or b is None else join(a, b)

        return WindowHealth(
            clock_event_reasons=both(
                self.clock_event_reasons, other.clock_event_reasons, frozenset.union
            ),
            sm_clock_min_mhz=_nan_join(min, self.sm_clock_min_mhz, other.sm_clock_min_mhz),
            sm_clock_max_mhz=_nan_join(max, self.sm_clock_max_mhz, other.sm_clock_max_mhz),
            gpu_temp_max_c=_nan_join(max, self.gpu_temp_max_c, other.gpu_temp_max_c),
            ecc_errors_new=both(self.ecc_errors_new, other.ecc_errors_new, int.__add__),
            xid_errors=both(self.xid_errors, other.xid_errors, tuple.__add__),
            energy_counter_backwards=both(
                self.energy_counter_backwards, other.energy_counter_backwards, bool.__or__
            ),
        )


def _nan_join(join: Any, a: float, b: float) -> float:
    """``join`` of the two, NaN only when both are NaN: a number read in one window stays."""
    if math.isnan(a):
        return b
    return a if math.isnan(b) else join(a, b)


class HealthWatch:
    """Watches the devices over one window; ``stop()`` ends the watch and returns what it saw.
    This one sees nothing: every answer is unknown."""

    def stop(self) -> WindowHealth:
        return WindowHealth()


class EnergyMeter(ABC):
    """Measures energy over laps. Subclasses are small and live one per file."""

    name: ClassVar[str]
    #: What the numbers are: a reading of a hardware counter, a model's estimate, or nothing.
    energy_source: ClassVar[EnergySource]

    @abstractmethod
    def start(self) -> None:
        """Open the first lap."""

    @abstractmethod
    def lap(self) -> Measurement:
        """Close the current lap, open the next one and return the closed lap."""

    def info(self) -> dict[str, Any]:
        """Provenance of the meter: version, what exactly it reads, hardware facts."""
        return {}

    def watch(self) -> HealthWatch:
        """Start watching the measured devices for one window (see :class:`WindowHealth`)."""
        return HealthWatch()

    def foreign_processes(self) -> list[int] | None:
        """PIDs of processes outside this job using the measured devices, or None when the
        meter cannot tell. Another process on a GPU during a window makes its energy suspect."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

    def __enter__(self) -> EnergyMeter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
