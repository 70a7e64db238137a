"""Energy meters: NVML against a fake pynvml, the null meter, and CodeCarbon for real on the CPU."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from llm_energy.errors import ConfigError, MeterError, MeterUnavailableError
from llm_energy.meters import METERS, make_meter
from llm_energy.meters.null import NullMeter
from llm_energy.meters.nvml import NvmlMeter, visible_device_ids

UUIDS = (
    "GPU-0a0a0a0a-0000-0000-0000-000000000000",
    "GPU-1b1b1b1b-1111-1111-1111-111111111111",
    "GPU-2c2c2c2c-2222-2222-2222-222222222222",
)


class NVMLError(Exception):
    """Stands in for pynvml.NVMLError, whose ``value`` is NVML's return code."""

    def __init__(self, message: str, value: int = 999) -> None:
        super().__init__(message)
        self.value = value


NOT_SUPPORTED, TIMEOUT, FUNCTION_NOT_FOUND = 3, 10, 13


@dataclass
class FakeGpu:
    index: int
    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    energy_mj: int = 1_000_000
    power_limit_mw: int = 700_000
    default_power_limit_mw: int = 700_000
    pids: tuple[int, ...] = ()
    reasons_mask: int = 0
    sm_clock_mhz: int = 1980
    temp_c: int = 45
    ecc_uncorrected: int | None = 0  # None: ECC not supported


@dataclass
class FakeNvml:
    """The few pynvml functions NvmlMeter calls; counters are advanced by hand."""

    gpus: list[FakeGpu]
    driver: str | bytes = "550.54.15"
    init_error: bool = False
    read_error: bool = False
    as_bytes: bool = False
    NVMLError: type = NVMLError
    reads: list[int] = field(default_factory=list)
    by_uuid: list[str] = field(default_factory=list)
    by_index: list[int] = field(default_factory=list)
    shutdowns: int = 0
    new_reasons_call: bool = True  # a driver with nvmlDeviceGetCurrentClocksEventReasons
    reasons_calls: list[str] = field(default_factory=list)
    clock_reads: int = 0
    events_supported: bool = True
    xid_queue: list[int] = field(default_factory=list)
    event_sets_freed: int = 0

    def _out(self, text: str) -> str | bytes:
        return text.encode() if self.as_bytes else text

    def advance(self, index: int, mj: int) -> None:
        self.gpus[index].energy_mj += mj

    def nvmlInit(self) -> None:
        if self.init_error:
            raise NVMLError("Driver Not Loaded")

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        self.by_index.append(index)
        if not 0 <= index < len(self.gpus):
            raise NVMLError("Invalid Argument")
        return self.gpus[index]

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> FakeGpu:
        self.by_uuid.append(uuid)
        for g in self.gpus:
            if g.uuid == uuid:
                return g
        raise NVMLError("Not Found")

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeGpu) -> int:
        if self.read_error:
            raise NVMLError("GPU is lost")
        self.reads.append(handle.index)
        return handle.energy_mj

    def nvmlDeviceGetName(self, handle: FakeGpu) -> str | bytes:
        return self._out(handle.name)

    def nvmlDeviceGetUUID(self, handle: FakeGpu) -> str | bytes:
        return self._out(handle.uuid)

    def nvmlSystemGetDriverVersion(self) -> str | bytes:
        return self._out(self.driver) if isinstance(self.driver, str) else self.driver

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: FakeGpu) -> int:
        return handle.power_limit_mw

    def nvmlDeviceGetPowerManagementDefaultLimit(self, handle: FakeGpu) -> int:
        return handle.default_power_limit_mw

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeGpu) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=p, usedGpuMemory=0) for p in handle.pids]

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: FakeGpu) -> int:
        if not self.new_reasons_call:
            raise NVMLError("Function Not Found", FUNCTION_NOT_FOUND)
        self.reasons_calls.append("event")
        if self.read_error:
            raise NVMLError("GPU is lost", 15)
        return handle.reasons_mask

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: FakeGpu) -> int:
        self.reasons_calls.append("throttle")
        return handle.reasons_mask

    def nvmlDeviceGetClockInfo(self, handle: FakeGpu, clock: int) -> int:
        assert clock == 1  # NVML_CLOCK_SM
        self.clock_reads += 1
        return handle.sm_clock_mhz

    def nvmlDeviceGetTemperature(self, handle: FakeGpu, sensor: int) -> int:
        assert sensor == 0  # NVML_TEMPERATURE_GPU
        return handle.temp_c

    def nvmlDeviceGetTotalEccErrors(self, handle: FakeGpu, error_type: int, counter: int) -> int:
        assert (error_type, counter) == (1, 0)  # uncorrected, volatile
        if handle.ecc_uncorrected is None:
            raise NVMLError("Not Supported", NOT_SUPPORTED)
        return handle.ecc_uncorrected

    def nvmlEventSetCreate(self) -> str:
        if not self.events_supported:
            raise NVMLError("Not Supported", NOT_SUPPORTED)
        return "event set"

    def nvmlDeviceRegisterEvents(self, handle: FakeGpu, types: int, events: str) -> None:
        assert types == 0x8  # Xid critical errors

    def nvmlEventSetWait_v2(self, events: str, timeout_ms: int) -> SimpleNamespace:
        assert timeout_ms == 0  # a poll, never a wait
        if not self.xid_queue:
            raise NVMLError("Timeout", TIMEOUT)
        return SimpleNamespace(eventType=0x8, eventData=self.xid_queue.pop(0))

    def nvmlEventSetFree(self, events: str) -> None:
        self.event_sets_freed += 1


