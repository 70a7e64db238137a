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

from llm_energy.analysis.sessions import machine_sessions
from llm_energy.errors import InputError
from llm_energy.figures.engines import engine_label, engine_order
from llm_energy.figures.points import (
    Marks,
    latest_per,
    plot_bars,
    relative_half_width,
    with_evidence,
)
from llm_energy.figures.style import (
    ENGINE_LOOKS,
    add_footer,
    looks,
    provenance_note,
    scaled_label,
    setup,
    top_legend,
)

TASK_ORDER = ("classification", "translation", "summarization", "generation")
ENGINE_ORDER = tuple(ENGINE_LOOKS)
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
    for col in (f"energy_{samples}_requests_j", "duration_per_request_s"):
        rows[f"{col}_ci95"] = relative_half_width(rows, col) * rows[col]
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
        f"energy_{samples}_requests_j_ci95",
        "energy_per_output_token_j",
        "duration_s",
        "duration_per_request_s",
        "duration_per_request_s_ci95",
        "mean_power_w",
        "energy_source",
        "gpu_name",
        "backend_version",
        "weights",
    ]
    rows = rows[with_evidence([c for c in cols if c in rows.columns], rows)].rename(
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
    marks: Marks,
) -> int:
    """Grouped bars: one group per task, one bar per value of ``group_col``, each with its
    interval, hollow below the protocol, hatched for a window the counter cannot resolve, and
    from the session that measured it last where several did; an infeasible bar is a cross at
    the foot of the axis, and a bar that no row measured says so in its place, so that a gap
    reads as not measured rather than as lost. Returns how many crosses it drew."""
    x = np.arange(len(tasks))
    width = 0.8 / len(groups)
    crosses = 0
    for k, g in enumerate(groups):
        at = x + (k - (len(groups) - 1) / 2) * width
        line = sub[sub[group_col] == g]
        if "point_id" not in line:  # names each bar's row once the tasks index it
            line = line.assign(point_id=[f"{g}/{i}" for i in line.index])
        line = latest_per(line, "task", marks).set_index("task").reindex(tasks)
        feasible = line["feasible"].eq(True)
        line[value] = line[value].where(feasible)
        plot_bars(ax, at, line, value, width, colours[g], label.format(g), marks)
        for xi, ok, measured in zip(at, feasible, line["feasible"].notna(), strict=True):
            if not measured:
                ax.text(
                    xi,
                    0.03,
                    "not measured",
                    transform=ax.get_xaxis_transform(),
                    rotation=90,
                    ha="center",
                    va="bottom",
                    fontsize=7.5,
                    color="0.45",
                )
            elif not ok:
                crosses += 1
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
    ax.set_xlim(-0.5, len(tasks) - 0.5)  # every task's place, drawn or said not measured
    return crosses


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


def sessions_side_by_side(table: pd.DataFrame) -> str | None:
    """Where one task's bars of two engines come from two machine sessions (each bar the
    session that measured it last), a note that says at which batches: such a pair's ratio
    holds the spread between sessions too. None where every pair shares its session."""
    drawn = table.assign(_session=machine_sessions(table))
    mixed: dict[int, int] = {}
    for (_, batch, _), group in drawn.groupby(["model", "batch_size", "task"]):
        if group["engine_label"].nunique() < 2:
            continue
        latest = latest_per(group, "engine_label", Marks())
        if latest["_session"].nunique() > 1:
            mixed[int(batch)] = mixed.get(int(batch), 0) + 1
    if not mixed:
        return None
    where = ", ".join(
        f"batch {b} ({n} task{'' if n == 1 else 's'})" for b, n in sorted(mixed.items())
    )
    return (
        f"engines side by side from two machine sessions at {where}: "
        "their ratio holds the spread between sessions too"
    )


def _footer(fig: plt.Figure, rows: pd.DataFrame, marks: Marks, crosses: int) -> None:
    notes = [provenance_note(rows, rows["engine_label"]), outputs_note(rows), *marks.notes()]
    if (mixed := sessions_side_by_side(rows)) is not None:
        notes.append(mixed)
    if crosses:
        notes.append(f"× not feasible (out of memory): {crosses} bars")
    add_footer(fig, *notes)


