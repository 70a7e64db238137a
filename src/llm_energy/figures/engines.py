"""Engines against each other: PyTorch with and without torch.compile, vLLM with and without
CUDA graphs (the study's Fig 5), and vLLM's continuous batching against static batches (Fig 9)."""

from __future__ import annotations

import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from llm_energy.analysis.paper import CLAIMS
from llm_energy.analysis.sessions import machine_sessions
from llm_energy.figures.points import (
    Marks,
    met_protocol,
    plot_bars,
    plot_line,
    relative_half_width,
    session_lines,
    window_s,
    with_evidence,
)
from llm_energy.figures.provenance import session_names
from llm_energy.figures.style import (
    ENGINE_LOOKS,
    PAPER_COLOUR,
    add_footer,
    legend_entries,
    log2_batch_axis,
    looks,
    paper_mark,
    provenance_note,
    scaled_label,
    setup,
)
from llm_energy.measure.trials import ratio_half_width

SAMPLES = 1024  # the study normalises Fig 5 to 1,024 requests


def engine_label(row: pd.Series) -> str:
    if row["backend"] == "vllm":
        return "vLLM, CUDA graphs" if row["cuda_graphs"] else "vLLM, eager"
    return "PyTorch, torch.compile" if row["torch_compile"] else "PyTorch, eager"


