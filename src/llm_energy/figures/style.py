"""Shared look of the figures: one table of looks (colour, line style, marker) for every
engine and setting, axis labels that say what a number is, the paper's values as marks, and
the footer under each figure."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import seaborn as sns
from matplotlib.container import BarContainer
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, ScalarFormatter

from llm_energy.figures.provenance import energy_label, provenance_note
from llm_energy.measure.store import write_atomic

__all__ = [
    "ENGINE_LOOKS",
    "MINOR",
    "PAPER_COLOUR",
    "PLAIN",
    "Look",
    "add_footer",
    "energy_label",
    "legend_entries",
    "legend_handle",
    "log2_batch_axis",
    "look_of",
    "looks",
    "paper_handle",
    "paper_mark",
    "paper_note",
    "provenance_note",
    "save",
    "scaled_label",
    "setup",
    "top_legend",
]

PALETTE = "viridis"
# Log axes in plain numbers; between decades the 2s and 5s, since the rest would crowd it.
PLAIN = FuncFormatter(lambda v, _: f"{v:g}")
MINOR = FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else "")


@dataclass(frozen=True)
class Look:
    """How one engine or setting is drawn: the same everywhere it appears."""

    colour: Any
    linestyle: Any
    marker: str

    def line_kwargs(self) -> dict[str, Any]:
        return {"color": self.colour, "ls": self.linestyle, "marker": self.marker}


# Engines: PyTorch blue, vLLM orange; the plain engine light, the optimised one dark; each its
# own line style and marker, so that legend entries differ even in grey print.
ENGINE_LOOKS = {
    "PyTorch, eager": Look("#6baed6", (0, (5, 2)), "s"),
    "PyTorch, torch.compile": Look("#08519c", (0, (1, 1.2)), "D"),
    "vLLM, eager": Look("#fd8d3c", "-.", "^"),
    "vLLM, CUDA graphs": Look("#a63603", "-", "o"),
}
# Decoding strategies and the study's models: fixed, so that a strategy or model looks the
# same in every figure and on every hardware.
NAMED_LOOKS = {
    "greedy": Look("#252525", "-", "o"),
    "beam": Look("#6a3d9a", (0, (5, 2)), "s"),
    "temperature": Look("#33a02c", "-.", "^"),
    "top_p": Look("#b15928", (0, (1, 1.2)), "D"),
    "olmo-1b": Look("#1f78b4", (0, (5, 2)), "s"),
    "olmo-7b": Look("#33a02c", "-.", "^"),
    "olmoe-1b-7b": Look("#e31a1c", "-", "o"),
}
# The rest (batch sizes, tensor-parallel sizes, other names) take the next free look in order.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h")
LINESTYLES = ("-", (0, (5, 2)), "-.", (0, (1, 1.2)), (0, (8, 2, 1, 2)), (0, (3, 1, 1, 1, 1, 1)))
PAPER_COLOUR = "#c51b7d"


def look_of(value: Hashable) -> Look | None:
    """The fixed look of an engine, decoding strategy or model, if it has one."""
    key = str(value)
    if key in ENGINE_LOOKS:
        return ENGINE_LOOKS[key]
    if key.startswith("speculative"):
        # Both speculative bounds share a colour; the forced (upper) bound is dashed.
        forced = "forced" in key
        return Look("#1b9e77", (0, (5, 2)) if forced else "-", "v" if forced else "P")
    return NAMED_LOOKS.get(key)


def looks(values: Iterable[Hashable]) -> dict[Hashable, Look]:
    """A look for each of ``values`` (in their order): its fixed look where it has one, else
    a colour along the palette with a marker and a line style of its own."""
    values = list(dict.fromkeys(values))
    free = [v for v in values if look_of(v) is None]
    colours = sns.color_palette(PALETTE, max(len(free), 2) + 1)[: max(len(free), 2)]
    ordered = {
        v: Look(colours[i], LINESTYLES[i % len(LINESTYLES)], MARKERS[i % len(MARKERS)])
        for i, v in enumerate(free)
    }
    return {v: look_of(v) or ordered[v] for v in values}


def legend_handle(look: Look, label: str, **kw: Any) -> Line2D:
    """A legend entry drawn exactly as its lines are."""
    return Line2D([], [], **{**look.line_kwargs(), "lw": 1.7, "ms": 5, **kw}, label=label)


def setup() -> None:
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)
    plt.rcParams.update(
        {
            "figure.dpi": 110,
            "savefig.bbox": "tight",
            "axes.titleweight": "bold",
            "legend.handlelength": 3.2,  # long enough to tell dashed from dash-dotted
        }
    )


def scaled_label(quantity: str, unit: str, target: int, noun: str, served: Iterable[int]) -> str:
    """The axis label of a quantity of ``target`` ``noun`` (e.g. 1,024 requests) computed from
    fewer (or more) served: it says it is scaled, and from how many."""
    counts = sorted({int(n) for n in served})
    label = f"{quantity} of {target:,} {noun} ({unit})"
    if counts == [target]:
        return label
    source = f"{counts[0]:,}" if len(counts) == 1 else f"{counts[0]:,}–{counts[-1]:,}"
    return f"{label},\nscaled from {source} served"


def paper_mark(
    ax: plt.Axes, x: float, y: float, text: str = "", face: object = PAPER_COLOUR, **kw: Any
) -> None:
    """The paper's value for what the panel shows, where it falls: a star (filled with
    ``face``, e.g. the colour of the series it belongs to) and its label."""
    ax.scatter(
        [x],
        [y],
        marker="*",
        s=150,
        facecolors=[face],
        edgecolors=PAPER_COLOUR,
        linewidths=1.0,
        zorder=6,
        label="_nolegend_",
    )
    if text:
        ax.annotate(
            text,
            (x, y),
            textcoords="offset points",
            xytext=kw.pop("xytext", (7, -3)),
            fontsize=7.5,
            color=PAPER_COLOUR,
            zorder=6,
            **kw,
        )


def paper_handle(label: str = "the paper's value (★)") -> Line2D:
    """The legend entry of :func:`paper_mark`."""
    return Line2D(
        [], [], ls="none", marker="*", ms=11, mfc=PAPER_COLOUR, mec=PAPER_COLOUR, label=label
    )


def paper_note(ax: plt.Axes, lines: Sequence[str], loc: str = "lower left") -> None:
    """The paper's values that no single point pins (``up to``, a range of batches), boxed in
    a corner of the panel."""
    x, ha = (0.02, "left") if "left" in loc else (0.98, "right")
    y, va = (0.03, "bottom") if "lower" in loc else (0.97, "top")
    ax.text(
        x,
        y,
        "\n".join(lines),
        transform=ax.transAxes,
        ha=ha,
        va=va,
        fontsize=7.5,
        color=PAPER_COLOUR,
        bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": PAPER_COLOUR, "lw": 0.6},
        zorder=7,
    )


def add_footer(fig: plt.Figure, *notes: str) -> None:
    """The provenance lines (and any notes after them) under the figure."""
    text = "\n".join(n for n in notes if n)
    fig.text(0.5, -0.02, text, ha="center", va="top", fontsize=7.5, color="0.35", wrap=True)


def legend_entries(ax: plt.Axes) -> tuple[list, list[str]]:
    """The panel's legend handles and labels, a group of bars shown as a plain swatch of its
    colour (its first bar may be hollow or hatched, which says something of that bar only)."""
    handles, labels = ax.get_legend_handles_labels()
    plain = []
    for handle in handles:
        if isinstance(handle, BarContainer) and handle.patches:
            colour = handle.patches[0].get_edgecolor()
            handle = Patch(facecolor=colour, edgecolor=colour)
        plain.append(handle)
    return plain, labels


def top_legend(fig: plt.Figure, *axes: plt.Axes, ncol: int = 8, order: Sequence[str] = ()) -> None:
    """One legend for all panels, above them, from the given panels' lines (each label once,
    in ``order`` where it names the label, else in the order the panels first show it)."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*legend_entries(ax), strict=True):
            entries.setdefault(label, handle)
    rank = {label: n for n, label in enumerate(order)}
    labels = sorted(entries, key=lambda label: rank.get(label, len(rank)))
    handles = [entries[label] for label in labels]
    fig.legend(
        handles,
        labels,
        loc="upper center",
        ncol=min(len(labels), ncol),
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
