"""What each drawn point says about itself: its 95 % interval (from the row's independent
trials), whether it met the trial protocol, whether its window was long enough for the energy
counter, and which machine session it comes from. The drawing helpers here draw lines and bars
so that all of this shows, and count what they marked for the footer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import to_rgb

from llm_energy.figures.provenance import session_names
from llm_energy.figures.style import Look
from llm_energy.measure.job import ProtocolSpec
from llm_energy.measure.trials import ci95_half_width, trial_values

# A window shorter than this is below what a 10 Hz energy counter resolves (the protocol's
# threshold for reading energy per repetition).
COUNTER_RESOLUTION_S = ProtocolSpec().per_repetition_energy_min_s
# Derived columns whose interval cannot be read from the row's trials: the trials repeat the
# full generation, not its prefill-only window.
NO_INTERVAL = ("prefill_", "decode_")


def _trial_half(rows: pd.DataFrame, quantity: str) -> pd.Series:
    """Half-width of the 95 % interval of ``quantity`` (energy_j or duration_s): the row's
    own, or computed from its per-trial values where only those are there."""
    half = pd.to_numeric(rows.get(f"{quantity}_ci95"), errors="coerce")
    if half is None:
        half = pd.Series(np.nan, index=rows.index)
    trials = rows.get(f"trial_{quantity}")
    if trials is not None:
        from_trials = trials.map(_half_from_trials)
        half = half.where(half.notna(), from_trials)
    return half.astype(float)


def _half_from_trials(values: object) -> float:
    return ci95_half_width(trial_values(values))


def _relative(rows: pd.DataFrame, quantity: str) -> pd.Series:
    base = pd.to_numeric(rows.get(quantity), errors="coerce")
    if base is None:
        return pd.Series(np.nan, index=rows.index)
    return _trial_half(rows, quantity) / base.abs()


def relative_half_width(rows: pd.DataFrame, column: str) -> pd.Series:
    """The 95 % half-width of ``column`` relative to its value. A quantity proportional to the
    energy per batch (per token, per request, per N requests) has the energy's relative
    interval; one proportional to the time per batch (latency, per request) the time's; mean
    power, energy over time, both to first order. Other columns have none (NaN)."""
    nan = pd.Series(np.nan, index=rows.index)
    if column.startswith(NO_INTERVAL):
        return nan
    energy, duration = _relative(rows, "energy_j"), _relative(rows, "duration_s")
    if column.startswith("energy"):
        return energy
    if column.startswith(("duration", "latency", "time")):
        return duration
    if column.startswith("mean_power"):
        return np.hypot(energy, duration)
    return nan


def half_width(rows: pd.DataFrame, column: str) -> pd.Series:
    """The 95 % half-width of ``column`` in its own unit (NaN without trials)."""
    own = rows.get(f"{column}_ci95")
    if own is not None:
        return pd.to_numeric(own, errors="coerce")
    return relative_half_width(rows, column) * pd.to_numeric(rows[column], errors="coerce").abs()


def met_protocol(rows: pd.DataFrame) -> pd.Series:
    """Whether each row met the trial protocol. Rows measured before trials existed have no
    ``protocol_met``: they did not."""
    met = rows.get("protocol_met")
    if met is None:
        return pd.Series(False, index=rows.index)
    return met.map(lambda v: bool(v) if v is not None and not pd.isna(v) else False)


def window_s(rows: pd.DataFrame) -> pd.Series:
    """How long each point's (shortest trial's) measurement window lasted."""
    if "window_s" in rows:
        return pd.to_numeric(rows["window_s"], errors="coerce")
    reps = pd.to_numeric(rows.get("repetitions"), errors="coerce")
    duration = pd.to_numeric(rows.get("duration_s"), errors="coerce")
    if reps is None or duration is None:
        return pd.Series(np.nan, index=rows.index)
    return duration * reps


def unresolved(rows: pd.DataFrame) -> pd.Series:
    """Points measured in windows shorter than the energy counter resolves."""
    return window_s(rows).lt(COUNTER_RESOLUTION_S) & rows.get(
        "energy_source", pd.Series("measured", index=rows.index)
    ).astype(str).eq("measured")


@dataclass
class Marks:
    """What the drawing helpers marked on one figure, for its footer."""

    hollow: int = 0
    unresolved: int = 0
    with_interval: int = 0
    drawn: int = 0
    joined: list[str] = field(default_factory=list)
    bars: bool = False
    # Points already counted (by point id, else row label): a point drawn in two panels
    # counts once.
    seen: set = field(default_factory=set)
    # Rows left out because their point was measured again later (by point id and time).
    superseded: set = field(default_factory=set)

    def notes(self) -> list[str]:
        def many(n: int) -> str:
            what = "bar" if self.bars else "point"
            return f"{n} {what}{'' if n == 1 else 's'}"

        notes = []
        if self.with_interval:
            notes.append(
                "error bars: 95 % confidence interval over each point's independent trials "
                f"({self.with_interval} of {many(self.drawn)})"
            )
        if self.hollow:
            notes.append(
                f"{many(self.hollow)} hollow: below the trial protocol (fewer trials than it "
                "asks, a short window, or measured before trials; no interval where no trials)"
            )
        if self.unresolved:
            notes.append(
                f"{many(self.unresolved)} hatched: a window under {COUNTER_RESOLUTION_S:g} s, "
                "shorter than a 10 Hz energy counter resolves"
            )
        if self.superseded:
            n = len(self.superseded)
            notes.append(
                f"{n} earlier measurement{'' if n == 1 else 's'} of drawn "
                f"{'bars' if self.bars else 'points'} not drawn: each is drawn from the session "
                "that measured it last (the table holds both)"
            )
        if self.joined:
            notes.append(
                "lines joining machine sessions (each point tagged with its session): "
                + "; ".join(self.joined)
            )
        return notes


def _count(marks: Marks, rows: pd.DataFrame, half: pd.Series) -> tuple[pd.Series, pd.Series]:
    hollow = ~met_protocol(rows)
    short = unresolved(rows)
    ids = rows["point_id"] if "point_id" in rows else pd.Series(rows.index, index=rows.index)
    new = ~ids.isin(marks.seen)
    marks.seen |= set(ids)
    marks.drawn += int(new.sum())
    marks.hollow += int((hollow & new).sum())
    marks.unresolved += int((short & new).sum())
    marks.with_interval += int((half.notna() & new).sum())
    return hollow, short


def plot_line(
    ax: plt.Axes,
    rows: pd.DataFrame,
    x: str,
    y: str,
    look: Look,
    label: str,
    marks: Marks,
    scale: float = 1.0,
    colour: object = None,
    in_legend: bool = True,
    name: str | None = None,
) -> None:
    """One line of ``rows`` (sorted by ``x``) with its 95 % intervals as error bars, hollow
    markers for points below the protocol, and, where its points come from more than one
    machine session, each point tagged with its session. ``label`` names the line in the
    legend (unless ``in_legend`` is false); ``name`` (default ``label``) in the footer's
    notes."""
    rows = rows.sort_values(x)
    rows = rows[pd.to_numeric(rows[y], errors="coerce") > 0]
    if rows.empty:
        return
    colour = look.colour if colour is None else colour
    values = rows[y].to_numpy(dtype=float) * scale
    half = half_width(rows, y)
    hollow, short = _count(marks, rows, half)
    ax.plot(
        rows[x],
        values,
        ls=look.linestyle,
        color=colour,
        lw=1.7,
        marker=look.marker,
        ms=5,
        mfc=colour,
        label=label if in_legend else "_nolegend_",
    )
    # Hollow points drawn over the line's own markers, which stay filled in the legend.
    faces = ["white" if h or s else colour for h, s in zip(hollow, short, strict=True)]
    ax.scatter(
        rows[x],
        values,
        marker=look.marker,
        s=5**2,
        facecolors=faces,
        edgecolors=[colour],
        linewidths=1.2,
        zorder=4,
        label="_nolegend_",
    )
    errors = half.to_numpy(dtype=float) * scale
    if np.isfinite(errors).any():
        # On a log axis a bar may not reach zero: the lower end stops just above it.
        low = np.minimum(np.nan_to_num(errors), values * 0.999)
        ax.errorbar(
            rows[x],
            values,
            yerr=[low, np.nan_to_num(errors)],
            fmt="none",
            ecolor=colour,
            elinewidth=1.0,
            capsize=2.5,
            zorder=3,
            label="_nolegend_",
        )
    sessions = session_names(rows)
    if sessions.nunique() > 1:
        for xi, yi, session in zip(rows[x], values, sessions, strict=True):
            ax.annotate(
                session.removeprefix("git "),
                (xi, yi),
                textcoords="offset points",
                xytext=(4, 5),
                fontsize=6.5,
                color=colour,
                rotation=20,
            )
        spans = ", ".join(
            f"{session} ({', '.join(str(v) for v in rows.loc[sessions == session, x])})"
            for session in dict.fromkeys(sessions)
        )
        marks.joined.append(f"{name or label}: {spans}")


def session_lines(line: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The rows of one line as lines of one machine session each, the latest first, each named
    by its session (`` (git abc1234)``) where there are several, so that no line joins two
    sessions."""
    sessions = session_names(line)
    if sessions.nunique() < 2:
        return [("", line)]
    return [(f" ({name})", line[sessions == name]) for name in latest_first(line, sessions)]