@pytest.fixture
def fake(monkeypatch) -> FakeNvml:
    """Two GPUs, CUDA_VISIBLE_DEVICES unset."""
    nvml = FakeNvml(gpus=[FakeGpu(0, UUIDS[0]), FakeGpu(1, UUIDS[1], energy_mj=5_000_000)])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return nvml


# --- NVML: which GPUs are read -----------------------------------------------------------------


def test_one_gpu_job_reads_only_gpu_0(fake):
    meter = NvmlMeter(gpu_count=1)
    meter.start()
    fake.reads.clear()
    fake.advance(0, 2_500)
    fake.advance(1, 999_000)  # another job's GPU
    lap = meter.lap()
    assert lap.energy_j == pytest.approx(2.5)
    assert set(fake.reads) == {0}
    assert lap.duration_s > 0


def test_lap_energy_is_the_sum_over_the_jobs_gpus(fake):
    meter = NvmlMeter(gpu_count=2)
    meter.start()
    fake.advance(0, 1_500)
    fake.advance(1, 2_250)
    lap = meter.lap()
    assert lap.energy_j == pytest.approx(3.75)  # (1500 + 2250) mJ / 1000
    assert lap.mean_power_w == pytest.approx(lap.energy_j / lap.duration_s)


def test_cuda_visible_devices_index_maps_to_nvml_index(fake, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    meter = NvmlMeter(gpu_count=1)
    assert fake.by_index == [1]
    meter.start()
    fake.reads.clear()
    fake.advance(0, 7_000)
    fake.advance(1, 3_000)
    assert meter.lap().energy_j == pytest.approx(3.0)
    assert set(fake.reads) == {1}
    assert meter.info()["gpu_uuids"] == UUIDS[1]


def test_cuda_visible_devices_uuid_is_resolved_by_uuid(fake, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", UUIDS[1])
    meter = NvmlMeter(gpu_count=1)
    assert fake.by_uuid == [UUIDS[1]]
    assert fake.by_index == []
    meter.start()
    fake.advance(1, 4_000)
    assert meter.lap().energy_j == pytest.approx(4.0)


def test_bare_uuid_in_cuda_visible_devices_gets_the_gpu_prefix(fake, monkeypatch):
    bare = UUIDS[1].removeprefix("GPU-")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"{bare},0")
    meter = NvmlMeter(gpu_count=1)
    assert fake.by_uuid == [UUIDS[1]]
    assert meter.info()["gpu_count"] == 1


def test_explicit_gpu_uuids_without_prefix_get_it(fake, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # explicit UUIDs win over the variable
    bare = [UUIDS[1].removeprefix("GPU-"), UUIDS[0].removeprefix("GPU-")]
    meter = NvmlMeter(gpu_uuids=bare, gpu_count=2)
    assert fake.by_uuid == [UUIDS[1], UUIDS[0]]
    meter.start()
    fake.advance(0, 1_000)
    fake.advance(1, 1_000)
    assert meter.lap().energy_j == pytest.approx(2.0)


def test_explicit_gpu_uuids_with_prefix_are_kept(fake):
    NvmlMeter(gpu_uuids=[UUIDS[0]])
    assert fake.by_uuid == [UUIDS[0]]


def test_unknown_uuid_is_a_meter_error(fake):
    with pytest.raises(MeterError, match="opening the GPUs"):
        NvmlMeter(gpu_uuids=["GPU-ffffffff-0000-0000-0000-000000000000"])


def test_visible_device_ids_parsing():
    assert visible_device_ids({}) is None
    assert visible_device_ids({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_device_ids({"CUDA_VISIBLE_DEVICES": " 2, 0 ,"}) == ["2", "0"]


# --- NVML: laps ---------------------------------------------------------------------------------


def test_successive_laps_do_not_overlap(fake):
    meter = NvmlMeter(gpu_count=2)
    first = fake.gpus[0].energy_mj + fake.gpus[1].energy_mj
    meter.start()
    laps = []
    for mj0, mj1 in [(100, 200), (0, 0), (1_234, 4_321), (50_000, 1)]:
        fake.advance(0, mj0)
        fake.advance(1, mj1)
        laps.append(meter.lap())
    last = fake.gpus[0].energy_mj + fake.gpus[1].energy_mj
    assert [m.energy_j for m in laps] == pytest.approx([0.3, 0.0, 5.555, 50.001])
    assert sum(m.energy_j for m in laps) == pytest.approx((last - first) / 1000.0)
    assert all(m.duration_s > 0 for m in laps)


def test_start_resets_the_lap(fake):
    meter = NvmlMeter(gpu_count=1)
    fake.advance(0, 10_000)  # before start: not counted
    meter.start()
    fake.advance(0, 500)
    assert meter.lap().energy_j == pytest.approx(0.5)


def test_failed_counter_read_is_a_meter_error(fake):
    meter = NvmlMeter(gpu_count=1)
    meter.start()
    fake.read_error = True
    with pytest.raises(MeterError, match="energy counter read failed"):
        meter.lap()


# --- NVML: unavailable --------------------------------------------------------------------------


def test_nvml_init_failure_is_meter_unavailable(fake):
    fake.init_error = True
    with pytest.raises(MeterUnavailableError, match="NVML is not available") as exc:
        NvmlMeter()
    assert "Driver Not Loaded" in str(exc.value)


def test_more_gpus_than_nvml_sees(fake):
    with pytest.raises(MeterUnavailableError, match=r"needs 3 GPU\(s\) but NVML sees 2"):
        NvmlMeter(gpu_count=3)


def test_more_gpus_than_cuda_visible_devices_lists(fake, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    with pytest.raises(MeterUnavailableError, match="CUDA_VISIBLE_DEVICES lists 1"):
        NvmlMeter(gpu_count=2)


def test_empty_cuda_visible_devices_means_no_gpu(fake, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(MeterUnavailableError):
        NvmlMeter(gpu_count=1)


# --- NVML: provenance and extras ----------------------------------------------------------------


def test_info_sums_power_limits_and_reports_the_driver(fake):
    fake.gpus[1].power_limit_mw = 350_000
    info = NvmlMeter(gpu_count=2).info()
    assert info["power_limit_w"] == pytest.approx(1050.0)
    assert isinstance(info["power_limit_w"], float)
    assert info["driver_version"] == "550.54.15"
    assert info["gpu_count"] == 2
    assert info["gpu_uuids"] == f"{UUIDS[0]},{UUIDS[1]}"
    assert info["gpu_name"] == "NVIDIA H100 80GB HBM3"  # one name for identical GPUs
    assert info["meter_version"].startswith("nvidia-ml-py ")
    assert "summed" in info["meter_detail"]


def test_info_of_one_gpu_job_counts_one_gpu(fake):
    info = NvmlMeter(gpu_count=1).info()
    assert info["power_limit_w"] == pytest.approx(700.0)
    assert info["gpu_count"] == 1
    assert info["gpu_uuids"] == UUIDS[0]


def test_info_decodes_bytes_from_old_pynvml(fake):
    fake.as_bytes = True
    fake.gpus[1].name = "NVIDIA A100-SXM4-80GB"
    info = NvmlMeter(gpu_count=2).info()
    assert info["driver_version"] == "550.54.15"
    assert info["gpu_name"] == "NVIDIA A100-SXM4-80GB + NVIDIA H100 80GB HBM3"
    assert info["gpu_uuids"] == f"{UUIDS[0]},{UUIDS[1]}"


def test_processes_cover_only_the_jobs_gpus(fake):
    fake.gpus[0].pids, fake.gpus[1].pids = (42, 7), (99,)
    one = NvmlMeter(gpu_count=1)
    assert one.gpu_processes() == [7, 42]
    both = NvmlMeter(gpu_count=2)
    assert both.gpu_processes() == [7, 42, 99]


def test_close_shuts_nvml_down(fake):
    with NvmlMeter() as meter:
        assert meter.name == "nvml"
    assert fake.shutdowns == 1


# --- make_meter ---------------------------------------------------------------------------------


def test_make_meter_nvml_on_cuda_uses_the_given_gpus(fake):
    meter = make_meter("nvml", "cuda", gpu_uuids=[UUIDS[1].removeprefix("GPU-")], gpu_count=1)
    assert isinstance(meter, NvmlMeter)
    assert meter.energy_source == "measured"
    assert fake.by_uuid == [UUIDS[1]]


def test_make_meter_nvml_on_cpu_is_a_config_error():
    with pytest.raises(ConfigError, match="nvml"):
        make_meter("nvml", "cpu")


def test_make_meter_unknown_name_is_a_config_error():
    with pytest.raises(ConfigError, match="bogus"):
        make_meter("bogus", "cpu")


def test_energy_sources():
    assert set(METERS) == {"nvml", "codecarbon", "none"}
    assert NvmlMeter.energy_source == "measured"
    assert NullMeter.energy_source == "none"
    assert make_meter("none", "cpu").energy_source == "none"
    assert make_meter("none", "cuda").name == "none"


# --- null meter ---------------------------------------------------------------------------------


def test_null_meter_laps_have_nan_energy_and_positive_duration():
    meter = make_meter("none", "cpu")
    assert isinstance(meter, NullMeter)
    meter.start()
    time.sleep(0.01)
    first = meter.lap()
    second = meter.lap()
    for lap in (first, second):
        assert math.isnan(lap.energy_j)
        assert lap.energy_j != 0
        assert math.isnan(lap.mean_power_w)
    assert first.duration_s >= 0.01
    assert second.duration_s > 0
    assert second.duration_s < first.duration_s  # laps are consecutive, not cumulative
    assert "not measured" in meter.info()["meter_detail"]


# --- CodeCarbon (real, on the CPU) --------------------------------------------------------------


def test_codecarbon_on_cpu_is_a_labelled_estimate():
    pytest.importorskip("codecarbon")
    meter = make_meter(
        "codecarbon", "cpu", codecarbon={"country_iso_code": "USA", "tracking_mode": "process"}
    )
    try:
        assert meter.name == "codecarbon"
        assert meter.energy_source == "estimate"
        meter.start()
        t0 = time.perf_counter()
        acc = 0
        while time.perf_counter() - t0 < 0.3:
            acc += sum(i * i for i in range(2_000))
        lap = meter.lap()
        info = meter.info()
    finally:
        meter.close()
    assert acc > 0
    assert lap.duration_s >= 0.3
    assert math.isfinite(lap.energy_j)
    assert lap.energy_j > 0
    assert "estimated" in info["meter_detail"]
    assert info["meter_version"].startswith("codecarbon ")


# --- NVML: contention ---------------------------------------------------------------------------


def test_foreign_processes_leave_out_this_job_and_its_workers(fake):
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    # A process outside this job's tree: its shell parent exits, so it is re-parented away.
    spawn = "sleep 30 >/dev/null 2>&1 & echo $!"
    stranger = int(subprocess.run(["sh", "-c", spawn], capture_output=True, text=True).stdout)
    try:
        fake.gpus[0].pids = (os.getpid(), worker.pid, stranger)
        fake.gpus[1].pids = (424242,)  # on a GPU the job does not use
        meter = NvmlMeter(gpu_count=1)
        assert meter.foreign_processes() == [stranger]
        fake.gpus[0].pids = (os.getpid(),)
        assert meter.foreign_processes() == []
    finally:
        worker.kill()
        os.kill(stranger, signal.SIGKILL)


def test_meters_that_cannot_see_processes_say_so():
    assert NullMeter().foreign_processes() is None


def test_codecarbon_windows_do_not_include_the_time_between_them():
    meter = make_meter(
        "codecarbon", "cpu", codecarbon={"country_iso_code": "USA", "tracking_mode": "process"}
    )

    def window() -> float:
        meter.start()
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.3:
            pass
        return meter.lap().energy_j

    try:
        first = window()
        time.sleep(1.0)  # not measured: between two windows
        second = window()
    finally:
        meter.close()
    assert 0.5 < second / first < 1.5


# --- NVML: the GPUs' health over a window -------------------------------------------------------


def _watched(fake: FakeNvml, during, gpu_count: int = 1, interval_s: float = 0.005):
    """The health of one window over which ``during`` changes the fake GPUs."""
    meter = NvmlMeter(gpu_count=gpu_count)
    watch = meter.watch(interval_s=interval_s)
    meter.start()
    during()
    meter.lap()
    return watch.stop()


def _until_sampled(fake: FakeNvml) -> None:
    """Waits until the background thread has sampled twice more."""
    seen = fake.clock_reads
    deadline = time.monotonic() + 5
    while fake.clock_reads < seen + 2 and time.monotonic() < deadline:
        time.sleep(0.001)


def test_reasons_are_decoded_by_name_and_unknown_bits_kept():
    from llm_energy.meters.nvml import decode_reasons

    assert decode_reasons(0) == frozenset()
    assert decode_reasons(0x4 | 0x40 | 0x1) == {"sw_power_cap", "hw_thermal_slowdown", "idle"}
    assert decode_reasons(0x80 | 0x1000) == {"hw_power_brake", "bit_0x1000"}


def test_a_throttle_between_the_windows_edges_is_seen_by_the_sampling_thread(fake):
    def throttle_for_a_moment():
        fake.gpus[0].reasons_mask, fake.gpus[0].sm_clock_mhz, fake.gpus[0].temp_c = 0x4, 1410, 71
        _until_sampled(fake)
        fake.gpus[0].reasons_mask, fake.gpus[0].sm_clock_mhz, fake.gpus[0].temp_c = 0, 1980, 50

    health = _watched(fake, throttle_for_a_moment)
    assert health.clock_event_reasons == {"sw_power_cap"}
    assert (health.sm_clock_min_mhz, health.sm_clock_max_mhz) == (1410, 1980)
    assert health.gpu_temp_max_c == 71
    assert health.ecc_errors_new == 0 and health.xid_errors == ()
    assert health.energy_counter_backwards is False
    assert "nvml-health" not in {t.name for t in threading.enumerate()}


def test_every_gpu_of_the_job_is_watched(fake):
    def other_gpu_hot():
        fake.gpus[1].reasons_mask, fake.gpus[1].temp_c = 0x40, 88
        _until_sampled(fake)

    health = _watched(fake, other_gpu_hot, gpu_count=2)
    assert health.clock_event_reasons == {"hw_thermal_slowdown"}
    assert health.gpu_temp_max_c == 88
    fake.gpus[1].reasons_mask = 0x40
    assert _watched(fake, lambda: None, gpu_count=1).clock_event_reasons == frozenset()


def test_a_driver_without_the_clocks_event_call_is_asked_by_its_older_name(fake):
    fake.new_reasons_call = False
    fake.gpus[0].reasons_mask = 0x20
    health = _watched(fake, lambda: None)
    assert health.clock_event_reasons == {"sw_thermal_slowdown"}
    assert set(fake.reasons_calls) == {"throttle"}


def test_new_uncorrected_ecc_errors_are_counted_and_unsupported_ecc_is_unknown(fake):
    fake.gpus[0].ecc_uncorrected = 3  # from before the window: not its own

    def ecc_error():
        fake.gpus[0].ecc_uncorrected += 2

    assert _watched(fake, ecc_error).ecc_errors_new == 2
    fake.gpus[0].ecc_uncorrected = None
    health = _watched(fake, lambda: None)
    assert health.ecc_errors_new is None  # unknown, not zero
    assert health.clock_event_reasons == frozenset()  # the rest is still read


def test_xid_errors_during_the_window_are_its_own(fake):
    fake.xid_queue = [31]  # before the window

    def xid():
        fake.xid_queue.append(79)
        _until_sampled(fake)
        fake.xid_queue.append(13)  # collected at the window's end

    assert _watched(fake, xid).xid_errors == (79, 13)
    fake.events_supported = False
    assert _watched(fake, lambda: None).xid_errors is None


def test_a_counter_that_goes_backwards_marks_its_window_only(fake):
    meter = NvmlMeter(gpu_count=1)
    watch = meter.watch()
    meter.start()
    fake.gpus[0].energy_mj = 10  # the driver reset the counter
    meter.lap()
    assert watch.stop().energy_counter_backwards is True
    watch = meter.watch()
    meter.start()
    fake.advance(0, 5_000)
    assert meter.lap().energy_j == pytest.approx(5.0)
    assert watch.stop().energy_counter_backwards is False


def test_a_failed_read_makes_the_reasons_of_the_window_unknown(fake):
    def lost_for_a_moment():
        fake.read_error = True
        _until_sampled(fake)
        fake.read_error = False

    health = _watched(fake, lost_for_a_moment)
    assert health.clock_event_reasons is None  # not "none seen"


def test_the_watch_stops_when_the_window_fails(fake):
    from llm_energy.measure.job import ProtocolSpec
    from llm_energy.measure.protocol import measure_window

    meter = NvmlMeter(gpu_count=1)

    def fails():
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    with pytest.raises(RuntimeError, match="illegal memory access"):
        measure_window(fails, meter, ProtocolSpec(min_duration_s=0.0))
    assert "nvml-health" not in {t.name for t in threading.enumerate()}


def test_a_window_carries_its_health_and_meters_that_cannot_see_say_unknown(fake):
    from llm_energy.measure.health import window_columns
    from llm_energy.measure.job import ProtocolSpec
    from llm_energy.measure.protocol import measure_window

    protocol = ProtocolSpec(min_duration_s=0.0, min_repetitions=2)
    fake.gpus[0].reasons_mask = 0x4 | 0x1
    # At its default power limit the GPU capping its power is the state being measured.
    window = measure_window(lambda: None, NvmlMeter(gpu_count=1), protocol)
    columns = window_columns(window.health)
    assert columns["gpu_health"] == "ok"
    assert columns["clock_event_reasons"] == "idle,sw_power_cap"
    # Under a limit set below the default (nvidia-smi -pl), the same reason is a throttle.
    fake.gpus[0].power_limit_mw = 300_000
    window = measure_window(lambda: None, NvmlMeter(gpu_count=1), protocol)
    columns = window_columns(window.health)
    assert columns["gpu_health"] == "throttled_power"
    assert columns["clock_event_reasons"] == "idle,power_limit_lowered,sw_power_cap"
    assert columns["sm_clock_max_mhz"] == 1980
    unseen = window_columns(measure_window(lambda: None, NullMeter(), protocol).health)
    assert unseen["gpu_health"] == "unknown"
    assert unseen["clock_event_reasons"] is None and unseen["ecc_errors_new"] is None
    assert math.isnan(unseen["sm_clock_min_mhz"]) and math.isnan(unseen["gpu_temp_max_c"])


def test_close_frees_the_xid_event_set(fake):
    NvmlMeter(gpu_count=1).close()
    assert fake.event_sets_freed == 1
