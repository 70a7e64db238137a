"""Tensor parallelism: one model's batches split over 1, 2 and 4 GPUs (the study's Fig 6).

Each row's energy is summed over every GPU of its job, so a batch on 4 GPUs is compared with
the same batch on 1 GPU of the same engine: latency falls, total energy can rise."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.transforms import blended_transform_factory

from llm_energy.analysis.paper import CLAIMS, FIGURE_MODELS
from llm_energy.figures.engines import engine_label, engine_order
from llm_energy.figures.points import Marks, plot_line, relative_half_width, with_evidence
from llm_energy.figures.style import (
    MINOR,
    PLAIN,
    add_footer,
    legend_handle,
    log2_batch_axis,
    looks,
    paper_handle,
    paper_mark,
    provenance_note,
    setup,
    top_legend,
)

TAG = "tensor_parallel"
# A point is compared with the one-GPU point of the same model, engine options and shape.
KEY = ["model", "engine_label", "input_tokens", "output_tokens", "batch_size"]
COLUMNS = [
    "model",
    "engine_label",
    "tensor_parallel_size",
    "batch_size",
    "engine",
    "gpu_count",
    "input_tokens",
    "output_tokens",
    "feasible",
    "error",
    "energy_per_batch_j",
    "latency_per_batch_s",
    "energy_per_output_token_j",
    "mean_power_per_gpu_w",
    "energy_change_pct",
    "latency_change_pct",
    "energy_source",
    "gpu_name",
    "backend_version",
    "weights",
]
PANELS = (
    ("energy_per_output_token_j", "energy per output token (J)", "energy per token", True),
    ("latency_per_batch_s", "latency per batch (s)", "latency per batch", True),
    ("mean_power_per_gpu_w", "mean power per GPU (W)", "power per GPU", False),
)


def _parallel_rows(df: pd.DataFrame) -> pd.DataFrame:
    rows = df[df["experiments"].astype(str).str.contains(TAG)].copy()
    if rows.empty:
        raise ValueError(
            "no tensor_parallel rows in the measurements (Fig 6 needs "
            "experiments.tensor_parallel.enabled: true and its jobs measured)"
        )
    rows["engine_label"] = rows.apply(engine_label, axis=1)
    rows["feasible"] = rows["feasible"].astype(bool)
    rows["error"] = rows["error"].fillna("").astype(str)
    return rows


def table_tensor_parallel(df: pd.DataFrame) -> pd.DataFrame:
    """Fig 6's numbers: per model, engine, tensor-parallel size and batch size, the energy and
    latency of one batch, energy per output token, mean power per GPU, and the change in energy
    and latency from the same batch on one GPU (NaN without a feasible one-GPU point).
    Infeasible points are kept with their reason."""
    rows = _parallel_rows(df)
    twice = rows.duplicated([*KEY, "tensor_parallel_size"], keep=False)
    if twice.any():
        first = rows[twice].iloc[0]
        raise ValueError(
            f"tensor_parallel: {int(twice.sum())} rows share a point, e.g. {first['model']}, "
            f"{first['engine_label']}, TP {first['tensor_parallel_size']}, batch "
            f"{first['batch_size']} (engines {', '.join(sorted(set(rows[twice]['engine'])))}); "
            "measure each engine option once per size"
        )
    rows["energy_per_batch_j"] = rows["energy_j"]
    rows["latency_per_batch_s"] = rows["duration_s"]
    # gpu_count is 0 where no GPU was metered (the CPU): no power per GPU there.
    gpus = rows["gpu_count"].where(rows["gpu_count"] > 0)
    rows["mean_power_per_gpu_w"] = rows["energy_j"] / rows["duration_s"] / gpus
    one_gpu = rows.loc[rows["tensor_parallel_size"] == 1, [*KEY, "energy_j", "duration_s"]]
    rows = rows.merge(one_gpu, on=KEY, how="left", suffixes=("", "_tp1"))
    rows["energy_change_pct"] = 100 * (rows["energy_j"] / rows["energy_j_tp1"] - 1)
    rows["latency_change_pct"] = 100 * (rows["duration_s"] / rows["duration_s_tp1"] - 1)
    for col in ("energy_per_batch_j", "latency_per_batch_s", "mean_power_per_gpu_w"):
        rows[f"{col}_ci95"] = relative_half_width(rows, col) * rows[col]
    columns = with_evidence([*COLUMNS, "energy_per_batch_j_ci95", "latency_per_batch_s_ci95"], rows)
    return rows[columns].sort_values([*KEY, "tensor_parallel_size"]).reset_index(drop=True)


def _gpus(size: int) -> str:
    return f"TP {size} ({size} GPU{'s' if size > 1 else ''})"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _not_feasible(table: pd.DataFrame) -> str:
    """'model, engine, TP n: batch a, b (reason)' per combination with infeasible points."""
    parts = []
    failed = table[~table["feasible"]]
    for (model, label, size), sub in failed.groupby(
        ["model", "engine_label", "tensor_parallel_size"], sort=True
    ):
        reasons = sorted({e.split(":")[0] for e in sub["error"] if e} or {"not feasible"})
        batches = ", ".join(str(b) for b in sorted(sub["batch_size"]))
        parts.append(f"{model}, {label}, TP {size}: batch {batches} ({'; '.join(reasons)})")
    return "; ".join(parts)


def _only_some_sizes(table: pd.DataFrame, sizes: list[int]) -> str:
    """'engine: TP 1 only (no rows at TP 2, 4)' for each engine measured at fewer sizes than
    the figure draws, so that a missing line reads as not measured rather than as lost."""
    parts = []
    for label, sub in table.groupby("engine_label", sort=False):
        have = sorted(int(s) for s in sub["tensor_parallel_size"].unique())
        missing = [s for s in sizes if s not in have]
        if missing:
            parts.append(
                f"{label}: TP {', '.join(map(str, have))} only (no rows at TP "
                f"{', '.join(map(str, missing))})"
            )
    return "; ".join(parts)


def _paper_changes(
    ax: plt.Axes, sub: pd.DataFrame, value: str, colours: dict, sizes: list[int]
) -> bool:
    """The paper's change from one GPU at batch 1 (claim 7), applied to each engine's own
    one-GPU point: where its TP 2 and TP 4 points would be if ours changed as the paper's."""
    quantity = {"energy_per_output_token_j": "energy", "latency_per_batch_s": "time"}.get(value)
    if quantity is None:
        return False
    drawn = False
    base = sub[(sub["batch_size"] == 1) & (sub["tensor_parallel_size"] == 1) & sub["feasible"]]
    for k, (_, one) in enumerate(base.iterrows()):
        # Each engine's stars a little left of batch 1, apart from its points and the others'.
        x = 2 ** (-0.12 * (k + 1))
        for size in sizes:
            paper = CLAIMS["7"].get(f"tp{size}_{quantity}", (np.nan,))[0]
            if size > 1 and not np.isnan(paper):
                paper_mark(ax, x, one[value] * (1 + paper), face=colours[size])
                drawn = True
    return drawn


