"""From the rows to the paper's outputs: the aggregate, figures, tables and their captions, the
claims, and the workload estimate (Table 4, Fig 1)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from llm_energy.cli.common import load_configs, log, pairs, read_table, write_csv
from llm_energy.cli.data import trace_summaries
from llm_energy.errors import LlmEnergyError

if TYPE_CHECKING:
    from llm_energy.analysis.flops import Architecture


def cmd_aggregate(args: argparse.Namespace) -> None:
    from llm_energy.analysis import aggregate

    table = aggregate.combine(Path(p) for p in args.inputs)
    if args.hardware and len(table):
        other = table["hardware"] != args.hardware
        if other.any():
            labels = ", ".join(sorted(table.loc[other, "hardware"].unique()))
            log(f"left out {int(other.sum())} rows of other hardware labels ({labels})")
        table = table[~other].reset_index(drop=True)
    aggregate.write(table, Path(args.out), Path(args.csv) if args.csv else None)
    log(f"{len(table)} rows from {len(args.inputs)} tables -> {args.out}")


def _drawn(name: str, kind: str):
    from llm_energy.families import outputs

    drawn = {n: o for n, o in outputs().items() if o.kind == kind and o.draw is not None}
    if name not in drawn:
        raise LlmEnergyError(f"unknown {kind} '{name}' (known: {', '.join(drawn)})")
    return drawn[name]


def cmd_figure(args: argparse.Namespace) -> None:

    from llm_energy.figures.style import save

    fig = _drawn(args.name, "figure").make(read_table(args.measurements))
    save(fig, Path(args.out), dpi=args.dpi)
    log(f"{args.name} -> {args.out}")


def cmd_table(args: argparse.Namespace) -> None:

    table = _drawn(args.name, "table").make(read_table(args.measurements))
    write_csv(table, args.out)
    log(f"{args.name}: {len(table)} rows -> {args.out}")


def cmd_caption(args: argparse.Namespace) -> None:

    from llm_energy.families import outputs
    from llm_energy.figures.provenance import caption, files_holding, measurements
    from llm_energy.measure.store import write_atomic

    path = Path(args.rows)
    rows = read_table(path)
    wanted = outputs()[args.output].rows if args.output else None
    if wanted is not None and len(rows):
        rows = rows[wanted.mask(rows)]
    if "measured" in rows:  # a workload estimate's bins: the measured ones
        rows = rows[rows["measured"].astype(bool)]
    rows = measurements(rows)
    configs = [*args.configfiles, *(["shipped_measurements=true"] if args.shipped else [])]
    text = caption(rows, files_holding(rows, args.tables), configs, args.hardware)
    write_atomic(Path(args.out), lambda tmp: Path(tmp).write_text(text))
    log(f"caption of {args.output or args.rows}: {len(rows)} rows -> {args.out}")


def cmd_claims(args: argparse.Namespace) -> None:
    import pandas as pd

    from llm_energy.analysis.claims import (
        claims_table,
        markdown,
        restructuredtext,
        workload_claims,
    )

    table = claims_table(read_table(args.measurements))
    if args.workload_bins:
        bins = read_table(args.workload_bins, dtype={"machine_session": str})
        table = pd.concat([table, workload_claims(bins)], ignore_index=True)
    write_csv(table, args.out)
    Path(args.markdown).write_text(markdown(table, args.hardware))
    if args.rst:
        Path(args.rst).write_text(restructuredtext(table, args.hardware))
    counts = table["verdict"].str.split(":").str[0].value_counts().to_dict()
    log(f"{len(table)} comparisons of the eight claims -> {args.out}, {args.markdown}: {counts}")


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
        config = load_configs([configfile])
        hardware = config["hardware"]
        table = shipped_claims(config, root)
        block = docs_block(table, shipped_rows(root, hardware), hardware)
        text = replace_block(text, f"claims:{hardware}", block)
        out = Path(args.tables) / f"{hardware}.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(markdown(table, hardware))
        log(f"{configfile}: {len(table)} comparisons -> {page} (claims:{hardware}), {out}")
    page.write_text(text)


def _architectures(args: argparse.Namespace) -> dict[str, Architecture]:
    """Model name -> Architecture: from architecture summaries (--architecture) or from each
    model's config.json (--model, --model-config, --models-mirror)."""
    from llm_energy.analysis.summaries import read_architecture_summary
    from llm_energy.analysis.workload_estimate import load_architecture
    from llm_energy.measure.job import ModelSpec

    hubs, configs = pairs(args.model, "--model"), pairs(args.model_config, "--model-config")
    summaries = pairs(args.architecture, "--architecture")
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

    from llm_energy.analysis.ideal import gpu
    from llm_energy.analysis.workload_estimate import estimate_workloads, workload_totals

    architectures = _architectures(args)
    measurements = read_table(args.measurements)
    engines = args.engines or sorted(set(measurements["engine"].astype(str)))
    for engine in engines:
        for model in architectures:
            rows = measurements[
                (measurements["engine"] == engine) & (measurements["model"] == model)
            ]
            if rows.empty:
                log(f"engine {engine}, model {model}: no measurements; left out (not measured)")
    summaries = trace_summaries(args.traces, args.input_bins, args.output_bins)
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
    write_csv(bins, args.bins_out)
    write_csv(totals, args.totals_out)
    for t in totals.itertuples():
        state = "" if t.complete else f" INCOMPLETE: {t.requests_covered_fraction:.1%} of requests"
        log(
            f"{t.trace} / {t.engine} / {t.model}: {t.energy_j:.4g} J "
            f"(ideal, sparse FLOPs: {t.ideal_flops_sparse_j:.4g} J){state}"
        )
    log(f"{len(bins)} bin rows -> {args.bins_out}; {len(totals)} totals -> {args.totals_out}")


def cmd_workload_table(args: argparse.Namespace) -> None:

    from llm_energy.figures.workload_estimate import table4_energy_over_ideal

    table = table4_energy_over_ideal(read_table(args.totals))
    write_csv(table, args.out)
    log(f"Table 4: {len(table)} rows -> {args.out}")


def cmd_workload_figure(args: argparse.Namespace) -> None:

    from llm_energy.figures.style import save
    from llm_energy.figures.workload_estimate import fig1_workload_energy

    bins = read_table(args.bins)
    if bins.empty:
        raise LlmEnergyError(f"{args.bins}: no workload estimate rows (no engine measured)")
    save(fig1_workload_energy(bins, args.engines), Path(args.out), dpi=args.dpi)
    log(f"fig1 -> {args.out}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """This module's commands, each with its arguments and handler."""
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
