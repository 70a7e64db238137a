"""The workflow through the Slurm profile, on a real Slurm controller: a job cancelled,
requeued or past its time limit goes on from its journal.

CI starts a single-node Slurm with tests/slurm/start-slurm.sh. Elsewhere these tests are skipped
unless Slurm answers; with LLM_ENERGY_REQUIRE_SLURM=1 (as in CI) a missing Slurm is a failure.
Every Slurm and Snakemake call is bounded by a timeout so that a hang fails instead of stalling.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _pipeline import copy_pipeline

from llm_energy.measure.store import Journal

pytestmark = pytest.mark.integration

# Sized for a 2-core CI node with fake GPUs; everything else comes from profiles/slurm.
SITE_OVERRIDES = (
    *("--slurm-status-command", "squeue"),  # no accounting database, so no sacct
    *("--slurm-init-seconds-before-status-checks", "5"),
    "--slurm-keep-successful-logs",
    *("--latency-wait", "5"),
    "--set-resources",
    *("measure:slurm_partition=gpu", "measure:gpu=1", "measure:mem_mb=3000"),
    *("measure:cpus_per_task=1", "measure:runtime=20"),
    "--default-resources",
    *("mem_mb=1000", "runtime=10", "cpus_per_task=1", "slurm_partition=cpu"),
)


def _slurm_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10
        )
    except (subprocess.TimeoutExpired, OSError):
        return False
    return out.returncode == 0 and bool(re.search(r"idle|mixed|allocated", out.stdout))


if not _slurm_up():
    if os.environ.get("LLM_ENERGY_REQUIRE_SLURM") == "1":
        pytest.fail(
            "Slurm is required (LLM_ENERGY_REQUIRE_SLURM=1) but sinfo finds no node", pytrace=False
        )
    pytest.skip(
        "no Slurm controller answers (start one with tests/slurm/start-slurm.sh)",
        allow_module_level=True,
    )


def _snakemake(
    work: Path, *args: str, timeout: int = 900, site: tuple[str, ...] = SITE_OVERRIDES
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", *site, *args],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _slurm_job_ids(log: str) -> list[str]:
    return re.findall(r"submitted with SLURM jobid (\d+)", log)


def _scontrol(job_id: str) -> str:
    return subprocess.run(
        ["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=10
    ).stdout


def _write_config(work: Path, name: str, **changes) -> str:
    config = yaml.safe_load((work / "config/smoke.yaml").read_text())
    for key, value in changes.items():
        node = config
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    (work / "config" / name).write_text(yaml.safe_dump(config))
    return f"config/{name}"


def test_smoke_configuration_runs_through_sbatch(tmp_path):
    work = copy_pipeline(tmp_path)
    result = _snakemake(work)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    ids = _slurm_job_ids(log)
    assert len(ids) == 1, "exactly the one measurement job goes to Slurm; the rest run locally"
    info = _scontrol(ids[0])
    if info:  # the controller still remembers the job (MinJobAge)
        assert "Partition=gpu" in info
        assert "TresPerJob=gres:gpu:1" in info
    table = pd.read_parquet(work / "results/aggregate/cpu/measurements.parquet")
    assert (table["slurm_job_id"].astype(str) == ids[0]).all()
    assert (work / "results/figures/cpu/fig10_controlled_sweeps_pytorch.png").is_file()
    slurm_log = next((work / ".snakemake/slurm_logs/rule_measure").rglob(f"{ids[0]}.log"))
    assert slurm_log.is_file()


def _start_snakemake(work: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", *SITE_OVERRIDES, *args],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _jobs_of(work: Path, states: str = "RUNNING,PENDING") -> list[str]:
    """The Slurm jobs of the pipeline copy in ``work`` (others may share the controller)."""
    lines = subprocess.run(
        ["squeue", "-h", "-o", "%i %Z", "-t", states],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout.splitlines()
    jobs = (line.split(maxsplit=1) for line in lines)
    return [job for job, folder in jobs if folder == str(work)]


def _measurement_job_once_it_has(proc: subprocess.Popen, work: Path, points: int) -> str:
    """The Slurm job id of the running measurement job, once its journal holds ``points``."""
    journal = work / "results/journal/cpu/tiny-llama__pytorch"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if journal.is_dir() and len(list(journal.glob("*.parquet"))) >= points:
            break
        assert proc.poll() is None, "the workflow ended before the job could be interrupted"
        time.sleep(0.2)
    else:
        pytest.fail(f"the measurement job wrote {points} points within 300 s")
    running = _jobs_of(work, "RUNNING")
    assert len(running) == 1, f"not one running measurement job: {running}"
    return running[0]


def _stop(proc: subprocess.Popen, work: Path) -> None:
    """After a failed test: end the workflow and its jobs."""
    if proc.poll() is None:
        proc.kill()
    for job in _jobs_of(work):
        subprocess.run(["scancel", job], timeout=10, check=False)


def _every_point_once(work: Path, kept: dict[str, int], points: int) -> pd.DataFrame:
    """The job's table has every point once, and the journal entries written before the job
    was interrupted are the same files."""
    journal = work / "results/journal/cpu/tiny-llama__pytorch"
    table = pd.read_parquet(work / "results/measurements/cpu/tiny-llama__pytorch.parquet")
    assert len(table) == points
    assert table["point_id"].is_unique
    for name, mtime in kept.items():
        assert (journal / name).stat().st_mtime_ns == mtime, f"{name} was measured again"
    return table


def test_cancelled_job_resumes_without_losing_or_repeating_points(tmp_path):
    work = copy_pipeline(tmp_path)
    config = _write_config(
        work,
        "long.yaml",
        **{
            "protocol.min_duration_s": 0.4,
            "experiments.controlled_sweeps.batch_sizes": [1, 2, 4, 8],
        },
    )
    journal = work / "results/journal/cpu/tiny-llama__pytorch"
    # A site whose profile submits nothing again: the workflow fails, and rerunning resumes.
    proc = _start_snakemake(work, "--configfile", config, "--retries", "0")
    try:
        running = _measurement_job_once_it_has(proc, work, points=3)
        subprocess.run(["scancel", running], check=True, timeout=10)
        out, _ = proc.communicate(timeout=300)
    finally:
        _stop(proc, work)
    assert proc.returncode != 0, out[-3000:]
    kept = {p.name: p.stat().st_mtime_ns for p in journal.glob("*.parquet")}
    assert len(kept) >= 3

    result = _snakemake(work, "--configfile", config)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    table = pd.read_parquet(work / "results/measurements/cpu/tiny-llama__pytorch.parquet")
    assert len(table) == 4 * 6 - 4  # 4 batch sizes x (3 input + 3 output lengths - 1 shared)
    assert table["point_id"].is_unique
    for name, mtime in kept.items():
        assert (journal / name).stat().st_mtime_ns == mtime, f"{name} was measured again"


def test_a_requeued_job_stops_at_a_safe_place_and_goes_on_from_its_journal(tmp_path):
    work = copy_pipeline(tmp_path)
    config = _write_config(
        work,
        "long.yaml",
        **{
            "protocol.min_duration_s": 0.4,
            "protocol.min_trials": 1,
            "protocol.max_trials": 1,
            "experiments.controlled_sweeps.batch_sizes": [1, 2, 4, 8],
        },
    )
    journal = work / "results/journal/cpu/tiny-llama__pytorch"
    proc = _start_snakemake(work, "--configfile", config)
    try:
        job = _measurement_job_once_it_has(proc, work, points=3)
        subprocess.run(["scontrol", "requeue", job], check=True, timeout=10)
        kept = {p.name: p.stat().st_mtime_ns for p in journal.glob("*.parquet")}
        out, _ = proc.communicate(timeout=900)  # Slurm holds a requeued job for 2 minutes
    finally:
        _stop(proc, work)
    assert proc.returncode == 0, out[-4000:]
    assert _slurm_job_ids(out).count(job) == 1, "requeued by Slurm, not submitted again"
    table = _every_point_once(work, kept, points=4 * 6 - 4)
    assert (table["slurm_job_id"].astype(str) == job).all()
    # The requeued run found the first one's stop on record (Slurm's SIGTERM) and went on.
    log = (work / "logs/measure/cpu/tiny-llama__pytorch.log").read_text()
    assert "journal: a run of this job stopped at" in log and "stopped by SIGTERM" in log
    assert re.search(r"job tiny-llama__pytorch: 20 points, [1-9]\d* already in the journal", log)


def test_a_job_past_its_time_limit_is_submitted_again_and_goes_on_from_its_journal(tmp_path):
    work = copy_pipeline(tmp_path)
    # Over two minutes of points for a job with a one-minute limit: Slurm stops it mid-sweep.
    config = _write_config(
        work,
        "long.yaml",
        **{
            "protocol.min_duration_s": 3.0,
            "protocol.min_trials": 1,
            "protocol.max_trials": 1,
            "protocol.idle_duration_s": 0.0,
            "protocol.control_point": False,
            "experiments.controlled_sweeps.batch_sizes": [1, 2, 4, 8],
        },
    )
    journal = work / "results/journal/cpu/tiny-llama__pytorch"
    one_minute = tuple(
        "measure:runtime=1" if a.startswith("measure:runtime=") else a for a in SITE_OVERRIDES
    )
    # As many submissions as a busy two-core node needs (the profile's number is the site's).
    result = _snakemake(
        work, "--configfile", config, "--retries", "5", timeout=1800, site=one_minute
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    ids = _slurm_job_ids(log)
    assert len(ids) >= 2, "the measurement job finished within its time limit"
    assert "TIMEOUT" in log
    table = _every_point_once(work, {}, points=4 * 6 - 4)
    assert set(table["slurm_job_id"].astype(str)) <= set(ids)
    assert table["slurm_job_id"].nunique() >= 2  # points of the first job were kept
    job_log = (work / "logs/measure/cpu/tiny-llama__pytorch.log").read_text()
    assert "journal: a run of this job stopped at" in job_log  # at the time limit, on SIGTERM
    assert "stopped by SIGTERM" in job_log
    # Every run read its time limit from Slurm, as its record in the journal says (written at
    # its start, so a run that Slurm killed keeps it too; each point has one trial here, so
    # none of its trials had an earlier one to say it would not fit). The first was stopped.
    runs = Journal(journal).runs()
    assert len(runs) >= 2 and {r["slurm_job_id"] for r in runs} <= set(ids)
    for run in runs:
        assert re.fullmatch(r"Slurm job \d+'s time limit", run["time_ends_from"]), run
        assert pd.Timestamp(run["time_ends_utc"]) > pd.Timestamp(run["started_utc"])
    assert (runs[0].get("outcome"), runs[0].get("exit_status")) == ("stopped", 75)
    trials = [p for p in journal.glob("*.parquet") if not p.name.startswith("control.")]
    assert len(trials) == len(table)


def test_a_failing_job_reports_its_reason_and_other_jobs_finish(tmp_path):
    work = copy_pipeline(tmp_path)
    # A config.json that is there (so planning passes) but cannot be read: the job fails.
    broken = work / "resources/models/broken/config.json"
    broken.parent.mkdir(parents=True)
    broken.write_text('{"model_type": "llama", ')
    config = _write_config(
        work,
        "broken.yaml",
        **{
            "models.broken": {
                "hub_id": "local/broken",
                "config": "resources/models/broken/config.json",
            },
            "experiments.controlled_sweeps.models": ["tiny-llama", "broken"],
        },
    )
    result = _snakemake(work, "--configfile", config)
    log = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Error in rule measure" in log and "broken__pytorch" in log
    job_log = (work / "logs/measure/cpu/broken__pytorch.log").read_text()
    assert "resources/models/broken/config.json: not a readable config.json" in job_log
    # The profile submits a failed job again; an attempt after one that failed on its input
    # stops at once with that failure (the log is the last attempt's).
    assert "(attempt 3 stops at once: attempt 1 failed so at" in job_log
    journal = work / "results/journal/cpu/broken__pytorch"
    record = journal / "failed_attempt.json"
    assert json.loads(record.read_text())["error"] == "InputError"
    # Snakemake cleared the log before each attempt; the journal kept every attempt's.
    first = (journal / "attempt-1.log").read_text()
    assert "not a readable config.json" in first and "stops at once" not in first
    assert "(attempt 3 stops at once" in (journal / "attempt-3.log").read_text()
    assert (work / "results/measurements/cpu/tiny-llama__pytorch.parquet").is_file()