def _with_labels(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["engine_label"] = df.apply(engine_label, axis=1)
    return df


def engine_order(labels: pd.Series) -> list[str]:
    """Engine labels in the style table's order, any others after them."""
    present = set(labels)
    return [e for e in ENGINE_LOOKS if e in present] + sorted(present - set(ENGINE_LOOKS))


def table_engine_optimisations(df: pd.DataFrame, samples: int = SAMPLES) -> pd.DataFrame:
    """Energy and time of ``samples`` requests per engine and batch size (Fig 5's numbers),
    each scaled from one measured batch, with its 95 % interval where the row has trials;
    infeasible batches are kept with their reason."""
    rows = _with_labels(df[df["experiments"].str.contains("engine_optimisations")])
    if rows.empty:
        raise ValueError("no engine_optimisations rows in the measurements")
    energy, time = f"energy_{samples}_requests_j", f"time_{samples}_requests_s"
    rows[energy] = rows["energy_per_request_j"] * samples
    rows[time] = rows["duration_s"] / rows["batch_size"] * samples
    for col in (energy, time):
        rows[f"{col}_ci95"] = relative_half_width(rows, col) * rows[col]
    cols = [
        "model",
        "engine",
        "engine_label",
        "batch_size",
        "input_tokens",
        "output_tokens",
        "feasible",
        "error",
        *(c for c in ("largest_feasible_batch", "smallest_infeasible_batch") if c in rows),
        energy,
        f"{energy}_ci95",
        time,
        f"{time}_ci95",
        "energy_per_output_token_j",
        "mean_power_w",
        "energy_source",
        "gpu_name",
        "backend_version",
        "weights",
    ]
    return (
        rows[with_evidence(cols, rows)]
        .sort_values(["model", "engine_label", "batch_size"])
        .reset_index(drop=True)
    )


def _largest_measured(
    ax: plt.Axes,
    line: pd.DataFrame,
    failed: pd.DataFrame,
    colour: object,
    marked: dict[int, int],
) -> None:
    """Marks an engine's largest measured batch where a larger one failed, and the bound a
    search between them found where the rows have one; ``marked`` counts the marks already
    at each batch, which push this one down."""
    top = line.sort_values("batch_size").iloc[-1]
    above = failed[failed["batch_size"] > top["batch_size"]].sort_values("batch_size")
    if above.empty:
        return
    first = above.iloc[0]
    reason = str(first["error"] or "not feasible").split(":")[0]
    batch = int(top["batch_size"])
    bound = first.get("largest_feasible_batch")
    if bound is not None and not pd.isna(bound):
        between = f"largest that runs: {int(bound):,}"
    else:
        between = "sizes between not tried"
    ax.axvline(batch, color=colour, ls=":", lw=1.2)
    # Along the top of the marker line, clear of the lines below.
    ax.annotate(
        f"{top['engine_label']}: largest measured\nbatch {batch:,} (batch "
        f"{int(first['batch_size']):,}: {reason};\n{between})",
        (batch, 0.97),
        xycoords=("data", "axes fraction"),
        textcoords="offset points",
        xytext=(-5, -36 * marked.get(batch, 0)),
        ha="right",
        va="top",
        fontsize=7.5,
        color=colour,
    )
    marked[batch] = marked.get(batch, 0) + 1


def fig_engine_optimisations(df: pd.DataFrame, samples: int = SAMPLES) -> plt.Figure:
    """Energy of ``samples`` requests (scaled from each measured batch) against batch size,
    one line per engine, with each PyTorch engine's largest measured batch marked where a
    larger one failed. Lines from different machine sessions name their session."""
    setup()
    table = table_engine_optimisations(df, samples)
    energy = f"energy_{samples}_requests_j"
    models = sorted(table["model"].unique())
    fig, axes = plt.subplots(1, len(models), figsize=(6.8 * len(models), 4.8), squeeze=False)
    labels = engine_order(table["engine_label"])
    engine_looks = looks(labels)
    marks = Marks()
    for ax, model in zip(axes.flat, models, strict=True):
        sub = table[table["model"] == model]
        feasible = sub[sub["feasible"].astype(bool)]
        sessions = session_names(feasible)
        marked: dict[int, int] = {}
        for label in labels:
            engine_rows = feasible[feasible["engine_label"] == label]
            if engine_rows.empty:
                continue
            # An engine measured in several sessions: a line for each, the earlier ones dotted,
            # so that no line joins two sessions.
            for n, (tag, line) in enumerate(session_lines(engine_rows)):
                look = engine_looks[label]
                if n:
                    look = dataclasses.replace(look, linestyle=(0, (1, 3)))
                if not tag and sessions.nunique() > 1:  # which session each line comes from
                    tag = f" ({', '.join(dict.fromkeys(sessions[line.index]))})"
                plot_line(ax, line, "batch_size", energy, look, label + tag, marks, 1e-3)
                if label.startswith("PyTorch") and not n:  # the latest session's bound
                    failed = sub[(sub["engine_label"] == label) & ~sub["feasible"].astype(bool)]
                    failed = failed[machine_sessions(failed).isin(set(machine_sessions(line)))]
                    _largest_measured(ax, line, failed, look.colour, marked)
        log2_batch_axis(ax, sorted(sub["batch_size"].unique()))
        ax.set_yscale("log")
        shape = sub.iloc[0]
        ax.set_title(f"{model}: {samples:,} requests × {int(shape['output_tokens'])} tokens out")
        ax.set_ylabel(scaled_label("energy", "kJ", samples, "requests", feasible["batch_size"]))
        ax.legend(frameon=False, fontsize=8, loc="lower left")
    fig.suptitle("PyTorch compile off/on and vLLM CUDA graphs off/on (Fig 5)", fontweight="bold")
    rows = _with_labels(df[df["experiments"].str.contains("engine_optim")])
    # The paper's four engines: one these rows lack is said, not left to the reader to notice.
    missing = [e for e in ENGINE_LOOKS if e not in set(table["engine_label"])]
    add_footer(
        fig,
        provenance_note(rows, rows["engine_label"]),
        f"each point: one measured batch scaled to {samples:,} requests "
        f"({samples:,} / batch size batches)",
        *marks.notes(),
        *([f"no rows of {', '.join(missing)} in these measurements"] if missing else []),
    )
    fig.tight_layout()
    return fig


def table_online_serving(df: pd.DataFrame) -> pd.DataFrame:
    """Offline (static batches) against online (continuous batching) per engine, model and
    batch size: energy, time and the saving (E_off - E_on) / E_off, with the saving's 95 %
    interval where both rows have trials."""
    rows = df[(df["experiments"].str.contains("online_serving")) & df["feasible"].astype(bool)]
    if rows.empty:
        raise ValueError("no feasible online_serving rows in the measurements")
    rows = rows.assign(
        _energy_rel=relative_half_width(rows, "energy_j"),
        _duration_rel=relative_half_width(rows, "duration_s"),
        _met=met_protocol(rows),
        _window_s=window_s(rows),
        _session=session_names(rows),
    )
    keys = ["model", "engine", "trace", "requests", "input_tokens", "output_tokens", "batch_size"]
    wide = rows.pivot_table(
        index=keys,
        columns="serving",
        values=["energy_j", "duration_s", "generated_tokens", "_energy_rel", "_duration_rel"],
        aggfunc="first",
        dropna=False,
    )
    if "offline" not in wide["energy_j"] or "online" not in wide["energy_j"]:
        raise ValueError("online_serving needs both offline and online rows")
    out = pd.DataFrame(index=wide.index)
    for what in ("energy_j", "duration_s"):
        out[f"offline_{what}"] = wide[(what, "offline")]
        out[f"online_{what}"] = wide[(what, "online")]
    out["generated_tokens"] = wide[("generated_tokens", "offline")]
    for what, saving in (("energy_j", "energy_saving"), ("duration_s", "time_saving")):
        ratio = out[f"online_{what}"] / out[f"offline_{what}"]
        out[saving] = 1 - ratio
        rel = f"_{what.split('_')[0]}_rel"
        out[f"{saving}_ci95"] = [
            ratio_half_width(r, a, b)
            for r, a, b in zip(ratio, wide[(rel, "offline")], wide[(rel, "online")], strict=True)
        ]
    out = out.reset_index()
    both = rows.groupby(keys, as_index=False).agg(
        protocol_met=("_met", "all"),
        window_s=("_window_s", "min"),
        sessions=("_session", lambda s: ", ".join(dict.fromkeys(s))),
    )
    prov = rows.groupby(keys[:2], as_index=False)[["energy_source", "gpu_name", "backend_version"]]
    out = out.merge(both, on=keys).merge(prov.first(), on=keys[:2])
    return out.dropna(subset=["energy_saving"])


def fig_online_serving(df: pd.DataFrame) -> plt.Figure:
    """The energy and time saved by continuous batching, per batch size, with the 95 %
    interval of each saving and the paper's value where it gives one."""
    setup()
    table = table_online_serving(df)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    groups = list(table.groupby(["model", "engine"]))
    colours = looks([f"{m}, {e}" for (m, e), _ in groups])
    width = 0.8 / len(groups)
    batch_sizes = sorted(table["batch_size"].unique())
    x = np.arange(len(batch_sizes))
    marks = Marks()
    panels = zip(axes, ("energy_saving", "time_saving"), ("energy", "time"), strict=True)
    for ax, col, what in panels:
        for k, ((model, engine), sub) in enumerate(groups):
            sub = sub.assign(point_id=[f"{model}/{engine}/{b}" for b in sub["batch_size"]])
            sub = sub.set_index("batch_size").reindex(batch_sizes)
            sub[col] = 100 * sub[col]
            sub[f"{col}_ci95"] = 100 * sub[f"{col}_ci95"]
            name = f"{model}, {engine}"
            at = x + (k - (len(groups) - 1) / 2) * width
            plot_bars(ax, at, sub, col, width, colours[name].colour, name, marks)
        ax.axhline(0, color="0.2", lw=0.8)
        ax.set_xticks(x, [str(b) for b in batch_sizes])
        ax.set_xlabel("batch size (requests in flight per GPU)")
        ax.set_ylabel(f"{what} saved online (% of offline)")
        ax.set_title(f"(offline − online) / offline {what}")
    _paper_saving(axes[0], batch_sizes, x)
    axes[0].legend(*legend_entries(axes[0]), frameon=False, fontsize=8)
    first = table.iloc[0]
    fig.suptitle(
        f"Continuous batching against static batches (Fig 9): {int(first['requests'])} requests, "
        f"{int(first['input_tokens'])} tokens in, output lengths from {first['trace']} "
        f"(≤ {int(first['output_tokens'])})",
        fontweight="bold",
    )
    rows = df[df["experiments"].str.contains("online_serving")]
    add_footer(
        fig,
        provenance_note(rows, rows["serving"].astype(str)),
        *marks.notes(),
        "a saving's interval combines both rows' intervals; without trials a bar has none, "
        "and a small saving may lie within the spread of repeated runs",
    )
    fig.tight_layout()
    return fig


def _paper_saving(ax: plt.Axes, batch_sizes: list[int], x: np.ndarray) -> None:
    """The paper's saving at large batches (claim 6: up to 5 %), over the bars it covers."""
    paper = CLAIMS["6"]["online_large"][0]
    large = [xi for xi, b in zip(x, batch_sizes, strict=True) if b >= 64]
    if not large or np.isnan(paper):
        return
    saved = -100 * paper
    ax.hlines(saved, large[0] - 0.45, large[-1] + 0.45, color=PAPER_COLOUR, ls=":", lw=1.5)
    paper_mark(
        ax,
        large[-1] + 0.45,
        saved,
        f"paper: up to {saved:.0f} %\nsaved at batch ≥ 64",
        xytext=(-4, 6),
        ha="right",
    )