def fig_classical_tasks(df: pd.DataFrame, samples: int = SAMPLES) -> plt.Figure:
    """Energy of ``samples`` examples of each task (scaled from the examples served), one bar
    per engine, one panel per model and batch size, on one log scale shared by all panels."""
    setup()
    table = table_classical_tasks(df, samples)
    energy, duration = f"energy_{samples}_requests_j", "duration_per_request_s"
    value, quantity = _quantity(table, energy, duration)
    if quantity == "time":  # time of ``samples`` examples, with its interval
        table = table.assign(**{f"time_{samples}_requests_s": table[duration] * samples})
        table[f"time_{samples}_requests_s_ci95"] = table[f"{duration}_ci95"] * samples
        value = f"time_{samples}_requests_s"
    models = sorted(table["model"].unique())
    batch_sizes = sorted(table["batch_size"].unique())
    tasks = _ordered(table["task"], TASK_ORDER)
    engines = engine_order(table["engine_label"])
    colours = {e: look.colour for e, look in looks(engines).items()}
    fig, axes = plt.subplots(
        len(models),
        len(batch_sizes),
        figsize=(5.2 * len(batch_sizes), 3.9 * len(models)),
        squeeze=False,
        sharey=True,  # one quantity: bars compare across panels
    )
    marks, crosses = Marks(), 0
    unit = "J" if quantity == "energy" else "s"
    served = table.loc[table["feasible"].eq(True), "requests"]
    for r, model in enumerate(models):
        for c, b in enumerate(batch_sizes):
            ax = axes[r, c]
            sub = table[(table["model"] == model) & (table["batch_size"] == b)]
            crosses += _bars(ax, sub, tasks, engines, "engine_label", value, colours, "{}", marks)
            ax.set_yscale("log")
            ax.set_title(f"{model}, batch {b}")
            ax.set_ylabel(
                scaled_label(quantity, unit, samples, "examples", served) if c == 0 else ""
            )
    top_legend(fig, axes[0, 0])
    # The engines' libraries ("PyTorch, eager" is PyTorch's), in the engines' order.
    libraries = list(dict.fromkeys(e.split(",")[0] for e in engines))
    what = f": {' against '.join(libraries)}" if len(libraries) > 1 else f" on {libraries[0]}"
    fig.suptitle(f"Classical NLP tasks{what} (Fig 8)", y=1.08, fontweight="bold")
    _footer(fig, table, marks, crosses)
    fig.tight_layout()
    return fig


def fig_classical_tasks_vllm(df: pd.DataFrame) -> plt.Figure:
    """vLLM's energy per output token and per request of each task, one bar per batch size;
    one row of panels per model and vLLM engine (log scale; the rows of one quantity share
    it)."""
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
    colours = {b: look.colour for b, look in looks(batch_sizes).items()}
    fig, axes = plt.subplots(
        len(combos),
        len(panels),
        figsize=(5.6 * len(panels), 3.9 * len(combos)),
        squeeze=False,
        sharey="col",
    )
    marks, crosses = Marks(), 0
    for r, (model, label) in enumerate(combos):
        sub = table[(table["model"] == model) & (table["engine_label"] == label)]
        for c, (value, ylabel) in enumerate(panels):
            ax = axes[r, c]
            crosses += _bars(
                ax, sub, tasks, batch_sizes, "batch_size", value, colours, "batch {}", marks
            )
            ax.set_yscale("log")
            ax.set_title(f"{model}, {label}")
            ax.set_ylabel(ylabel)
    top_legend(fig, axes[0, 0])
    fig.suptitle(
        "Energy intensity of the classical tasks on vLLM (Fig 12)", y=1.08, fontweight="bold"
    )
    _footer(fig, table, marks, crosses // len(panels))
    fig.tight_layout()
    return fig
