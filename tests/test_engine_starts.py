"""A job whose protocol sets trials_per_engine_start measures each point's trials over several
engine starts, each a fresh process of the measure command: its rows say how many starts their
trials came from, and the sequence stops where a start does not finish."""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest
from _pipeline import measure_command

from llm_energy.cli import main
from llm_energy.config import validate
from llm_energy.errors import ConfigError
from llm_energy.measure import engine_starts
from llm_energy.measure.job import SCHEDULING_FIELDS
from llm_energy.measure.plan import plan_study
from llm_energy.measure.point_ids import point_ids
from llm_energy.measure.stop import EXIT_STOPPED
from llm_energy.measure.store import Journal


def _plan(tiny_config, per_start=1, min_trials=2, max_trials=2, batch_sizes=(1,)):
    tiny_config["protocol"].update(
        min_trials=min_trials, max_trials=max_trials, trials_per_engine_start=per_start
    )
    sweeps = tiny_config["experiments"]["controlled_sweeps"]
    sweeps["batch_sizes"] = list(batch_sizes)
    sweeps["output_sweep"]["output_tokens"] = [4]
    return plan_study(validate(tiny_config))["tiny__pytorch"]


def _in_process(monkeypatch, calls):
    """Each start run by the CLI in this process (the tiny model on the CPU), with the
    environment a start gets."""

    def spawn(argv, env):
        calls.append(list(argv))
        with monkeypatch.context() as m:
            m.setenv(engine_starts.ENV, env[engine_starts.ENV])
            return main(list(argv[3:]))

    return spawn


def test_the_setting_changes_no_point_id_and_no_setup(tiny_config):
    assert "trials_per_engine_start" in SCHEDULING_FIELDS
    one = _plan(dict(tiny_config), per_start=None)
    other = _plan(tiny_config, per_start=1)
    assert point_ids(one) == point_ids(other)
    assert one.config_hash == other.config_hash


def test_the_h200_layer_keeps_every_point_id():
    from pathlib import Path

    from llm_energy.config import load_config

    config = Path(__file__).resolve().parents[1] / "config"
    files = [str(config / name) for name in ("h200.yaml", "h200_sweeps.yaml")]
    plain = plan_study(load_config(*files))
    spread = plan_study(load_config(*files, str(config / "h200_engine_starts.yaml")))
    assert plain.keys() == spread.keys()
    for group, job in spread.items():
        assert job.protocol.trials_per_engine_start == 1
        assert point_ids(job) == point_ids(plain[group])


def test_a_setting_below_one_is_refused(tiny_config):
    tiny_config["protocol"]["trials_per_engine_start"] = 0
    with pytest.raises(ConfigError, match="trials_per_engine_start"):
        validate(tiny_config)


def test_each_start_adds_at_most_its_trials_and_the_rows_say_how_many_starts(
    tiny_config, tmp_path, monkeypatch
):
    plan = _plan(tiny_config, per_start=1, min_trials=2, max_trials=2)
    plan_file, out, journal = tmp_path / "plan.json", tmp_path / "t.parquet", tmp_path / "j"
    plan_file.write_text(plan.to_json())
    calls: list[list[str]] = []
    monkeypatch.setattr(engine_starts, "_spawn", _in_process(monkeypatch, calls))
    said: list[str] = []
    monkeypatch.setattr("llm_energy.cli.measure.log", said.append)

    argv = ["measure", "--plan", str(plan_file), "--out", str(out), "--journal", str(journal)]
    assert main(argv) == 0
    # Two starts, the first giving every point one trial, the second its second.
    assert [c[c.index("--trials-at-most") + 1] for c in calls] == ["1", "2"]
    assert all(c[3] == "measure" and "--journal" in c for c in calls)
    runs = Journal(journal).runs()
    assert len(runs) == 2 and all(r.get("outcome") == "finished" for r in runs)
    table = pd.read_parquet(out)
    assert len(table) == len(plan.points)
    assert set(table["trials"]) == {2} and set(table["engine_starts"]) == {2}
    assert "no point wants another trial by the protocol" in said[-1]

    # Run again: nothing is left, so no start.
    calls.clear()
    assert main(argv) == 0
    assert calls == []


