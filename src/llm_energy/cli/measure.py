"""``llm-energy measure`` and ``seed-journal``: one job's measurements, as the measure rule
runs them and as its log says to rerun them by hand."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from llm_energy.cli.common import log, read_plan, read_table, stream_lengths
from llm_energy.errors import first_line
from llm_energy.measure.trials import trials_at_most

if TYPE_CHECKING:
    from llm_energy.measure.job import JobPlan


def cmd_measure(args: argparse.Namespace) -> None:
    from llm_energy.measure.provenance import utc_now
    from llm_energy.measure.runner import run_job
    from llm_energy.measure.stop import Deadline, deadline_from

    started_utc = utc_now("milliseconds")  # the run's start, for its record in the journal
    plan_path = Path(args.plan)
    plan = read_plan(plan_path)
    journal = Path(args.journal) if args.journal else Path(args.out).with_suffix(".journal")
    deadline: Deadline | None = None
    expected: dict[tuple, float] = {}

    def job(measure: bool = True) -> None:
        run_job(
            plan,
            Path(args.out),
            journal,
            log=log,
            traces_dir=Path(args.traces),
            tasks_dir=Path(args.task_lengths),
            pg19_path=Path(args.pg19),
            measure=measure,
            deadline=deadline,
            expected_trial_s=expected,
            trials_at_most=trials_at_most(args.trials_at_most),
        )

    if args.from_journal:
        # What a stopped job measured, as its table: nothing is measured, no engine starts.
        job(measure=False)
        return
    from llm_energy.measure import engine_starts

    if plan.protocol.trials_per_engine_start and not engine_starts.in_a_start():
        _measure_in_engine_starts(args, plan, journal)
        return
    from llm_energy.measure import attempts, runs

    # A retry of a job that failed on its input stops at once with that failure.
    plan_text = plan_path.read_text()
    attempts.check(journal, plan_text, args.attempt)
    try:
        deadline = deadline_from(args.stop_by)
        estimate: dict[str, object] = {}
        if args.time_model_rows:
            lengths = stream_lengths(args)
            seconds, basis = _expected_trial_seconds(plan, args.time_model_rows, lengths)
            expected.update(seconds)
            estimate = runs.estimate_record(plan, journal, seconds, basis)
        with runs.recorded(journal, started_utc, args.attempt, deadline, estimate):
            _measure(args, plan, plan_path, journal, job)
    except attempts.NOT_RETRIED as exc:
        attempts.record(journal, plan_text, args.attempt, exc)
        raise


def _measure_in_engine_starts(args: argparse.Namespace, plan: JobPlan, journal: Path) -> None:
    """The job as a sequence of engine starts (:mod:`llm_energy.measure.engine_starts`), each
    this command again with the job's deadline as a time and its own ``--trials-at-most``."""
    import sys

    from llm_energy.measure import engine_starts
    from llm_energy.measure.stop import deadline_from

    deadline = deadline_from(args.stop_by)
    same = [
        *("--plan", args.plan, "--out", args.out, "--journal", str(journal)),
        *("--traces", args.traces, "--task-lengths", args.task_lengths, "--pg19", args.pg19),
        *("--attempt", str(args.attempt)),
        *(("--stop-by", deadline.ends_utc()) if deadline is not None else ()),
        *(("--time-model-rows", *args.time_model_rows) if args.time_model_rows else ()),
    ]

    def command(at_most: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "llm_energy",
            "measure",
            *same,
            "--trials-at-most",
            str(at_most),
        ]

    at_most = trials_at_most(args.trials_at_most)
    status = engine_starts.run_starts(plan, journal, command, log, at_most)
    if status:
        sys.exit(status)


def _expected_trial_seconds(
    plan: JobPlan, tables: list[str], lengths=None
) -> tuple[dict[tuple, float], str]:
    """Each point's first trial by the plan's estimate, fitted to ``tables`` (a request stream
    without a measured time per request by its requests' ``lengths``), by point key, and the
    estimate's basis: for the deadline, for each trial's line in the log, and for the run's
    record in the journal."""
    import pandas as pd

    from llm_energy.analysis.gpu_hours import first_trial_seconds
    from llm_energy.errors import InputError

    # A folder stands for its job tables (the workflow names the hardware's shipped ones).
    paths = [
        q for t in map(Path, tables) for q in (sorted(t.glob("*.parquet")) if t.is_dir() else [t])
    ]
    if not paths:
        where = ", ".join(tables)
        basis = f"no job tables in {where}"
        log(f"no estimate of the points' trials for the job's deadline: {basis}")
        return {}, basis
    try:
        rows = pd.concat([read_table(t) for t in paths], ignore_index=True)
    except (InputError, OSError, ValueError) as exc:
        raise InputError(f"--time-model-rows: {first_line(exc)}") from exc
    try:
        seconds, basis = first_trial_seconds(plan, rows, lengths)
    except KeyError as exc:
        raise InputError(
            f"--time-model-rows: the tables lack the column {exc}; give job tables, such as "
            "resources/measurements/h200/*.parquet"
        ) from exc
    log(
        f"the plan's estimate of each point's first trial, for the job's deadline and each "
        f"trial's line: {basis}"
        if seconds
        else f"no estimate of the points' trials for the job's deadline: {basis}"
    )
    return seconds, basis


