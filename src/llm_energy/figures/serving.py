"""Requests served through a vLLM server at their arrival times (experiments.served_traces):
energy per request against request rate, and against p99 time per output token across server
settings, each beside the offline estimate of the same requests (static batches of the
server's max_num_seqs through the same server) where the rows hold one."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from llm_energy.figures.style import PALETTE, add_footer, provenance_note, setup

NAME = "served_traces"
# What makes the offline row's requests the same as a served row's: one draw of lengths.
SAME_REQUESTS = ["model", "trace", "requests", "input_tokens", "output_tokens"]
# One server: the engine's settings.
SETTING = ["cuda_graphs", "batch_size", "tensor_parallel_size"]
ARRIVAL_STYLE = {"trace": ("-", "o"), "poisson": ("--", "s")}
NO_OFFLINE = "no offline rows of the same requests (experiments.served_traces.offline_estimate)"

COLUMNS = [
    "model",
    "engine",
    "setting",
    "cuda_graphs",
    "max_num_seqs",
    "tensor_parallel_size",
    "trace",
    "requests",
    "input_tokens",
    "output_tokens",
    "arrival",
    "request_rate",
    "trials",
    "requests_failed",
    "ttft_p50_s",
    "ttft_p99_s",
    "tpot_p50_s",
    "tpot_p99_s",
    "e2e_p50_s",
    "steady_state_s",
    "steady_state_fraction",
    "energy_per_request_j",
    "energy_per_request_j_ci95",
    "energy_per_output_token_j",
    "offline_energy_per_request_j",
    "offline_energy_per_request_j_ci95",
    "served_over_offline",
    "served_over_offline_ci95",
    "protocol_met",
    "energy_source",
    "server_config",
    "point_id",
    "offline_point_id",
]


def server_label(max_num_seqs: int, size: int) -> str:
    """A server's size as the figures and claims name it: its max_num_seqs and its GPUs."""
    return f"max_num_seqs {int(max_num_seqs)}" + (f", TP {int(size)}" if size > 1 else "")


def setting_label(cuda_graphs: bool, max_num_seqs: int, size: int) -> str:
    graphs = "CUDA graphs" if cuda_graphs else "eager"
    return f"{graphs}, {server_label(max_num_seqs, size)}"


def _rows(df: pd.DataFrame) -> pd.DataFrame:
    rows = df[df["experiments"].astype(str).str.contains(NAME)].copy()
    if rows.empty:
        raise ValueError(f"no {NAME} rows in the measurements")
    rows["setting"] = [
        setting_label(bool(g), int(b), int(t))
        for g, b, t in zip(
            rows["cuda_graphs"], rows["batch_size"], rows["tensor_parallel_size"], strict=True
        )
    ]
    return rows


def table_served_traces(df: pd.DataFrame) -> pd.DataFrame:
    """One row per served run (engine setting, arrival, rate): latency, the steady state, and
    energy per request with its 95 % interval beside the offline estimate of the same
    requests on the same server, and their ratio. The ratio's interval combines the two
    relative half-widths in quadrature (independent trials). Runs not used (too many failed
    requests) are kept with NaN energy; their requests_failed says why."""
    rows = _rows(df)
    served = rows[rows["serving"] == "served"].copy()
    if served.empty:
        raise ValueError(f"no served {NAME} rows in the measurements")
    offline = rows[(rows["serving"] == "offline") & rows["feasible"].astype(bool)].copy()
    offline["offline_energy_per_request_j"] = offline["energy_per_request_j"]
    ci = offline.get("energy_j_ci95", math.nan)
    offline["offline_energy_per_request_j_ci95"] = ci / offline["requests"]
    offline["offline_point_id"] = offline.get("point_id", math.nan)
    keep = [*SAME_REQUESTS, *SETTING, "offline_energy_per_request_j"]
    keep += ["offline_energy_per_request_j_ci95", "offline_point_id"]
    table = served.merge(offline[keep], on=[*SAME_REQUESTS, *SETTING], how="left")
    ratio = table["energy_per_request_j"] / table["offline_energy_per_request_j"]
    rel = np.sqrt(
        (table["energy_per_request_j_ci95"] / table["energy_per_request_j"]) ** 2
        + (table["offline_energy_per_request_j_ci95"] / table["offline_energy_per_request_j"]) ** 2
    )
    table["served_over_offline"] = ratio
    table["served_over_offline_ci95"] = ratio * rel
    table["max_num_seqs"] = table["batch_size"]
    for col in COLUMNS:
        if col not in table:
            table[col] = math.nan
    order = ["model", "setting", "arrival", "request_rate"]
    return table[COLUMNS].sort_values(order).reset_index(drop=True)


