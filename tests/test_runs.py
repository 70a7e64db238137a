"""A measurement job's runs in its journal (src/llm_energy/measure/runs.py): when each started,
and when and how it ended; a process the run started itself records nothing of its own. The
runs of real processes, killed, stopped and finished: tests/test_resume_kill.py."""

from __future__ import annotations

import os
import socket
from datetime import datetime

import pytest

from llm_energy.errors import InputError
from llm_energy.measure import runs, stop
from llm_energy.measure.store import Journal


def _runs(journal) -> list[dict]:
    return Journal(journal).runs()


def test_a_run_records_its_start_at_once_and_how_it_ended(tmp_path):
    journal = tmp_path / "journal"
    with runs.recorded(journal, "2026-12-04T10:00:00.000+00:00", attempt=1):
        (started,) = _runs(journal)
        assert started["started_utc"] == "2026-12-04T10:00:00.000+00:00"
        assert "ended_utc" not in started and started["attempt"] == 1
        assert started["machine_session"] and started["host"]
    (run,) = _runs(journal)
    assert (run["outcome"], run["exit_status"], run["reason"]) == ("finished", 0, "")
    assert run["ended_utc"] >= run["started_utc"]
    assert runs.RUN_ENV not in os.environ


@pytest.mark.parametrize(
    "error, outcome, status, reason",
    [
        (
            stop.Stopped("stopped by SIGTERM\nmore"),
            "stopped",
            stop.EXIT_STOPPED,
            "stopped by SIGTERM",
        ),
        (InputError("malformed trace x.csv"), "failed", 2, "malformed trace x.csv"),
        (KeyboardInterrupt(), "failed", 1, "KeyboardInterrupt: KeyboardInterrupt"),
    ],
)
def test_a_run_that_ends_early_says_how(tmp_path, error, outcome, status, reason):
    journal = tmp_path / "journal"
    with pytest.raises(type(error)), runs.recorded(journal, "2026-12-04T10:00:00.000+00:00"):
        raise error
    (run,) = _runs(journal)
    assert (run["outcome"], run["exit_status"], run["reason"]) == (outcome, status, reason)
    assert runs.RUN_ENV not in os.environ


def test_a_process_the_run_started_itself_records_no_run_of_its_own(tmp_path):
    journal = tmp_path / "journal"
    with runs.recorded(journal, "2026-12-04T10:00:00.000+00:00"):
        # A tensor-parallel rank under torchrun inherits the run's environment.
        assert os.environ[runs.RUN_ENV] == "2026-12-04T10:00:00.000+00:00"
        with runs.recorded(journal, "2026-12-04T10:00:05.000+00:00"):
            pass
    assert [r["started_utc"] for r in _runs(journal)] == ["2026-12-04T10:00:00.000+00:00"]
    # Two runs of one job keep a record each, oldest first.
    with runs.recorded(journal, "2026-12-04T11:00:00.000+00:00"):
        pass
    assert [r["outcome"] for r in _runs(journal)] == ["finished", "finished"]


def test_a_run_that_knows_when_its_time_ends_says_so(tmp_path):
    journal = tmp_path / "journal"
    deadline = stop.Deadline(at=100.0, source="Slurm job 7's time limit", clock=lambda: 40.0)
    with runs.recorded(journal, "2026-12-04T10:00:00.000+00:00", deadline=deadline):
        pass
    (run,) = _runs(journal)
    assert run["time_ends_from"] == "Slurm job 7's time limit"
    ends = datetime.fromisoformat(run["time_ends_utc"])
    assert 55 <= (ends - datetime.fromisoformat(run["ended_utc"])).total_seconds() <= 61


def test_a_run_says_which_earlier_runs_did_not_finish_and_leaves_itself_out(tmp_path):
    journal = tmp_path / "journal"
    assert runs.earlier_runs(Journal(journal)) == []
    with runs.recorded(journal, "2026-12-04T09:00:00.000+00:00"):
        pass
    with pytest.raises(InputError), runs.recorded(journal, "2026-12-04T10:00:00.000+00:00"):
        raise InputError("malformed trace x.csv")
    # A run killed outright (SIGKILL, the out-of-memory killer) keeps its start alone.
    Journal(journal).record_run({"started_utc": "2026-12-04T11:00:00.000+00:00", "host": "n1"})
    with runs.recorded(journal, "2026-12-04T12:00:00.000+00:00"):
        lines = runs.earlier_runs(Journal(journal))
    assert lines[0] == "journal: 3 earlier runs of this job (1 finished, 1 failed, 1 with no end)"
    assert lines[1].startswith("journal: a run of this job failed at ")
    host = socket.gethostname()
    assert lines[1].endswith(
        f"(started 2026-12-04T10:00:00.000+00:00 on {host}, exit 2): malformed trace x.csv"
    )
    assert lines[2] == (
        "journal: a run of this job (started 2026-12-04T11:00:00.000+00:00 on n1) left no end: "
        "killed outright, or still running"
    )
    assert len(lines) == 3  # the finished run is counted, not listed; the run now, neither
