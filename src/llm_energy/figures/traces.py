"""Request traces: real against binned length distributions (the study's Fig 7), and the length
statistics and bin counts of Tables 1 and 2, all drawn from trace summaries
(:mod:`~llm_energy.analysis.summaries`), which hold the aggregates of each trace that these use."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import NullFormatter, ScalarFormatter

from llm_energy.analysis.paper import TRACE_LENGTHS, TRACE_SOURCES
from llm_energy.analysis.summaries import SIDES, Side, TraceSummary
from llm_energy.figures.provenance import short_commit
from llm_energy.figures.style import PALETTE, add_footer, paper_handle, paper_mark, setup
from llm_energy.inputs.traces import BinCounts


def binned_cdf(counts: BinCounts, side: Side) -> tuple[np.ndarray, np.ndarray]:
    """(bin, fraction of the kept requests in it or below) of one side, exactly, starting at
    (smallest occupied bin, 0) so that a ``post`` step curve rises at every occupied bin."""
    per_bin = counts.counts.groupby(f"{side}_bin")["requests"].sum().sort_index()
    if per_bin.empty:
        return np.array([], dtype=np.int64), np.array([], dtype=float)
    x = per_bin.index.to_numpy(dtype=np.int64)
    y = per_bin.cumsum().to_numpy() / counts.kept
    return np.concatenate([x[:1], x]), np.concatenate([[0.0], y])


def fig7_trace_cdf(
    summary: TraceSummary, input_bins: Sequence[int], output_bins: Sequence[int], title: str
) -> plt.Figure:
    """CDFs of real and binned input and output lengths (the study's Fig 7).

    The real curves are drawn from the summary's quantile grid (the empirical CDF to within a
    thousandth of the requests), the binned ones from its bin counts (exact).
    """
    setup()
    binned = summary.binning(input_bins, output_bins)
    fig, axes = plt.subplots(1, 2, figsize=(9.2, 3.8))
    real_c, bin_c = sns.color_palette(PALETTE, 2)
    panels = zip(SIDES, (binned.input_bins, binned.output_bins), strict=True)
    for ax, (side, bins) in zip(axes, panels, strict=True):
        for (x, y), colour, name, n in (
            (summary.cdf(side), real_c, "real", summary.requests),
            (binned_cdf(binned, side), bin_c, "binned", binned.kept),
        ):
            ax.step(x, y, where="post", color=colour, lw=1.6, label=f"{name} (n={n:,})")
        paper = TRACE_LENGTHS.get(summary.trace, {}).get(side)
        if paper is not None:  # the paper's median and 99th percentile (Tables 1, 2)
            for stat, value, y in (("median", paper[2], 0.5), ("p99", paper[3], 0.99)):
                paper_mark(ax, value, y, f"paper {stat}\n{value:,.0f}", xytext=(6, -12))
        ax.set_xscale("log", base=2)
        ax.set_xticks(bins)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.tick_params(axis="x", labelrotation=45)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{side} length")
        ax.set_xlabel(f"{side} tokens (log scale)")
        ax.set_ylabel("fraction of requests ≤ x")
        ax.legend(loc="upper left", frameon=False)
    fig.suptitle(title, fontweight="bold")
    note = (
        f"{binned.dropped_total:,} of {binned.total:,} requests dropped above the largest bins "
        f"(input > {binned.input_bins[-1]}: {binned.dropped_input:,}; "
        f"output > {binned.output_bins[-1]}: {binned.dropped_output:,}); binned CDFs cover the rest"
    )
    made = summary.provenance
    source = (
        f"trace {Path(made.get('source', 'n/a')).name} (sha256 "
        f"{made.get('source_sha256', 'n/a')[:12]}), summarised by git "
        f"{short_commit(made.get('git_commit', '')) or 'n/a'}"
    )
    notes = [source, note]
    if summary.trace in TRACE_LENGTHS:
        axes[0].legend(
            handles=[*axes[0].get_legend_handles_labels()[0], paper_handle("the paper's")],
            loc="upper left",
            frameon=False,
        )
        notes.append(
            f"★ the paper's median and 99th percentile ({TRACE_SOURCES[summary.trace]}; "
            "this trace may be another release)"
        )
    add_footer(fig, *notes)
    fig.tight_layout()
    return fig


def table_trace_lengths(summaries: dict[str, TraceSummary]) -> pd.DataFrame:
    """The study's Tables 1 and 2: length statistics of each trace's inputs and outputs."""
    frames = []
    for name, summary in summaries.items():
        stats = summary.length_stats().rename_axis("side").reset_index()
        stats.insert(0, "trace", name)
        stats["source"] = summary.provenance.get("source", "")
        stats["failed_requests_dropped"] = summary.failed_dropped
        frames.append(stats)
    return pd.concat(frames, ignore_index=True)


def table_lengths_beside_paper(
    summaries: dict[str, TraceSummary], traces: tuple[str, ...]
) -> pd.DataFrame:
    """The study's Table 1 or 2: each trace's input and output length statistics, ours from
    the trace the pipeline read beside the paper's, with where each came from. A trace this
    configuration does not read keeps the paper's values and says so."""
    rows = []
    for name in traces:
        summary = summaries.get(name)
        for side in SIDES:
            paper = dict(
                zip(("mean", "std", "median", "p99"), TRACE_LENGTHS[name][side], strict=True)
            )
            row: dict[str, object] = {"trace": name, "side": side}
            if summary is None:
                ours: dict[str, float] = {}
                source = "not read by this configuration (experiments.workload_traces.traces)"
            else:
                ours = summary.lengths[side]
                source = summary.provenance.get("source", "")
            for stat in ("mean", "std", "median", "p99"):
                row[stat] = ours.get(stat, float("nan"))
                row[f"paper_{stat}"] = paper[stat]
            row["requests"] = ours.get("count", float("nan"))
            row["source"] = source
            row["paper_source"] = TRACE_SOURCES[name]
            rows.append(row)
    return pd.DataFrame(rows)


def table_trace_bins(
    summaries: dict[str, TraceSummary],
    variants: dict[str, tuple[tuple[int, ...], tuple[int, ...]]],
) -> pd.DataFrame:
    """Requests kept and dropped above the largest bins, per trace and per choice of bins."""
    rows = []
    for name, summary in summaries.items():
        for variant, (input_bins, output_bins) in variants.items():
            b = summary.binning(input_bins, output_bins)
            rows.append(
                {
                    "trace": name,
                    "bins": variant,
                    "input_bins": " ".join(map(str, b.input_bins)),
                    "output_bins": " ".join(map(str, b.output_bins)),
                    "requests": b.total,
                    "kept": b.kept,
                    "dropped_input_over": b.dropped_input,
                    "dropped_output_over": b.dropped_output,
                    "dropped_total": b.dropped_total,
                }
            )
    return pd.DataFrame(rows)
