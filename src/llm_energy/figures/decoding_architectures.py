"""Energy against batch size across one varied factor: decoding strategies (the study's Fig 3)
and model architectures (Fig 4), one panel per backend."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import pandas as pd

from llm_energy.analysis.paper import CLAIMS
from llm_energy.figures.engines import engine_label, engine_order
from llm_energy.figures.points import Marks, plot_line, with_evidence
from llm_energy.figures.provenance import session_names
from llm_energy.figures.style import (
    MINOR,
    PLAIN,
    add_footer,
    log2_batch_axis,
    looks,
    paper_mark,
    paper_note,
    provenance_note,
    setup,
)

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
    table = rows[with_evidence([*COLUMNS, "spec_acceptance_rate"], rows)]
    return table.sort_values(["engine_label", "decoding", "batch_size"]).reset_index(drop=True)


def table_architectures(df: pd.DataFrame) -> pd.DataFrame:
    """Fig 4's numbers: per engine, model and batch size, with the feed-forward blocks' share of
    the time where it was measured (``ffn_time_share``, with its interval over trials)."""
    rows = _family(df, "architectures")
    timed = [c for c in ("ffn_time_share", "ffn_time_share_ci95", "ffn_block") if c in rows.columns]
    table = rows[with_evidence([*COLUMNS, *timed], rows)]
    return table.sort_values(["engine_label", "model", "batch_size"]).reset_index(drop=True)


def _lines(
    table: pd.DataFrame,
    hue: str,
    title: str,
    note_rows: pd.DataFrame,
    extra_notes: Sequence[str] = (),
    paper: Callable[[plt.Axes, pd.DataFrame], list[str]] | None = None,
    panel_by: str = "engine_label",
) -> plt.Figure:
    """Energy per output token against batch size, one panel per value of ``panel_by`` (an
    engine), one line per value of ``hue`` in its look from the style table. ``paper`` marks
    the paper's values on a panel and returns footer lines about them."""
    setup()
    panels = engine_order(table[panel_by])
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.8 * len(panels), 4.5), squeeze=False, sharey=True
    )
    levels = sorted(table[hue].unique())
    level_looks = looks(levels)
    marks = Marks()
    paper_lines: list[str] = []
    for ax, panel in zip(axes.flat, panels, strict=True):
        sub = table[table[panel_by] == panel]
        feasible = sub[sub["feasible"].astype(bool)]
        sessions = session_names(feasible)
        for level in levels:
            line = feasible[feasible[hue] == level]
            if line.empty:
                continue
            tag = ""
            if sessions.nunique() > 1:  # say which session each compared line comes from
                tag = f" ({', '.join(dict.fromkeys(sessions[line.index]))})"
            plot_line(
                ax,
                line,
                "batch_size",
                "energy_per_output_token_j",
                level_looks[level],
                f"{level}{tag}",
                marks,
                name=f"{panel}, {level}",
            )
        _shade_acceptance_range(ax, feasible, hue, level_looks)
        log2_batch_axis(ax, sorted(sub["batch_size"].unique()))
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(PLAIN)
        ax.yaxis.set_minor_formatter(MINOR)
        first = sub.iloc[0]
        ax.set_title(
            f"{panel}: {int(first['input_tokens'])} in / {int(first['output_tokens'])} out"
        )
        if paper is not None:
            paper_lines += paper(ax, feasible)
        ax.legend(frameon=False, fontsize=8, loc="upper right")
    axes.flat[0].set_ylabel("energy per output token (J)")
    fig.suptitle(title, fontweight="bold")
    infeasible = table[~table["feasible"].astype(bool)]
    notes = [
        provenance_note(note_rows, note_rows["engine_label"] + ", " + note_rows[hue].astype(str)),
        *marks.notes(),
    ]
    if len(infeasible):
        notes.append(
            "not feasible: "
            + ", ".join(f"{r[hue]} batch {r.batch_size}" for _, r in infeasible.iterrows())
        )
    add_footer(fig, *notes, *dict.fromkeys(paper_lines), *extra_notes)
    fig.tight_layout()
    return fig


def fig_decoding(df: pd.DataFrame) -> plt.Figure:
    """Energy per output token against batch size per decoding strategy. Lengths are forced,
    so every strategy generates the same number of tokens."""
    table = table_decoding(df)
    # A strategy's line joins the batches of one model: two models get panels of their own.
    several = table["model"].nunique() > 1
    table = table.assign(
        panel=table["model"] + " on " + table["engine_label"] if several else table["engine_label"]
    )
    return _lines(
        table,
        "decoding",
        "Decoding strategies against batch size (Fig 3)",
        table,
        paper=_paper_speculative,
        panel_by="panel",
    )


