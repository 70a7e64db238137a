"""The host a measurement job runs on: who else uses its CPUs, and which jobs may share it.

Eager engines launch every kernel from the host, so a busy host stretches their windows; a GPU
process check does not see that. A job therefore takes the host for itself (an exclusive lock
on ``host.lock`` in the GPU lock folder, held for its life) unless its engine is one the host
does not bound (CUDA graphs) and the configuration lets such jobs share (a shared lock), and
every trial records how much CPU time the other processes of the host used during it.

CPU times come from ``/proc`` (Linux): the host's busy time from ``/proc/stat``, the job's own
from ``/proc/<pid>/stat`` of its process and every process below it (vLLM's engine process,
tensor-parallel ranks). Elsewhere the load reads NaN.
"""

from __future__ import annotations

import fcntl
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from llm_energy.job_environment import JOB_PID_ENV
from llm_energy.measure import stop

_HELD: list[IO[str]] = []
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# Cores' worth of other processes' CPU time above which a trial is marked contended.
CONTENDED_CORES = 1.0


def claim_host(
    lock_dir: Path, shared: bool, log: Callable[[str], None] = print, poll_s: float = 1.0
) -> None:
    """Hold the host for this process: alone, or with other jobs that may share it."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    handle = open(lock_dir / "host.lock", "a")  # noqa: SIM115 - held for the process's life
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    said = False
    while True:
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if not said:
                how = "shares it only with CUDA-graph engines" if shared else "measures alone"
                log(
                    f"waiting for the host: another measurement job holds it (this job {how}; "
                    f"{lock_dir})"
                )
                said = True
            stop.check()  # a job asked to stop while it waits stops now
            time.sleep(poll_s)
    _HELD.append(handle)


def _busy_ticks() -> float:
    """CPU ticks the host has spent busy since boot (all cores)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [float(x) for x in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0.0)  # idle + iowait
    return sum(ticks[:8]) - idle


def proc_stats() -> Iterator[tuple[int, list[str]]]:
    """Each live process's pid and the fields of its ``/proc/PID/stat`` after the command name
    (which may hold spaces): state, parent pid, process group, ..."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        yield int(entry.name), stat[stat.rindex(")") + 2 :].split()


def process_tree_ticks(root: int) -> float:
    """CPU ticks (user + system) of ``root`` and every process below it, ended ones too."""
    parents: dict[int, int] = {}
    ticks: dict[int, float] = {}
    for pid, fields in proc_stats():
        parents[pid] = int(fields[1])
        # utime + stime, and cutime + cstime: children that have ended count as their parent's.
        ticks[pid] = sum(float(x) for x in fields[11:15])
    total = 0.0
    for pid in ticks:
        p = pid
        while p > 1 and p != root:
            p = parents.get(p, 0)
        if p == root:
            total += ticks[pid]
    return total


class HostLoad:
    """Cores' worth of CPU time that processes outside the job used between ``start`` and
    ``stop`` (NaN where ``/proc`` cannot say)."""

    def __init__(self) -> None:
        self.root = int(os.environ.get(JOB_PID_ENV, os.getpid()))
        self._start: tuple[float, float, float] | None = None

    def _read(self) -> tuple[float, float, float] | None:
        try:
            return time.monotonic(), _busy_ticks(), process_tree_ticks(self.root)
        except (OSError, ValueError, IndexError):
            return None

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> float:
        end = self._read()
        if self._start is None or end is None or end[0] <= self._start[0]:
            return math.nan
        seconds = end[0] - self._start[0]
        others = (end[1] - self._start[1]) - (end[2] - self._start[2])
        return max(others, 0.0) / CLOCK_TICKS / seconds