def _offline_note(table: pd.DataFrame) -> str:
    if table["offline_energy_per_request_j"].notna().any():
        return (
            "dotted: offline estimate, the same requests in static batches of max_num_seqs "
            "through the same server"
        )
    return NO_OFFLINE


def _colours(settings: list[str]) -> dict[str, tuple[float, float, float]]:
    palette = sns.color_palette(PALETTE, max(len(settings), 2))
    return dict(zip(settings, palette, strict=False))


def _offline_lines(ax: plt.Axes, sub: pd.DataFrame, colours: dict) -> None:
    """The offline estimate of each setting: a dotted line, its interval shaded."""
    for setting, rows in sub.groupby("setting"):
        value = rows["offline_energy_per_request_j"].dropna()
        if value.empty:
            continue
        ci = rows["offline_energy_per_request_j_ci95"].dropna()
        v = float(value.iloc[0])
        ax.axhline(v, color=colours[setting], ls=":", lw=1.4, label=f"{setting}, offline")
        if not ci.empty and not math.isnan(float(ci.iloc[0])):
            c = float(ci.iloc[0])
            ax.axhspan(v - c, v + c, color=colours[setting], alpha=0.12, lw=0)


def _unmet(table: pd.DataFrame) -> pd.Series:
    """Runs that did not meet the protocol (a steady state shorter than the window it asks
    for, or fewer trials): drawn hollow."""
    met = table["protocol_met"]
    return ~met.where(met.notna(), True).astype(bool)


def _unmet_note(table: pd.DataFrame) -> str:
    n = int(_unmet(table).sum())
    if not n:
        return ""
    return (
        f"\nhollow: {n} of {len(table)} runs did not meet the protocol (steady state under "
        "its window, or too few trials; protocol_note says which); the claims give them no verdict"
    )


def _hollow(ax: plt.Axes, x: pd.Series, y: pd.Series, marker: str, size: float) -> None:
    """White-filled markers over runs that did not meet the protocol (those with a value)."""
    drawn = x.notna() & y.notna()
    if drawn.any():
        ax.scatter(
            x[drawn],
            y[drawn],
            marker=marker,
            s=size,
            facecolors="white",
            edgecolors="none",
            zorder=5,
        )


# Inches of figure width that the legend beside the last panel takes.
LEGEND_W = 3.4


def _legend_beside(ax: plt.Axes) -> None:
    """One legend, right of the last panel, where it hides no line (every panel draws the same
    settings in the same colours)."""
    ax.legend(frameon=False, fontsize=7.5, loc="upper left", bbox_to_anchor=(1.02, 1.0))


def _title(table: pd.DataFrame) -> str:
    first = table.iloc[0]
    return (
        f"{int(first['requests'])} requests from {first['trace']} (≤ {int(first['input_tokens'])} "
        f"tokens in, ≤ {int(first['output_tokens'])} out) through vllm serve"
    )


