"""Independent trials: the interval, when a point needs another trial, the point's row, and a
job that spreads its trials over rounds."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics

import pandas as pd
import pytest
from test_runner import FakeBackend, QuietHost, _plan

from llm_energy.measure import runner
from llm_energy.measure.job import ProtocolSpec
from llm_energy.measure.trials import ci95_half_width, combine, needs_trial, t975


@pytest.fixture
def fake_backend(monkeypatch):
    monkeypatch.setattr(runner, "make_backend", lambda m, e, d, t: FakeBackend(m, e, d, t))
    monkeypatch.setattr(runner, "HostLoad", QuietHost)
    return FakeBackend


PROTOCOL = ProtocolSpec(min_duration_s=2.0, min_repetitions=3, min_trials=3, max_trials=5)


def _trial(energy_j: float, duration_s: float = 1.0, repetitions: int = 3) -> dict:
    return {
        "feasible": True,
        "error": "",
        "repetitions": repetitions,
        "energy_j": energy_j,
        "duration_s": duration_s,
        "contended": False,
    }


def test_interval_is_students_t_over_trials():
    values = [100.0, 104.0, 96.0]
    expected = 4.303 * statistics.stdev(values) / math.sqrt(3)
    assert ci95_half_width(values) == pytest.approx(expected)
    assert math.isnan(ci95_half_width([100.0]))
    assert t975(40) == 1.96 and t975(11) == t975(10)


def test_a_point_gets_its_minimum_then_more_while_its_interval_is_wide():
    assert needs_trial([], PROTOCOL)
    assert needs_trial([_trial(100.0), _trial(100.0)], PROTOCOL)
    steady = [_trial(100.0), _trial(100.5), _trial(99.5)]
    assert not needs_trial(steady, PROTOCOL)  # ±1.2 %: within the ±3 % target
    noisy = [_trial(100.0), _trial(130.0), _trial(80.0)]
    assert needs_trial(noisy, PROTOCOL)
    assert not needs_trial([*noisy, _trial(120.0), _trial(90.0)], PROTOCOL)  # max_trials
    oom = {**_trial(math.nan), "feasible": False, "repetitions": 0}
    assert not needs_trial([oom], PROTOCOL)


def test_the_row_is_the_mean_with_its_interval_and_every_trial():
    trials = [_trial(100.0, 1.0), _trial(104.0, 1.1), _trial(96.0, 0.9)]
    row = combine(trials, PROTOCOL)
    assert row["trials"] == 3 and row["energy_j"] == pytest.approx(100.0)
    assert row["energy_j_ci95"] == pytest.approx(ci95_half_width([100.0, 104.0, 96.0]))
    assert json.loads(row["trial_energy_j"]) == [100.0, 104.0, 96.0]
    assert row["protocol_met"] is True
    assert "interval ±" in row["protocol_note"]  # wider than ±3 %: said, not hidden


def test_the_row_keeps_each_trials_prefill_window_and_the_phases_intervals():
    trials = [
        {**_trial(e), "prefill_energy_j": p, "prefill_duration_s": 0.1, "decode_energy_j": e - p}
        for e, p in ((100.0, 10.0), (104.0, 12.0), (96.0, 11.0))
    ]
    row = combine(trials, PROTOCOL)
    assert json.loads(row["trial_prefill_energy_j"]) == [10.0, 12.0, 11.0]
    assert json.loads(row["trial_prefill_duration_s"]) == [0.1, 0.1, 0.1]
    assert row["prefill_energy_j_ci95"] == pytest.approx(ci95_half_width([10.0, 12.0, 11.0]))
    assert row["decode_energy_j_ci95"] == pytest.approx(ci95_half_width([90.0, 92.0, 85.0]))
    assert row["prefill_duration_s_ci95"] == pytest.approx(0.0)
    assert math.isnan(row["decode_duration_s_ci95"])  # no trial gave it
    # Trials without a prefill window: no interval, no per-trial values, never zeros.
    plain = combine([_trial(100.0), _trial(101.0), _trial(99.0)], PROTOCOL)
    assert json.loads(plain["trial_prefill_energy_j"]) == []
    assert math.isnan(plain["prefill_energy_j_ci95"]) and math.isnan(plain["decode_energy_j_ci95"])


def test_too_few_trials_or_short_windows_do_not_meet_the_protocol():
    two = combine([_trial(100.0), _trial(101.0)], PROTOCOL)
    assert two["protocol_met"] is False and "2 of 3 trials" in two["protocol_note"]
    short = combine([_trial(100.0, 0.2), _trial(100.0), _trial(100.0)], PROTOCOL)
    assert short["protocol_met"] is False and "trial 1: window under 2 s" in short["protocol_note"]
    oom = {**_trial(math.nan), "feasible": False, "repetitions": 0, "error": "out of memory"}
    row = combine([oom], PROTOCOL)
    assert row["trials"] == 0 and row["protocol_met"] is False


def test_a_trial_that_failed_after_measured_ones_is_said_and_not_averaged():
    failed = {
        **_trial(math.nan),
        "repetitions": 0,
        "error": "failed: CUDA error: invalid argument",
        "generated_tokens": math.nan,
    }
    measured = [{**_trial(100.0), "generated_tokens": 8}, {**_trial(102.0), "generated_tokens": 8}]
    row = combine([*measured, failed], PROTOCOL)
    assert row["trials"] == 2 and row["energy_j"] == pytest.approx(101.0)
    assert row["generated_tokens"] == 8 and row["error"] == ""  # the last measured trial's
    assert row["protocol_met"] is False
    assert row["protocol_note"].startswith("trial 3 failed: CUDA error: invalid argument; ")


def test_a_job_measures_every_point_once_before_any_point_twice(
    tiny_config, tmp_path, fake_backend
):
    tiny_config["protocol"].update(min_trials=3, max_trials=3)
    plan = _plan(tiny_config, batch_sizes=(1, 2))
    journal = tmp_path / "journal"
    table = runner.run_job(plan, tmp_path / "out.parquet", journal, log=lambda m: None)
    assert (table["trials"] == 3).all()
    assert table["energy_j_ci95"].isna().all()  # meter 'none': no energy, no interval of it
    assert table["duration_s_ci95"].notna().all()
    files = sorted(journal.glob("*.t*.parquet"), key=lambda p: p.stat().st_mtime_ns)
    order = [int(pd.read_parquet(p)["trial"].iloc[0]) for p in files]
    # Every first trial comes before any second one, every second before any third.
    assert order == sorted(order) and len(order) == 3 * len(plan.points)
    # A rerun finds every point complete and measures nothing.
    messages: list[str] = []
    again = runner.run_job(plan, tmp_path / "out.parquet", journal, log=messages.append)
    assert any(f"{len(plan.points)} already in the journal" in m for m in messages)
    assert again["trial_duration_s"].tolist() == table["trial_duration_s"].tolist()


def test_a_damaged_journal_entry_is_moved_aside_and_only_its_trial_measured_again(
    tiny_config, tmp_path, fake_backend
):
    plan = _plan(tiny_config, batch_sizes=(1, 2))
    journal = tmp_path / "journal"
    runner.run_job(plan, tmp_path / "out.parquet", journal, log=lambda m: None)
    entries = sorted(journal.glob("*.t1.parquet"))
    victim = entries[0]
    kept = {p.name: p.read_bytes() for p in entries[1:]}
    victim.write_bytes(victim.read_bytes()[:100])  # cut short, as a full disk leaves it
    messages: list[str] = []
    table = runner.run_job(plan, tmp_path / "out.parquet", journal, log=messages.append)
    assert any(f"{victim.name} cannot be read" in m for m in messages)
    assert (journal / f"{victim.name}.damaged").is_file()  # kept, renamed
    assert any("[round 1, 1/1] trial 2" in m for m in messages)  # only that point, once more
    assert {p.name: p.read_bytes() for p in entries[1:]} == kept  # the rest byte for byte
    assert len(table) == len(plan.points) and table["trials"].eq(1).all()


def test_a_write_that_fails_names_its_path(tmp_path, monkeypatch):
    import errno

    from llm_energy.errors import StoreError
    from llm_energy.measure.store import write_parquet_atomic

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    with pytest.raises(StoreError, match=r"x\.parquet: cannot write \(No space left on device\)"):
        write_parquet_atomic(pd.DataFrame({"a": [1]}), tmp_path / "x.parquet")
    assert list(tmp_path.iterdir()) == []  # no temporary left behind


def test_the_control_point_at_a_runs_start_and_end_gives_every_row_the_drift(
    tiny_config, tmp_path, fake_backend
):
    tiny_config["protocol"]["control_point"] = True
    plan = _plan(tiny_config, batch_sizes=(1, 2))
    journal = tmp_path / "journal"
    table = runner.run_job(plan, tmp_path / "out.parquet", journal, log=lambda m: None)
    controls = sorted(p.name.split(".")[-2] for p in journal.glob("control.*.parquet"))
    assert controls == ["end", "start"]
    control = min(plan.points, key=lambda p: (p.batch_size, p.input_tokens, p.output_tokens))
    assert (table["control_point_id"] != "").all()
    assert table["control_point_id"].nunique() == 1
    assert control.batch_size == 1
    assert table["control_drift_duration"].notna().all()
    assert table["control_drift_energy"].isna().all()  # meter 'none': no energy to drift


@pytest.mark.parametrize("every_trial", [True, False])
def test_without_a_warm_up_every_trial_a_point_warms_up_before_its_first_trial_only(
    tiny_config, tmp_path, fake_backend, every_trial
):
    tiny_config["protocol"].update(
        min_trials=3,
        max_trials=3,
        min_repetitions=1,
        min_duration_s=0.0,
        measure_prefill=False,
        control_point=False,
        warmup_every_trial=every_trial,
    )
    plan = _plan(tiny_config, batch_sizes=(1, 2))
    table = runner.run_job(plan, tmp_path / "out.parquet", tmp_path / "journal", log=lambda m: None)
    warmed = table["trial_warmed_up"].map(json.loads)
    assert "warmed_up" not in table.columns
    if every_trial:
        assert (warmed.map(tuple) == (True, True, True)).all()
        calls_per_point = 3 * 2  # each trial: one warm-up generation, one window of one
    else:
        assert (warmed.map(tuple) == (True, False, False)).all()
        calls_per_point = 2 + 1 + 1
    assert len(fake_backend.calls) == calls_per_point * len(plan.points)
    # The warm-up policy is part of a point's id only where it is not the default, so that
    # the rows measured before it existed keep theirs.
    default = dataclasses.replace(plan.protocol, warmup_every_trial=True)
    ids = runner.point_ids(dataclasses.replace(plan, protocol=default))
    assert (set(table["point_id"]) == set(ids.values())) == every_trial


def test_a_journal_resumed_on_another_machine_keeps_each_rows_trials_from_one_session(
    tiny_config, tmp_path, fake_backend, monkeypatch
):
    """A point that another machine session left short of its minimum is measured again here
    from its first trial (the earlier trials kept aside); one that session completed is kept
    as it is, with no trial of this session added."""
    from llm_energy.measure import provenance

    tiny_config["protocol"].update(min_trials=3, max_trials=3)
    plan = _plan(tiny_config, batch_sizes=(1, 2))
    journal = tmp_path / "journal"
    monkeypatch.setattr(provenance, "machine_session", lambda: "elsewhere:aaaa")
    runner.run_job(plan, tmp_path / "out.parquet", journal, log=lambda m: None)
    short, *complete_ = sorted({p.name.split(".t")[0] for p in journal.glob("*.t*.parquet")})
    (journal / f"{short}.t3.parquet").unlink()  # that session's device time ran out

    monkeypatch.setattr(provenance, "machine_session", lambda: "here:bbbb")
    messages: list[str] = []
    table = runner.run_job(plan, tmp_path / "out.parquet", journal, log=messages.append)
    rows = table.set_index("point_id")
    assert rows.loc[short, "machine_session"] == "here:bbbb"
    assert (rows.loc[complete_, "machine_session"] == "elsewhere:aaaa").all()
    assert (rows["trials"] == 3).all()
    again = [pd.read_parquet(p).iloc[0] for p in journal.glob(f"{short}.t*.parquet")]
    assert sorted(r["trial"] for r in again) == [1, 2, 3]
    assert {r["machine_session"] for r in again} == {"here:bbbb"}
    kept = journal / "other_sessions" / "elsewhere_aaaa"
    assert sorted(p.name for p in kept.iterdir()) == [f"{short}.t1.parquet", f"{short}.t2.parquet"]
    said = " ".join(messages)
    assert "1 points hold fewer than 3 trials, measured in machine session elsewhere:aaaa" in said
    assert "elsewhere:aaaa completed are kept as it left them" in said
    assert not any("trial 4" in m for m in messages)
    assert sum("] trial " in m for m in messages) == 3  # the short point's three, no other
