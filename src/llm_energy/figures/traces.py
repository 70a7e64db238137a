"""Request traces: real against binned length distributions (the study's Fig 7)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import NullFormatter, ScalarFormatter

from llm_energy.figures.style import PALETTE, add_footer, setup
from llm_energy.traces import BinnedTrace


def fig7_trace_cdf(df: pd.DataFrame, binned: BinnedTrace, title: str) -> plt.Figure:
    """Empirical CDFs of real and binned input and output lengths (the study's Fig 7)."""
    setup()
    fig, axes = plt.subplots(1, 2, figsize=(9.2, 3.8))
    real_c, bin_c = sns.color_palette(PALETTE, 2)
    panels = (("input", binned.input_bins), ("output", binned.output_bins))
    for ax, (label, bins) in zip(axes, panels, strict=True):
        col = f"{label}_tokens"
        for values, colour, name in (
            (df[col], real_c, "real"),
            (binned.binned[col], bin_c, "binned"),
        ):
            x = np.sort(values.to_numpy())
            y = np.arange(1, x.size + 1) / max(x.size, 1)
            ax.step(x, y, where="post", color=colour, lw=1.6, label=f"{name} (n={x.size:,})")
        ax.set_xscale("log", base=2)
        ax.set_xticks(bins)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.tick_params(axis="x", labelrotation=45)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{label} length")
        ax.set_xlabel(f"{label} tokens (log scale)")
        ax.set_ylabel("fraction of requests ≤ x")
        ax.legend(loc="upper left", frameon=False)
    fig.suptitle(title, fontweight="bold")
    note = (
        f"{binned.dropped_total:,} of {binned.total:,} requests dropped above the largest bins "
        f"(input > {binned.input_bins[-1]}: {binned.dropped_input:,}; "
        f"output > {binned.output_bins[-1]}: {binned.dropped_output:,}); binned CDFs cover the rest"
    )
    add_footer(fig, note)
    fig.tight_layout()
    return fig


def table_trace_lengths(traces: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The study's Tables 1 and 2: length statistics of each trace's inputs and outputs."""
    from llm_energy.traces import length_stats

    frames = []
    for name, df in traces.items():
        stats = length_stats(df).rename_axis("side").reset_index()
        stats.insert(0, "trace", name)
        stats["source"] = df.attrs.get("source", "")
        stats["failed_requests_dropped"] = df.attrs.get("failed_dropped", 0)
        frames.append(stats)
    return pd.concat(frames, ignore_index=True)


def table_trace_bins(
    traces: dict[str, pd.DataFrame], variants: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]
) -> pd.DataFrame:
    """Requests kept and dropped above the largest bins, per trace and per choice of bins."""
    from llm_energy.traces import bin_requests

    rows = []
    for name, df in traces.items():
        for variant, (input_bins, output_bins) in variants.items():
            b = bin_requests(df, input_bins, output_bins)
            rows.append(
                {
                    "trace": name,
                    "bins": variant,
                    "input_bins": " ".join(map(str, b.input_bins)),
                    "output_bins": " ".join(map(str, b.output_bins)),
                    "requests": b.total,
                    "kept": b.total - b.dropped_total,
                    "dropped_input_over": b.dropped_input,
                    "dropped_output_over": b.dropped_output,
                    "dropped_total": b.dropped_total,
                }
            )
    return pd.DataFrame(rows)
