"""A job whose protocol sets ``trials_per_engine_start`` runs as a sequence of engine starts.

Trials inside one engine start do not show how much a point moves between starts of an engine
that launches every kernel from the host (docs/MEASURING.md, "Engine starts"). With
``trials_per_engine_start: k``, ``llm-energy measure`` starts itself again and again, each time
a fresh process that loads the engine, measures the control point and adds at most ``k``
trials to each point still short of the protocol (``--trials-at-most``: the fewest trials a
point that wants more holds, plus ``k``). The sequence ends when no point wants another trial,
when a start measures nothing, or with the first start that does not finish (its time ran out,
a signal, a failure), whose exit status the command keeps. Every start is a run of the job in
its journal (:mod:`llm_energy.measure.runs`), so a stopped sequence resumes as any job does, and
each row says how many starts its trials came from (``engine_starts``).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from llm_energy.measure import provenance
from llm_energy.measure.job import JobPlan
from llm_energy.measure.point_ids import point_ids
from llm_energy.measure.resume import trials_left
from llm_energy.measure.store import Journal
from llm_energy.measure.trials import failed_on_device

# Set in each start's process: it measures, and starts no sequence of its own.
ENV = "LLM_ENERGY_ENGINE_START"

Log = Callable[[str], None]
Spawn = Callable[[Sequence[str], dict[str, str]], int]


def in_a_start(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process is one start of a sequence (it measures as a plain run does)."""
    return bool(environ.get(ENV))


def _held(plan: JobPlan, journal_dir: Path) -> dict[tuple, int]:
    """Trials of this machine session each point holds in the job's journal (none where there
    is no journal yet), a trial that a device error ended left out. A point short of the
    protocol is measured again from its first trial where its trials are another session's
    (the runner sets them aside), so only this session's count toward its next start."""
    journal = Journal.existing(journal_dir)
    if journal is None:
        return {p.key: 0 for p in plan.points}
    ids = point_ids(plan, journal.version)
    here = provenance.machine_session()

    def counted(trial: dict) -> bool:
        return not failed_on_device(trial) and trial.get("machine_session") == here

    return {p.key: sum(map(counted, journal.trials(ids[p.key]))) for p in plan.points}


def _cap(
    left: dict[tuple, int], held: dict[tuple, int], per_start: int, at_most: int | None
) -> int | None:
    """``--trials-at-most`` of the next start from the trials each point has ``left`` and
    ``held`` (:func:`next_trials_at_most`)."""
    wanting = [held[key] for key, n in left.items() if n > 0]
    if not wanting:
        return None
    fewest = min(wanting)
    if at_most is not None and fewest >= at_most:
        return None
    most = fewest + per_start
    return most if at_most is None else min(most, at_most)


def next_trials_at_most(
    plan: JobPlan, journal_dir: Path, per_start: int, at_most: int | None = None
) -> int | None:
    """``--trials-at-most`` of the next start: the fewest trials held by a point that wants
    another, plus ``per_start``, within ``at_most`` (the command's own ``--trials-at-most``);
    None where no point wants one, or every point that does holds ``at_most`` already."""
    return _cap(trials_left(plan, journal_dir), _held(plan, journal_dir), per_start, at_most)


def _spawn(argv: Sequence[str], env: dict[str, str]) -> int:
    """Run one start to its end. SIGTERM and SIGINT reach it (Slurm's time limit, a stop by
    hand) and it stops at its next safe place, as a plain run does."""
    child = subprocess.Popen(list(argv), env=env)

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run_starts(
    plan: JobPlan,
    journal_dir: Path,
    command: Callable[[int], list[str]],
    log: Log,
    at_most: int | None = None,
    spawn: Spawn | None = None,
) -> int:
    """Run the job as a sequence of engine starts, each ``command(trials_at_most)``; the exit
    status of the sequence (0, or the first start's that did not finish)."""
    spawn = spawn or _spawn
    per_start = plan.protocol.trials_per_engine_start
    if per_start is None:
        raise ValueError("the job's protocol sets no trials_per_engine_start")
    start, measured_before = 0, -1
    while True:
        held = _held(plan, journal_dir)
        cap = _cap(trials_left(plan, journal_dir), held, per_start, at_most)
        measured = sum(held.values())
        if cap is None:
            log(
                f"engine starts: {start} in this run of the job; no point wants another trial "
                + ("within --trials-at-most" if at_most is not None else "by the protocol")
            )
            return 0
        if measured == measured_before:
            log(
                f"engine starts: start {start} measured no trial, so no other is started; "
                "running the job again measures what is left"
            )
            return 0
        measured_before = measured
        start += 1
        argv = command(cap)
        log(
            f"engine start {start}: each point up to {cap} trials (--trials-at-most {cap}), at "
            f"most {per_start} of them in this start: {shlex.join(argv)}"
        )
        status = spawn(argv, {**os.environ, ENV: str(start)})
        if status != 0:
            log(f"engine starts: start {start} ended with exit status {status}; none follows")
            return status
