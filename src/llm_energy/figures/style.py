"""Shared look of the figures and the provenance line each one carries."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import ScalarFormatter

from llm_energy.measure.health import FLAGS, flagged, gpu_health
from llm_energy.measure.store import write_atomic

PALETTE = "viridis"


def setup() -> None:
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)
    plt.rcParams.update({"figure.dpi": 110, "savefig.bbox": "tight", "axes.titleweight": "bold"})


def energy_label(df: pd.DataFrame) -> str:
    """Says how the energy numbers were obtained, e.g. 'measured (nvml)'."""
    kinds = sorted({f"{s} ({m})" for s, m in zip(df["energy_source"], df["meter"], strict=True)})
    return ", ".join(kinds) if kinds else "none"


def caveats(df: pd.DataFrame) -> str:
    """What the measured rows drawn fall short of, counted: rows short of the protocol, rows
    whose GPUs throttled, erred or reset during their windows ("" when none)."""
    if "feasible" in df and "repetitions" in df:
        df = df[df["feasible"].fillna(False).astype(bool) & (df["repetitions"].fillna(0) > 0)]
    notes = []
    # Rows measured before trials have no protocol_met: missing is not short.
    short = int(df["protocol_met"].eq(False).sum()) if "protocol_met" in df else 0
    if short:
        notes.append(f"{short} of {len(df)} rows short of the protocol")
    bad = flagged(df)
    if bad.any():
        words = gpu_health(df)[bad].str.split("+")
        counts = ((f, int(words.map(lambda w, f=f: f in w).sum())) for f in FLAGS)
        named = ", ".join(f"{f} {n}" for f, n in counts if n)
        notes.append(f"{int(bad.sum())} of {len(df)} rows with GPU health flagged ({named})")
    return "; ".join(notes)


def provenance_note(df: pd.DataFrame) -> str:
    """One line: what, on which hardware, with which software and weights; and a second line
    with the rows' caveats (:func:`caveats`) when there are any."""

    def uniq(col: str) -> str:
        vals = sorted({str(v) for v in df[col].dropna()} - {""}) if col in df else []
        return ", ".join(vals) if vals else "n/a"

    commits = sorted({str(c)[:7] for c in df.get("git_commit", pd.Series(dtype=str)).dropna()})
    return (
        f"{uniq('model')} ({uniq('weights')} weights, {uniq('dtype')}) · {uniq('backend_version')}"
        f" · torch {uniq('torch_version')} · {uniq('gpu_name')} · energy: {energy_label(df)}"
        + (f" · code {', '.join(c for c in commits if c)}" if any(commits) else "")
        + (f"\n{note}" if (note := caveats(df)) else "")
    )


def add_footer(fig: plt.Figure, note: str) -> None:
    """The provenance line (and any notes after it) under the figure."""
    fig.text(0.5, -0.02, note, ha="center", va="top", fontsize=7.5, color="0.35", wrap=True)


def top_legend(fig: plt.Figure, ax: plt.Axes) -> None:
    """One legend for all panels, above them, from the first panel's lines."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="upper center",
        ncol=min(len(labels), 8),
        bbox_to_anchor=(0.5, 1.02),
        frameon=False,
    )


def save(fig: plt.Figure, path: Path, dpi: int = 150) -> None:
    path = Path(path)
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".")))
    plt.close(fig)


def log2_batch_axis(ax: plt.Axes, batch_sizes: list[int]) -> None:
    """Batch sizes on a base-2 log axis, ticked at the measured sizes in plain numbers."""
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xticks(batch_sizes)
    ax.set_xlabel("batch size (requests per GPU)")
