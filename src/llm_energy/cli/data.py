"""The data stage's commands: the request traces, the classical tasks, PG-19 and the model
summaries, with the tables and figure drawn from them alone (Tables 1 to 3, Fig 7)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from llm_energy.cli.common import log, write_csv

if TYPE_CHECKING:
    from llm_energy.analysis.summaries import TraceSummary


def cmd_prepare_trace(args: argparse.Namespace) -> None:
    from llm_energy.analysis.summaries import sha256_file
    from llm_energy.inputs.traces import load_trace, trace_path
    from llm_energy.measure.store import write_parquet_atomic

    path = trace_path(args.name, args.mirror or None, Path(args.cache))
    df = load_trace(args.name, path)
    df.attrs["source_sha256"] = sha256_file(path)
    write_parquet_atomic(df, Path(args.out))
    failed = df.attrs.get("failed_dropped", 0)
    log(f"{args.name}: {len(df)} requests from {path} ({failed} failed requests dropped)")
    if "arrival_s" not in df.columns:
        log(f"{args.name}: lengths only, {df.attrs['arrivals_note']}")


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


def trace_summaries(
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
    log(
        f"{summary.trace}: {summary.requests} requests, {len(summary.binnings)} binnings, "
        f"{len(summary.quantiles['input'])} quantiles per side -> {args.out}"
    )


def cmd_trace_tables(args: argparse.Namespace) -> None:
    from llm_energy.analysis.paper import TRACE_TABLES
    from llm_energy.figures.traces import (
        table_lengths_beside_paper,
        table_trace_bins,
        table_trace_lengths,
    )
    from llm_energy.inputs.traces import paper_bins

    traces = trace_summaries(args.traces, args.input_bins, args.output_bins)
    write_csv(table_trace_lengths(traces), args.lengths)
    for name in ("table1", "table2"):
        out = getattr(args, name)
        if out:
            write_csv(table_lengths_beside_paper(traces, TRACE_TABLES[name]), out)
    variants = {
        "configured": (tuple(args.input_bins), tuple(args.output_bins)),
        "paper_printed": paper_bins("printed"),
        "paper_formula": paper_bins("formula"),
    }
    write_csv(table_trace_bins(traces, variants), args.bins)
    log(f"trace tables for {', '.join(traces)} -> {args.lengths}, {args.bins}")


def cmd_trace_figure(args: argparse.Namespace) -> None:
    from llm_energy.figures.style import save
    from llm_energy.figures.traces import fig7_trace_cdf

    ((name, summary),) = trace_summaries([args.trace], args.input_bins, args.output_bins).items()
    title = f"{name.replace('_', ' ')}: real and binned request lengths (Fig 7)"
    fig = fig7_trace_cdf(summary, args.input_bins, args.output_bins, title)
    save(fig, Path(args.out), dpi=args.dpi)
    log(f"fig7 ({name}) -> {args.out}")


def cmd_prepare_task(args: argparse.Namespace) -> None:
    from llm_energy.inputs.texts import TASKS, sample_task
    from llm_energy.measure.store import write_parquet_atomic

    by_role = {source.role: name for name, source in TASKS.items()}
    dataset = by_role.get(args.task, args.task)
    df = sample_task(dataset, args.mirror or None, n=args.samples, seed=args.seed)
    write_parquet_atomic(df, Path(args.out))
    note = df.attrs.get("note", "")
    log(f"{args.task} ({dataset}): {len(df)} examples -> {args.out} {note}".rstrip())


def cmd_task_table(args: argparse.Namespace) -> None:
    import pandas as pd

    from llm_energy.analysis.summaries import task_table
    from llm_energy.inputs.texts import load_tokenizer, tokenizer_label

    mirror = args.mirror or None
    samples = [pd.read_parquet(p) for p in args.tasks]
    table = task_table(samples, load_tokenizer(mirror), tokenizer_label(mirror))
    write_csv(table, args.out)
    log(f"Table 3 for {len(table)} tasks -> {args.out}")


def cmd_table3(args: argparse.Namespace) -> None:
    import pandas as pd

    from llm_energy.analysis.summaries import task_table_beside_paper

    table = task_table_beside_paper(pd.read_csv(args.summary))
    write_csv(table, args.out)
    log(f"Table 3 for {len(table)} tasks, beside the paper's -> {args.out}")


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
    log(
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
    log(
        f"pg19: {len(ids)} tokens ({args.tokens} wanted, {args.min_tokens} needed) with "
        f"{table.attrs['tokenizer']} -> {args.out}"
    )


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
    log(f"{args.name} ({args.hub_id}): architecture of {path} -> {args.out}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """This module's commands, each with its arguments and handler."""
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

    ms = sub.add_parser(
        "model-summary", help="a model's architecture (config.json) as the FLOP count uses it"
    )
    ms.add_argument("name", help="the model's key in the configuration")
    ms.add_argument("--hub-id", required=True)
    ms.add_argument("--config", help="local config.json that overrides the hub / mirror copy")
    ms.add_argument("--models-mirror", help="folder holding ORG__NAME/config.json")
    ms.add_argument("--out", required=True, help="summary to write (MODEL.json)")
    ms.set_defaults(func=cmd_model_summary)
