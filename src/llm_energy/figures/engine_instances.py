"""How much a point moves when its engine is started again: the same points measured after
several fresh engine starts (``benchmarks/engine_instances.py``), PyTorch eager against vLLM
eager and vLLM with CUDA graphs. Each instance measured each point in two windows; the figure
sets the spread of the instances' means beside the spread of the windows inside one."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from llm_energy.figures.style import ENGINE_LOOKS, add_footer, provenance_note, setup

ENGINES = ("PyTorch eager", "vLLM eager", "vLLM CUDA graphs")
# The experiment's engine names, in the style table's names.
COLOURS = {
    e: ENGINE_LOOKS[label].colour
    for e, label in zip(
        ENGINES, ("PyTorch, eager", "vLLM, eager", "vLLM, CUDA graphs"), strict=True
    )
}


def table_engine_instances(rows: pd.DataFrame) -> pd.DataFrame:
    """Per engine and batch size: instances, the mean over instances of energy and time per
    batch, the coefficient of variation of the instances' means (between) and of the windows
    around their own instance's mean (within, pooled)."""
    out = []
    for (label, batch), group in rows.groupby(["engine_label", "batch_size"], sort=False):
        entry: dict[str, object] = {
            "engine": label,
            "batch_size": int(batch),
            "instances": group["engine_instance"].nunique(),
            "windows": len(group),
        }
        for col in ("energy_j", "duration_s"):
            means = group.groupby("engine_instance")[col].mean()
            grand = float(means.mean())
            dev = group[col] - group["engine_instance"].map(means)
            dof = len(group) - len(means)
            within = float(np.sqrt((dev**2).sum() / dof)) if dof > 0 else float("nan")
            entry[col] = grand
            entry[f"{col}_cv_between_pct"] = 100 * float(means.std(ddof=1)) / grand
            entry[f"{col}_cv_within_pct"] = 100 * within / grand
        out.append(entry)
    table = pd.DataFrame(out)
    order = {e: i for i, e in enumerate(ENGINES)}
    return table.sort_values(
        ["batch_size", "engine"], key=lambda s: s.map(order) if s.name == "engine" else s
    ).reset_index(drop=True)


def fig_engine_instances(rows: pd.DataFrame) -> plt.Figure:
    """Energy per batch of every window, as a percentage of its engine's mean over instances:
    one column per engine and instance, one panel per batch size. Windows of one instance are
    joined; a wide gap between columns of one engine is the engine-instance effect."""
    setup()
    batches = sorted(rows["batch_size"].unique())
    fig, axes = plt.subplots(1, len(batches), figsize=(5.2 * len(batches), 4.2), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, batch in zip(axes, batches, strict=True):
        at = rows[rows["batch_size"] == batch]
        x = 0
        ticks, labels = [], []
        for engine in ENGINES:
            group = at[at["engine_label"] == engine]
            if group.empty:
                continue
            grand = group.groupby("engine_instance")["energy_j"].mean().mean()
            start = x
            for _, windows in group.groupby("engine_instance"):
                pct = 100 * (windows["energy_j"] / grand - 1)
                ax.plot([x] * len(pct), pct, color=COLOURS[engine], alpha=0.5, lw=1)
                ax.scatter([x] * len(pct), pct, color=COLOURS[engine], s=16, zorder=3)
                ax.scatter([x], [pct.mean()], color=COLOURS[engine], marker="_", s=300, zorder=4)
                x += 1
            ticks.append((start + x - 1) / 2)
            labels.append(f"{engine}\n({group['engine_instance'].nunique()} starts)")
            x += 1
        ax.axhline(0, color="0.5", lw=0.8)
        ax.set_xticks(ticks, labels, fontsize=8)
        ax.set_title(f"batch {batch}")
    axes[0].set_ylabel("energy per batch (%),\nfrom the engine's mean over starts")
    shape = rows.iloc[0]
    fig.suptitle(
        f"The same point after fresh engine starts ({shape['model']}, "
        f"{int(shape['input_tokens'])} in / {int(shape['output_tokens'])} out): "
        "windows (dots) and start means (bars)",
        fontweight="bold",
    )
    add_footer(fig, provenance_note(rows, rows["engine_label"]))
    fig.tight_layout()
    return fig
