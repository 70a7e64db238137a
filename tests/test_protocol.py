"""The measurement protocol: window arithmetic, stopping rule and per-batch result columns."""

from __future__ import annotations

import math

import pytest

from llm_energy.measure.health import UNKNOWN_COLUMNS
from llm_energy.measure.job import PointSpec, ProtocolSpec
from llm_energy.measure.protocol import WindowResult, measure_idle_power_w, measure_window
from llm_energy.measure.runner import infeasible_columns, result_columns
from llm_energy.meters.base import EnergyMeter, Measurement
from llm_energy.meters.null import NullMeter

NAN = math.nan


class FakeMeter(EnergyMeter):
    """Every lap lasts ``duration_s`` and holds ``energy_j``; counts its calls."""

    energy_source = "measured"

    def __init__(self, name: str = "fake", duration_s: float = 0.1, energy_j: float = 2.0):
        self.name = name  # type: ignore[misc]
        self.duration_s = duration_s
        self.energy_j = energy_j
        self.starts = 0
        self.laps = 0

    def start(self) -> None:
        self.starts += 1

    def lap(self) -> Measurement:
        self.laps += 1
        return Measurement(duration_s=self.duration_s, energy_j=self.energy_j)


class FakeClock:
    """A clock read twice per repetition; each repetition lasts ``step_s``."""

    def __init__(self, step_s: float) -> None:
        self.step_s, self.now, self.reads = step_s, 0.0, 0

    def __call__(self) -> float:
        self.reads += 1
        if self.reads % 2 == 0:
            self.now += self.step_s
        return self.now


def _window(*pairs: tuple[float, float], cross: dict[str, float] | None = None) -> WindowResult:
    energies = tuple(e for _, e in pairs)
    return WindowResult(
        durations_s=tuple(d for d, _ in pairs),
        total_energy_j=sum(energies),
        energies_j=energies,
        cross_check_energy_j=cross or {},
    )


def _protocol(**kw) -> ProtocolSpec:
    return ProtocolSpec(**{"min_duration_s": 0.0, "min_repetitions": 1, **kw})


# --- WindowResult -------------------------------------------------------------------------------


def test_window_means_totals_and_spread():
    w = _window((1.0, 10.0), (2.0, 20.0), (3.0, 30.0))
    assert w.repetitions == 3
    assert w.total_duration_s == pytest.approx(6.0)
    assert w.total_energy_j == pytest.approx(60.0)
    assert w.duration_s == pytest.approx(2.0)
    assert w.energy_j == pytest.approx(20.0)
    assert w.duration_std_s == pytest.approx(1.0)  # sample standard deviation
    assert w.energy_std_j == pytest.approx(10.0)


def test_window_std_of_equal_laps_is_zero():
    w = _window((0.5, 4.0), (0.5, 4.0))
    assert w.energy_std_j == 0.0
    assert w.duration_std_s == 0.0


def test_window_std_is_nan_for_a_single_lap():
    w = _window((0.5, 4.0))
    assert w.energy_j == pytest.approx(4.0)
    assert math.isnan(w.energy_std_j)
    assert math.isnan(w.duration_std_s)


def test_window_without_energy_has_nan_energy_but_real_times():
    w = _window((0.5, NAN), (1.5, NAN))
    assert math.isnan(w.energy_j)
    assert math.isnan(w.total_energy_j)
    assert math.isnan(w.energy_std_j)
    assert w.duration_s == pytest.approx(1.0)
    assert w.duration_std_s == pytest.approx(math.sqrt(0.5))


# --- measure_window -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("min_reps", "min_duration", "expected"),
    [
        (3, 0.0, 3),  # repetitions bind
        (3, 0.25, 3),  # both met at 3 laps (0.3 s)
        (3, 0.5, 5),  # duration binds: 5 x 0.1 s
        (1, 0.3, 3),
        (7, 0.5, 7),  # repetitions bind again
        (1, 0.0, 1),
    ],
)
def test_window_stops_when_both_minimums_are_met(min_reps, min_duration, expected):
    meter = FakeMeter()
    calls = []
    result = measure_window(
        lambda: calls.append(1),
        meter,
        _protocol(min_repetitions=min_reps, min_duration_s=min_duration),
        per_repetition_energy_min_s=0.0,
        clock=FakeClock(0.1),
    )
    assert result.repetitions == expected
    assert len(calls) == expected
    assert meter.laps == expected
    assert meter.starts == 1
    assert result.energy_j == pytest.approx(2.0)


def test_window_stops_at_the_first_lap_that_reaches_the_duration():
    meter = FakeMeter()
    result = measure_window(
        lambda: None,
        meter,
        _protocol(min_repetitions=2, min_duration_s=1.0),
        per_repetition_energy_min_s=0.0,
        clock=FakeClock(0.25),
    )
    assert result.repetitions == 4
    assert result.total_duration_s == pytest.approx(1.0)