def _paper_line() -> str:
    claims = CLAIMS["7"]
    parts = [
        f"TP {n}: latency {100 * claims[f'tp{n}_time'][0]:+.1f} %, energy "
        f"{100 * claims[f'tp{n}_energy'][0]:+.1f} %"
        for n in (2, 4)
    ]
    return (
        "★ the paper's change from TP 1 at batch 1 (claim 7; its GPUs, its engine), applied "
        f"to each engine's TP 1 point: {'; '.join(parts)}"
    )


def fig_tensor_parallel(df: pd.DataFrame) -> plt.Figure:
    """Energy per output token, latency per batch and mean power per GPU against batch size,
    one row of panels per model; one colour per tensor-parallel size, one line style and
    marker per engine (the style table's), × at the bottom of a panel for a point that did
    not fit, ★ where the paper's change from one GPU would put a point."""
    setup()
    table = table_tensor_parallel(df)
    models = sorted(table["model"].unique())
    sizes = sorted(int(s) for s in table["tensor_parallel_size"].unique())
    labels = engine_order(table["engine_label"])
    engine_looks = looks(labels)
    colours = {size: look.colour for size, look in looks(sizes).items()}
    batch_sizes = sorted(int(b) for b in table["batch_size"].unique())
    fig, axes = plt.subplots(
        len(models), len(PANELS), figsize=(4.7 * len(PANELS), 3.7 * len(models)), squeeze=False
    )
    marks = Marks()
    paper = False
    for r, model in enumerate(models):
        sub = table[table["model"] == model]
        for c, (value, ylabel, short, log_y) in enumerate(PANELS):
            ax = axes[r, c]
            bottom = blended_transform_factory(ax.transData, ax.transAxes)
            for size in sizes:
                for label in labels:
                    points = sub[
                        (sub["tensor_parallel_size"] == size) & (sub["engine_label"] == label)
                    ]
                    line = points[points["feasible"] & points[value].notna()]
                    name = f"{label}, TP {size}"
                    plot_line(
                        ax,
                        line,
                        "batch_size",
                        value,
                        engine_looks[label],
                        name,
                        marks,
                        colour=colours[size],
                        in_legend=False,
                    )
                    failed = points[~points["feasible"]]
                    if len(failed):  # an empty marker line would still take room in the layout
                        ax.plot(
                            failed["batch_size"],
                            [0.04] * len(failed),
                            ls="none",
                            marker="x",
                            ms=7,
                            mew=2,
                            color=colours[size],
                            transform=bottom,
                            label="_nolegend_",
                        )
            paper |= _paper_changes(ax, sub, value, colours, sizes)
            if sub[value].isna().all():  # e.g. power per GPU of rows measured without a GPU
                ax.text(0.5, 0.5, "not measured", transform=ax.transAxes, ha="center", color="0.4")
            log2_batch_axis(ax, batch_sizes)
            ax.set_xlabel("batch size (requests per batch)" if r == len(models) - 1 else "")
            if log_y:
                ax.set_yscale("log")
                ax.yaxis.set_major_formatter(PLAIN)
                ax.yaxis.set_minor_formatter(MINOR)
                if (~sub["feasible"]).any():  # room under the lowest point for the × marks
                    low, high = ax.get_ylim()
                    ax.set_ylim(low / (high / low) ** 0.1, high)
            else:
                ax.set_ylim(bottom=0)
            ax.set_title(f"{model}: {short}")
            ax.set_ylabel(ylabel)
    _legend_entries(axes[0, 0], sizes, colours, engine_looks, (~table["feasible"]).any(), paper)
    top_legend(fig, axes[0, 0])
    shapes = table[["input_tokens", "output_tokens"]].drop_duplicates()
    shape = ""
    if len(shapes) == 1:
        i, o = (int(v) for v in shapes.iloc[0])
        shape = f": {i} tokens in, {o} out"
    fig.suptitle(
        f"Tensor parallelism over {_and([str(s) for s in sizes])} GPUs (Fig 6){shape}",
        y=1.08,
        fontweight="bold",
    )
    rows = _parallel_rows(df)
    series = rows["engine_label"] + ", TP " + rows["tensor_parallel_size"].astype(int).astype(str)
    hardware = ", ".join(sorted({str(h) for h in rows.get("hardware", pd.Series()).dropna()}))
    notes = [
        provenance_note(rows, series),
        f"hardware {hardware or 'n/a'} · energy summed over every GPU of each job (its "
        "tensor-parallel size) · latency: wall time of one batch · power per GPU: energy / "
        "latency / GPUs",
        *marks.notes(),
    ]
    partial = _only_some_sizes(table, sizes)
    if partial:
        notes.append(f"measured at fewer sizes: {partial}")
    absent = [m for m in FIGURE_MODELS["fig6"] if m not in models]
    if absent:
        notes.append(
            f"the paper's Fig 6 also has {_and(absent)}: no tensor_parallel rows of "
            f"{'it' if len(absent) == 1 else 'them'} here"
        )
    if paper:
        notes.append(_paper_line())
    if (~table["feasible"]).any():
        notes.append(f"× not feasible: {_not_feasible(table)}")
    add_footer(fig, *notes)
    fig.tight_layout()
    return fig


def _legend_entries(
    ax: plt.Axes,
    sizes: list[int],
    colours: dict[int, object],
    engine_looks: dict,
    infeasible: bool,
    paper: bool,
) -> None:
    """Empty lines that give the shared legend one entry per size (colour), one per engine
    (line style and marker), one for the infeasible mark and one for the paper's marks,
    instead of one per drawn line."""
    entries = [Line2D([], [], color=colours[size], lw=2.5, label=_gpus(size)) for size in sizes]
    for label, look in engine_looks.items():
        entries.append(legend_handle(look, label, color="0.3"))
    if infeasible:
        entries.append(
            Line2D([], [], color="0.3", ls="none", marker="x", ms=7, mew=2, label="not feasible")
        )
    if paper:
        entries.append(paper_handle("paper, from TP 1"))
    for entry in entries:
        entry.set_in_layout(False)  # drawn nowhere, so it must not take room in the layout
        ax.add_line(entry)
