"""The energy-meter interface.

A meter measures consecutive *laps*: ``start()`` opens the first lap, each ``lap()`` closes the
current one and opens the next, and returns its :class:`Measurement`. The protocol calls
``lap()`` once per repetition, so the laps of one window add up to the whole window.
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