def _measure(args: argparse.Namespace, plan: JobPlan, plan_path: Path, journal: Path, job) -> None:
    from llm_energy import backends

    backends.require(plan.engine.backend, plan.engine.name)
    paths = (plan_path, args.out, journal, args.traces, args.task_lengths, args.pg19)

    def claim_gpus() -> None:
        if plan.device.startswith("cuda"):
            from llm_energy.measure.gpu_claims import choose_gpus, lock_dir
            from llm_energy.measure.host import claim_host

            claim_host(lock_dir(), plan.host_shared, log)
            choose_gpus(plan.engine.tensor_parallel_size, log)

    def run() -> None:
        log(
            "rerun by hand: llm-energy measure --plan {} --out {} --journal {} --traces {} "
            "--task-lengths {} --pg19 {}".format(*(shlex.quote(str(p)) for p in paths))
        )
        job()

    from llm_energy.measure import stop

    # SIGTERM (Slurm's preemption, requeue, time limit) stops the job at the next safe place.
    with stop.on_signals():
        backends.launch(plan, args.argv, run, claim_gpus)


def cmd_seed_journal(args: argparse.Namespace) -> None:
    from llm_energy.measure.resume import left_notes, read_tables, seed_journal, trials_left

    plan = read_plan(Path(args.plan))
    wide_again = args.wide_rows == "measure_again"
    tables = read_tables(args.tables)
    copied = seed_journal(plan, tables, Path(args.journal), wide_again)
    log(f"job {plan.group}: {copied} measured points copied into the journal {args.journal}")
    for note in left_notes(plan, tables, trials_left(plan, Path(args.journal))):
        log(note)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """This module's commands, each with its arguments and handler."""
    m = sub.add_parser("measure", help="measure every point of one job plan")
    m.add_argument("--plan", required=True, help="job plan JSON (results/plans/...)")
    m.add_argument("--out", required=True, help="Parquet table to write")
    m.add_argument("--journal", help="resume journal folder (default: OUT with .journal)")
    m.add_argument(
        "--traces",
        default="results/data/traces",
        help="folder of prepared traces that request-stream points draw lengths from",
    )
    m.add_argument(
        "--task-lengths",
        default="results/data/task_lengths",
        help="folder of the classical tasks' request lengths (TASK.parquet)",
    )
    m.add_argument(
        "--pg19",
        default="results/data/pg19/llama3_tokens.parquet",
        help="prepared PG-19 token ids that pg19 prompts are cut from",
    )
    m.add_argument(
        "--from-journal",
        action="store_true",
        help="measure nothing: write the table of the trials the journal holds (a stopped "
        "job's points with fewer trials than the protocol asks say so in protocol_note)",
    )
    m.add_argument(
        "--stop-by",
        metavar="WHEN",
        help="when the job's time ends: +SECONDS from now, or an ISO 8601 time (UTC unless it "
        "says otherwise); the job starts no trial that its earlier trials say would end after "
        "it, and stops with what it measured in its journal (default: the environment's "
        "LLM_ENERGY_STOP_BY, in the same form; under Slurm the job's time limit ends it "
        "earlier where it ends first)",
    )
    m.add_argument(
        "--trials-at-most",
        type=int,
        metavar="N",
        help="give no point more than N trials, its journal's included, even where its "
        "interval is wider than the target: a later run of the job on the same machine adds "
        "them (default: the environment's LLM_ENERGY_TRIALS_AT_MOST, else the protocol's "
        "max_trials). For jobs that share one machine's time: the first job's points at "
        "min_trials leave the next jobs theirs",
    )
    m.add_argument(
        "--time-model-rows",
        nargs="+",
        metavar="TABLE",
        help="job tables of this hardware, or folders of them (such as "
        "resources/measurements/h200), to fit the plan's time model to, as llm-energy "
        "estimate-gpu-hours does: with a deadline, a point's first trial is not started where "
        "that estimate says it would end after it",
    )
    m.add_argument(
        "--attempt",
        type=int,
        default=1,
        help="which attempt at this job this is (Snakemake's retries): a later attempt of a job "
        "whose attempt failed on its input (a malformed trace, a missing extra) stops at once "
        "with that failure; attempt 1 tries again",
    )
    m.set_defaults(func=cmd_measure)

    sj = sub.add_parser(
        "seed-journal",
        help="copy rows measured elsewhere (e.g. resources/measurements/) into a job's journal",
    )
    sj.add_argument("--plan", required=True, help="job plan JSON (results/plans/...)")
    sj.add_argument("--journal", required=True, help="the job's journal folder")
    sj.add_argument("tables", nargs="+", help="job tables whose points of this plan to copy")
    sj.add_argument(
        "--wide-rows",
        choices=("keep", "measure_again"),
        default="keep",
        help="a row whose interval (energy; per request for a served stream) is wider than its "
        "protocol's target with fewer than max_trials trials: copy it (keep), or leave its "
        "point to be measured again in this job (measure_again), as the configuration key "
        "resume_wide_rows says",
    )
    sj.set_defaults(func=cmd_seed_journal)
