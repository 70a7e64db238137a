"""GPU energy from NVML's cumulative energy counter, summed over exactly the GPUs a job uses.

``nvmlDeviceGetTotalEnergyConsumption`` counts millijoules since the driver loaded (Volta and
newer). On an H100 it updates about ten times a second, so a lap shorter than about a second is
quantised; the protocol therefore repeats each point until a window lasts seconds.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llm_energy.errors import MeterError, MeterUnavailableError
from llm_energy.job_environment import JOB_PID_ENV
from llm_energy.meters.base import EnergyMeter, Measurement

# Set in the ranks of a job that started itself again under torchrun (one process per GPU):
# the pid of the job's own process, so that the ranks, siblings of rank 0, count as the job.


def _nvml() -> Any:
    try:
        import pynvml
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MeterUnavailableError(
            "meter 'nvml' needs pynvml (pip install 'llm-energy[nvml]')"
        ) from exc
    return pynvml


def visible_device_ids(env: dict[str, str] | None = None) -> list[str] | None:
    """The entries of CUDA_VISIBLE_DEVICES (indices or UUIDs), or None when it is unset."""
    value = (env if env is not None else os.environ).get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


class NvmlMeter(EnergyMeter):
    """Sums the energy counters of the given GPUs.

    ``gpu_uuids`` names the GPUs the job uses (as CUDA sees them). When it is None, the first
    ``gpu_count`` entries of CUDA_VISIBLE_DEVICES are used, or NVML indices 0..gpu_count-1 when
    that variable is unset. Indices are NVML's (PCI bus order), which match CUDA's only with
    CUDA_DEVICE_ORDER=PCI_BUS_ID; the backends therefore pass UUIDs, which are unambiguous.
    """

    name = "nvml"
    energy_source = "measured"

    def __init__(self, gpu_uuids: Sequence[str] | None = None, gpu_count: int = 1) -> None:
        pynvml = _nvml()
        self._nvml = pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise MeterUnavailableError(
                f"NVML is not available on this machine ({exc}); this job asked for GPU energy "
                "(meter: nvml). Run it on a GPU node, or choose meter 'codecarbon' or 'none'."
            ) from exc
        try:
            self._handles = self._resolve_handles(gpu_uuids, gpu_count)
            names = {pynvml.nvmlDeviceGetName(h) for h in self._handles}
            self._e0 = self._read_mj()
        except pynvml.NVMLError as exc:
            pynvml.nvmlShutdown()
            raise MeterError(f"NVML failed while opening the GPUs: {exc}") from exc
        except MeterUnavailableError:
            pynvml.nvmlShutdown()
            raise
        self._names = sorted(_text(n) for n in names)
        self._t0 = time.perf_counter()

    def _resolve_handles(self, gpu_uuids: Sequence[str] | None, gpu_count: int) -> list[Any]:
        n = self._nvml
        if gpu_uuids:
            return [n.nvmlDeviceGetHandleByUUID(_nvml_uuid(u)) for u in gpu_uuids]
        visible = visible_device_ids()
        if visible is None:
            available = n.nvmlDeviceGetCount()
            if gpu_count > available:
                raise MeterUnavailableError(
                    f"this job needs {gpu_count} GPU(s) but NVML sees {available}"
                )
            return [n.nvmlDeviceGetHandleByIndex(i) for i in range(gpu_count)]
        if gpu_count > len(visible):
            raise MeterUnavailableError(
                f"this job needs {gpu_count} GPU(s) but CUDA_VISIBLE_DEVICES lists {len(visible)}"
            )
        handles = []
        for dev in visible[:gpu_count]:
            if dev.isdigit():
                handles.append(n.nvmlDeviceGetHandleByIndex(int(dev)))
            else:
                handles.append(n.nvmlDeviceGetHandleByUUID(_nvml_uuid(dev)))
        return handles

    def _read_mj(self) -> int:
        return sum(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self._handles)

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._e0 = self._read_mj()

    def lap(self) -> Measurement:
        try:
            e1 = self._read_mj()
        except self._nvml.NVMLError as exc:
            raise MeterError(f"NVML energy counter read failed: {exc}") from exc
        t1 = time.perf_counter()
        m = Measurement(duration_s=t1 - self._t0, energy_j=(e1 - self._e0) / 1000.0)
        self._t0, self._e0 = t1, e1
        return m

    def gpu_processes(self) -> list[int]:
        """PIDs of compute processes on the job's GPUs."""
        pids: set[int] = set()
        for h in self._handles:
            for p in self._nvml.nvmlDeviceGetComputeRunningProcesses(h):
                pids.add(int(p.pid))
        return sorted(pids)

    def foreign_processes(self) -> list[int] | None:
        try:
            pids = self.gpu_processes()
        except self._nvml.NVMLError:
            return None
        return [p for p in pids if not _in_own_process_tree(p)]

    def info(self) -> dict[str, Any]:
        n = self._nvml
        limits = [n.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0 for h in self._handles]
        uuids = [_text(n.nvmlDeviceGetUUID(h)) for h in self._handles]
        return {
            "meter_version": f"nvidia-ml-py {_package_version('nvidia-ml-py')}",
            "meter_detail": "NVML total energy counter, summed over the job's GPUs",
            "gpu_name": " + ".join(self._names),
            "gpu_count": len(self._handles),
            "gpu_uuids": ",".join(uuids),
            "driver_version": _text(n.nvmlSystemGetDriverVersion()),
            "power_limit_w": float(sum(limits)),
        }

    def close(self) -> None:
        with contextlib.suppress(self._nvml.NVMLError):
            self._nvml.nvmlShutdown()


def _in_own_process_tree(pid: int) -> bool:
    """True for this process and its descendants (engine workers), found through /proc; in a
    torchrun job, for every process of the job."""
    own = int(os.environ.get(JOB_PID_ENV, os.getpid()))
    seen = set()
    while pid > 1 and pid not in seen:
        if pid == own:
            return True
        seen.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        # The command name may hold spaces; the parent pid follows its closing parenthesis.
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return False


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _nvml_uuid(uuid: str) -> str:
    """CUDA prints bare UUIDs; NVML wants them with their 'GPU-' or 'MIG-' prefix."""
    return uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"


def _package_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"
