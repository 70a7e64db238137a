"""A measurement process killed or stopped mid-sweep and started again measures every point
exactly once, and the job's journal records each run: when it started, and how it ended
where it ended itself."""

from __future__ import annotations

import importlib.util
import math
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from _pipeline import measure_command

from llm_energy.config import validate
from llm_energy.measure.plan import plan_study
from llm_energy.measure.resume import trials_left
from llm_energy.measure.stop import EXIT_STOPPED
from llm_energy.measure.store import Journal

pytestmark = pytest.mark.integration


def _started(tiny_config, tmp_path, stdout=subprocess.DEVNULL):
    """A measurement process of several points, once it has written two of them."""
    tiny_config["protocol"]["min_duration_s"] = 0.25
    tiny_config["experiments"]["controlled_sweeps"]["batch_sizes"] = [1, 2, 4]
    plan = plan_study(validate(tiny_config))["tiny__pytorch"]
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(plan.to_json())
    out, journal = tmp_path / "out.parquet", tmp_path / "journal"
    cmd, env = measure_command(plan_file, out, journal)
    proc = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = list(journal.glob("*.parquet")) if journal.exists() else []
        if len(done) >= 2 or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the job finished before it could be stopped"
    return plan, proc, (cmd, env), out, journal


def _rerun_measures_only_the_rest(plan, command, out, journal, before):
    # What the GPU-time estimate counts as left is what the rerun measures.
    left = trials_left(plan, journal)
    assert sum(n > 0 for n in left.values()) == len(plan.points) - len(before)
    cmd, env = command
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(before)} already in the journal" in rerun.stdout
    assert f"loaded {plan.model.name} (" in rerun.stdout
    table = pd.read_parquet(out)
    assert len(table) == len(plan.points)
    assert table["point_id"].is_unique
    assert {tuple(r) for r in table[["batch_size", "input_tokens", "output_tokens"]].values} == {
        (p.batch_size, p.input_tokens, p.output_tokens) for p in plan.points
    }
    for name, mtime in before.items():
        assert (journal / name).stat().st_mtime_ns == mtime, f"{name} was measured again"
    first, rerun_run = Journal(journal).runs()
    assert (rerun_run["outcome"], rerun_run["exit_status"]) == ("finished", 0)
    # The rerun's log says how the first run ended, itself left out.
    outcome = first.get("outcome", "with no end")
    assert f"journal: 1 earlier runs of this job (1 {outcome})" in rerun.stdout
    return first


def _gpu_time_share():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_time_share.py"
    spec = importlib.util.spec_from_file_location("gpu_time_share", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def _recorded_runs(journal: Path):
    """The runs benchmarks/gpu_time_share.py reads from the journal."""
    return _gpu_time_share().recorded_runs(journal)


def test_killed_job_resumes_and_measures_each_point_once(tiny_config, tmp_path):
    plan, proc, command, out, journal = _started(tiny_config, tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = {p.name: p.stat().st_mtime_ns for p in journal.glob("*.parquet")}
    assert 2 <= len(before) < len(plan.points)
    assert not out.exists()
    # Whatever was being written at the kill never becomes a row.
    for path in journal.glob("*.parquet"):
        assert len(pd.read_parquet(path)) == 1
    first = _rerun_measures_only_the_rest(plan, command, out, journal, before)
    # Killed outright, the first run keeps its start alone; the benchmark reads the rerun.
    assert "ended_utc" not in first
    (run,) = _recorded_runs(journal).itertuples()
    assert run.exit_status == 0 and run.engine_loaded_s > 0
    # Every trial's wall time is in the journal: the harness's part of it, around the warm-up
    # and the windows, is measured (on two busy cores, no bound is asserted on it).
    share = _gpu_time_share().job_share(journal, _recorded_runs(journal))
    assert share["trials_timed"] == len(list(journal.glob("*.t*.parquet")))
    assert share["harness_in_trials_s"] > 0 and math.isfinite(share["harness_over_windows"])


def test_sigterm_stops_the_job_at_a_safe_place_and_the_rerun_does_the_rest(tiny_config, tmp_path):
    plan, proc, command, out, journal = _started(tiny_config, tmp_path)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_STOPPED, stderr[-2000:]
    # One line says why and what is kept: no traceback.
    assert "Traceback" not in stderr
    assert "llm-energy: stopped by SIGTERM" in stderr and str(journal) in stderr
    before = {p.name: p.stat().st_mtime_ns for p in journal.glob("*.parquet")}
    assert 2 <= len(before) < len(plan.points)
    assert not out.exists()
    for path in journal.glob("*.parquet"):
        assert len(pd.read_parquet(path)) == 1
    assert not list(journal.glob(".*.tmp"))  # nothing half written
    first = _rerun_measures_only_the_rest(plan, command, out, journal, before)
    assert (first["outcome"], first["exit_status"]) == ("stopped", EXIT_STOPPED)
    assert first["reason"].startswith("stopped by SIGTERM")
    assert list(_recorded_runs(journal)["exit_status"]) == [EXIT_STOPPED, 0]


def test_a_job_whose_time_has_ended_stops_before_its_engine_starts(tiny_config, tmp_path):
    tiny_config["protocol"]["min_duration_s"] = 0.25
    plan = plan_study(validate(tiny_config))["tiny__pytorch"]
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(plan.to_json())
    out, journal = tmp_path / "out.parquet", tmp_path / "journal"
    cmd, env = measure_command(plan_file, out, journal)
    # The end every job of a workflow shares, as the environment of snakemake sets it.
    env = {**env, "LLM_ENERGY_STOP_BY": "2026-01-01T00:00:00Z"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == EXIT_STOPPED, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert "(LLM_ENERGY_STOP_BY 2026-01-01T00:00:00Z) before its engine started" in done.stderr
    assert f"loaded {plan.model.name} (" not in done.stdout and not out.exists()
    (run,) = Journal(journal).runs()
    assert (run["outcome"], run["exit_status"]) == ("stopped", EXIT_STOPPED)
    assert run["time_ends_from"] == "LLM_ENERGY_STOP_BY 2026-01-01T00:00:00Z"
