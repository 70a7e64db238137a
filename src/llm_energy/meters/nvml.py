"""GPU energy from NVML's cumulative energy counter, summed over exactly the GPUs a job uses.

``nvmlDeviceGetTotalEnergyConsumption`` counts millijoules since the driver loaded (Volta and
newer). On an H100 it updates about ten times a second, so a lap shorter than about a second is
quantised; the protocol therefore repeats each point until a window lasts seconds.

Over each window the meter also watches the GPUs (:meth:`NvmlMeter.watch`): a background
thread samples the clock-event (throttle) reasons, the SM clock and the temperature every
``SAMPLE_INTERVAL_S``, Xid events are collected as they come, and the volatile uncorrected ECC
count is read at both edges. Each sample costs a few NVML calls per GPU, tens of microseconds,
outside the thread that runs the model.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llm_energy.errors import ConfigError, MeterError, MeterUnavailableError
from llm_energy.job_environment import JOB_PID_ENV
from llm_energy.meters.base import EnergyMeter, HealthWatch, Measurement, WindowHealth

# Set in the ranks of a job that started itself again under torchrun (one process per GPU):
# the pid of the job's own process, so that the ranks, siblings of rank 0, count as the job.

# NVML's clock-event reason bits (nvml.h; the same bits under their older name, "throttle
# reasons"), by the names the rows use.
CLOCK_EVENT_REASONS = {
    0x1: "idle",
    0x2: "applications_clocks",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake",
    0x100: "display_clocks",
    0x200: "board_limit",
    0x400: "reliability",
}
SAMPLE_INTERVAL_S = 0.1
# nvml.h's constants, for pynvml releases that lack a name.
NVML_CLOCK_SM = 1
NVML_TEMPERATURE_GPU = 0
NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
NVML_VOLATILE_ECC = 0
NVML_EVENT_TYPE_XID = 0x8
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_FUNCTION_NOT_FOUND = 13


def decode_reasons(mask: int) -> frozenset[str]:
    """The names of the reasons set in an NVML clock-event bitmask; a bit this release does
    not know is kept by its value (``bit_0x800``)."""
    names = {name for bit, name in CLOCK_EVENT_REASONS.items() if mask & bit}
    rest = mask & ~sum(CLOCK_EVENT_REASONS)
    names |= {f"bit_{1 << i:#x}" for i in range(rest.bit_length()) if rest >> i & 1}
    return frozenset(names)


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
        self.backward_reads = 0  # energy counter reads lower than the read before
        self._e_gpus: list[int] = []
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
        self._reasons = self._reasons_function()
        self._xid_events = self._register_xid_events()

    def _reasons_function(self) -> Any:
        """NVML's clock-event reasons call, or its older name on drivers that lack the new one
        (None when pynvml has neither)."""
        n = self._nvml
        new = getattr(n, "nvmlDeviceGetCurrentClocksEventReasons", None)
        if new is not None:
            try:
                new(self._handles[0])
                return new
            except n.NVMLError as exc:
                if _error_code(exc) != NVML_ERROR_FUNCTION_NOT_FOUND:
                    return new  # the call exists; whether it answers is the watch's to see
        return getattr(n, "nvmlDeviceGetCurrentClocksThrottleReasons", None)

    def _register_xid_events(self) -> Any:
        """An NVML event set that collects the job's GPUs' Xid errors, or None where NVML
        cannot deliver them (a platform without events, a virtual GPU)."""
        n = self._nvml
        try:
            events = n.nvmlEventSetCreate()
        except (n.NVMLError, AttributeError):
            return None
        try:
            for h in self._handles:
                n.nvmlDeviceRegisterEvents(h, NVML_EVENT_TYPE_XID, events)
        except n.NVMLError:
            with contextlib.suppress(n.NVMLError):
                n.nvmlEventSetFree(events)
            return None
        return events

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

    def _read_mj(self, compare: bool = False) -> int:
        """The counters' sum. With ``compare``, a counter that reads less than at the read
        before (a driver or GPU reset) is counted in ``backward_reads``."""
        readings = [self._nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self._handles]
        if compare and any(
            now < before for now, before in zip(readings, self._e_gpus, strict=True)
        ):
            self.backward_reads += 1
        self._e_gpus = readings
        return sum(readings)

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._e0 = self._read_mj()

    def lap(self) -> Measurement:
        try:
            e1 = self._read_mj(compare=True)
        except self._nvml.NVMLError as exc:
            raise MeterError(f"NVML energy counter read failed: {exc}") from exc
        t1 = time.perf_counter()
        m = Measurement(duration_s=t1 - self._t0, energy_j=(e1 - self._e0) / 1000.0)
        self._t0, self._e0 = t1, e1
        return m

    def watch(self, interval_s: float = SAMPLE_INTERVAL_S) -> HealthWatch:
        return NvmlWatch(self, interval_s)

    def power_limit_lowered(self) -> bool:
        """Whether any of the job's GPUs runs under a power limit below its default (someone
        set it with ``nvidia-smi -pl``); False where NVML cannot say."""
        n = self._nvml
        try:
            return any(
                n.nvmlDeviceGetEnforcedPowerLimit(h) < n.nvmlDeviceGetPowerManagementDefaultLimit(h)
                for h in self._handles
            )
        except n.NVMLError:
            return False

    def ecc_uncorrected(self) -> int | None:
        """Uncorrected ECC errors since the driver loaded (volatile), summed over the job's
        GPUs; None where a GPU cannot say (ECC off, not supported)."""
        n = self._nvml
        try:
            return sum(
                int(
                    n.nvmlDeviceGetTotalEccErrors(
                        h, NVML_MEMORY_ERROR_TYPE_UNCORRECTED, NVML_VOLATILE_ECC
                    )
                )
                for h in self._handles
            )
        except n.NVMLError:
            return None

    def xid_codes(self) -> list[int] | None:
        """The Xid errors NVML has delivered since the last call, or None when it cannot."""
        if self._xid_events is None:
            return None
        n = self._nvml
        codes = []
        while True:
            try:
                data = n.nvmlEventSetWait_v2(self._xid_events, 0)
            except n.NVMLError as exc:
                return codes if _error_code(exc) == NVML_ERROR_TIMEOUT else None
            if int(data.eventType) & NVML_EVENT_TYPE_XID:
                codes.append(int(data.eventData))

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
        n = self._nvml
        if self._xid_events is not None:
            with contextlib.suppress(n.NVMLError):
                n.nvmlEventSetFree(self._xid_events)
            self._xid_events = None
        with contextlib.suppress(n.NVMLError):
            n.nvmlShutdown()


class NvmlWatch(HealthWatch):
    """One window's watch: samples at its start, every ``interval_s`` in a background thread,
    and at its end. A failed read of the reasons makes the window's reasons unknown (not "none
    seen"); clocks and temperature are those of the samples read."""

    def __init__(self, meter: NvmlMeter, interval_s: float) -> None:
        self._meter = meter
        self._interval_s = interval_s
        self._mask = 0
        self._reasons_known = True
        self._clocks_mhz: list[float] = []
        self._temps_c: list[float] = []
        self._backward0 = meter.backward_reads
        self._ecc0 = meter.ecc_uncorrected()
        # Xid events from before the window are not its own.
        self._xids: list[int] | None = [] if meter.xid_codes() is not None else None
        self._sample()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nvml-health", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(self._interval_s):
            self._sample()

    def _sample(self) -> None:
        meter, n = self._meter, self._meter._nvml
        self._reasons_known &= meter._reasons is not None
        for h in meter._handles:
            if self._reasons_known:
                try:
                    self._mask |= int(meter._reasons(h))
                except n.NVMLError:
                    self._reasons_known = False
            with contextlib.suppress(n.NVMLError):
                self._clocks_mhz.append(float(n.nvmlDeviceGetClockInfo(h, NVML_CLOCK_SM)))
            with contextlib.suppress(n.NVMLError):
                self._temps_c.append(float(n.nvmlDeviceGetTemperature(h, NVML_TEMPERATURE_GPU)))
        if self._xids is not None:
            codes = meter.xid_codes()
            if codes is None:
                self._xids = None
            else:
                self._xids += codes

    def stop(self) -> WindowHealth:
        self._stopping.set()
        self._thread.join()
        self._sample()
        ecc1 = self._meter.ecc_uncorrected()
        # Volatile counts start again at a driver reload: fewer than before cannot be told.
        known = self._ecc0 is not None and ecc1 is not None and ecc1 >= self._ecc0
        reasons = decode_reasons(self._mask) if self._reasons_known else None
        if reasons and "sw_power_cap" in reasons and self._meter.power_limit_lowered():
            reasons = reasons | {"power_limit_lowered"}
        return WindowHealth(
            clock_event_reasons=reasons,
            sm_clock_min_mhz=min(self._clocks_mhz, default=math.nan),
            sm_clock_max_mhz=max(self._clocks_mhz, default=math.nan),
            gpu_temp_max_c=max(self._temps_c, default=math.nan),
            ecc_errors_new=ecc1 - self._ecc0 if known else None,  # type: ignore[operator]
            xid_errors=tuple(self._xids) if self._xids is not None else None,
            energy_counter_backwards=self._meter.backward_reads > self._backward0,
        )


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


def _error_code(exc: BaseException) -> int | None:
    """NVML's return code carried by a pynvml error."""
    return getattr(exc, "value", None)


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


# The meter's name in a configuration (meter.primary, meter.cross_check), the pip extra and
# the modules it needs (llm_energy.meters finds it by these).
NAME = "nvml"
EXTRA = "nvml"
REQUIRES = ("pynvml",)


def check_device(device: str) -> None:
    if not device.startswith("cuda"):
        raise ConfigError(f"meter 'nvml' measures GPU energy but the job runs on device '{device}'")


def create(
    device: str, gpu_uuids: Sequence[str] | None, gpu_count: int, codecarbon: dict[str, Any]
) -> NvmlMeter:
    return NvmlMeter(gpu_uuids=gpu_uuids, gpu_count=gpu_count)
