"""Energy meters: NVML against a fake pynvml, the null meter, and CodeCarbon for real on the CPU."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
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
    """Stands in for pynvml.NVMLError."""


@dataclass
class FakeGpu:
    index: int
    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    energy_mj: int = 1_000_000
    power_limit_mw: int = 700_000
    pids: tuple[int, ...] = ()


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

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeGpu) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=p, usedGpuMemory=0) for p in handle.pids]


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
    assert METERS == ("nvml", "codecarbon", "none")
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
