"""Independent trials: the interval, when a point needs another trial, the point's row, and a
job that spreads its trials over rounds."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics

import numpy as np
import pandas as pd
import pytest
from test_runner import FakeBackend, QuietHost, _plan

from llm_energy.measure import resume, runner
from llm_energy.measure.job import ProtocolSpec
from llm_energy.measure.store import Journal
from llm_energy.measure.trials import (
    TrialSchedule,
    ci95_half_width,
    combine,
    needs_trial,
    t975,
)


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


def test_the_feed_forward_share_is_the_mean_of_the_trials_that_timed_it_with_each_trials():
    """Each trial times the feed-forward blocks after its windows: the row's share is their
    mean, not the last trial's, and every trial's share is kept."""
    shares = [0.725, 0.684, 0.479]
    trials = [{**_trial(100.0), "ffn_time_share": s} for s in shares]
    row = combine(trials, PROTOCOL)
    assert row["ffn_time_share"] == pytest.approx(statistics.fmean(shares))
    assert json.loads(row["trial_ffn_time_share"]) == shares
    assert row["ffn_time_share_ci95"] == pytest.approx(ci95_half_width(shares))
    assert row["ffn_time_share_ci95"] > 0.3  # 0.479 to 0.725 over three trials
    # A trial without the timing is null in the list and left out of the mean.
    row = combine([*trials[:2], {**_trial(100.0), "ffn_time_share": math.nan}], PROTOCOL)
    assert row["ffn_time_share"] == pytest.approx(statistics.fmean(shares[:2]))
    assert json.loads(row["trial_ffn_time_share"]) == [*shares[:2], None]
    assert row["ffn_time_share_ci95"] == pytest.approx(ci95_half_width(shares[:2]))
    one = combine([trials[0], *[{**_trial(100.0), "ffn_time_share": math.nan}] * 2], PROTOCOL)
    assert one["ffn_time_share"] == 0.725 and math.isnan(one["ffn_time_share_ci95"])
    # Rows of jobs that did not ask gain no column.
    untimed = combine([_trial(100.0)] * 3, PROTOCOL)
    assert "ffn_time_share" not in untimed and "trial_ffn_time_share" not in untimed


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


def test_trials_at_most_caps_a_run_and_a_later_run_on_the_machine_adds_the_rest(
    tiny_config, tmp_path, fake_backend, monkeypatch
):
    """--trials-at-most: no point gets a trial past N in this run, even where its interval
    asks for more; a later run of the job on the same machine goes on to max_trials."""
    from llm_energy.errors import ConfigError
    from llm_energy.measure import trials

    # Every interval wider than the target (even two trials of equal durations, whose interval
    # is zero): every point asks for its max_trials.
    monkeypatch.setattr(trials, "interval_wider_than_target", lambda row, protocol: True)
    tiny_config["protocol"].update(min_trials=2, max_trials=4, target_ci95_rel=0.0)
    plan = _plan(tiny_config, batch_sizes=(1, 2))
    out, journal = tmp_path / "out.parquet", tmp_path / "journal"
    with pytest.raises(ConfigError, match="--trials-at-most 0: expected 1 or more"):
        runner.run_job(plan, out, journal, log=lambda m: None, trials_at_most=0)
    messages: list[str] = []
    capped = runner.run_job(plan, out, journal, log=messages.append, trials_at_most=3)
    assert (capped["trials"] == 3).all() and capped["protocol_met"].all()
    assert any("at most 3 in this run (--trials-at-most), 4 by the protocol" in m for m in messages)
    n = len(plan.points)
    assert any(f"{n} points stopped at --trials-at-most 3" in m for m in messages)
    # The same cap again measures nothing; without it, the run adds the fourth trials.
    again = runner.run_job(plan, out, journal, log=lambda m: None, trials_at_most=3)
    assert again["trial_duration_s"].tolist() == capped["trial_duration_s"].tolist()
    assert (runner.run_job(plan, out, journal, log=lambda m: None)["trials"] == 4).all()


def test_trials_at_most_comes_from_the_option_else_the_environment(monkeypatch):
    from llm_energy.errors import ConfigError
    from llm_energy.measure.trials import TRIALS_AT_MOST_ENV
    from llm_energy.measure.trials import trials_at_most as _trials_at_most

    monkeypatch.delenv(TRIALS_AT_MOST_ENV, raising=False)
    assert _trials_at_most(None) is None
    monkeypatch.setenv(TRIALS_AT_MOST_ENV, "3")
    assert (_trials_at_most(None), _trials_at_most(5)) == (3, 5)
    for value in ("three", "0"):
        monkeypatch.setenv(TRIALS_AT_MOST_ENV, value)
        with pytest.raises(ConfigError, match=f"LLM_ENERGY_TRIALS_AT_MOST={value}: expected a"):
            _trials_at_most(None)


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
    # Only that point, once more, after which every point is done.
    place = f"[pass 1, 1/1; points {len(plan.points)} done, 0 in flight, 0 waiting]"
    assert any(f"{place} trial 2 " in m for m in messages)
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


def test_the_control_points_window_lasts_control_min_duration_s_and_changes_no_point(
    tiny_config, tmp_path, fake_backend
):
    """Where control_min_duration_s is longer than the control point's own window, the control
    is measured under a protocol of its own with that window, named apart from the job's point
    of its shape; the setting enters no point id and no configuration hash."""
    from llm_energy.measure.controls import control_point
    from llm_energy.measure.point_ids import point_ids

    tiny_config["protocol"].update(control_point=True, control_min_duration_s=0.05)
    plan = _plan(tiny_config, batch_sizes=(1, 2))
    control = control_point(plan.points, plan.protocol)
    smallest = min(plan.points, key=lambda p: (p.batch_size, p.input_tokens, p.output_tokens))
    assert control.protocol.min_duration_s == 0.05 and control not in plan.points
    assert not control.protocol.measure_prefill  # the drift reads the whole window alone
    assert dataclasses.replace(control, protocol=None) == smallest
    as_before = dataclasses.replace(
        plan, protocol=dataclasses.replace(plan.protocol, control_min_duration_s=0.0)
    )
    assert control_point(as_before.points, as_before.protocol) == smallest
    assert point_ids(plan) == point_ids(as_before)
    assert plan.config_hash == as_before.config_hash
    journal = tmp_path / "journal"
    table = runner.run_job(plan, tmp_path / "out.parquet", journal, log=lambda m: None)
    for path in journal.glob("control.*.parquet"):
        (row,) = pd.read_parquet(path).to_dict("records")
        # The fake engine takes no time: the window repeats to max_repetitions, past the
        # points' own windows (min_duration_s 0, min_repetitions 2).
        window_s = row["repetitions"] * row["duration_s"]
        assert window_s >= 0.05 or row["repetitions"] == plan.protocol.max_repetitions
        assert row["repetitions"] > table["repetitions"].max()
        assert row["point_id"] not in set(table["point_id"])
    assert table["control_drift_duration"].notna().all()


@pytest.mark.parametrize("every_trial", [True, False, "alternate"])
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
    assert "warmed_up" not in table.columns and "warmup_s" not in table.columns
    # Each warm-up is timed, and a trial without one says so with a null.
    timed = table["trial_warmup_s"].map(json.loads)
    for flags, seconds in zip(warmed, timed, strict=True):
        assert [s is not None and s >= 0 for s in seconds] == flags
    if every_trial == "alternate":
        # The first trial warms up; the two later ones take turns, in a per-point order.
        assert set(warmed.map(tuple)) <= {(True, True, False), (True, False, True)}
        calls_per_point = 2 + 2 + 1
    elif every_trial:
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
    assert (set(table["point_id"]) == set(ids.values())) == (every_trial is True)


def test_alternating_warm_ups_take_turns_after_the_first_in_a_seeded_order_per_point():
    from llm_energy.measure.job import warms_up

    every, once = ProtocolSpec(), ProtocolSpec(warmup_every_trial=False)
    turns = ProtocolSpec(warmup_every_trial="alternate")
    keys = [(b, 512, 64) for b in range(1, 41)]
    for key in keys:
        assert [warms_up(every, key, n) for n in range(5)] == [True] * 5
        assert [warms_up(once, key, n) for n in range(5)] == [True] + [False] * 4
        later = [warms_up(turns, key, n) for n in range(1, 7)]
        assert warms_up(turns, key, 0) and later in ([True, False] * 3, [False, True] * 3)
        # Seeded: the same point starts the same way in every engine instance and job.
        assert later == [warms_up(turns, key, n) for n in range(1, 7)]
    starts = [warms_up(turns, key, 1) for key in keys]
    assert 10 < sum(starts) < 30  # some points start each way


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
    # What they took still tells a later run's deadline how long the point's trials take.
    aside = Journal(journal).set_aside_trials(short)
    assert [t["trial"] for t in aside] == [1, 2] and all(t["trial_s"] > 0 for t in aside)
    said = " ".join(messages)
    assert "1 points hold fewer than 3 trials, measured in machine session elsewhere:aaaa" in said
    assert "elsewhere:aaaa completed are kept as it left them" in said
    assert not any("trial 4" in m for m in messages)
    assert sum("] trial " in m for m in messages) == 3  # the short point's three, no other


# --- points in flight ---------------------------------------------------------------------------


def _rounds_before_points_in_flight(points, needs, seed, most_trials):
    """The order of a run's trials as the runner took them before ``points_in_flight``: every
    due point in the planned order, then rounds over the points still due, each in the order
    of ``[seed, round]``. The caller records each trial before asking for the next."""
    for round_no in range(1, most_trials + 1):
        due = [p for p in points if needs(p)]
        if not due:
            return
        if round_no > 1:
            order = np.random.default_rng([seed, round_no]).permutation(len(due))
            due = [due[i] for i in order]
        yield from due


def _scheduled(schedule):
    """Every point of ``schedule``'s passes, one trial each, in order; a pass is worked out
    once the previous one has been recorded."""
    for order in schedule.passes():
        yield from order


def _measured(needed: dict, order_of_trials):
    """Runs ``order_of_trials`` (a generator over points) with each point due while it has
    fewer trials than ``needed`` says; the points in the order their trials ran."""
    had = dict.fromkeys(needed, 0)
    ran = []

    def needs(p):
        return had[p] < needed[p]

    for p in order_of_trials(needs):
        had[p] += 1
        ran.append(p)
    return ran


@pytest.mark.parametrize("points_in_flight", [None, 9, 50])
def test_with_every_point_in_flight_the_trials_run_in_the_rounds_of_before(points_in_flight):
    planned = list("abcdefghi")
    # Some points complete before the run, some need more trials than the run's cap allows.
    needed = dict(zip(planned, (3, 0, 1, 5, 2, 3, 0, 4, 2), strict=True))
    before = _measured(needed, lambda needs: _rounds_before_points_in_flight(planned, needs, 11, 4))
    now = _measured(
        needed,
        lambda needs: iter(
            _scheduled(TrialSchedule(planned, needs, 11, points_in_flight, most_trials=4))
        ),
    )
    assert now == before
    assert before[:7] == list("acdefhi")  # the first round: the due points as planned
    assert before.count("d") == 4  # held to the run's cap, as before


def test_a_schedule_keeps_at_most_its_points_in_flight_and_first_trials_as_planned():
    planned = list("abcdef")
    needed = {"a": 3, "b": 1, "c": 2, "d": 3, "e": 1, "f": 2}
    had = dict.fromkeys(planned, 0)
    schedule = TrialSchedule(planned, lambda p: had[p] < needed[p], seed=0, points_in_flight=2)
    passes, counts = [], []
    for order in schedule.passes():
        passes.append(order)
        for p in order:
            had[p] += 1
        counts.append(schedule.counts())
    assert had == needed
    # A point enters when one leaves, and its first trial comes before the others' next.
    assert passes[0] == ["a", "b"] and passes[1] == ["c", "a"]
    assert sorted(passes[2]) == ["a", "c"]
    assert passes[3] == ["d", "e"] and passes[4] == ["f", "d"]
    assert sorted(passes[5]) == ["d", "f"] and len(passes) == 6
    assert list(dict.fromkeys(p for order in passes for p in order)) == planned
    # (done, in flight, waiting) after each pass.
    assert counts == [(1, 1, 4), (1, 2, 3), (3, 0, 3), (4, 1, 1), (4, 2, 0), (6, 0, 0)]


def test_a_schedule_asks_for_at_least_one_point_in_flight():
    with pytest.raises(ValueError, match="points_in_flight must be at least 1, not 0"):
        TrialSchedule(["a"], lambda p: True, seed=0, points_in_flight=0)


def _one_shape(tiny_config, batch_sizes):
    """A plan of one shape (8 tokens in, 4 out) at ``batch_sizes``."""
    sweeps = tiny_config["experiments"]["controlled_sweeps"]
    sweeps["input_sweep"] = {"input_tokens": [8], "output_tokens": [4]}
    sweeps["output_sweep"] = {"output_tokens": [4], "input_tokens": [8]}
    plan = _plan(tiny_config, batch_sizes)
    assert len(plan.points) == len(batch_sizes)
    return plan


def _with_points_in_flight(plan, n):
    return dataclasses.replace(
        plan, protocol=dataclasses.replace(plan.protocol, points_in_flight=n)
    )


@pytest.fixture
def trial_order(monkeypatch):
    """The keys of the points whose trials the runner measures, in order."""
    order: list[tuple] = []
    measure = runner._measure_trial

    def recorded(backend, plan, point, *args, **kwargs):
        order.append(point.key)
        return measure(backend, plan, point, *args, **kwargs)

    monkeypatch.setattr(runner, "_measure_trial", recorded)
    return order


@pytest.mark.parametrize("points_in_flight", [None, 6, 100])
def test_a_job_with_every_point_in_flight_measures_in_the_order_of_before(
    tiny_config, tmp_path, fake_backend, monkeypatch, trial_order, points_in_flight
):
    """The runner, with each point needing its own number of trials, measures them in the
    order the runner took before points_in_flight existed."""
    tiny_config["protocol"].update(min_trials=1, max_trials=3, seed=5)
    plan = _with_points_in_flight(_plan(tiny_config, batch_sizes=(1, 2)), points_in_flight)
    assert len(plan.points) == 6
    ids = runner.point_ids(plan)
    needed = {ids[p.key]: 1 + i % 4 for i, p in enumerate(sorted(plan.points, key=str))}
    # Needs 4 for one point: held to max_trials, 3, by the run's cap on its trials.
    monkeypatch.setattr(
        runner,
        "needs_trial",
        lambda trials, protocol, session=None: (
            not trials or len(trials) < needed[trials[0]["point_id"]]
        ),
    )
    runner.run_job(plan, tmp_path / "out.parquet", tmp_path / "journal", log=lambda m: None)
    planned = runner._order(list(plan.points), plan.largest_feasible_only)
    need_by_key = {p.key: min(needed[ids[p.key]], 3) for p in planned}
    before = _measured(
        need_by_key,
        lambda needs: _rounds_before_points_in_flight(
            [p.key for p in planned], needs, seed=5, most_trials=3
        ),
    )
    assert trial_order == before
    assert len(set(trial_order[:6])) == 6 and len(trial_order) > 6


def _in_flight_at_once(order: list) -> int:
    """The most points whose trials had begun and not ended at one time."""
    first = {p: order.index(p) for p in order}
    last = {p: len(order) - 1 - order[::-1].index(p) for p in order}
    return max(sum(first[p] <= i <= last[p] for p in first) for i in range(len(order)))


def test_a_job_with_two_points_in_flight_measures_them_two_at_a_time(
    tiny_config, tmp_path, fake_backend, trial_order
):
    tiny_config["protocol"].update(min_trials=3, max_trials=3)
    plan = _with_points_in_flight(_one_shape(tiny_config, (1, 2, 3, 4, 5)), 2)
    messages: list[str] = []
    table = runner.run_job(plan, tmp_path / "out.parquet", tmp_path / "journal", messages.append)
    assert len(trial_order) == 15 and _in_flight_at_once(trial_order) == 2
    planned = [p.key for p in runner._order(list(plan.points))]
    assert list(dict.fromkeys(trial_order)) == planned  # first trials as planned
    assert (table["trials"] == 3).all() and table["protocol_met"].all()
    progress = [m for m in messages if "] trial " in m]
    assert progress[0].startswith("[pass 1, 1/2; points 0 done, 2 in flight, 3 waiting] trial 1")
    assert "at least 14 trials left" in progress[0]
    assert progress[-1].startswith("[pass ")
    assert "points 5 done, 0 in flight, 0 waiting] trial 3" in progress[-1]
    assert progress[-1].endswith("pass ends in ~0 s, no trial left")


@pytest.mark.parametrize("points_in_flight", [None, 1, 2])
def test_first_trials_keep_the_planned_order_that_out_of_memory_bounds_rely_on(
    tiny_config, tmp_path, fake_backend, monkeypatch, points_in_flight
):
    """Smaller batches first: batch 4 runs out of memory and batch 8 is never tried; a
    searched shape tries its largest batch first, and batch 1 is never measured."""
    tiny_config["protocol"].update(min_trials=2, max_trials=2)
    monkeypatch.setattr(FakeBackend, "oom_batch", 4)
    plan = _with_points_in_flight(_one_shape(tiny_config, (1, 2, 4, 8)), points_in_flight)
    table = runner.run_job(plan, tmp_path / "a.parquet", tmp_path / "a", log=lambda m: None)
    rows = table.set_index("batch_size")
    assert rows.loc[4, "error"].startswith("out of memory")
    assert rows.loc[8, "error"].startswith("not attempted: batch 4")
    # Each note says once why its point has no trials.
    assert rows.loc[4, "protocol_note"].startswith("not measured: out of memory")
    assert rows.loc[8, "protocol_note"] == rows.loc[8, "error"]
    assert {b for b, _ in fake_backend.calls} <= {1, 2, 3}  # 3: the bound's one probe
    assert list(rows.loc[[1, 2], "trials"]) == [2, 2]

    searched = dataclasses.replace(plan, largest_feasible_only=("input_sweep", "output_sweep"))
    table = runner.run_job(searched, tmp_path / "b.parquet", tmp_path / "b", log=lambda m: None)
    rows = table.set_index("batch_size")
    assert rows.loc[8, "error"].startswith("out of memory")
    assert rows.loc[4, "error"].startswith("out of memory")
    assert rows.loc[2, "trials"] == 2
    assert rows.loc[1, "error"].startswith("not measured: batch 2 of this shape fits")
    assert rows.loc[1, "protocol_note"] == rows.loc[1, "error"]
    # 3: the one probe between batch 2, the first that fits, and batch 4, out of memory.
    assert {b for b, _ in fake_backend.calls} == {2, 3}
    assert rows.loc[4, "largest_feasible_batch"] == 3


def _cut_and_resumed_elsewhere(plan, tmp_path, monkeypatch, cut_in_trial: int) -> set[str]:
    """Runs ``plan`` in one machine session until SIGTERM arrives inside its trial number
    ``cut_in_trial``, then again in another session to its end; the points whose trials of
    the first session were set aside (measured again from their first trial)."""
    import os
    import signal

    from llm_energy.measure import provenance, stop

    journal = tmp_path / f"journal-{cut_in_trial}"
    measure = runner._measure_trial
    calls = {"n": 0}

    def cut(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == cut_in_trial:
            os.kill(os.getpid(), signal.SIGTERM)  # the allocation's time limit
        return measure(*args, **kwargs)

    monkeypatch.setattr(provenance, "machine_session", lambda: "first:aaaa")
    monkeypatch.setattr(runner, "_measure_trial", cut)
    stop.reset()
    try:
        with stop.on_signals(), pytest.raises(stop.Stopped):
            runner.run_job(plan, tmp_path / "out.parquet", journal, log=lambda m: None)
    finally:
        stop.reset()
    monkeypatch.setattr(runner, "_measure_trial", measure)
    monkeypatch.setattr(provenance, "machine_session", lambda: "second:bbbb")
    table = runner.run_job(plan, tmp_path / "out.parquet", journal, log=lambda m: None)
    assert (table["trials"] == 3).all()
    aside = journal / "other_sessions" / "first_aaaa"
    return {p.name.split(".t")[0] for p in aside.glob("*.parquet")}


def test_a_job_cut_at_any_trial_and_resumed_elsewhere_loses_at_most_its_points_in_flight(
    tiny_config, tmp_path, fake_backend, monkeypatch
):
    tiny_config["protocol"].update(min_trials=3, max_trials=3)
    plan = _one_shape(tiny_config, (1, 2, 3, 4, 5, 6))
    two = _with_points_in_flight(plan, 2)
    lost = [_cut_and_resumed_elsewhere(two, tmp_path, monkeypatch, cut) for cut in range(2, 19)]
    assert max(map(len, lost)) == 2 and min(map(len, lost)) == 0
    # Every point in flight at once: a cut after the first pass loses every point.
    assert len(_cut_and_resumed_elsewhere(plan, tmp_path / "all", monkeypatch, 9)) == 6


def test_points_in_flight_leaves_journals_and_shipped_rows_valid(
    tiny_config, tmp_path, fake_backend
):
    """A journal or a table measured without points_in_flight completes the same job with
    it: the setting orders trials, it names no point."""
    tiny_config["protocol"].update(min_trials=2, max_trials=2)
    plan = _plan(tiny_config, batch_sizes=(1, 2))
    out, journal = tmp_path / "out.parquet", tmp_path / "journal"
    table = runner.run_job(plan, out, journal, log=lambda m: None)
    two = _with_points_in_flight(plan, 2)
    assert runner.point_ids(two) == runner.point_ids(plan)
    fake_backend.calls = ["sentinel"]
    messages: list[str] = []
    again = runner.run_job(two, tmp_path / "again.parquet", journal, log=messages.append)
    assert fake_backend.calls == ["sentinel"]  # nothing measured, no engine loaded
    assert any(f"{len(plan.points)} already in the journal" in m for m in messages)
    assert again["point_id"].tolist() == table["point_id"].tolist()
    left = resume.trials_left(two, tmp_path / "no-journal", resume.read_tables([out]))
    assert set(left.values()) == {0}


def test_each_rows_control_drift_spans_its_own_machine_sessions_runs(
    tiny_config, tmp_path, fake_backend, monkeypatch
):
    """A job cut in one machine session and finished in another: the rows the first session
    completed get no drift (no run there measured its end), the second's the change from its
    start to its end, never a drift measured on the other machine."""
    tiny_config["protocol"].update(min_trials=3, max_trials=3, control_point=True)
    plan = _with_points_in_flight(_one_shape(tiny_config, (1, 2, 3, 4, 5, 6)), 2)
    clock = iter(f"2026-12-02T12:{minute:02d}:00+00:00" for minute in range(60))
    monkeypatch.setattr(runner, "utc_now", lambda: next(clock))  # runs seconds apart
    _cut_and_resumed_elsewhere(plan, tmp_path, monkeypatch, 12)
    table = pd.read_parquet(tmp_path / "out.parquet").set_index("machine_session")
    controls = pd.concat(map(pd.read_parquet, sorted((tmp_path / "journal-12").glob("control*"))))
    assert set(controls["machine_session"]) == {"first:aaaa", "second:bbbb"}
    assert set(table.index) == {"first:aaaa", "second:bbbb"}
    assert table.loc[["first:aaaa"], "control_drift_duration"].isna().all()
    second = controls[controls["machine_session"] == "second:bbbb"].set_index("edge")
    expected = second.loc["end", "duration_s"] / second.loc["start", "duration_s"] - 1
    assert table.loc[["second:bbbb"], "control_drift_duration"].eq(expected).all()


def test_a_control_drift_compares_two_measurements_of_one_control_point():
    """Runs of one machine session under two control points (another control window, which
    keeps the job's point ids): the drift spans the last end and the first start of the same
    control point, never a start of the other."""
    from llm_energy.measure.controls import drift_columns

    def control(run, edge, point, seconds):
        return {"run_started": run, "edge": edge, "point_id": point, "duration_s": seconds}

    controls = pd.DataFrame(
        [
            control("2026-12-06T10:00", "start", "b1_short", 1.0),
            control("2026-12-06T10:00", "end", "b1_short", 1.1),
            control("2026-12-06T11:00", "start", "b1_window", 2.0),
            control("2026-12-06T11:00", "end", "b1_window", 2.2),
        ]
    ).assign(machine_session="vm:a", energy_j=1.0)
    drift = drift_columns(controls, "vm:a")
    assert drift["control_point_id"] == "b1_window"
    assert drift["control_drift_duration"] == pytest.approx(0.1)
    assert math.isnan(drift_columns(controls.iloc[[0, 3]], "vm:a")["control_drift_duration"])


def test_by_batch_every_shape_runs_at_a_batch_size_before_the_next_and_ids_stay(
    tiny_config, tmp_path, fake_backend, monkeypatch, trial_order
):
    """point_order: batch measures every shape at one batch size before the next, smaller
    batches first, so a batch out of memory still bounds its shape's larger ones; it orders
    the trials only, so the points' ids and the job's setup hash are those of by shape."""
    from llm_energy.measure.bounds import shape_key
    from llm_energy.measure.point_ids import point_ids

    tiny_config["protocol"].update(min_trials=1, max_trials=1)
    monkeypatch.setattr(FakeBackend, "oom_batch", 4)
    by_shape = _plan(tiny_config, batch_sizes=(1, 2, 4, 8))
    plan = dataclasses.replace(
        by_shape, protocol=dataclasses.replace(by_shape.protocol, point_order="batch")
    )
    assert point_ids(plan) == point_ids(by_shape) and plan.config_hash == by_shape.config_hash
    table = runner.run_job(plan, tmp_path / "out.parquet", tmp_path / "journal", lambda m: None)
    shapes = {shape_key(p) for p in plan.points}
    assert len(shapes) == 3
    batch_of = {p.key: p.batch_size for p in plan.points}
    # Every shape at batch 1, then every shape at batch 2, and so on: batch 4 is out of
    # memory and bounds batch 8 (not attempted), at every shape.
    assert [batch_of[k] for k in trial_order] == [1, 1, 1, 2, 2, 2, 4, 4, 4, 8, 8, 8]
    point_of = {p.key: p for p in plan.points}
    assert {shape_key(point_of[k]) for k in trial_order[:3]} == shapes
    rows = table.set_index(["batch_size", "input_tokens", "output_tokens"]).sort_index()
    assert rows.loc[4, "error"].str.startswith("out of memory").all()
    assert rows.loc[8, "error"].str.startswith("not attempted: batch 4").all()
    by_shape_order = [batch_of[p.key] for p in runner._order(list(by_shape.points))]
    assert by_shape_order == [1, 2, 4, 8] * 3
