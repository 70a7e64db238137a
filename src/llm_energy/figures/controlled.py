"""Controlled sweeps: prefill energy against input length and decode energy against output
length, one line per batch size and machine session, log-log, a row of panels per model (the
study's Figs 2, 10 and 11)."""

from __future__ import annotations

import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter

from llm_energy.figures.points import Marks, latest_first, plot_line
from llm_energy.figures.provenance import session_names
from llm_energy.figures.style import (
    Look,
    add_footer,
    looks,
    provenance_note,
    setup,
    top_legend,
)


def _panels(df: pd.DataFrame, main_only: bool) -> list[tuple[str, str, str, int, pd.DataFrame]]:
    """(title, x column, y column, fixed length, rows) for each panel: one per fixed length of
    the other dimension, or with ``main_only`` the longest fixed length of each sweep."""
    panels = []
    inp = df[df["experiments"].str.contains("input_sweep")]
    outs = sorted(inp["output_tokens"].unique())
    for out in outs[-1:] if main_only else outs:
        rows = inp[inp["output_tokens"] == out]
        panels.append((f"prefill, {out} output tokens", "input_tokens", "prefill", out, rows))
    outp = df[df["experiments"].str.contains("output_sweep")]
    inps = sorted(outp["input_tokens"].unique())
    for inp_len in inps[-1:] if main_only else inps:
        rows = outp[outp["input_tokens"] == inp_len]
        panels.append((f"decode, {inp_len} input tokens", "output_tokens", "decode", inp_len, rows))
    return panels


def _lines(df: pd.DataFrame) -> dict[tuple[str, int, str], tuple[Look, str]]:
    """The look and legend label of each (model, batch size, machine session) line, the same in
    every panel of the model: a model's batch measured in one session is "batch 8"; one
    measured in several gets a line for each, named by its session, the latest solid and the
    earlier ones dotted, so that no line joins two sessions. Adds ``_session`` to ``df``."""
    df["_session"] = session_names(df)
    batch_looks = looks(sorted(df["batch_size"].unique()))
    lines = {}
    for (model, b), rows in df.groupby(["model", "batch_size"], sort=True):
        latest = latest_first(rows, rows["_session"])
        for n, session in enumerate(latest):
            look, label = batch_looks[b], f"batch {b}"
            if len(latest) > 1:
                label += f" ({session})"
            if n:
                look = dataclasses.replace(look, linestyle=(0, (1, 2)))
            lines[(model, b, session)] = (look, label)
    return lines


def _tokens(value: float, _: object = None) -> str:
    """A token count as a tick label: 512, 1k, 32k."""
    n = round(value)
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else str(n)


def sweep_rows(df: pd.DataFrame, backend: str) -> pd.Series:
    """Controlled-sweep rows of one backend, on its optimised engine when there are several
    (CUDA graphs for vLLM), else its plain one."""
    rows = df["experiments"].str.contains("input_sweep|output_sweep") & (df["backend"] == backend)
    for col in ("cuda_graphs", "torch_compile"):
        if col not in df:
            continue
        flags = df.loc[rows, col].astype(bool)
        if flags.any() and not flags.all():
            rows &= df[col].astype(bool) == (col == "cuda_graphs")
    return rows


