"""Stopping a measurement job at the next safe place when it is asked to.

A job that knows when its time ends (:class:`Deadline`: the earliest of ``llm-energy measure
--stop-by`` or the environment's :data:`STOP_BY_ENV`, and under Slurm the job's end time) starts no
engine once that time has passed and no trial it would not finish: before each trial it compares
the time left with what the point's trials took before (in this run, else in the journal's earlier
runs), and where the trial would not fit it measures its control point once more and stops, as a
stop asked for by a signal would, but without abandoning a window.

Slurm sends SIGTERM before it kills a job (preemption, ``scontrol requeue``, the time limit,
``scancel``) and SIGKILL after its ``KillWait``. On SIGTERM a measurement job goes on only to
the next safe place: the end of the current repetition, which every tensor-parallel rank
finishes together, or, in a request stream served by one process (a stream of a thousand
requests is one repetition of minutes), the end of the current batch on PyTorch and the end of
the engine's current step on vLLM, its requests in flight aborted. There it
abandons the current window unwritten, closes its engine (vLLM's engine process, the other
ranks) and exits with :data:`EXIT_STOPPED`. Every finished trial is already in the journal, so
a rerun or a requeued job measures only the rest. A job killed before it gets there loses
nothing more: journal entries are written whole or not at all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from llm_energy.errors import ConfigError, LlmEnergyError

# sysexits.h's EX_TEMPFAIL: the job did not finish and running it again will go on.
EXIT_STOPPED = 75

# The signal that asked this process to stop, and when (the handler only records it: a job
# stops where it is safe to, not where the signal lands).
_REQUEST: dict[str, float | None] = {"signal": None, "at": None}


class Stopped(LlmEnergyError):
    """The job stopped at a safe place because a signal asked it to."""


def requested() -> str | None:
    """The name of the signal that asked this process to stop, or None."""
    number = _REQUEST["signal"]
    return signal.Signals(int(number)).name if number is not None else None


def check() -> None:
    """Raise :class:`Stopped` when a stop was asked for: call it at safe places only."""
    name = requested()
    if name is not None:
        waited = time.monotonic() - float(_REQUEST["at"] or 0.0)
        raise Stopped(
            f"stopped by {name} (received {waited:.1f} s earlier), the current window abandoned"
        )


def _record(signum: int, frame: FrameType | None) -> None:
    if _REQUEST["signal"] is None:
        _REQUEST["at"] = time.monotonic()
    _REQUEST["signal"] = signum


def reset() -> None:
    """Forget a request (for a process that runs several jobs, such as the tests)."""
    _REQUEST["signal"] = _REQUEST["at"] = None


@contextmanager
def _handled(handler: Any, signals: tuple[signal.Signals, ...]) -> Iterator[None]:
    """While inside, ``handler`` handles ``signals`` (SIGTERM when none); then the previous
    handlers again."""
    previous = {s: signal.signal(s, handler) for s in signals or (signal.SIGTERM,)}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def on_signals(*signals: signal.Signals) -> AbstractContextManager[None]:
    """While inside, SIGTERM (or ``signals``) asks for a stop instead of ending the process."""
    return _handled(_record, signals)


def forwarded_to(child: subprocess.Popen, *signals: signal.Signals) -> AbstractContextManager[None]:
    """While inside, SIGTERM (or ``signals``) asks for a stop and is passed on to ``child``,
    which runs the job (torchrun and its ranks); under Slurm the child gets it directly too."""

    def forward(signum: int, frame: FrameType | None) -> None:
        first = _REQUEST["signal"] is None
        _record(signum, frame)
        if first and child.poll() is None:
            child.send_signal(signum)

    return _handled(forward, signals)


@dataclass(frozen=True)
class Deadline:
    """When a job's time ends, on ``clock`` (seconds), and where that end came from."""

    at: float
    source: str
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)

    def left_s(self) -> float:
        """Seconds until the end."""
        return self.at - self.clock()

    def ends_utc(self) -> str:
        """The end as a UTC time, to the second."""
        ends = datetime.now(UTC) + timedelta(seconds=self.left_s() + 0.5)  # to the nearest
        return ends.isoformat(timespec="seconds")


def _slurm_end(job_id: str) -> float | None:
    """The Unix time at which Slurm job ``job_id`` ends, from ``squeue``; None where it has no
    time limit or squeue cannot say."""
    try:
        done = subprocess.run(
            ["squeue", "--noheader", "--jobs", job_id, "--format", "%e"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    try:  # squeue prints the end in the local time zone, as this process reads it
        return datetime.fromisoformat(done.stdout.strip()).timestamp()
    except ValueError:  # "N/A", "Unknown", "NONE": no end
        return None


# The end of the time every measurement job of a run shares (an allocation, a reservation, a
# machine lent until a given time), as --stop-by takes it: set it once in the environment of
# ``snakemake`` and each job it starts stops by then.
STOP_BY_ENV = "LLM_ENERGY_STOP_BY"


def _parse_stop_by(stop_by: str, named: str, now: float, wall: float) -> Deadline:
    """``stop_by`` as ``+SECONDS`` from now or an ISO 8601 time (UTC unless it says
    otherwise); ``named`` says where it came from."""
    if stop_by.startswith("+"):
        try:
            seconds = float(stop_by[1:])
        except ValueError:
            seconds = -1.0
        if seconds < 0:
            raise ConfigError(f"{named} {stop_by}: expected +SECONDS, such as +1500")
        return Deadline(now + seconds, f"{named} {stop_by}")
    try:
        end = datetime.fromisoformat(stop_by.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"{named} {stop_by}: expected +SECONDS or an ISO 8601 time such as 2026-12-04T21:25:00Z"
        ) from None
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    return Deadline(now + end.timestamp() - wall, f"{named} {stop_by}")


def deadline_from(
    stop_by: str | None,
    environ: Mapping[str, str] = os.environ,
    slurm_end: Callable[[str], float | None] = _slurm_end,
) -> Deadline | None:
    """The job's deadline: the earliest of ``stop_by`` (``--stop-by``, else the environment's
    :data:`STOP_BY_ENV`) and, under Slurm, the job's end time; none where neither is known."""
    now, wall = time.monotonic(), time.time()
    ends = []
    if stop_by:
        ends.append(_parse_stop_by(stop_by, "--stop-by", now, wall))
    elif environ.get(STOP_BY_ENV):
        ends.append(_parse_stop_by(environ[STOP_BY_ENV], STOP_BY_ENV, now, wall))
    job = environ.get("SLURM_JOB_ID")
    if job:
        end_s = slurm_end(job)
        if end_s is not None:
            ends.append(Deadline(now + end_s - wall, f"Slurm job {job}'s time limit"))
    return min(ends, key=lambda d: d.at, default=None)
