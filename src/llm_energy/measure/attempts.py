"""A measurement job's failures that a retry cannot change.

Snakemake submits a failed job again (the Slurm profile's ``retries``), which is right for a job
that ran out of time, lost its node or met a server that would not start. A job that failed on
its input (a malformed trace, a missing extra, a plan its own configuration rejects) would fail
the same way on every attempt, each after waiting for a GPU node. Such a failure is written into
the job's journal (:data:`RECORD`); a later attempt of the same plan stops at once with the
first attempt's message. Attempt 1 (a new ``snakemake`` run, or the command by hand) forgets the
record, so that a fixed input or environment is tried again. The journal's points stay.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

from llm_energy.errors import ConfigError, InputError, LlmEnergyError, MissingExtraError

NOT_RETRIED = (ConfigError, InputError, MissingExtraError)
RECORD = "failed_attempt.json"


def _plan_sha256(plan_text: str) -> str:
    return hashlib.sha256(plan_text.encode()).hexdigest()


def check(journal: Path, plan_text: str, attempt: int) -> None:
    """Before a job starts: forget the record on attempt 1; on a later attempt of the same
    plan, raise the recorded failure again at once."""
    path = Path(journal) / RECORD
    if attempt <= 1:
        path.unlink(missing_ok=True)
        return
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return  # none (or unreadable): the attempt runs
    if record.get("plan_sha256") != _plan_sha256(plan_text):
        return
    raise LlmEnergyError(
        f"{record['message']}\n(attempt {attempt} stops at once: attempt {record['attempt']} "
        f"failed so at {record['failed_utc']} with a {record['error']}, which a retry cannot "
        "change; fix it and run snakemake again. The journal keeps every point measured.)"
    )


def record(journal: Path, plan_text: str, attempt: int, exc: BaseException) -> None:
    """After a job failed: write the failure down if it is one a retry cannot change."""
    if not isinstance(exc, NOT_RETRIED):
        return
    from llm_energy.measure.store import write_atomic

    entry = {
        "error": type(exc).__name__,
        "message": str(exc),
        "attempt": attempt,
        "failed_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "plan_sha256": _plan_sha256(plan_text),
    }
    write_atomic(
        Path(journal) / RECORD,
        lambda tmp: Path(tmp).write_text(json.dumps(entry, indent=1) + "\n"),
    )
