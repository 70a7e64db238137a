"""``llm-energy validate-config``, ``plan`` and ``estimate-gpu-hours``: what a configuration
measures, job by job, and what it is estimated to cost before anything runs."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

from llm_energy.cli.common import load_configs, log, stream_lengths
from llm_energy.errors import ConfigError, LlmEnergyError

if TYPE_CHECKING:
    pass


def cmd_validate(args: argparse.Namespace) -> None:
    from llm_energy.measure.plan import plan_study

    jobs = plan_study(load_configs(args.configfile))
    points = sum(len(j.points) for j in jobs.values())
    log(f"config is valid: {len(jobs)} measurement jobs, {points} points")


def cmd_plan(args: argparse.Namespace) -> None:
    from llm_energy.measure.plan import plan_study

    jobs = plan_study(load_configs(args.configfile))
    if args.group not in jobs:
        raise LlmEnergyError(f"no job '{args.group}' in this config (jobs: {', '.join(jobs)})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(jobs[args.group].to_json())


def cmd_estimate(args: argparse.Namespace) -> None:
    import pandas as pd

    from llm_energy.analysis.gpu_hours import estimate
    from llm_energy.measure.plan import plan_study
    from llm_energy.measure.trials import trials_at_most

    if args.allocation_min is not None and not args.allocation_min > 0:
        minutes = f"{args.allocation_min:g}"
        raise ConfigError(f"--allocation-min {minutes}: give a time limit above 0 min")
    at_most = trials_at_most(args.trials_at_most)
    if args.workload_parts is not None and not args.workload_parts > 0:
        raise ConfigError(f"--workload-parts {args.workload_parts:g}: give minutes above 0")
    config = load_configs(args.configfile)
    jobs = plan_study(config)
    from llm_energy.measure.resume import left_notes, read_tables, trials_left

    tables = read_tables(args.measurements)
    measured = pd.concat([table for _, table in tables], ignore_index=True)
    # What the run would measure: the trials its journals leave, and with resume_from_shipped
    # none of a point that a row of the given tables completes, as the workflow's job seeds it.
    seeds = tables if config["resume_from_shipped"] else ()
    wide_again = config["resume_wide_rows"] == "measure_again"
    left = None
    if args.journals or seeds:
        journals = Path(args.journals) if args.journals else None
        left = {
            g: trials_left(plan, journals / g if journals else None, seeds, wide_again)
            for g, plan in jobs.items()
        }
    if left is not None and seeds:
        # Points left although the tables hold a row at their shape: said before the run.
        for g, plan in jobs.items():
            for note in left_notes(plan, seeds, left[g]):
                log(note)
    allocation_s = None if args.allocation_min is None else 60 * args.allocation_min
    lengths = stream_lengths(args)
    table = estimate(jobs, measured, left, allocation_s, lengths, at_most)
    if left is None:
        table = table.drop(columns="points_left")
    # How long each job holds its GPUs, for the run's plan; GPU-hours for the budget.
    at = table.columns.get_loc("estimated_gpu_hours") + 1
    table.insert(at, "estimated_job_min", 60 * table["estimated_gpu_hours"] / table["gpus"])
    # With adaptive trials, at the trials per point the engine's rows took.
    table.insert(at + 1, "trials_per_point", table.pop("trials_per_point"))
    expected_min = 60 * table.pop("expected_gpu_hours") / table["gpus"]
    table.insert(at + 2, "expected_job_min", expected_min)
    # Of that time, the share inside the trials' measurement windows.
    table.insert(at + 3, "share_in_windows", table.pop("share_in_windows"))
    table.insert(at + 4, "longest_trial_min", table.pop("longest_trial_min"))
    if allocation_s is not None:
        # Over allocations of --allocation-min each: every run starts its engine again and
        # leaves unused the time at its end that no trial left fits.
        table.insert(at + 5, "allocations", table.pop("allocations"))
        allocated_min = 60 * table.pop("allocated_gpu_hours") / table["gpus"]
        table.insert(at + 6, "allocated_job_min", allocated_min)
    table = table.drop(columns="longest_trial")
    log(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    known = table["estimated_gpu_hours"].dropna()
    points = f"{table['points'].sum()} points"
    if "points_left" in table:
        points += f", {table['points_left'].sum()} of them left to measure"
    expected = table["expected_job_min"] * table["gpus"]
    weight = expected.where(table["share_in_windows"].notna()).sum()
    # Where no job has time left to spend (every point measured), there is no share to say.
    inside = (table["share_in_windows"] * expected).sum() / weight if weight > 0 else math.nan
    share = "" if math.isnan(inside) else f", {inside:.0%} of their expected time inside windows"
    log(
        f"ESTIMATE (not a measurement): {len(table)} GPU jobs, {points}; "
        f"{known.sum():.2f} GPU-hours for the {len(known)} jobs with measurements to fit{share}"
    )
    if allocation_s is not None:
        never = table[table["allocations"] == float("inf")]["group"].tolist()
        if never:
            log(
                f"{', '.join(never)}: a trial longer than an allocation of "
                f"{args.allocation_min:g} min after the engine start never finishes; give "
                "these jobs longer allocations"
            )
    if args.points:
        from llm_energy.analysis.gpu_hours import point_costs

        if args.points not in jobs:
            raise ConfigError(
                f"--points {args.points}: no such job (the jobs: {', '.join(sorted(jobs))})"
            )
        mine = None if left is None else left[args.points]
        points = point_costs(jobs[args.points], measured, lengths, mine, at_most)
        log(f"\n{args.points}, point by point:")
        log(points.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if args.workload_parts is not None:
        _workload_parts(args, config, measured, tables)


def _workload_parts(args: argparse.Namespace, config: dict, measured: object, tables: list) -> None:
    """The workload estimate's bins in parts of at most ``--workload-parts`` minutes over
    every engine's job, printed, and with ``--workload-parts-dir`` written as layers. The
    parts are planned as their layers measure them: the estimate's family alone, so that no
    other family's points (the replay's batches of its bins) count."""
    from llm_energy.analysis.gpu_hours.parts import (
        LAYER_EXPERIMENTS,
        bin_minutes,
        bin_shares,
        describe_parts,
        measured_bins,
        measured_parts,
        part_layer,
        read_parts,
        total_minutes,
        trace_bin_requests,
        workload_parts,
    )
    from llm_energy.config import validate
    from llm_energy.measure.plan import plan_study

    jobs = plan_study(validate({**config, "only_experiments": list(LAYER_EXPERIMENTS)}))
    by_bin, starts = bin_minutes(jobs, measured)
    if by_bin.empty:
        raise ConfigError(
            "--workload-parts: no job of the configuration measures workload_estimates points "
            "that the measurements can time"
        )
    folder = Path(args.workload_parts_dir) if args.workload_parts_dir else None
    keep: list = []
    if folder is not None and folder.is_dir():
        done = measured_bins(jobs, tables)
        keep = measured_parts(read_parts(folder), done)
    shares = None
    if args.trace_summaries:
        traces = config["experiments"]["workload_traces"]
        shares = bin_shares(by_bin, trace_bin_requests(Path(args.trace_summaries), traces))
    parts = workload_parts(by_bin, starts, args.workload_parts, keep, shares)
    log(f"\nthe workload bins in parts of at most {args.workload_parts:g} min (ESTIMATE):")
    log(describe_parts(parts, starts, args.workload_parts))
    left = [p for p in parts if not p.measured]
    log(
        f"{len(parts)} parts, {len(parts) - len(left)} of them measured; "
        f"{total_minutes(left, starts):.1f} min in all for the others"
    )
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("part*.yaml"):
            stale.unlink()
        for n, part in enumerate(parts, start=1):
            text = part_layer(part, n, len(parts), args.configfile, starts)
            (folder / f"part{n}.yaml").write_text(text)
        log(f"{len(parts)} layers -> {folder}/part1.yaml ... part{len(parts)}.yaml")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """This module's commands, each with its arguments and handler."""
    v = sub.add_parser("validate-config", help="validate config files and count the jobs")
    v.add_argument("configfile", nargs="+")
    v.set_defaults(func=cmd_validate)

    pl = sub.add_parser("plan", help="write the plan of one job")
    pl.add_argument("configfile", nargs="+")
    pl.add_argument("--group", required=True)
    pl.add_argument("--out", required=True)
    pl.set_defaults(func=cmd_plan)

    e = sub.add_parser("estimate-gpu-hours", help="estimate each job's GPU time from measurements")
    e.add_argument("configfile", nargs="+")
    e.add_argument("--measurements", nargs="+", required=True, help="measured tables to fit")
    e.add_argument(
        "--journals",
        help="the jobs' journal folders (results/journal/HARDWARE): estimate only the trials "
        "they leave to measure (with resume_from_shipped in the configuration, the points that "
        "the --measurements tables complete are left out too, as the workflow's jobs seed them)",
    )
    e.add_argument(
        "--traces",
        default="results/data/traces",
        help="folder of prepared traces (as measure takes it): a request stream with no "
        "measured time per request is timed by the static batches of the requests it draws "
        "from them, where they are prepared, else at its length caps",
    )
    e.add_argument(
        "--task-lengths",
        default="results/data/task_lengths",
        help="folder of the classical tasks' request lengths (as measure takes it), for their "
        "streams as --traces for the traces'",
    )
    e.add_argument(
        "--allocation-min",
        type=float,
        help="the time limit of one run of a job (a Slurm job's runtime, a lent machine's "
        "call), in minutes: also say how many runs each job takes and its minutes over them",
    )
    e.add_argument(
        "--trials-at-most",
        type=int,
        metavar="N",
        help="as measure takes it: no point costs more than N trials in all (default: the "
        "environment's LLM_ENERGY_TRIALS_AT_MOST, else the trials its engine's rows took, "
        "within the protocol's min_trials and max_trials)",
    )
    e.add_argument(
        "--points",
        metavar="GROUP",
        help="also list one job's points: whether each fits, one trial's minutes, the trials "
        "expected and their minutes (with --journals or resume_from_shipped, the trials each "
        "point has left and only their minutes)",
    )
    e.add_argument(
        "--workload-parts",
        type=float,
        metavar="MIN",
        help="split the workload estimate's bins into parts of at most MIN minutes over every "
        "engine's job (engine starts included), so that each part is measured on both engines "
        "in one machine session",
    )
    e.add_argument(
        "--workload-parts-dir",
        metavar="DIR",
        help="write each part as a configuration layer DIR/partN.yaml "
        "(experiments.workload_estimates.bins); the parts already in DIR whose every bin the "
        "measurements complete on every job keep their bins and come first",
    )
    e.add_argument(
        "--trace-summaries",
        metavar="DIR",
        help="with --workload-parts: the traces' summaries (DIR/TRACE.json, as "
        "resources/summaries/traces/ ships them); the bins then go into parts by how much of "
        "the traces' estimated time they hold per minute of measuring, the most first, instead "
        "of in the traces' order",
    )
    e.set_defaults(func=cmd_estimate)
