"""Energy against batch size across one varied factor: decoding strategies (the study's Fig 3)
and model architectures (Fig 4), one panel per backend."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import FuncFormatter

from llm_energy.figures.engines import engine_label
from llm_energy.figures.style import PALETTE, add_footer, log2_batch_axis, provenance_note, setup

PLAIN = FuncFormatter(lambda v, _: f"{v:g}")
# Label the 2s and 5s between decades; the rest would crowd the axis.
MINOR = FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else "")
# Names the speculative line whose acceptance was forced to 100 % (the upper bound).
FORCED_SUFFIX = ", all accepted (forced)"
COLUMNS = [
    "engine_label",
    "engine",
    "model",
    "decoding",
    "batch_size",
    "input_tokens",
    "output_tokens",
    "feasible",
    "error",
    "energy_per_output_token_j",
    "energy_per_request_j",
    "duration_s",
    "mean_power_w",
    "energy_source",
    "gpu_name",
    "backend_version",
    "weights",
]


def _family(df: pd.DataFrame, tag: str) -> pd.DataFrame:
    rows = df[df["experiments"].str.contains(tag)].copy()
    if rows.empty:
        raise ValueError(f"no '{tag}' rows in the measurements")
    rows["engine_label"] = rows.apply(engine_label, axis=1)
    return rows


def table_decoding(df: pd.DataFrame) -> pd.DataFrame:
    """Fig 3's numbers: per engine, strategy and batch size. Speculative decoding is a strategy
    named after its draft, with the measured acceptance rate of its draft tokens; an engine
    whose acceptance was forced (the upper bound of random weights) says so in its name."""
    rows = _family(df, "decoding|speculative")
    draft = rows.get("speculative_model", pd.Series("", index=rows.index)).fillna("")
    k = rows.get("speculative_tokens", pd.Series(0, index=rows.index)).fillna(0)
    forced = rows.get("speculative_acceptance", pd.Series("", index=rows.index)).eq("forced")
    label = "speculative, draft " + draft + ", k=" + k.astype(int).astype(str)
    rows["decoding"] = rows["decoding"].where(
        draft == "", label.where(~forced, label + FORCED_SUFFIX)
    )
    rows["spec_acceptance_rate"] = rows.get(
        "spec_acceptance_rate", pd.Series(float("nan"), index=rows.index)
    )
    table = rows[[*COLUMNS, "spec_acceptance_rate"]]
    return table.sort_values(["engine_label", "decoding", "batch_size"]).reset_index(drop=True)


def table_architectures(df: pd.DataFrame) -> pd.DataFrame:
    """Fig 4's numbers: per engine, model and batch size, with the feed-forward blocks' share of
    the time where it was measured (``ffn_time_share``)."""
    rows = _family(df, "architectures")
    timed = [c for c in ("ffn_time_share", "ffn_block") if c in rows.columns]
    table = rows[[*COLUMNS, *timed]]
    return table.sort_values(["engine_label", "model", "batch_size"]).reset_index(drop=True)


def _lines(
    table: pd.DataFrame, hue: str, title: str, note_rows: pd.DataFrame, extra_note: str = ""
) -> plt.Figure:
    setup()
    panels = sorted(table["engine_label"].unique())
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.8 * len(panels), 4.3), squeeze=False, sharey=True
    )
    levels = sorted(table[hue].unique())
    colours = dict(zip(levels, sns.color_palette(PALETTE, len(levels)), strict=True))
    for ax, panel in zip(axes.flat, panels, strict=True):
        sub = table[table["engine_label"] == panel]
        for level in levels:
            line = sub[(sub[hue] == level) & sub["feasible"].astype(bool)].sort_values("batch_size")
            if line.empty:
                continue
            ax.plot(
                line["batch_size"],
                line["energy_per_output_token_j"],
                marker="o",
                ms=4,
                lw=1.7,
                color=colours[level],
                label=str(level),
            )
        log2_batch_axis(ax, sorted(sub["batch_size"].unique()))
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(PLAIN)
        ax.yaxis.set_minor_formatter(MINOR)
        first = sub.iloc[0]
        ax.set_title(
            f"{panel}: {int(first['input_tokens'])} in / {int(first['output_tokens'])} out"
        )
        ax.legend(frameon=False, fontsize=8)
    axes.flat[0].set_ylabel("energy per output token (J)")
    fig.suptitle(title, fontweight="bold")
    infeasible = table[~table["feasible"].astype(bool)]
    note = provenance_note(note_rows)
    if len(infeasible):
        note += "\nnot feasible: " + ", ".join(
            f"{r[hue]} batch {r.batch_size}" for _, r in infeasible.iterrows()
        )
    add_footer(fig, note + (f"\n{extra_note}" if extra_note else ""))
    fig.tight_layout()
    return fig


def fig_decoding(df: pd.DataFrame) -> plt.Figure:
    """Energy per output token against batch size per decoding strategy. Lengths are forced,
    so every strategy generates the same number of tokens."""
    table = table_decoding(df)
    rows = df[df["experiments"].str.contains("decoding|speculative")]
    fig = _lines(table, "decoding", "Decoding strategies against batch size (Fig 3)", rows)
    for ax in fig.axes:
        _shade_acceptance_range(ax)
    return fig


def _shade_acceptance_range(ax: plt.Axes) -> None:
    """Between a speculative line as the random weights accept and its forced-acceptance twin,
    the band that weights with any acceptance rate fall in; the forced line is dashed."""
    lines = {line.get_label(): line for line in ax.get_lines()}
    for label, forced in lines.items():
        measured = lines.get(label.removesuffix(FORCED_SUFFIX))
        if not label.endswith(FORCED_SUFFIX) or measured is None:
            continue
        forced.set_linestyle("--")
        low = dict(zip(*forced.get_data(), strict=True))
        high = dict(zip(*measured.get_data(), strict=True))
        xs = sorted(set(low) & set(high))
        ax.fill_between(
            xs,
            [low[x] for x in xs],
            [high[x] for x in xs],
            color=measured.get_color(),
            alpha=0.12,
            lw=0,
            label="any acceptance rate between the two",
        )
    if any(label.endswith(FORCED_SUFFIX) for label in lines):
        ax.legend(frameon=False, fontsize=8)


def fig_architectures(df: pd.DataFrame) -> plt.Figure:
    """Energy per output token against batch size per model architecture; where the
    feed-forward blocks were timed, each point is labelled with their share of the time."""
    table = table_architectures(df)
    rows = df[df["experiments"].str.contains("architectures")]
    timed = "ffn_time_share" in table and table["ffn_time_share"].notna().any()
    note = (
        "labels: share of a generation's time spent in the feed-forward blocks (the experts "
        "with their router for mixture-of-experts models, the MLP otherwise)"
        if timed
        else ""
    )
    fig = _lines(table, "model", "Dense and mixture-of-experts models (Fig 4)", rows, note)
    if timed:
        _label_ffn_shares(fig, table)
    return fig


def _label_ffn_shares(fig: plt.Figure, table: pd.DataFrame) -> None:
    """Each timed point gets the feed-forward blocks' share of the generation's time, in the
    colour of its line."""
    for ax in fig.axes:
        colours = {line.get_label(): line.get_color() for line in ax.get_lines()}
        panel = ax.get_title().split(":")[0]
        sub = table[(table["engine_label"] == panel) & table["ffn_time_share"].notna()]
        # The highest point of each batch size is labelled above, the others below.
        top = sub.groupby("batch_size")["energy_per_output_token_j"].transform("max")
        for r, above in zip(
            sub.itertuples(), sub["energy_per_output_token_j"].eq(top), strict=True
        ):
            ax.annotate(
                f"{r.ffn_time_share:.0%}",
                (r.batch_size, r.energy_per_output_token_j),
                textcoords="offset points",
                xytext=(6, 4 if above else -11),
                fontsize=7.5,
                color=colours.get(str(r.model), "0.3"),
            )
