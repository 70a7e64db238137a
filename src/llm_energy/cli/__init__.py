"""Command line: ``llm-energy measure|plan|validate-config|aggregate|figure|table``.

Each Snakemake rule runs one of these commands, and the same command works by hand.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from llm_energy.errors import ConfigError, LlmEnergyError, first_line

if TYPE_CHECKING:
    from llm_energy.analysis.flops import Architecture
    from llm_energy.analysis.summaries import TraceSummary
    from llm_energy.measure.job import JobPlan


def _log(msg: str) -> None:
    print(msg, flush=True)


def _read_plan(path: Path) -> JobPlan:
    from llm_energy.measure.job import JobPlan

    try:
        return JobPlan.from_json(path.read_text())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LlmEnergyError(f"cannot read plan {path}: {exc}") from exc


def cmd_measure(args: argparse.Namespace) -> None:
    from llm_energy.measure.provenance import utc_now
    from llm_energy.measure.runner import run_job
    from llm_energy.measure.stop import Deadline, deadline_from

    started_utc = utc_now("milliseconds")  # the run's start, for its record in the journal
    plan_path = Path(args.plan)
    plan = _read_plan(plan_path)
    journal = Path(args.journal) if args.journal else Path(args.out).with_suffix(".journal")
    deadline: Deadline | None = None
    expected: dict[tuple, float] = {}

    def job(measure: bool = True) -> None:
        run_job(
            plan,
            Path(args.out),
            journal,
            log=_log,
            traces_dir=Path(args.traces),
            tasks_dir=Path(args.task_lengths),
            pg19_path=Path(args.pg19),
            measure=measure,
            deadline=deadline,
            expected_trial_s=expected,
        )

    if args.from_journal:
        # What a stopped job measured, as its table: nothing is measured, no engine starts.
        job(measure=False)
        return
    from llm_energy.measure import attempts, runs

    # A retry of a job that failed on its input stops at once with that failure.
    plan_text = plan_path.read_text()
    attempts.check(journal, plan_text, args.attempt)
    try:
        deadline = deadline_from(args.stop_by)
        if deadline is not None and args.time_model_rows:
            lengths = _stream_lengths(args)
            expected.update(_expected_trial_seconds(plan, args.time_model_rows, lengths))
        with runs.recorded(journal, started_utc, args.attempt, deadline):
            _measure(args, plan, plan_path, journal, job)
    except attempts.NOT_RETRIED as exc:
        attempts.record(journal, plan_text, args.attempt, exc)
        raise


def _stream_lengths(args: argparse.Namespace):
    """The prepared lengths that request streams draw from (``--traces``, ``--task-lengths``),
    for the estimate of a stream with no measured time per request."""
    from llm_energy.inputs.prompts import TraceLengths

    return TraceLengths(Path(args.traces), Path(args.task_lengths))


def _expected_trial_seconds(plan: JobPlan, tables: list[str], lengths=None) -> dict[tuple, float]:
    """Each point's first trial by the plan's estimate, fitted to ``tables`` (a request stream
    without a measured time per request by its requests' ``lengths``), for the deadline."""
    import pandas as pd

    from llm_energy.analysis.gpu_hours import first_trial_seconds
    from llm_energy.errors import InputError

    # A folder stands for its job tables (the workflow names the hardware's shipped ones).
    paths = [
        q for t in map(Path, tables) for q in (sorted(t.glob("*.parquet")) if t.is_dir() else [t])
    ]
    if not paths:
        where = ", ".join(tables)
        _log(f"no estimate of the points' trials for the job's deadline: no job tables in {where}")
        return {}
    try:
        rows = pd.concat([pd.read_parquet(t) for t in paths], ignore_index=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"--time-model-rows: {first_line(exc)}") from exc
    try:
        seconds, basis = first_trial_seconds(plan, rows, lengths)
    except KeyError as exc:
        raise InputError(
            f"--time-model-rows: the tables lack the column {exc}; give job tables, such as "
            "resources/measurements/h200/*.parquet"
        ) from exc
    _log(
        f"the plan's estimate of each point's first trial, for the job's deadline: {basis}"
        if seconds
        else f"no estimate of the points' trials for the job's deadline: {basis}"
    )
    return seconds


def _measure(args: argparse.Namespace, plan: JobPlan, plan_path: Path, journal: Path, job) -> None:
    from llm_energy import backends

    backends.require(plan.engine.backend, plan.engine.name)
    paths = (plan_path, args.out, journal, args.traces, args.task_lengths, args.pg19)

    def claim_gpus() -> None:
        if plan.device.startswith("cuda"):
            from llm_energy.measure.gpu_claims import choose_gpus, lock_dir
            from llm_energy.measure.host import claim_host

            claim_host(lock_dir(), plan.host_shared, _log)
            choose_gpus(plan.engine.tensor_parallel_size, _log)

    def run() -> None:
        _log(
            "rerun by hand: llm-energy measure --plan {} --out {} --journal {} --traces {} "
            "--task-lengths {} --pg19 {}".format(*(shlex.quote(str(p)) for p in paths))
        )
        job()

    from llm_energy.measure import stop

    # SIGTERM (Slurm's preemption, requeue, time limit) stops the job at the next safe place.
    with stop.on_signals():
        backends.launch(plan, args.argv, run, claim_gpus)


def cmd_seed_journal(args: argparse.Namespace) -> None:
    from llm_energy.measure.resume import seed_journal

    plan = _read_plan(Path(args.plan))
    copied = seed_journal(plan, [Path(t) for t in args.tables], Path(args.journal))
    _log(f"job {plan.group}: {copied} measured points copied into the journal {args.journal}")


def _load(config_files: list[str]) -> dict:
    from llm_energy.config import load_config

    return load_config(*config_files)


def cmd_validate(args: argparse.Namespace) -> None:
    from llm_energy.measure.plan import plan_study

    jobs = plan_study(_load(args.configfile))
    points = sum(len(j.points) for j in jobs.values())
    _log(f"config is valid: {len(jobs)} measurement jobs, {points} points")


def cmd_plan(args: argparse.Namespace) -> None:
    from llm_energy.measure.plan import plan_study

    jobs = plan_study(_load(args.configfile))
    if args.group not in jobs:
        raise LlmEnergyError(f"no job '{args.group}' in this config (jobs: {', '.join(jobs)})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(jobs[args.group].to_json())


def cmd_aggregate(args: argparse.Namespace) -> None:
    from llm_energy.analysis import aggregate

    table = aggregate.combine(Path(p) for p in args.inputs)
    if args.hardware and len(table):
        other = table["hardware"] != args.hardware
        if other.any():
            labels = ", ".join(sorted(table.loc[other, "hardware"].unique()))
            _log(f"left out {int(other.sum())} rows of other hardware labels ({labels})")
        table = table[~other].reset_index(drop=True)
    aggregate.write(table, Path(args.out), Path(args.csv) if args.csv else None)
    _log(f"{len(table)} rows from {len(args.inputs)} tables -> {args.out}")


def _drawn(name: str, kind: str):
    from llm_energy.families import outputs

    drawn = {n: o for n, o in outputs().items() if o.kind == kind and o.draw is not None}
    if name not in drawn:
        raise LlmEnergyError(f"unknown {kind} '{name}' (known: {', '.join(drawn)})")
    return drawn[name]


def cmd_figure(args: argparse.Namespace) -> None:
    import pandas as pd

    from llm_energy.figures.style import save

    fig = _drawn(args.name, "figure").make(pd.read_parquet(args.measurements))
    save(fig, Path(args.out), dpi=args.dpi)
    _log(f"{args.name} -> {args.out}")


def cmd_table(args: argparse.Namespace) -> None:
    import pandas as pd

    table = _drawn(args.name, "table").make(pd.read_parquet(args.measurements))
    _write_csv(table, args.out)
    _log(f"{args.name}: {len(table)} rows -> {args.out}")


def cmd_caption(args: argparse.Namespace) -> None:
    import pandas as pd

    from llm_energy.families import outputs
    from llm_energy.figures.provenance import caption, files_holding, measurements
    from llm_energy.measure.store import write_atomic

    path = Path(args.rows)
    rows = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    wanted = outputs()[args.output].rows if args.output else None
    if wanted is not None and len(rows):
        rows = rows[wanted.mask(rows)]
    if "measured" in rows:  # a workload estimate's bins: the measured ones
        rows = rows[rows["measured"].astype(bool)]
    rows = measurements(rows)
    configs = [*args.configfiles, *(["shipped_measurements=true"] if args.shipped else [])]
    text = caption(rows, files_holding(rows, args.tables), configs, args.hardware)
    write_atomic(Path(args.out), lambda tmp: Path(tmp).write_text(text))
    _log(f"caption of {args.output or args.rows}: {len(rows)} rows -> {args.out}")


def cmd_claims(args: argparse.Namespace) -> None:
    import pandas as pd

    from llm_energy.analysis.claims import (
        claims_table,
        markdown,
        restructuredtext,
        workload_claims,
    )

    table = claims_table(pd.read_parquet(args.measurements))
    if args.workload_bins:
        bins = pd.read_csv(args.workload_bins, dtype={"machine_session": str})
        table = pd.concat([table, workload_claims(bins)], ignore_index=True)
    _write_csv(table, args.out)
    Path(args.markdown).write_text(markdown(table, args.hardware))
    if args.rst:
        Path(args.rst).write_text(restructuredtext(table, args.hardware))
    counts = table["verdict"].str.split(":").str[0].value_counts().to_dict()
    _log(f"{len(table)} comparisons of the eight claims -> {args.out}, {args.markdown}: {counts}")


def cmd_claims_docs(args: argparse.Namespace) -> None:
    from llm_energy.analysis.claims import (
        docs_block,
        markdown,
        replace_block,
        shipped_claims,
        shipped_rows,
    )

    root, page = Path(args.root), Path(args.page)
    text = page.read_text()
    for configfile in args.configfile:
        config = _load([configfile])
        hardware = config["hardware"]
        table = shipped_claims(config, root)
        block = docs_block(table, shipped_rows(root, hardware), hardware)
        text = replace_block(text, f"claims:{hardware}", block)
        out = Path(args.tables) / f"{hardware}.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(markdown(table, hardware))
        _log(f"{configfile}: {len(table)} comparisons -> {page} (claims:{hardware}), {out}")
    page.write_text(text)


def cmd_estimate(args: argparse.Namespace) -> None:
    import pandas as pd

    from llm_energy.analysis.gpu_hours import estimate
    from llm_energy.measure.plan import plan_study

    if args.allocation_min is not None and not args.allocation_min > 0:
        minutes = f"{args.allocation_min:g}"
        raise ConfigError(f"--allocation-min {minutes}: give a time limit above 0 min")
    if args.workload_parts is not None and not args.workload_parts > 0:
        raise ConfigError(f"--workload-parts {args.workload_parts:g}: give minutes above 0")
    config = _load(args.configfile)
    jobs = plan_study(config)
    from llm_energy.measure.resume import read_tables, trials_left

    tables = read_tables(args.measurements)
    measured = pd.concat([table for _, table in tables], ignore_index=True)
    # What the run would measure: the trials its journals leave, and with resume_from_shipped
    # none of a point that a row of the given tables completes, as the workflow's job seeds it.
    seeds = tables if config["resume_from_shipped"] else ()
    left = None
    if args.journals or seeds:
        journals = Path(args.journals) if args.journals else None
        left = {
            g: trials_left(plan, journals / g if journals else None, seeds)
            for g, plan in jobs.items()
        }
    allocation_s = None if args.allocation_min is None else 60 * args.allocation_min
    lengths = _stream_lengths(args)
    table = estimate(jobs, measured, left, allocation_s, lengths)
    if left is None:
        table = table.drop(columns="points_left")
    # How long each job holds its GPUs, for the run's plan; GPU-hours for the budget.
    at = table.columns.get_loc("estimated_gpu_hours") + 1
    table.insert(at, "estimated_job_min", 60 * table["estimated_gpu_hours"] / table["gpus"])
    # With adaptive trials, at the trials per point the engine's rows took.
    table.insert(at + 1, "trials_per_point", table.pop("trials_per_point"))
    expected_min = 60 * table.pop("expected_gpu_hours") / table["gpus"]
    table.insert(at + 2, "expected_job_min", expected_min)
    table.insert(at + 3, "longest_trial_min", table.pop("longest_trial_min"))
    if allocation_s is not None:
        # Over allocations of --allocation-min each: every run starts its engine again and
        # loses the trial its time limit stops.
        table.insert(at + 4, "allocations", table.pop("allocations"))
        allocated_min = 60 * table.pop("allocated_gpu_hours") / table["gpus"]
        table.insert(at + 5, "allocated_job_min", allocated_min)
    table = table.drop(columns="longest_trial")
    _log(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    known = table["estimated_gpu_hours"].dropna()
    points = f"{table['points'].sum()} points"
    if "points_left" in table:
        points += f", {table['points_left'].sum()} of them left to measure"
    _log(
        f"ESTIMATE (not a measurement): {len(table)} GPU jobs, {points}; "
        f"{known.sum():.2f} GPU-hours for the {len(known)} jobs with measurements to fit"
    )
    if allocation_s is not None:
        never = table[table["allocations"] == float("inf")]["group"].tolist()
        if never:
            _log(
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
        points = point_costs(jobs[args.points], measured, lengths)
        _log(f"\n{args.points}, point by point:")
        _log(points.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
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
    _log(f"\nthe workload bins in parts of at most {args.workload_parts:g} min (ESTIMATE):")
    _log(describe_parts(parts, starts, args.workload_parts))
    left = [p for p in parts if not p.measured]
    _log(
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
        _log(f"{len(parts)} layers -> {folder}/part1.yaml ... part{len(parts)}.yaml")


def cmd_prepare_trace(args: argparse.Namespace) -> None:
    from llm_energy.analysis.summaries import sha256_file
    from llm_energy.inputs.traces import load_trace, trace_path
    from llm_energy.measure.store import write_parquet_atomic

    path = trace_path(args.name, args.mirror or None, Path(args.cache))
    df = load_trace(args.name, path)
    df.attrs["source_sha256"] = sha256_file(path)
    write_parquet_atomic(df, Path(args.out))
    failed = df.attrs.get("failed_dropped", 0)
    _log(f"{args.name}: {len(df)} requests from {path} ({failed} failed requests dropped)")
    if "arrival_s" not in df.columns:
        _log(f"{args.name}: lengths only, {df.attrs['arrivals_note']}")


def _summarise_prepared(path: Path, input_bins: list[int], output_bins: list[int]) -> TraceSummary:
    """The summary of a prepared trace (NAME.parquet), with the file's name and sha256."""
    import pandas as pd

    from llm_energy.analysis.summaries import run_provenance, sha256_file, summarise_trace

    provenance = {"prepared_trace": path.name, "prepared_sha256": sha256_file(path)}
    return summarise_trace(
        path.stem,
        pd.read_parquet(path),
        input_bins,
        output_bins,
        {**provenance, **run_provenance()},
    )


def _trace_summaries(
    paths: list[str], input_bins: list[int], output_bins: list[int]
) -> dict[str, TraceSummary]:
    """Trace name -> summary, from trace summaries (NAME.json) or prepared traces, which are
    summarised here with these bins."""
    from llm_energy.analysis.summaries import read_trace_summary

    summaries = {}
    for p in map(Path, paths):
        if p.suffix == ".json":
            summary = read_trace_summary(p)
            summaries[summary.trace] = summary
        else:
            summaries[p.stem] = _summarise_prepared(p, input_bins, output_bins)
    return summaries


def cmd_trace_summary(args: argparse.Namespace) -> None:
    from llm_energy.analysis.summaries import write_trace_summary

    summary = _summarise_prepared(Path(args.trace), args.input_bins, args.output_bins)
    write_trace_summary(summary, Path(args.out))
    _log(
        f"{summary.trace}: {summary.requests} requests, {len(summary.binnings)} binnings, "
        f"{len(summary.quantiles['input'])} quantiles per side -> {args.out}"
    )


def _write_csv(table, out: str) -> None:
    from llm_energy.measure.store import write_csv_atomic

    write_csv_atomic(table, out, float_format="%.10g")


def cmd_trace_tables(args: argparse.Namespace) -> None:
    from llm_energy.analysis.paper import TRACE_TABLES
    from llm_energy.figures.traces import (
        table_lengths_beside_paper,
        table_trace_bins,
        table_trace_lengths,
    )
    from llm_energy.inputs.traces import paper_bins

    traces = _trace_summaries(args.traces, args.input_bins, args.output_bins)
    _write_csv(table_trace_lengths(traces), args.lengths)
    for name in ("table1", "table2"):
        out = getattr(args, name)
        if out:
            _write_csv(table_lengths_beside_paper(traces, TRACE_TABLES[name]), out)
    variants = {
        "configured": (tuple(args.input_bins), tuple(args.output_bins)),
        "paper_printed": paper_bins("printed"),
        "paper_formula": paper_bins("formula"),
    }
    _write_csv(table_trace_bins(traces, variants), args.bins)
    _log(f"trace tables for {', '.join(traces)} -> {args.lengths}, {args.bins}")


def cmd_trace_figure(args: argparse.Namespace) -> None:
    from llm_energy.figures.style import save
    from llm_energy.figures.traces import fig7_trace_cdf

    ((name, summary),) = _trace_summaries([args.trace], args.input_bins, args.output_bins).items()
    title = f"{name.replace('_', ' ')}: real and binned request lengths (Fig 7)"
    fig = fig7_trace_cdf(summary, args.input_bins, args.output_bins, title)
    save(fig, Path(args.out), dpi=args.dpi)
    _log(f"fig7 ({name}) -> {args.out}")


def cmd_prepare_task(args: argparse.Namespace) -> None:
    from llm_energy.inputs.texts import TASKS, sample_task
    from llm_energy.measure.store import write_parquet_atomic

    by_role = {source.role: name for name, source in TASKS.items()}
    dataset = by_role.get(args.task, args.task)
    df = sample_task(dataset, args.mirror or None, n=args.samples, seed=args.seed)
    write_parquet_atomic(df, Path(args.out))
    note = df.attrs.get("note", "")
    _log(f"{args.task} ({dataset}): {len(df)} examples -> {args.out} {note}".rstrip())


def cmd_task_table(args: argparse.Namespace) -> None:
    import pandas as pd

    from llm_energy.analysis.summaries import task_table
    from llm_energy.inputs.texts import load_tokenizer, tokenizer_label

    mirror = args.mirror or None
    samples = [pd.read_parquet(p) for p in args.tasks]
    table = task_table(samples, load_tokenizer(mirror), tokenizer_label(mirror))
    _write_csv(table, args.out)
    _log(f"Table 3 for {len(table)} tasks -> {args.out}")


def cmd_table3(args: argparse.Namespace) -> None:
    import pandas as pd

    from llm_energy.analysis.summaries import task_table_beside_paper

    table = task_table_beside_paper(pd.read_csv(args.summary))
    _write_csv(table, args.out)
    _log(f"Table 3 for {len(table)} tasks, beside the paper's -> {args.out}")


def cmd_task_lengths(args: argparse.Namespace) -> None:
    import pandas as pd

    from llm_energy.inputs.texts import load_tokenizer, task_lengths, tokenizer_label
    from llm_energy.measure.store import write_parquet_atomic

    mirror = args.mirror or None
    table = task_lengths(
        pd.read_parquet(args.sample),
        load_tokenizer(mirror),
        mirror,
        tokenizer_name=tokenizer_label(mirror),
        fallback_output_tokens=args.fallback_output_tokens,
    )
    write_parquet_atomic(table, Path(args.out))
    _log(
        f"{table.attrs['task']} ({table.attrs['dataset']}): {len(table)} requests, input tokens "
        f"mean {table['input_tokens'].mean():.1f} max {table['input_tokens'].max()}, output "
        f"tokens mean {table['output_tokens'].mean():.1f} max {table['output_tokens'].max()} "
        f"({table.attrs['outputs']}); tokenizer {table.attrs['tokenizer']} -> {args.out}"
    )


def cmd_prepare_pg19(args: argparse.Namespace) -> None:
    import pandas as pd

    from llm_energy.inputs.texts import load_tokenizer, pg19_tokens, tokenizer_label
    from llm_energy.measure.store import write_parquet_atomic

    mirror = args.mirror or None
    ids = pg19_tokens(mirror, load_tokenizer(mirror), args.tokens, min_tokens=args.min_tokens)
    table = pd.DataFrame({"token_id": pd.array(ids, dtype="int64")})
    table.attrs["tokenizer"] = tokenizer_label(mirror)
    write_parquet_atomic(table, Path(args.out))
    _log(
        f"pg19: {len(ids)} tokens ({args.tokens} wanted, {args.min_tokens} needed) with "
        f"{table.attrs['tokenizer']} -> {args.out}"
    )


def _pairs(items: list[str] | None, flag: str) -> dict[str, str]:
    pairs = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise LlmEnergyError(f"{flag} takes NAME=VALUE, not {item!r}")
        pairs[name] = value
    return pairs


def cmd_model_summary(args: argparse.Namespace) -> None:
    from llm_energy.analysis.summaries import (
        architecture_summary,
        run_provenance,
        write_architecture_summary,
    )
    from llm_energy.analysis.workload_estimate import model_config_path
    from llm_energy.measure.job import ModelSpec

    spec = ModelSpec(args.name, args.hub_id, config=args.config or None)
    path = model_config_path(spec, args.models_mirror or None)
    summary = architecture_summary(args.name, args.hub_id, path, run_provenance())
    write_architecture_summary(summary, Path(args.out))
    _log(f"{args.name} ({args.hub_id}): architecture of {path} -> {args.out}")


def _architectures(args: argparse.Namespace) -> dict[str, Architecture]:
    """Model name -> Architecture: from architecture summaries (--architecture) or from each
    model's config.json (--model, --model-config, --models-mirror)."""
    from llm_energy.analysis.summaries import read_architecture_summary
    from llm_energy.analysis.workload_estimate import load_architecture
    from llm_energy.measure.job import ModelSpec

    hubs, configs = _pairs(args.model, "--model"), _pairs(args.model_config, "--model-config")
    summaries = _pairs(args.architecture, "--architecture")
    unknown = sorted(set(configs) - set(hubs))
    if unknown:
        raise LlmEnergyError(f"--model-config names {', '.join(unknown)}, not given by --model")
    twice = sorted(set(hubs) & set(summaries))
    if twice:
        raise LlmEnergyError(f"{', '.join(twice)}: given by both --model and --architecture")
    if not hubs and not summaries:
        raise LlmEnergyError("name the models to estimate with --architecture or --model")
    architectures = {
        name: load_architecture(ModelSpec(name, hub, config=configs.get(name)), args.models_mirror)
        for name, hub in hubs.items()
    }
    for name, path in summaries.items():
        architectures[name] = read_architecture_summary(path).architecture
    return architectures


def cmd_workload_energy(args: argparse.Namespace) -> None:
    import pandas as pd

    from llm_energy.analysis.ideal import gpu
    from llm_energy.analysis.workload_estimate import estimate_workloads, workload_totals

    architectures = _architectures(args)
    measurements = pd.read_parquet(args.measurements)
    engines = args.engines or sorted(set(measurements["engine"].astype(str)))
    for engine in engines:
        for model in architectures:
            rows = measurements[
                (measurements["engine"] == engine) & (measurements["model"] == model)
            ]
            if rows.empty:
                _log(f"engine {engine}, model {model}: no measurements; left out (not measured)")
    summaries = _trace_summaries(args.traces, args.input_bins, args.output_bins)
    bins = estimate_workloads(
        {name: s.binning(args.input_bins, args.output_bins) for name, s in summaries.items()},
        measurements,
        architectures,
        gpu(args.gpu),
        engines=engines,
        models=list(architectures),
        missing=args.missing_bins,
    )
    totals = workload_totals(bins)
    _write_csv(bins, args.bins_out)
    _write_csv(totals, args.totals_out)
    for t in totals.itertuples():
        state = "" if t.complete else f" INCOMPLETE: {t.requests_covered_fraction:.1%} of requests"
        _log(
            f"{t.trace} / {t.engine} / {t.model}: {t.energy_j:.4g} J "
            f"(ideal, sparse FLOPs: {t.ideal_flops_sparse_j:.4g} J){state}"
        )
    _log(f"{len(bins)} bin rows -> {args.bins_out}; {len(totals)} totals -> {args.totals_out}")


def cmd_workload_table(args: argparse.Namespace) -> None:
    import pandas as pd

    from llm_energy.figures.workload_estimate import table4_energy_over_ideal

    table = table4_energy_over_ideal(pd.read_csv(args.totals))
    _write_csv(table, args.out)
    _log(f"Table 4: {len(table)} rows -> {args.out}")


def cmd_workload_figure(args: argparse.Namespace) -> None:
    import pandas as pd

    from llm_energy.figures.style import save
    from llm_energy.figures.workload_estimate import fig1_workload_energy

    bins = pd.read_csv(args.bins)
    if bins.empty:
        raise LlmEnergyError(f"{args.bins}: no workload estimate rows (no engine measured)")
    save(fig1_workload_energy(bins, args.engines), Path(args.out), dpi=args.dpi)
    _log(f"fig1 -> {args.out}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llm-energy", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

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
    sj.set_defaults(func=cmd_seed_journal)

    v = sub.add_parser("validate-config", help="validate config files and count the jobs")
    v.add_argument("configfile", nargs="+")
    v.set_defaults(func=cmd_validate)

    pl = sub.add_parser("plan", help="write the plan of one job")
    pl.add_argument("configfile", nargs="+")
    pl.add_argument("--group", required=True)
    pl.add_argument("--out", required=True)
    pl.set_defaults(func=cmd_plan)

    a = sub.add_parser("aggregate", help="combine job tables into one")
    a.add_argument("inputs", nargs="+")
    a.add_argument("--out", required=True)
    a.add_argument("--csv")
    a.add_argument("--hardware", help="keep only the rows of this hardware label")
    a.set_defaults(func=cmd_aggregate)

    f = sub.add_parser("figure", help="draw one paper figure from the measurements table")
    f.add_argument("name")
    f.add_argument("--measurements", required=True)
    f.add_argument("--out", required=True)
    f.add_argument("--dpi", type=int, default=150)
    f.set_defaults(func=cmd_figure)

    t = sub.add_parser("table", help="write one paper table from the measurements table")
    t.add_argument("name")
    t.add_argument("--measurements", required=True)
    t.add_argument("--out", required=True)
    t.set_defaults(func=cmd_table)
    pt = sub.add_parser("prepare-trace", help="load and check one request trace")
    pt.add_argument("name", help="burstgpt, azure_conversation or azure_code")
    pt.add_argument("--out", required=True)
    pt.add_argument("--mirror", help="mirror folder laid out like shared/data")
    pt.add_argument("--cache", default="results/data/downloads", help="download folder")
    pt.set_defaults(func=cmd_prepare_trace)

    ts = sub.add_parser(
        "trace-summary", help="the aggregates of a trace that Tables 1, 2, 4 and Figs 1, 7 use"
    )
    ts.add_argument("trace", help="prepared trace (NAME.parquet of prepare-trace)")
    ts.add_argument("--out", required=True, help="summary to write (NAME.json)")
    ts.add_argument("--input-bins", type=int, nargs="+", required=True)
    ts.add_argument("--output-bins", type=int, nargs="+", required=True)
    ts.set_defaults(func=cmd_trace_summary)

    tt = sub.add_parser("trace-tables", help="Tables 1 and 2, and requests dropped by binning")
    tt.add_argument(
        "traces", nargs="+", help="trace summaries (NAME.json) or prepared traces (NAME.parquet)"
    )
    tt.add_argument("--lengths", required=True)
    tt.add_argument("--bins", required=True)
    tt.add_argument("--table1", help="Table 1 (BurstGPT) beside the paper's values")
    tt.add_argument("--table2", help="Table 2 (the Azure traces) beside the paper's values")
    tt.add_argument("--input-bins", type=int, nargs="+", required=True)
    tt.add_argument("--output-bins", type=int, nargs="+", required=True)
    tt.set_defaults(func=cmd_trace_tables)

    tf = sub.add_parser("trace-figure", help="Fig 7: real against binned lengths of one trace")
    tf.add_argument(
        "--trace", required=True, help="trace summary (NAME.json) or prepared trace (NAME.parquet)"
    )
    tf.add_argument("--out", required=True)
    tf.add_argument("--input-bins", type=int, nargs="+", required=True)
    tf.add_argument("--output-bins", type=int, nargs="+", required=True)
    tf.add_argument("--dpi", type=int, default=150)
    tf.set_defaults(func=cmd_trace_figure)

    pk = sub.add_parser("prepare-task", help="sample the examples of one classical task")
    pk.add_argument("task", help="classification, translation, summarization or generation")
    pk.add_argument("--out", required=True)
    pk.add_argument("--mirror", help="mirror folder laid out like shared/data")
    pk.add_argument("--samples", type=int, default=1024)
    pk.add_argument("--seed", type=int, default=0)
    pk.set_defaults(func=cmd_prepare_task)

    tk = sub.add_parser("task-table", help="Table 3: token statistics of the classical tasks")
    tk.add_argument("tasks", nargs="+", help="prepared tasks (TASK.parquet)")
    tk.add_argument("--out", required=True)
    tk.add_argument("--mirror", help="mirror folder holding tokenizers/llama3")
    tk.set_defaults(func=cmd_task_table)

    t3 = sub.add_parser("table3", help="Table 3 beside the paper's values, from its summary")
    t3.add_argument("summary", help="token statistics written by task-table")
    t3.add_argument("--out", required=True)
    t3.set_defaults(func=cmd_table3)

    tl = sub.add_parser("task-lengths", help="request lengths of a classical task's examples")
    tl.add_argument("sample", help="prepared task (TASK.parquet of prepare-task)")
    tl.add_argument("--out", required=True)
    tl.add_argument("--mirror", help="mirror folder laid out like shared/data")
    tl.add_argument(
        "--fallback-output-tokens",
        type=int,
        help="output length of examples whose reference target is missing (default: an error)",
    )
    tl.set_defaults(func=cmd_task_lengths)

    pg = sub.add_parser("prepare-pg19", help="token ids of the PG-19 books, for pg19 prompts")
    pg.add_argument("--out", required=True)
    pg.add_argument("--tokens", type=int, required=True, help="tokens to keep at most")
    pg.add_argument("--min-tokens", type=int, default=1, help="fewer than this is an error")
    pg.add_argument("--mirror", help="mirror folder laid out like shared/data")
    pg.set_defaults(func=cmd_prepare_pg19)

    we = sub.add_parser(
        "workload-energy", help="binned energy of the traces' requests against the ideal"
    )
    we.add_argument("--measurements", required=True, help="aggregated measurements table")
    we.add_argument(
        "--traces",
        nargs="+",
        required=True,
        help="trace summaries (NAME.json) or prepared traces (NAME.parquet)",
    )
    we.add_argument("--input-bins", type=int, nargs="+", required=True)
    we.add_argument("--output-bins", type=int, nargs="+", required=True)
    we.add_argument("--engines", nargs="+", help="engines to estimate (default: all measured)")
    we.add_argument(
        "--architecture",
        action="append",
        metavar="NAME=PATH",
        help="model to estimate, by its architecture summary (model-summary)",
    )
    we.add_argument(
        "--model", action="append", metavar="NAME=HUB_ID", help="model to estimate, by hub id"
    )
    we.add_argument(
        "--model-config", action="append", metavar="NAME=PATH", help="local config.json of a model"
    )
    we.add_argument("--models-mirror", help="folder holding ORG__NAME/config.json")
    we.add_argument(
        "--gpu",
        required=True,
        help="hardware table key of the ideal (llm_energy/analysis/hardware.yaml)",
    )
    we.add_argument("--missing-bins", choices=["error", "incomplete"], default="error")
    we.add_argument("--bins-out", required=True, help="per-bin CSV")
    we.add_argument("--totals-out", required=True, help="per trace, engine and model CSV")
    we.set_defaults(func=cmd_workload_energy)

    ms = sub.add_parser(
        "model-summary", help="a model's architecture (config.json) as the FLOP count uses it"
    )
    ms.add_argument("name", help="the model's key in the configuration")
    ms.add_argument("--hub-id", required=True)
    ms.add_argument("--config", help="local config.json that overrides the hub / mirror copy")
    ms.add_argument("--models-mirror", help="folder holding ORG__NAME/config.json")
    ms.add_argument("--out", required=True, help="summary to write (MODEL.json)")
    ms.set_defaults(func=cmd_model_summary)

    wt = sub.add_parser("workload-table", help="Table 4: estimated energy over the ideal")
    wt.add_argument("--totals", required=True, help="totals CSV of workload-energy")
    wt.add_argument("--out", required=True)
    wt.set_defaults(func=cmd_workload_table)

    wf = sub.add_parser("workload-figure", help="Fig 1: each trace's energy per engine and ideal")
    wf.add_argument("--bins", required=True, help="per-bin CSV of workload-energy")
    wf.add_argument("--engines", nargs="+", help="bars in this order; unmeasured ones marked")
    wf.add_argument("--out", required=True)
    wf.add_argument("--dpi", type=int, default=150)
    wf.set_defaults(func=cmd_workload_figure)

    ca = sub.add_parser("caption", help="where an output's rows come from, for its caption")
    ca.add_argument("--rows", required=True, help="measurements table (or workload bins CSV)")
    ca.add_argument("--output", help="the output whose rows to describe (default: all rows)")
    ca.add_argument("--hardware", required=True)
    ca.add_argument("--configfiles", nargs="*", default=[])
    ca.add_argument("--shipped", action="store_true", help="rows from the shipped tables")
    ca.add_argument("--tables", nargs="*", default=[], help="the job tables the rows came from")
    ca.add_argument("--out", required=True)
    ca.set_defaults(func=cmd_caption)

    cl = sub.add_parser("claims", help="the study's eight claims, computed from the rows")
    cl.add_argument("--measurements", required=True)
    cl.add_argument("--workload-bins", help="workload_energy_bins.csv, for claim 8")
    cl.add_argument("--hardware", required=True)
    cl.add_argument("--out", required=True)
    cl.add_argument("--rst", help="the same table as reStructuredText (the report's first page)")
    cl.add_argument("--markdown", required=True)
    cl.set_defaults(func=cmd_claims)

    cd = sub.add_parser(
        "claims-docs",
        help="write the claims computed from the shipped rows into a docs page and tables",
    )
    cd.add_argument("configfile", nargs="+", help="one configuration per hardware label")
    cd.add_argument("--root", default=".", help="the checkout holding resources/")
    cd.add_argument("--page", required=True, help="Markdown page with claims:HARDWARE blocks")
    cd.add_argument("--tables", required=True, help="folder for each label's full table")
    cd.set_defaults(func=cmd_claims_docs)

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
        "--points",
        metavar="GROUP",
        help="also list one job's points: whether each fits, one trial's minutes, the trials "
        "expected and their minutes",
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    from llm_energy.measure.stop import EXIT_STOPPED, Stopped

    try:
        args.func(args)
    except Stopped as exc:
        print(f"llm-energy: {exc}", file=sys.stderr, flush=True)
        return EXIT_STOPPED
    except LlmEnergyError as exc:
        print(f"llm-energy: error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