def _paper_speculative(ax: plt.Axes, rows: pd.DataFrame) -> list[str]:
    """Claim 2 on a panel with speculative lines: the paper's saving at small batches (up to
    29.14 % at batch 16 or less) and its cost at batch 128 (+25.65 %), both against greedy
    decoding with the target alone; the latter marked where it would put the point."""
    greedy = rows[rows["decoding"] == "greedy"].set_index("batch_size")
    if greedy.empty or not rows["decoding"].str.startswith("speculative").any():
        return []
    small, _, _, _ = CLAIMS["2"]["small_batches"]
    large, _, _, _ = CLAIMS["2"]["batch_128"]
    lines = [f"paper: up to {100 * small:+.1f} % vs greedy at batch ≤ 16", ""]
    if 128 in greedy.index:
        y = greedy.loc[128, "energy_per_output_token_j"] * (1 + large)
        paper_mark(ax, 128, y, f"paper:\n{100 * large:+.1f} %", xytext=(-8, 6), ha="right")
        lines[1] = f"and {100 * large:+.1f} % at batch 128 (★)"
    paper_note(ax, [line for line in lines if line])
    return [
        "paper (claim 2): speculative decoding against the target alone, up to "
        f"{100 * small:+.2f} % energy at batch ≤ 16 and {100 * large:+.2f} % at batch 128 "
        "(trained weights, so its acceptance lies between the two bounds drawn here)"
    ]


def _shade_acceptance_range(ax: plt.Axes, rows: pd.DataFrame, hue: str, level_looks: dict) -> None:
    """Between a speculative line as the random weights accept and its forced-acceptance twin,
    the band that weights with any acceptance rate fall in."""
    y = "energy_per_output_token_j"
    for forced in rows[hue].unique():
        forced = str(forced)
        measured = forced.removesuffix(FORCED_SUFFIX)
        if not forced.endswith(FORCED_SUFFIX) or measured not in set(rows[hue]):
            continue
        low = rows[rows[hue] == forced].set_index("batch_size")[y]
        high = rows[rows[hue] == measured].set_index("batch_size")[y]
        xs = sorted(set(low.index) & set(high.index))
        ax.fill_between(
            xs,
            low[xs].to_numpy(),
            high[xs].to_numpy(),
            color=level_looks[measured].colour,
            alpha=0.12,
            lw=0,
            label="any acceptance rate between the two",
        )


def fig_architectures(df: pd.DataFrame) -> plt.Figure:
    """Energy per output token against batch size per model architecture; where the
    feed-forward blocks were timed, each point is labelled with their share of the time."""
    table = table_architectures(df)
    timed = "ffn_time_share" in table and table["ffn_time_share"].notna().any()
    note = (
        "labels: share of a generation's time spent in the feed-forward blocks (the experts "
        "with their router for mixture-of-experts models, the MLP otherwise), mean over "
        "trials ± its 95 % interval where that is a point or more"
        if timed
        else ""
    )
    fig = _lines(
        table,
        "model",
        "Dense and mixture-of-experts models (Fig 4)",
        table,
        [note],
        paper=_paper_moe,
    )
    if timed:
        _label_ffn_shares(fig, table)
    return fig


MOE, SMALL, LARGE = "olmoe-1b-7b", "olmo-1b", "olmo-7b"


def _paper_moe(ax: plt.Axes, rows: pd.DataFrame) -> list[str]:
    """Claim 3 on a panel with OLMoE and OLMo-1B: the paper's 'up to +54.24 % over OLMo-1B,
    less than OLMo-7B' beside ours at each batch size."""
    y = "energy_per_output_token_j"
    by = rows.pivot_table(index="batch_size", columns="model", values=y, aggfunc="first")
    if MOE not in by or SMALL not in by:
        return []
    paper = CLAIMS["3"]["over_olmo_1b"][0]
    ours = (by[MOE] / by[SMALL] - 1).dropna()
    here = ", ".join(f"{100 * v:+.1f} % (b{b})" for b, v in ours.items())
    lines = [f"paper: OLMoE up to {100 * paper:+.1f} % vs OLMo-1B", f"here: {here}"]
    if LARGE in by:
        below = (by[MOE] < by[LARGE]).loc[ours.index]
        lines.append(
            f"paper: below OLMo-7B; here below at {below.sum()} of {len(below)} batch sizes"
        )
    paper_note(ax, lines)
    return [
        f"paper (claim 3): OLMoE-1B-7B up to {100 * paper:+.2f} % energy over OLMo-1B and less "
        "than OLMo-7B (its GPUs; boxed beside ours)"
    ]


def _share_label(share: float, ci95: float) -> str:
    """A feed-forward share in percent, with its 95 % half-width where it rounds to a point or
    more ("63±33%"); "72%" where it is narrower or unknown."""
    points = 100 * ci95
    return (
        f"{100 * share:.0f}%"
        if math.isnan(points) or points < 0.5
        else f"{100 * share:.0f}±{points:.0f}%"
    )


def _label_ffn_shares(fig: plt.Figure, table: pd.DataFrame) -> None:
    """Each timed point gets the feed-forward blocks' share of the generation's time, in the
    colour of its line."""
    model_looks = looks(sorted(table["model"].unique()))
    for ax in fig.axes:
        panel = ax.get_title().split(":")[0]
        sub = table[(table["engine_label"] == panel) & table["ffn_time_share"].notna()]
        # The highest point of each batch size is labelled above, the others below.
        top = sub.groupby("batch_size")["energy_per_output_token_j"].transform("max")
        for r, above in zip(
            sub.itertuples(), sub["energy_per_output_token_j"].eq(top), strict=True
        ):
            ax.annotate(
                _share_label(r.ffn_time_share, getattr(r, "ffn_time_share_ci95", math.nan)),
                (r.batch_size, r.energy_per_output_token_j),
                textcoords="offset points",
                xytext=(6, 4 if above else -11),
                fontsize=7.5,
                color=model_looks[r.model].colour,
            )