@pytest.mark.parametrize(("min_reps", "max_reps"), [(3, 10), (20, 5), (1, 1)])
def test_window_never_exceeds_max_repetitions(min_reps, max_reps):
    meter = FakeMeter()
    result = measure_window(
        lambda: None,
        meter,
        _protocol(min_repetitions=min_reps, min_duration_s=100.0, max_repetitions=max_reps),
        per_repetition_energy_min_s=0.0,
        clock=FakeClock(0.01),
    )
    assert result.repetitions == max_reps
    assert meter.laps == max_reps


def test_cross_check_meters_see_the_whole_window_once():
    primary = FakeMeter("primary", duration_s=0.1, energy_j=1.0)
    checks = [FakeMeter("codecarbon", energy_j=7.5), FakeMeter("nvml", energy_j=3.0)]
    result = measure_window(
        lambda: None,
        primary,
        _protocol(min_repetitions=4, min_duration_s=0.0),
        checks,
        per_repetition_energy_min_s=0.0,
    )
    assert result.repetitions == 4
    assert primary.laps == 4
    for c in checks:
        assert c.starts == 1
        assert c.laps == 1
    assert result.cross_check_energy_j == {"codecarbon": 7.5, "nvml": 3.0}


def test_each_repetition_runs_before_its_lap():
    events: list[str] = []

    class Recording(FakeMeter):
        def start(self) -> None:
            events.append("start")

        def lap(self) -> Measurement:
            events.append("lap")
            return super().lap()

    measure_window(
        lambda: events.append("run"),
        Recording(),
        _protocol(min_repetitions=2),
        per_repetition_energy_min_s=0.0,
    )
    assert events == ["start", "run", "lap", "run", "lap"]


def test_per_repetition_reads_follow_the_first_repetition_of_the_window():
    long_meter, short_meter = FakeMeter(), FakeMeter()
    proto = _protocol(min_repetitions=3, min_duration_s=0.0)
    long = measure_window(
        lambda: None, long_meter, proto, per_repetition_energy_min_s=1.0, clock=FakeClock(1.5)
    )
    short = measure_window(
        lambda: None, short_meter, proto, per_repetition_energy_min_s=1.0, clock=FakeClock(0.5)
    )
    assert long_meter.laps == 3 and len(long.energies_j) == 3
    assert short_meter.laps == 1 and short.energies_j == ()


def test_short_repetitions_read_the_meter_once_per_window():
    meter = FakeMeter(energy_j=12.0)
    result = measure_window(
        lambda: None,
        meter,
        _protocol(min_repetitions=3, min_duration_s=0.5),
        clock=FakeClock(0.1),
    )
    assert result.repetitions == 5
    assert meter.starts == 1 and meter.laps == 1
    assert result.total_energy_j == pytest.approx(12.0)
    assert result.energy_j == pytest.approx(12.0 / 5)
    assert result.energies_j == ()
    assert math.isnan(result.energy_std_j)  # not measured, so not zero
    assert result.duration_std_s == pytest.approx(0.0, abs=1e-12)


def test_window_with_a_real_null_meter():
    result = measure_window(lambda: None, NullMeter(), _protocol(min_repetitions=3))
    assert result.repetitions == 3
    assert math.isnan(result.energy_j)
    assert result.duration_s >= 0


# --- result_columns -----------------------------------------------------------------------------


def test_result_columns_split_prefill_and_decode():
    full = _window((2.0, 100.0), (2.0, 100.0), cross={"codecarbon": 180.0})
    prefill = _window((0.5, 20.0), (0.5, 20.0), (0.5, 20.0))
    point = PointSpec(batch_size=4, input_tokens=64, output_tokens=8)
    row = result_columns(full, prefill, point, idle_power_w=10.0)
    assert row["feasible"] is True
    assert row["error"] == ""
    assert row["repetitions"] == 2
    assert row["prefill_repetitions"] == 3
    assert row["energy_j"] == pytest.approx(100.0)
    assert row["duration_s"] == pytest.approx(2.0)
    assert row["prefill_energy_j"] == pytest.approx(20.0)
    assert row["prefill_duration_s"] == pytest.approx(0.5)
    assert row["decode_energy_j"] == pytest.approx(80.0)  # full - prefill
    assert row["decode_duration_s"] == pytest.approx(1.5)
    assert row["energy_per_output_token_j"] == pytest.approx(100.0 / (4 * 8))
    assert row["energy_per_request_j"] == pytest.approx(25.0)
    assert row["output_tokens_per_s"] == pytest.approx(32 / 2.0)
    assert row["mean_power_w"] == pytest.approx(50.0)
    assert row["idle_power_w"] == 10.0
    assert row["energy_above_idle_j"] == pytest.approx(100.0 - 10.0 * 2.0)
    assert row["energy_codecarbon_j"] == pytest.approx(90.0)  # per repetition


