"""CodeCarbon's offline tracker, the study's own tool, as a meter.

On a GPU node CodeCarbon reads the same NVML counter, so its GPU energy is a measurement. On a
machine without RAPL or NVML its CPU energy is a thermal-design-power guess scaled by load and
its RAM energy a per-DIMM constant: those rows are labelled ``estimate``. The offline tracker is
used with an explicit country so that it never contacts the network.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

from llm_energy.errors import MeterUnavailableError
from llm_energy.meters.base import EnergyMeter, Measurement

KWH_TO_J = 3.6e6


class CodeCarbonMeter(EnergyMeter):
    name = "codecarbon"
    energy_source = "measured"  # per instance: see __init__

    def __init__(
        self,
        device: str,
        gpu_ids: Sequence[int] | None = None,
        country_iso_code: str = "USA",
        measure_power_secs: float = 1.0,
        tracking_mode: str = "machine",
    ) -> None:
        try:
            from codecarbon import OfflineEmissionsTracker
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise MeterUnavailableError(
                "meter 'codecarbon' needs codecarbon (pip install 'llm-energy[codecarbon]')"
            ) from exc
        import codecarbon

        self._on_gpu = device.startswith("cuda")
        self.energy_source = "measured" if self._on_gpu else "estimate"  # type: ignore[misc]
        self._version = codecarbon.__version__
        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        self._tracker = OfflineEmissionsTracker(
            country_iso_code=country_iso_code,
            output_methods=[],  # write nothing: the pipeline keeps the numbers
            log_level="error",
            measure_power_secs=measure_power_secs,
            tracking_mode=tracking_mode,
            gpu_ids=list(gpu_ids) if gpu_ids is not None and self._on_gpu else None,
            allow_multiple_runs=True,
        )
        self._t0 = time.perf_counter()
        self._cpu_model = "unknown"
        self._task_open = False

    def start(self) -> None:
        # A lap leaves the next task open; a new window must not inherit it, or its energy
        # would include everything since that lap (CodeCarbon ignores a second start_task).
        if self._task_open:
            self._tracker.stop_task()
        self._tracker.start_task()
        self._task_open = True
        self._t0 = time.perf_counter()

    def lap(self) -> Measurement:
        data = self._tracker.stop_task()
        t1 = time.perf_counter()
        self._tracker.start_task()
        if data is None:
            energy = math.nan
        elif self._on_gpu:
            energy = data.gpu_energy * KWH_TO_J
        else:
            energy = (data.cpu_energy + data.ram_energy) * KWH_TO_J
            self._cpu_model = data.cpu_model
        m = Measurement(duration_s=t1 - self._t0, energy_j=energy)
        self._t0 = time.perf_counter()
        return m

    def info(self) -> dict[str, Any]:
        detail = (
            "CodeCarbon offline tracker, GPU energy (NVML)"
            if self._on_gpu
            else "CodeCarbon offline tracker, CPU+RAM energy estimated from TDP "
            f"({self._cpu_model})"
        )
        return {"meter_version": f"codecarbon {self._version}", "meter_detail": detail}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._tracker.stop_task()


# The meter's name in a configuration, the pip extra and the modules it needs.
NAME = "codecarbon"
EXTRA = "codecarbon"
REQUIRES = ("codecarbon",)


def create(
    device: str, gpu_uuids: Sequence[str] | None, gpu_count: int, codecarbon: dict[str, Any]
) -> CodeCarbonMeter:
    gpu_ids = list(range(gpu_count)) if device.startswith("cuda") else None
    return CodeCarbonMeter(device=device, gpu_ids=gpu_ids, **codecarbon)
