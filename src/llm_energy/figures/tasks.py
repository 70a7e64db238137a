"""Classical NLP tasks: the energy of each task's examples per engine (the study's Fig 8) and
vLLM's energy intensity per output token and per request across batch sizes (Fig 12).

Each task point serves the task's sampled examples offline, in static batches, with each
example's own prompt length; outputs are 1 token (classification), 64 (generation) and the
reference target's length (translation, summarization; a fixed length where the source holds
no reference), because random-weight models never stop by themselves. The figures' footers
say what the rows served.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from llm_energy.errors import InputError
from llm_energy.figures.engines import engine_label
from llm_energy.figures.style import PALETTE, add_footer, provenance_note, setup, top_legend

TASK_ORDER = ("classification", "translation", "summarization", "generation")
ENGINE_ORDER = ("PyTorch, eager", "PyTorch, torch.compile", "vLLM, eager", "vLLM, CUDA graphs")
SAMPLES = 1024  # the study reports each task over 1,024 examples


def _task_rows(df: pd.DataFrame) -> pd.DataFrame:
    rows = df[df["experiments"].astype(str).str.contains("classical_tasks")].copy()
    if rows.empty:
        raise InputError("no classical_tasks rows in the measurements")
    rows["task"] = rows["trace"].astype(str)
    rows["engine_label"] = rows.apply(engine_label, axis=1)
    return rows


def _ordered(values: pd.Series, order: tuple[str, ...]) -> list[str]:
    present = set(values.astype(str))
    return [v for v in order if v in present] + sorted(present - set(order))


def table_classical_tasks(df: pd.DataFrame, samples: int = SAMPLES) -> pd.DataFrame:
    """Per model, engine, task and batch size: energy per request and per ``samples``
    examples, per output token, and time (Fig 8's numbers); infeasible batches are kept with
    their reason."""
    rows = _task_rows(df)
    rows[f"energy_{samples}_requests_j"] = rows["energy_per_request_j"] * samples
    rows["duration_per_request_s"] = rows["duration_s"] / rows["requests"]
    if "clipped_requests" not in rows:
        rows["clipped_requests"] = np.nan
    cols = [
        "model",
        "engine",
        "engine_label",
        "task",
        "batch_size",
        "requests",
        "generated_tokens",
        "clipped_requests",
        "input_tokens",
        "output_tokens",
        "feasible",
        "error",
        "energy_j",
        "energy_per_request_j",
        f"energy_{samples}_requests_j",
        "energy_per_output_token_j",
        "duration_s",
        "duration_per_request_s",
        "mean_power_w",
        "energy_source",
        "gpu_name",
        "backend_version",
        "weights",
    ]
    rows = rows[[c for c in cols if c in rows.columns]].rename(
        columns={"input_tokens": "max_input_tokens", "output_tokens": "max_output_tokens"}
    )
    rows["_task"] = rows["task"].map({t: i for i, t in enumerate(TASK_ORDER)})
    rows["_engine"] = rows["engine_label"].map({e: i for i, e in enumerate(ENGINE_ORDER)})
    rows = rows.sort_values(["model", "_task", "task", "_engine", "engine", "batch_size"])
    return rows.drop(columns=["_task", "_engine"]).reset_index(drop=True)


def table_classical_tasks_vllm(df: pd.DataFrame) -> pd.DataFrame:
    """The vLLM rows of :func:`table_classical_tasks` (Fig 12's numbers)."""
    rows = df[df["backend"].astype(str) == "vllm"]
    table = table_classical_tasks(rows) if len(rows) else pd.DataFrame()
    if table.empty:
        raise InputError("no vLLM classical_tasks rows in the measurements")
    return table


def _quantity(table: pd.DataFrame, energy: str, duration: str) -> tuple[str, str]:
    """The energy column, or the time column when no row has energy (meter 'none')."""
    return (energy, "energy") if table[energy].notna().any() else (duration, "time")


def _bars(
    ax: plt.Axes,
    sub: pd.DataFrame,
    tasks: list[str],
    groups: list,
    group_col: str,
    value: str,
    colours: dict,
    label: str,
) -> None:
    """Grouped bars: one group per task, one bar per value of ``group_col``; an infeasible
    bar is marked with a cross at the foot of the axis."""
    x = np.arange(len(tasks))
    width = 0.8 / len(groups)
    for k, g in enumerate(groups):
        at = x + (k - (len(groups) - 1) / 2) * width
        line = sub[sub[group_col] == g].set_index("task").reindex(tasks)
        feasible = line["feasible"].eq(True)
        heights = line[value].where(feasible)
        ax.bar(at, heights, width, color=colours[g], label=label.format(g))
        for xi, ok, measured in zip(at, feasible, line["feasible"].notna(), strict=True):
            if measured and not ok:
                ax.annotate(
                    "×",
                    (xi, 0),
                    xycoords=("data", "axes fraction"),
                    ha="center",
                    va="bottom",
                    color=colours[g],
                    fontsize=11,
                )
    ax.set_xticks(x, tasks, fontsize=8.5)


def outputs_note(rows: pd.DataFrame) -> str:
    """What the rows served: output tokens per request of each task (forced, since random
    weights never stop by themselves) and how many examples a point served."""
    served = rows[rows["feasible"].eq(True) & rows["requests"].gt(0)]
    per_task = (served["generated_tokens"] / served["requests"]).groupby(served["task"]).mean()
    lengths = ", ".join(
        f"{t} {per_task[t]:.3g}" for t in _ordered(served["task"], TASK_ORDER) if t in per_task
    )
    requests = ", ".join(str(int(n)) for n in sorted(served["requests"].unique()))
    return (
        f"output tokens per request (forced: random weights never stop): {lengths}; "
        f"{requests} examples served per point"
    )


def _footer(fig: plt.Figure, rows: pd.DataFrame) -> None:
    note = f"{provenance_note(rows)}\n{outputs_note(rows)}; × = not feasible (out of memory)"
    add_footer(fig, note)


def fig_classical_tasks(df: pd.DataFrame, samples: int = SAMPLES) -> plt.Figure:
    """Energy of ``samples`` examples of each task, one bar per engine, one panel per model
    and batch size (log scale)."""
    setup()
    table = table_classical_tasks(df, samples)
    value, quantity = _quantity(table, f"energy_{samples}_requests_j", "duration_per_request_s")
    scale = 1.0 if quantity == "energy" else float(samples)
    table = table.assign(_value=table[value] * scale)
    models = sorted(table["model"].unique())
    batch_sizes = sorted(table["batch_size"].unique())
    tasks = _ordered(table["task"], TASK_ORDER)
    engines = _ordered(table["engine_label"], ENGINE_ORDER)
    colours = dict(zip(engines, sns.color_palette(PALETTE, max(len(engines), 2)), strict=False))
    fig, axes = plt.subplots(
        len(models),
        len(batch_sizes),
        figsize=(5.2 * len(batch_sizes), 3.8 * len(models)),
        squeeze=False,
    )
    for r, model in enumerate(models):
        for c, b in enumerate(batch_sizes):
            ax = axes[r, c]
            sub = table[(table["model"] == model) & (table["batch_size"] == b)]
            _bars(ax, sub, tasks, engines, "engine_label", "_value", colours, "{}")
            ax.set_yscale("log")
            ax.set_title(f"{model}, batch {b}")
            unit = "J" if quantity == "energy" else "s"
            ax.set_ylabel(f"{quantity} of {samples:,} examples ({unit})")
    top_legend(fig, axes[0, 0])
    fig.suptitle("Classical NLP tasks: PyTorch against vLLM (Fig 8)", y=1.08, fontweight="bold")
    _footer(fig, _task_rows(df))
    fig.tight_layout()
    return fig


def fig_classical_tasks_vllm(df: pd.DataFrame) -> plt.Figure:
    """vLLM's energy per output token and per request of each task, one bar per batch size;
    one row of panels per model and vLLM engine (log scale)."""
    setup()
    table = table_classical_tasks_vllm(df)
    if table["energy_per_request_j"].notna().any():
        panels = [
            ("energy_per_output_token_j", "energy per output token (J)"),
            ("energy_per_request_j", "energy per request (J)"),
        ]
    else:  # no energy (meter 'none'): time per request is the one quantity to show
        panels = [("duration_per_request_s", "time per request (s)")]
    combos = list(table.groupby(["model", "engine_label"]).groups)
    tasks = _ordered(table["task"], TASK_ORDER)
    batch_sizes = sorted(table["batch_size"].unique())
    colours = dict(zip(batch_sizes, sns.color_palette(PALETTE, len(batch_sizes)), strict=True))
    fig, axes = plt.subplots(
        len(combos), len(panels), figsize=(5.6 * len(panels), 3.8 * len(combos)), squeeze=False
    )
    for r, (model, label) in enumerate(combos):
        sub = table[(table["model"] == model) & (table["engine_label"] == label)]
        for c, (value, ylabel) in enumerate(panels):
            ax = axes[r, c]
            _bars(ax, sub, tasks, batch_sizes, "batch_size", value, colours, "batch {}")
            ax.set_yscale("log")
            ax.set_title(f"{model}, {label}")
            ax.set_ylabel(ylabel)
    top_legend(fig, axes[0, 0])
    fig.suptitle(
        "Energy intensity of the classical tasks on vLLM (Fig 12)", y=1.08, fontweight="bold"
    )
    _footer(fig, _task_rows(df[df["backend"].astype(str) == "vllm"]))
    fig.tight_layout()
    return fig