def fig_serving_rate(df: pd.DataFrame) -> plt.Figure:
    """Energy per request over each run's steady state against the request rate, one line per
    server setting and arrival process (95 % intervals over trials), the offline estimate of
    each setting dotted; one panel per model."""
    setup()
    table = table_served_traces(df)
    models = sorted(table["model"].unique())
    settings = sorted(table["setting"].unique())
    colours = _colours(settings)
    fig, axes = plt.subplots(
        1, len(models), figsize=(5.4 * len(models) + LEGEND_W, 4.6), squeeze=False
    )
    for ax, model in zip(axes.flat, models, strict=True):
        sub = table[table["model"] == model]
        for (setting, arrival), line in sub.groupby(["setting", "arrival"]):
            line = line.sort_values("request_rate")
            ls, marker = ARRIVAL_STYLE.get(str(arrival), ("-", "o"))
            ax.errorbar(
                line["request_rate"],
                line["energy_per_request_j"],
                yerr=line["energy_per_request_j_ci95"].fillna(0),
                color=colours[setting],
                ls=ls,
                marker=marker,
                ms=4,
                lw=1.5,
                capsize=2,
                label=f"{setting}, {arrival} arrivals",
            )
            unmet = line[_unmet(line)]
            _hollow(ax, unmet["request_rate"], unmet["energy_per_request_j"], marker, 6)
        _offline_lines(ax, sub, colours)
        rates = sorted(sub["request_rate"].unique())
        ax.set_xscale("log", base=2)
        ax.set_xticks(rates, [f"{r:g}" for r in rates])
        ax.set_xlabel("request rate (requests/s)")
        ax.set_ylabel("energy per request over the steady state (J)")
        ax.set_title(model)
    _legend_beside(axes.flat[-1])
    fig.suptitle(_title(table), fontweight="bold")
    rows = _rows(df)
    add_footer(fig, provenance_note(rows) + "\n" + _offline_note(table) + _unmet_note(table))
    fig.tight_layout()
    return fig


def pareto_front(points: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """The points no other point beats on both ``x`` and ``y`` (lower is better), by ``x``."""
    points = points.dropna(subset=[x, y]).sort_values([x, y])
    best = math.inf
    keep = []
    for idx, value in points[y].items():
        if value < best:
            keep.append(idx)
            best = value
    return points.loc[keep]


def fig_serving_pareto(df: pd.DataFrame) -> plt.Figure:
    """Energy per request against p99 time per output token, every run of every server
    setting (CUDA graphs on and off, max_num_seqs, tensor parallelism), its request rate
    beside it; the Pareto front across settings drawn through the runs no other beats on both;
    one panel per model and arrival process, the offline estimate of each setting dotted
    (offline batches have no per-token latency of their own)."""
    setup()
    table = table_served_traces(df)
    panels = sorted(table.groupby(["model", "arrival"]).groups)
    settings = sorted(table["setting"].unique())
    colours = _colours(settings)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.0 * len(panels) + LEGEND_W, 4.6), squeeze=False
    )
    for ax, (model, arrival) in zip(axes.flat, panels, strict=True):
        sub = table[(table["model"] == model) & (table["arrival"] == arrival)].copy()
        sub["tpot_p99_ms"] = 1e3 * sub["tpot_p99_s"]
        for setting, group in sub.groupby("setting"):
            ax.scatter(
                group["tpot_p99_ms"],
                group["energy_per_request_j"],
                color=colours[setting],
                marker=ARRIVAL_STYLE.get(str(arrival), ("-", "o"))[1],
                s=28,
                label=setting,
                zorder=3,
            )
            unmet = group[_unmet(group)]
            marker = ARRIVAL_STYLE.get(str(arrival), ("-", "o"))[1]
            _hollow(ax, unmet["tpot_p99_ms"], unmet["energy_per_request_j"], marker, 9)
            for r in group.itertuples():
                ax.annotate(
                    f"{r.request_rate:g}/s",
                    (r.tpot_p99_ms, r.energy_per_request_j),
                    textcoords="offset points",
                    xytext=(4, 3),
                    fontsize=6.5,
                    color="0.3",
                )
        front = pareto_front(sub, "tpot_p99_ms", "energy_per_request_j")
        if len(front):
            ax.scatter(
                front["tpot_p99_ms"],
                front["energy_per_request_j"],
                s=90,
                facecolors="none",
                edgecolors="0.25",
                lw=0.9,
                zorder=4,
            )
            ax.step(
                front["tpot_p99_ms"],
                front["energy_per_request_j"],
                where="post",
                color="0.25",
                lw=1.0,
                label="Pareto front",
                zorder=2,
            )
        _offline_lines(ax, sub, colours)
        ax.set_xlabel("p99 time per output token (ms)")
        ax.set_ylabel("energy per request over the steady state (J)")
        ax.set_title(f"{model}, {arrival} arrivals")
    _legend_beside(axes.flat[-1])
    fig.suptitle(_title(table), fontweight="bold")
    add_footer(fig, provenance_note(_rows(df)) + "\n" + _offline_note(table) + _unmet_note(table))
    fig.tight_layout()
    return fig
