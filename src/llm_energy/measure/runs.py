"""The runs of a measurement job, each in its journal.

A run is one process of ``llm-energy measure`` that measures: it starts, loads its engine,
measures what the journal leaves, and ends by finishing, by stopping at a safe place (a signal,
its time running out) or by failing. Its journal entry (``run.{started}.json``) says when it
started, where (host, machine session, Slurm job, attempt), when its time ends where it knows
(``--stop-by``, a Slurm job's time limit), and, once it has ended, when and how (``outcome``
finished, stopped or failed, with the exit status and the reason). A run killed
outright keeps its start alone. So a job's wall time, run by run, is in the journal beside its
trials, with no log or scheduler record needed to read it back
(``benchmarks/gpu_time_share.py``), and the next run says which earlier ones did not finish
(:func:`earlier_runs`).
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_energy.errors import LlmEnergyError, first_line
from llm_energy.measure import provenance, stop
from llm_energy.measure.store import Journal

if TYPE_CHECKING:
    from llm_energy.measure.job import JobPlan

# Set while a run is recorded: the processes the run starts itself (tensor-parallel ranks under
# torchrun, which run the same command) inherit it and are part of that run, not runs of their own.
RUN_ENV = "LLM_ENERGY_RUN_STARTED"


@contextmanager
def recorded(
    journal_dir: Path,
    started_utc: str,
    attempt: int | None = None,
    deadline: stop.Deadline | None = None,
    estimate: Mapping[str, Any] | None = None,
) -> Iterator[None]:
    """Record the run that starts at ``started_utc`` in the journal for as long as the block
    runs, and how it ended; inside a process the run started itself, record nothing. With
    ``deadline``, the run's record says when its time ends and where that end came from; with
    ``estimate`` (:func:`estimate_record`), what the plan expected each point's trial to take."""
    if os.environ.get(RUN_ENV):
        yield
        return
    run: dict[str, Any] = {
        "started_utc": started_utc,
        "host": socket.gethostname(),
        "machine_session": provenance.machine_session(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID", ""),
        "attempt": attempt,
    }
    if deadline is not None:
        run["time_ends_utc"] = deadline.ends_utc()
        run["time_ends_from"] = deadline.source
    run.update(estimate or {})
    journal = Journal(journal_dir)
    journal.record_run(run)
    ended: dict[str, Any] = {"outcome": "failed", "exit_status": 1, "reason": ""}
    os.environ[RUN_ENV] = started_utc
    try:
        yield
        ended = {"outcome": "finished", "exit_status": 0, "reason": ""}
    except stop.Stopped as exc:
        ended = {"outcome": "stopped", "exit_status": stop.EXIT_STOPPED, "reason": first_line(exc)}
        raise
    except LlmEnergyError as exc:
        ended = {"outcome": "failed", "exit_status": 2, "reason": first_line(exc)}
        raise
    except BaseException as exc:
        ended["reason"] = f"{type(exc).__name__}: {first_line(exc)}"
        raise
    finally:
        os.environ.pop(RUN_ENV, None)
        journal.record_run({**run, "ended_utc": provenance.utc_now("milliseconds"), **ended})


def estimate_record(
    plan: JobPlan, journal_dir: Path, seconds: Mapping[tuple, float], basis: str
) -> dict[str, Any]:
    """The plan's estimate of each point's trial (``seconds`` by point key), for the run's
    record: ``expected_trial_s`` by point id (the journal's id version) and the estimate's
    ``expected_basis``, so that what the run was expected to take and what it took are read
    back from the journal together (``benchmarks/gpu_time_share.py``). Empty where the
    estimate times no point."""
    from llm_energy.measure.point_ids import point_ids

    timed = {k: s for k, s in seconds.items() if math.isfinite(s)}
    if not timed:
        return {}
    ids = point_ids(plan, Journal(journal_dir).version)
    return {
        "expected_trial_s": {ids[k]: round(s, 1) for k, s in timed.items() if k in ids},
        "expected_basis": basis,
    }


def earlier_runs(journal: Journal) -> list[str]:
    """What the journal says of the job's earlier runs, for the log of the run now starting:
    one line counting them by how they ended, and a line for each that did not finish."""
    now = os.environ.get(RUN_ENV)
    runs = [r for r in journal.runs() if r.get("started_utc") != now]
    if not runs:
        return []
    outcomes = [r.get("outcome", "with no end") for r in runs]
    counts = ", ".join(f"{outcomes.count(o)} {o}" for o in dict.fromkeys(outcomes))
    lines = [f"journal: {len(runs)} earlier runs of this job ({counts})"]
    for r in runs:
        where = f"started {r['started_utc']} on {r.get('host') or 'an unknown host'}"
        if "outcome" not in r:
            lines.append(
                f"journal: a run of this job ({where}) left no end: killed outright, or still "
                "running"
            )
        elif r["outcome"] != "finished":
            lines.append(
                f"journal: a run of this job {r['outcome']} at {r['ended_utc']} ({where}, exit "
                f"{r['exit_status']}): {r['reason']}"
            )
    return lines