def fig_controlled_sweeps(
    df: pd.DataFrame, backend: str, title: str, main_only: bool = False
) -> plt.Figure:
    """Prefill and decode energy per batch across the controlled sweeps of one backend.

    When the rows carry no energy (meter 'none'), the same panels show time instead.
    """
    setup()
    sweep = sweep_rows(df, backend)
    infeasible = df[sweep & ~df["feasible"].astype(bool)]
    df = df[sweep & df["feasible"].astype(bool)].copy()
    if df.empty:
        raise ValueError(f"no feasible controlled-sweep rows for backend '{backend}'")
    has_energy = df["energy_j"].notna().any()
    quantity, unit = ("energy", "J") if has_energy else ("duration", "s")
    for phase in ("prefill", "decode"):
        column = f"{phase}_{quantity}_{unit.lower()}"
        df[f"{phase}_value"] = df[column]
        # Rows that keep each trial's prefill window carry the phases' intervals.
        ci = f"{column}_ci95"
        df[f"{phase}_value_ci95"] = pd.to_numeric(df[ci], errors="coerce") if ci in df else np.nan
    lines = _lines(df)
    # A line joins the points of one model: each model gets a row of panels of its own.
    models = sorted(df["model"].unique())
    by_model = [(m, _panels(df[df["model"] == m], main_only)) for m in models]
    ncols = min(max(len(p) for _, p in by_model), 3)
    slots: list[tuple[str, tuple[str, str, str, int, pd.DataFrame]] | None] = []
    for model, model_panels in by_model:
        rows_needed = int(np.ceil(len(model_panels) / ncols))
        slots += [(model, panel) for panel in model_panels]
        slots += [None] * (rows_needed * ncols - len(model_panels))
    nrows = len(slots) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.8 * nrows), squeeze=False)
    marks = Marks()
    for ax, slot in zip(axes.flat, slots, strict=True):
        if slot is None:
            ax.set_visible(False)
            continue
        model, (name, x, phase, _, rows) = slot
        for (of, b, session), (look, label) in lines.items():
            if of != model:
                continue
            sub = rows[(rows["batch_size"] == b) & (rows["_session"] == session)]
            line = f"{model}, {label}" if len(models) > 1 else label
            plot_line(ax, sub, x, f"{phase}_value", look, label, marks, name=line)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(_tokens))
        ax.set_xticks(sorted(rows[x].unique()))
        ax.minorticks_off()
        ax.set_title(f"{model}: {name}" if len(models) > 1 else name)
        ax.set_xlabel(x.replace("_", " "))
        ax.set_ylabel(f"{phase} {quantity} per batch ({unit})")
    # Labels that name a session are long: at most five to a row.
    named = any("(" in label for _, label in lines.values())
    by_batch = sorted(lines.items(), key=lambda line: line[0][1])
    top_legend(
        fig,
        *(ax for ax in axes.flat if ax.get_visible()),
        ncol=5 if named else 8,
        order=[label for _, (_, label) in by_batch],
    )
    fig.suptitle(title, y=1.08, fontweight="bold")
    notes = [provenance_note(df, "batch " + df["batch_size"].astype(str)), *marks.notes()]
    kept = df[["prefill_value_ci95", "decode_value_ci95"]].notna().all(axis=1)
    why = "measured before rows kept them, or in one trial"
    if not kept.any():
        notes.append(
            f"prefill and decode {quantity}: no interval (these rows keep no prefill window "
            f"per trial: {why})"
        )
    elif not kept.all():
        notes.append(
            f"prefill and decode {quantity}: no interval where a row keeps no prefill window "
            f"per trial ({why})"
        )
    if len(infeasible):
        shapes = ", ".join(
            f"batch {r.batch_size} × {r.input_tokens} in / {r.output_tokens} out"
            for r in infeasible.itertuples()
        )
        notes.append(f"not feasible (out of memory, or not attempted after one): {shapes}")
    add_footer(fig, *notes)
    fig.tight_layout()
    return fig


def table_controlled_sweeps(df: pd.DataFrame) -> pd.DataFrame:
    """The controlled-sweep points with energy split into prefill and decode, per token too."""
    sweep = df[df["experiments"].str.contains("_sweep")]
    cols = [
        "backend",
        "engine",
        "model",
        "weights",
        "batch_size",
        "input_tokens",
        "output_tokens",
        "feasible",
        "repetitions",
        "duration_s",
        "energy_j",
        "energy_std_j",
        "prefill_energy_j",
        "decode_energy_j",
        "energy_per_output_token_j",
        "output_tokens_per_s",
        "mean_power_w",
        "idle_power_w",
        "peak_memory_gib",
        "energy_source",
        "meter",
        "gpu_name",
        "hardware",
    ]
    return (
        sweep[[c for c in cols if c in sweep.columns]]
        .sort_values(["backend", "engine", "model", "output_tokens", "input_tokens", "batch_size"])
        .reset_index(drop=True)
    )