def test_single_output_token_has_no_decode_phase():
    full = _window((0.4, 12.0), (0.6, 14.0))
    point = PointSpec(batch_size=2, input_tokens=128, output_tokens=1)
    for prefill in (None, _window((0.3, 99.0))):  # a prefill window is ignored
        row = result_columns(full, prefill, point, idle_power_w=NAN)
        assert row["prefill_energy_j"] == pytest.approx(13.0)
        assert row["prefill_duration_s"] == pytest.approx(0.5)
        assert row["decode_energy_j"] == 0.0
        assert row["decode_duration_s"] == 0.0
        assert not math.isnan(row["decode_energy_j"])
        assert row["energy_per_output_token_j"] == pytest.approx(13.0 / 2)


def test_unmeasured_prefill_is_nan_not_zero():
    full = _window((1.0, 50.0), (1.0, 50.0))
    point = PointSpec(batch_size=1, input_tokens=16, output_tokens=32)
    row = result_columns(full, None, point, idle_power_w=5.0)
    for key in ("prefill_energy_j", "prefill_duration_s", "decode_energy_j", "decode_duration_s"):
        assert math.isnan(row[key]), key
    assert row["prefill_repetitions"] == 0
    assert row["energy_j"] == pytest.approx(50.0)
    assert row["energy_above_idle_j"] == pytest.approx(45.0)


def test_time_only_rows_have_nan_energy_and_real_throughput():
    full = _window((0.5, NAN), (0.5, NAN))
    prefill = _window((0.1, NAN), (0.1, NAN))
    point = PointSpec(batch_size=8, input_tokens=16, output_tokens=4)
    row = result_columns(full, prefill, point, idle_power_w=NAN)
    for key in (
        "energy_j",
        "energy_std_j",
        "prefill_energy_j",
        "decode_energy_j",
        "energy_per_output_token_j",
        "energy_per_request_j",
        "mean_power_w",
        "energy_above_idle_j",
    ):
        assert math.isnan(row[key]), key
    assert row["output_tokens_per_s"] == pytest.approx(32 / 0.5)
    assert row["decode_duration_s"] == pytest.approx(0.4)


def test_nan_idle_power_gives_nan_energy_above_idle():
    row = result_columns(_window((1.0, 5.0)), None, PointSpec(1, 8, 2), idle_power_w=NAN)
    assert row["energy_j"] == pytest.approx(5.0)
    assert math.isnan(row["energy_above_idle_j"])


def test_infeasible_columns_are_nan_not_zero():
    row = infeasible_columns("out of memory: CUDA out of memory")
    assert row["feasible"] is False
    assert row["error"] == "out of memory: CUDA out of memory"
    assert row["repetitions"] == 0
    assert row["prefill_repetitions"] == 0
    flags = ("feasible", "error", "repetitions", "prefill_repetitions")
    contention = ("contention_checked", "contended", "foreign_gpu_pids")
    numeric = [k for k in row if k not in flags + contention + tuple(UNKNOWN_COLUMNS)]
    assert row["contention_checked"] is False and row["contended"] is False
    assert "energy_j" in numeric
    assert "peak_memory_gib" in numeric
    for key in numeric:
        assert math.isnan(row[key]), key
    # The GPU was not watched: its health is unknown, never a healthy zero.
    assert row["gpu_health"] == "unknown"
    for key in ("clock_event_reasons", "ecc_errors_new", "xid_errors", "energy_counter_backwards"):
        assert row[key] is None, key
    for key in ("sm_clock_min_mhz", "sm_clock_max_mhz", "gpu_temp_max_c"):
        assert math.isnan(row[key]), key


def test_infeasible_and_feasible_rows_share_their_measured_columns():
    feasible = result_columns(_window((1.0, 1.0)), None, PointSpec(1, 8, 2), 0.0)
    infeasible = infeasible_columns("x")
    # the runner adds peak memory and the contention check to feasible rows itself
    added = {
        "peak_memory_gib",
        "contention_checked",
        "contended",
        "foreign_gpu_pids",
        "host_cpu_others_cores",
        *UNKNOWN_COLUMNS,  # the GPU's health over the windows
    }
    assert set(feasible) | added == set(infeasible)


# --- idle power ---------------------------------------------------------------------------------


@pytest.mark.parametrize("duration", [0.0, -1.0])
def test_idle_power_without_duration_is_nan(duration):
    meter = FakeMeter()
    assert math.isnan(measure_idle_power_w(meter, duration))
    assert meter.starts == 0
    assert meter.laps == 0


def test_idle_power_is_the_lap_mean_power():
    meter = FakeMeter(duration_s=2.0, energy_j=90.0)
    assert measure_idle_power_w(meter, 0.01) == pytest.approx(45.0)
    assert meter.starts == 1
    assert meter.laps == 1


def test_idle_power_of_a_time_only_meter_is_nan():
    assert math.isnan(measure_idle_power_w(NullMeter(), 0.01))