def test_the_commands_trials_at_most_caps_the_starts(tiny_config, tmp_path, monkeypatch):
    plan = _plan(tiny_config, per_start=2, min_trials=3, max_trials=3)
    journal = tmp_path / "j"
    assert engine_starts.next_trials_at_most(plan, journal, 2) == 2
    assert engine_starts.next_trials_at_most(plan, journal, 2, at_most=1) == 1
    plan_file, out = tmp_path / "plan.json", tmp_path / "t.parquet"
    plan_file.write_text(plan.to_json())
    calls: list[list[str]] = []
    monkeypatch.setattr(engine_starts, "_spawn", _in_process(monkeypatch, calls))
    argv = ["measure", "--plan", str(plan_file), "--out", str(out), "--journal", str(journal)]
    assert main([*argv, "--trials-at-most", "1"]) == 0
    assert len(calls) == 1
    assert set(pd.read_parquet(out)["trials"]) == {1}
    # Without the cap, one more start adds the two trials each point still wants.
    calls.clear()
    assert main(argv) == 0
    assert [c[c.index("--trials-at-most") + 1] for c in calls] == ["3"]
    table = pd.read_parquet(out)
    assert set(table["trials"]) == {3} and set(table["engine_starts"]) == {2}


def test_trials_of_another_machine_session_do_not_count_toward_the_next_start(
    tiny_config, tmp_path, monkeypatch
):
    """A journal carried to another machine: the points short of the protocol are measured
    again there from their first trial, so the next start gives each one trial, not one more
    than the other session's."""
    plan = _plan(tiny_config, per_start=1, min_trials=3, max_trials=3)
    plan_file, out, journal = tmp_path / "plan.json", tmp_path / "t.parquet", tmp_path / "j"
    plan_file.write_text(plan.to_json())
    calls: list[list[str]] = []
    monkeypatch.setattr(engine_starts, "_spawn", _in_process(monkeypatch, calls))
    argv = ["measure", "--plan", str(plan_file), "--out", str(out), "--journal", str(journal)]
    assert main([*argv, "--trials-at-most", "2"]) == 0
    assert engine_starts.next_trials_at_most(plan, journal, 1) == 3
    for trial in journal.glob("*.t*.parquet"):
        pd.read_parquet(trial).assign(machine_session="vm:elsewhere").to_parquet(trial)
    assert engine_starts.next_trials_at_most(plan, journal, 1) == 1


def test_a_start_that_does_not_finish_ends_the_sequence_with_its_status(tiny_config, tmp_path):
    plan = _plan(tiny_config, per_start=1)
    statuses = iter([EXIT_STOPPED])
    calls = []

    def spawn(argv, env):
        calls.append(argv)
        return next(statuses)

    said: list[str] = []
    status = engine_starts.run_starts(
        plan, tmp_path / "j", lambda n: ["measure", str(n)], said.append, spawn=spawn
    )
    assert status == EXIT_STOPPED and len(calls) == 1
    assert f"exit status {EXIT_STOPPED}; none follows" in said[-1]


def test_a_start_that_measures_nothing_starts_no_other(tiny_config, tmp_path):
    plan = _plan(tiny_config, per_start=1)
    calls = []
    said: list[str] = []
    status = engine_starts.run_starts(
        plan,
        tmp_path / "j",
        lambda n: ["measure", str(n)],
        said.append,
        spawn=lambda argv, env: calls.append(argv) or 0,
    )
    assert status == 0 and len(calls) == 1
    assert "start 1 measured no trial" in said[-1]


@pytest.mark.integration
def test_real_engine_starts_are_fresh_processes(tiny_config, tmp_path):
    """The real command on the tiny model, on the CPU: each trial of a point in its own process,
    each process a run in the journal with its own engine load."""
    tiny_config["protocol"].update(control_point=True)
    plan = _plan(tiny_config, per_start=1, min_trials=2, max_trials=2)
    plan_file, out, journal = tmp_path / "plan.json", tmp_path / "t.parquet", tmp_path / "j"
    plan_file.write_text(plan.to_json())
    cmd, env = measure_command(plan_file, out, journal)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    said = done.stdout + done.stderr
    assert said.count(f"loaded {plan.model.name} (") == 2
    assert (
        "engine start 2: each point up to 2 trials (--trials-at-most 2), at most 1 of them" in said
    )
    runs = Journal(journal).runs()
    assert len(runs) == 2 and len({r["started_utc"] for r in runs}) == 2
    table = pd.read_parquet(out)
    assert set(table["trials"]) == {2} and set(table["engine_starts"]) == {2}
    # The control point was measured at each start's start and end.
    assert len(list(journal.glob("control.*.parquet"))) == 4
    assert all(len(json.loads(t)) == 2 for t in table["trial_duration_s"])