def latest_per(rows: pd.DataFrame, key: str, marks: Marks) -> pd.DataFrame:
    """One row per value of ``key``: the one measured last (by ``timestamp``; without one, the
    last in table order); the rows left out are counted in ``marks.superseded``."""
    stamps = rows["timestamp"] if "timestamp" in rows else pd.Series(pd.NaT, index=rows.index)
    order = pd.to_datetime(stamps, utc=True, errors="coerce").sort_values(
        kind="stable", na_position="first"
    )
    ordered = rows.loc[order.index]
    kept = ordered.drop_duplicates(key, keep="last")
    left = ordered[~ordered.index.isin(kept.index)]
    ids = left["point_id"] if "point_id" in left else pd.Series(left.index, index=left.index)
    marks.superseded.update(zip(ids.astype(str), stamps.loc[left.index].astype(str), strict=True))
    return rows[rows.index.isin(kept.index)]


def latest_first(rows: pd.DataFrame, sessions: pd.Series) -> list[str]:
    """The sessions of ``rows`` (``sessions``, one name per row), the one whose last row was
    measured latest first; without timestamps, in the order the rows name them."""
    stamps = rows["timestamp"] if "timestamp" in rows else pd.Series(pd.NaT, index=rows.index)
    when = pd.to_datetime(stamps, utc=True, errors="coerce")
    latest = when.groupby(sessions, sort=False).max().sort_values(ascending=False, kind="stable")
    return list(latest.index)


