"""The offline workload energy model against the ideal: the study's Fig 1 and Table 4."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from llm_energy.analysis.paper import TABLE4_OVER_IDEAL
from llm_energy.analysis.workload_estimate import trace_ideal_totals, workload_totals
from llm_energy.figures.provenance import gpu_note, session_note
from llm_energy.figures.style import PAPER_COLOUR, add_footer, looks, paper_mark, setup

J_PER_KWH = 3.6e6
# (column, label) of the ideal baselines, the study's own first.
IDEALS = (
    ("ideal_flops_sparse_j", "ideal: FLOPs,\nsparse peak"),
    ("ideal_flops_dense_j", "ideal: FLOPs,\ndense peak"),
    ("ideal_roofline_j", "ideal:\nroofline"),
)


def _over_ideal_pct(energy: pd.Series, ideal: pd.Series) -> pd.Series:
    return (energy / ideal - 1.0) * 100.0


def _over_ideal_ci95_pct(half_width: pd.Series, ideal: pd.Series) -> pd.Series:
    """The 95 % half-width of :func:`_over_ideal_pct`, in points (the ideal is computed)."""
    return half_width / ideal * 100.0


def table4_energy_over_ideal(totals: pd.DataFrame) -> pd.DataFrame:
    """The study's Table 4: estimated energy over the ideal, E_total / E_ideal - 1 in percent,
    per trace and engine, against the sparse and dense FLOPs baselines and the roofline.

    ``totals`` comes from :func:`~llm_energy.analysis.workload_estimate.workload_totals`; an
    incomplete total compares its measured bins with the ideal of the same bins, and says so.
    Each excess carries its 95 % half-width in percentage points (``..._ci95_pct``, the
    total's half-width over the ideal, which is computed, not measured); NaN where a bin has no
    interval.
    """
    # Totals written before the intervals were carried have none.
    totals = totals.assign(
        **{c: totals.get(c, np.nan) for c in ("energy_ci95_j", "energy_ceil_ci95_j")}
    )
    table = totals[
        [
            "trace",
            "engine",
            "backend",
            "model",
            "hardware",
            "gpu_name",
            "ideal_gpu",
            "complete",
            "requests_covered_fraction",
            "energy_j",
            "energy_ci95_j",
        ]
    ].copy()
    for column, _ in IDEALS:
        name = column.removeprefix("ideal_").removesuffix("_j")
        table[column] = totals[column]
        table[f"over_ideal_{name}_pct"] = _over_ideal_pct(totals["energy_j"], totals[column])
        table[f"over_ideal_{name}_ci95_pct"] = _over_ideal_ci95_pct(
            totals["energy_ci95_j"], totals[column]
        )
    table["energy_ceil_j"] = totals["energy_ceil_j"]
    table["energy_ceil_ci95_j"] = totals["energy_ceil_ci95_j"]
    table["over_ideal_flops_sparse_ceil_pct"] = _over_ideal_pct(
        totals["energy_ceil_j"], totals["ideal_flops_sparse_j"]
    )
    table["over_ideal_flops_sparse_ceil_ci95_pct"] = _over_ideal_ci95_pct(
        totals["energy_ceil_ci95_j"], totals["ideal_flops_sparse_j"]
    )
    for column in (
        "energy_source",
        "weights",
        "bins_at_ladder_cap",
        "bins_under_half_largest_fit",
        "missing_bins",
    ):
        table[column] = totals[column]
    return table.reset_index(drop=True)


def _coarse_note(totals: pd.DataFrame) -> str:
    """Where a bin's batch is under half the largest that may fit (known, or bounded by the
    smallest batch out of memory), its energy per request may be higher than at the largest:
    say how many bins, and by how much their batch falls short at most."""
    coarse = int(totals["bins_under_half_largest_fit"].sum())
    if not coarse:
        return ""
    return (
        f" Bins at under half the largest batch that may fit (down to 1/"
        f"{totals['largest_fit_over_batch_max'].max():.1f} of it): {coarse}."
    )


def _note(bins: pd.DataFrame, totals: pd.DataFrame) -> str:
    def uniq(df: pd.DataFrame, col: str) -> str:
        vals = sorted({str(v) for v in df[col].dropna()} - {"", "nan"})
        return ", ".join(vals) if vals else "n/a"

    dropped = "; ".join(
        f"{t}: {int(g['dropped_total'].iloc[0]):,} of {int(g['requests_in_trace'].iloc[0]):,}"
        for t, g in bins.groupby("trace", sort=False)
    )
    measured = bins[bins["measured"].astype(bool)]
    batches = measured.drop_duplicates(["engine", "model", "input_bin", "output_bin"])
    return (
        f"{gpu_note(batches)} · {session_note(batches, batches['engine'])}\n"
        "estimate: N/B fractional batches x measured energy per batch on "
        f"{uniq(measured, 'gpu_name')} ({uniq(measured, 'weights')} weights; energy: "
        f"{uniq(measured, 'energy_source')}); "
        f"ideal baselines from the {uniq(bins, 'ideal_gpu')} datasheet (estimates). "
        f"Requests dropped above the largest bins: {dropped}. "
        f"Bins at the largest batch measured, none larger out of memory: "
        f"{int(totals['bins_at_ladder_cap'].sum())}."
        + _coarse_note(totals)
        + (
            "\nHatched: incomplete, the total of the bins measured so far, with the share of "
            "requests they hold and the excess over the same bins' ideal (sparse FLOPs)."
            if not totals["complete"].astype(bool).all()
            else ""
        )
    )


def _panel_bars(
    totals: pd.DataFrame, ideal: pd.DataFrame, engines: Sequence[str]
) -> list[tuple[float, float, str]]:
    """(energy in kWh or NaN, its 95 % half-width in kWh or NaN, note) per bar of one panel:
    the engines, then the ideals (computed, so without an interval)."""
    bars = []
    for engine in engines:
        hit = totals[totals["engine"] == engine]
        if hit.empty:
            bars.append((np.nan, np.nan, "not measured"))
            continue
        total = hit.iloc[0]
        over = total["energy_j"] / total["ideal_flops_sparse_j"] - 1.0
        note = f"{over:+.0%}"
        if not bool(total["complete"]):
            note = f"{total['requests_covered_fraction']:.0%} of req.\n{over:+.0%}"
        half = float(total.get("energy_ci95_j", np.nan)) / J_PER_KWH
        bars.append((float(total["energy_j"]) / J_PER_KWH, half, note))
    for column, _ in IDEALS:
        value = float(ideal[column].iloc[0]) / J_PER_KWH if len(ideal) else np.nan
        bars.append((value, np.nan, "" if np.isfinite(value) else "n/a"))
    return bars


def _draw_panel(
    ax: plt.Axes, labels: list[str], bars: list[tuple[float, float, str]], colours: list
) -> None:
    values = np.array([v for v, _, _ in bars], dtype=float)
    halves = np.array([h for _, h, _ in bars], dtype=float)
    drawn = ax.bar(np.arange(len(bars)), np.nan_to_num(values, nan=0.0), color=colours, width=0.7)
    ax.set_yscale("log")
    positive = values[np.isfinite(values) & (values > 0)]
    floor = positive.min() / 3 if positive.size else 1e-6
    ax.set_ylim(floor, positive.max() * 6 if positive.size else 1.0)
    with_interval = np.isfinite(values) & np.isfinite(halves)
    if with_interval.any():
        ax.errorbar(
            np.arange(len(bars))[with_interval],
            values[with_interval],
            yerr=halves[with_interval],
            fmt="none",
            ecolor="black",
            elinewidth=1.0,
            capsize=4,
        )
    for i, (bar, (value, _, note)) in enumerate(zip(drawn, bars, strict=True)):
        if not np.isfinite(value) or value <= 0:
            bar.set_visible(False)
            ax.text(i, floor * 1.15, note, rotation=90, ha="center", va="bottom", fontsize=8)
            continue
        if "of req." in note:
            bar.set_hatch("//")
        # Inside the bar, at its foot: above it stay the interval and the paper's mark.
        text = f"{value:.3g}" + (f"\n{note}" if note else "")
        ax.text(
            i,
            floor * 1.15,
            text,
            ha="center",
            va="bottom",
            fontsize=7.5,
            bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none", "pad": 1.5},
        )
    ax.set_xticks(np.arange(len(bars)), labels, rotation=30, ha="right")


def fig1_workload_energy(
    bins: pd.DataFrame, engines: Sequence[str] | None = None, title: str | None = None
) -> plt.Figure:
    """The study's Fig 1: total energy of each trace per engine against the ideal baselines.

    ``bins`` holds :func:`~llm_energy.analysis.workload_estimate.estimate_bins` rows. One panel per
    trace
    (and model); one bar per engine of ``engines`` in that order (default: those in ``bins``),
    an engine without measurements marked "not measured" instead of a bar, and an incomplete
    total hatched with the fraction of requests it covers. The ideal bars cover every bin with
    requests; energies are in kWh on a log axis.
    """
    if bins.empty:
        raise ValueError("no workload estimate rows to draw")
    setup()
    totals, ideals = workload_totals(bins), trace_ideal_totals(bins)
    engines = list(engines) if engines is not None else list(dict.fromkeys(bins["engine"]))
    traces = list(dict.fromkeys(bins["trace"]))
    models = list(dict.fromkeys(bins["model"]))
    width = 0.9 * (len(engines) + len(IDEALS)) * len(traces) + 1.5
    fig, axes = plt.subplots(
        len(models), len(traces), figsize=(width, 4.2 * len(models)), squeeze=False
    )
    engine_looks = looks(engines)
    colours = [*(engine_looks[e].colour for e in engines), "0.35", "0.55", "0.75"]
    paper = False
    labels = [*engines, *(label for _, label in IDEALS)]
    for row, model in enumerate(models):
        for col, trace in enumerate(traces):
            ax = axes[row][col]
            mine = totals[(totals["trace"] == trace) & (totals["model"] == model)]
            ideal = ideals[(ideals["trace"] == trace) & (ideals["model"] == model)]
            _draw_panel(ax, labels, _panel_bars(mine, ideal, engines), colours)
            paper |= _paper_over_ideal(ax, mine, ideal, engines, trace)
            ax.set_title(trace.replace("_", " ") + (f"\n{model}" if len(models) > 1 else ""))
            if col == 0:
                ax.set_ylabel("total energy (kWh, log scale)")
    fig.suptitle(
        title or "Energy of the traces' requests, binned estimate against the ideal (Fig 1)",
        fontweight="bold",
    )
    notes = [
        _note(bins, totals),
        "bar labels: kWh and the excess over the ideal with the sparse FLOPs peak "
        "(E / E_ideal - 1, the study's Table 4); error bars: 95 % intervals of the totals "
        "(the bins' half-widths in root-sum-square), where every bin has one",
    ]
    if paper:
        notes.append(
            "★ and 'paper': the paper's Table 4 excess (RTX A6000, sparse peak) applied to "
            "this ideal, where the bar would end if ours exceeded the ideal as much"
        )
    add_footer(fig, *notes)
    fig.tight_layout()
    return fig


def _paper_over_ideal(
    ax: plt.Axes, totals: pd.DataFrame, ideal: pd.DataFrame, engines: Sequence[str], trace: str
) -> bool:
    """Table 4 on the panel: for each engine bar, the paper's excess over the ideal (sparse
    FLOPs peak) applied to this ideal, labelled with the paper's percentage."""
    if ideal.empty:
        return False
    drawn = False
    base = float(ideal["ideal_flops_sparse_j"].iloc[0]) / J_PER_KWH
    for i, engine in enumerate(engines):
        hit = totals[totals["engine"] == engine]
        if hit.empty:
            continue
        paper = TABLE4_OVER_IDEAL.get((trace, str(hit.iloc[0]["backend"])))
        if paper is None:
            continue
        mark = base * (1 + paper)
        paper_mark(ax, i, mark)
        # Above the star, or below it where the star sits inside the bar, off the bar's top.
        inside = mark < float(hit.iloc[0]["energy_j"]) / J_PER_KWH
        ax.annotate(
            f"paper {paper:+.0%}",
            (i, mark),
            textcoords="offset points",
            xytext=(0, -8 if inside else 8),
            ha="center",
            va="top" if inside else "bottom",
            fontsize=7.5,
            color=PAPER_COLOUR,
            bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none", "pad": 1.0},
        )
        drawn = True
    return drawn
