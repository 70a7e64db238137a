"""The GPUs' health over a row's windows: which reasons flag a row, a point's word from its
trials, and rows without the columns (older tables) reading as unknown where they are drawn."""

from __future__ import annotations

import glob
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import pytest
from _outputs import draw

from llm_energy.analysis import aggregate
from llm_energy.measure.health import complete, flagged, gpu_health, point_columns, window_columns
from llm_energy.meters.base import WindowHealth

ROOT = Path(__file__).resolve().parents[1]


def _health(reasons=(), ecc=0, xid=(), backwards=False) -> WindowHealth:
    return WindowHealth(
        clock_event_reasons=frozenset(reasons),
        sm_clock_min_mhz=1410.0,
        sm_clock_max_mhz=1980.0,
        gpu_temp_max_c=60.0,
        ecc_errors_new=ecc,
        xid_errors=None if xid is None else tuple(xid),
        energy_counter_backwards=backwards,
    )


@pytest.mark.parametrize(
    ("health", "word"),
    [
        (_health(), "ok"),
        (_health({"idle", "applications_clocks", "sync_boost", "display_clocks"}), "ok"),
        (_health({"sw_power_cap"}), "ok"),  # an H200 at its default power limit
        (_health({"sw_power_cap", "power_limit_lowered"}), "throttled_power"),
        (_health({"hw_power_brake"}), "throttled_power"),
        (_health({"hw_thermal_slowdown", "idle"}), "throttled_thermal"),
        (_health({"sw_thermal_slowdown"}), "throttled_thermal"),
        (_health({"hw_slowdown"}), "throttled_other"),
        (_health({"bit_0x1000"}), "throttled_other"),  # a reason this release does not know
        (_health(ecc=1), "gpu_error"),
        (_health(xid=(79,)), "gpu_error"),
        (_health({"hw_power_brake"}, backwards=True), "counter_backwards+throttled_power"),
        (WindowHealth(), "unknown"),  # a meter that cannot see the GPUs
        (_health(ecc=None, xid=None), "ok"),  # no ECC to read does not make the rest unknown
    ],
)
def test_which_observations_flag_a_window(health, word):
    assert window_columns(health)["gpu_health"] == word


def test_windows_of_one_trial_merge_and_unknown_stays_unknown():
    prefill = _health({"idle"}, ecc=0, xid=())
    full = WindowHealth(
        clock_event_reasons=frozenset({"sw_power_cap"}),
        sm_clock_min_mhz=1200.0,
        sm_clock_max_mhz=math.nan,
        gpu_temp_max_c=75.0,
        ecc_errors_new=None,
        xid_errors=(13,),
        energy_counter_backwards=False,
    )
    both = prefill.merge(full)
    assert both.clock_event_reasons == {"idle", "sw_power_cap"}
    assert (both.sm_clock_min_mhz, both.sm_clock_max_mhz, both.gpu_temp_max_c) == (
        1200.0,
        1980.0,
        75.0,
    )
    assert both.ecc_errors_new is None and both.xid_errors == (13,)
    assert prefill.merge(WindowHealth()).clock_event_reasons is None


def test_a_point_is_flagged_when_any_trial_was_and_keeps_every_trials_word():
    trials = [
        window_columns(_health({"idle"})),
        window_columns(_health({"sw_power_cap", "power_limit_lowered"}, ecc=0)),
        window_columns(_health(xid=(31,))),
    ]
    trials[1]["sm_clock_min_mhz"] = 990.0
    row = point_columns(trials)
    assert row["gpu_health"] == "gpu_error+throttled_power"
    assert json.loads(row["trial_gpu_health"]) == ["ok", "throttled_power", "gpu_error"]
    assert row["clock_event_reasons"] == "idle,power_limit_lowered,sw_power_cap"
    assert row["sm_clock_min_mhz"] == 990.0 and row["xid_errors"] == "31"
    assert row["ecc_errors_new"] == 0 and row["energy_counter_backwards"] is False
    healthy = point_columns([window_columns(_health()), window_columns(_health())])
    assert healthy["gpu_health"] == "ok" and healthy["clock_event_reasons"] == ""


def test_trials_journaled_before_the_columns_make_the_point_unknown():
    old = {"energy_j": 1.0}  # a trial measured before the GPU was watched
    row = point_columns([old, window_columns(_health())])
    assert row["gpu_health"] == "unknown"
    assert row["energy_counter_backwards"] is None
    assert point_columns([old, window_columns(_health({"hw_power_brake"}))])["gpu_health"] == (
        "throttled_power"
    )


def test_unknown_stays_unknown_through_parquet(tmp_path):
    rows = pd.DataFrame(
        [window_columns(_health({"hw_power_brake"}, ecc=2)), window_columns(WindowHealth())]
    )
    complete(rows).to_parquet(tmp_path / "t.parquet")
    back = pd.read_parquet(tmp_path / "t.parquet")
    assert back["ecc_errors_new"].tolist()[0] == 2 and pd.isna(back["ecc_errors_new"].iloc[1])
    assert back["ecc_errors_new"].dtype == "Int64"
    assert back["energy_counter_backwards"].dtype == "boolean"
    assert back["gpu_health"].tolist() == ["gpu_error+throttled_power", "unknown"]
    assert pd.isna(back["clock_event_reasons"].iloc[1])  # unknown, not "" (none seen)


def _footer(fig) -> str:
    return "\n".join(t.get_text() for t in fig.texts)


def test_shipped_tables_without_the_columns_aggregate_and_draw_as_unknown(tmp_path):
    # The H100 tables measured before the GPU was watched.
    tables = sorted(map(Path, glob.glob(str(ROOT / "resources/measurements/h100/*.parquet"))))
    shipped = [p for p in tables if "gpu_health" not in pd.read_parquet(p).columns]
    assert len(shipped) >= 20
    table = aggregate.combine(shipped)
    table = table[table["hardware"] == "h100"]
    assert (gpu_health(table) == "unknown").all() and not flagged(table).any()
    assert "GPU health" not in _footer(draw("fig10", table))
    # One of the figure's rows throttled: drawn, and counted under the figure.
    sweep = table["experiments"].str.contains("sweep") & (table["backend"] == "transformers")
    sweep &= table["feasible"].astype(bool) & (table["repetitions"] > 0)
    table.loc[sweep[sweep].index[0], "gpu_health"] = "throttled_thermal"
    footer = _footer(draw("fig10", table))
    assert f"1 of {int(sweep.sum())} rows with GPU health flagged (throttled_thermal 1)" in footer
    plt.close("all")


def test_tables_measured_before_and_since_aggregate_together(tmp_path):
    old = ROOT / "resources/measurements/repeats/h100_before_trials/olmo-1b__pytorch.parquet"
    new = complete(pd.read_parquet(old).assign(group="since__pytorch", gpu_health="ok"))
    new.to_parquet(tmp_path / "since.parquet")
    table = aggregate.combine([old, tmp_path / "since.parquet"])
    by_group = table.groupby("group")["gpu_health"].agg(set).to_dict()
    assert by_group == {"olmo-1b__pytorch": {"unknown"}, "since__pytorch": {"ok"}}
    aggregate.write(table, tmp_path / "all.parquet")
    assert pd.read_parquet(tmp_path / "all.parquet")["ecc_errors_new"].dtype == "Int64"