def plot_bars(
    ax: plt.Axes,
    at: Sequence[float],
    rows: pd.DataFrame,
    y: str,
    width: float,
    colour: object,
    label: str,
    marks: Marks,
    scale: float = 1.0,
) -> None:
    """Bars of ``rows`` (one per position of ``at``, NaN rows left empty) with their 95 %
    intervals, hollow for rows below the protocol and hatched for windows shorter than the
    counter resolves."""
    marks.bars = True
    present = rows[y].notna()
    values = rows[y].to_numpy(dtype=float) * scale
    half = half_width(rows, y).to_numpy(dtype=float) * scale
    hollow, short = _count(marks, rows[present], pd.Series(half, index=rows.index)[present])
    hollow = hollow.reindex(rows.index, fill_value=False)
    short = short.reindex(rows.index, fill_value=False)
    drawn = ax.bar(at, values, width, color=colour, edgecolor=colour, lw=1.2, label=label)
    for bar, h, s in zip(drawn, hollow, short, strict=True):
        if h:  # hollow: a faint tint keeps the bar's colour readable
            bar.set_facecolor((*to_rgb(colour), 0.12))
        if s:
            bar.set_hatch("////")
            bar.set_hatchcolor(colour if h else "white")
    if np.isfinite(half).any():
        ax.errorbar(
            at,
            values,
            yerr=[np.minimum(np.nan_to_num(half), np.abs(values) * 0.999), np.nan_to_num(half)]
            if ax.get_yscale() == "log"
            else np.nan_to_num(half),
            fmt="none",
            ecolor="0.2",
            elinewidth=1.0,
            capsize=2.5,
            zorder=3,
            label="_nolegend_",
        )


# Row columns that a table behind a figure carries beside its own, so that the figure can
# draw each point's interval, protocol state and session, and a reader can check them.
EVIDENCE = (
    "trials",
    "protocol_met",
    "repetitions",
    "energy_j",
    "energy_j_ci95",
    "duration_s",
    "duration_s_ci95",
    "trial_energy_j",
    "trial_duration_s",
    "host",
    "git_commit",
    "machine_session",
    "timestamp",
    "gpu_uuids",
    "point_id",
    "dtype",
    "torch_version",
    "meter",
    "energy_source",
    "weights",
    "backend_version",
    "gpu_name",
    "model",
)


def with_evidence(columns: Sequence[str], rows: pd.DataFrame) -> list[str]:
    """``columns`` and the :data:`EVIDENCE` columns that ``rows`` have."""
    return [*columns, *(c for c in EVIDENCE if c in rows.columns and c not in columns)]
