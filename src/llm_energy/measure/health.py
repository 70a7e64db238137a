"""The GPUs' health over a row's windows, and the one word that sums it up: ``gpu_health``.

A meter that sees the GPUs (NVML) watches them over every window
(:class:`llm_energy.meters.base.WindowHealth`). A trial's columns cover its windows (prefill and
full window); a point's row covers its trials and keeps each trial's word (``trial_gpu_health``).

``gpu_health`` is ``ok``, ``unknown`` (the meter cannot see the GPUs, or the row was measured
before these columns existed), or the flags raised, joined by ``+`` in this order:

- ``counter_backwards``: an energy counter read less than before (a driver or GPU reset); the
  window's energy is wrong;
- ``gpu_error``: a new uncorrected ECC error or an Xid error;
- ``throttled_thermal``: clocks held down for temperature (``hw_thermal_slowdown``,
  ``sw_thermal_slowdown``);
- ``throttled_power``: clocks held down for power below what the GPU is made for: a power limit
  set below the GPU's default (``power_limit_lowered``, which the meter adds to
  ``sw_power_cap`` when it sees one), an external power brake, the board's limit;
- ``throttled_other``: a hardware slowdown without one of those reasons, a reliability limit,
  or a reason this release does not know.

The other reasons (idle, application clocks, sync boost, display clocks) say how the clocks
were chosen, not that the work was held back: they are recorded and raise no flag. So is
``sw_power_cap`` at the GPU's default limit: an H100 or H200 that works at its power limit
reports it, as the study's GPUs did, and that is the state being measured, not a fault. ECC and Xid
errors that the GPU cannot report (ECC off) leave their columns empty without making the row
``unknown``; throttle reasons or the counter check that cannot be read do.

A flagged row is drawn and compared like any other, but never silently: figures count it in
their footer and a claim's comparison that uses it is inconclusive, as for a row that did not
meet the protocol.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from llm_energy.meters.base import WindowHealth

THERMAL_REASONS = frozenset({"hw_thermal_slowdown", "sw_thermal_slowdown"})
POWER_REASONS = frozenset({"power_limit_lowered", "hw_power_brake", "board_limit"})
BENIGN_REASONS = frozenset(
    {"idle", "applications_clocks", "sync_boost", "display_clocks", "sw_power_cap"}
)
FLAGS = (
    "counter_backwards",
    "gpu_error",
    "throttled_thermal",
    "throttled_power",
    "throttled_other",
)
OK, UNKNOWN = "ok", "unknown"

# The columns of a row, with what a row that was not measured (or predates them) says.
UNKNOWN_COLUMNS: dict[str, Any] = {
    "clock_event_reasons": None,
    "sm_clock_min_mhz": math.nan,
    "sm_clock_max_mhz": math.nan,
    "gpu_temp_max_c": math.nan,
    "ecc_errors_new": None,
    "xid_errors": None,
    "energy_counter_backwards": None,
    "gpu_health": UNKNOWN,
}


def _known(value: Any) -> bool:
    """Not None, NaN or pd.NA: what a table holds where nothing was read."""
    return value is not None and not (pd.api.types.is_scalar(value) and pd.isna(value))


def _names(value: Any) -> set[str] | None:
    """A comma-joined column back as a set; None when unknown."""
    if not _known(value):
        return None
    return {v for v in str(value).split(",") if v}


def _in_order(name: str) -> tuple[int, int, str]:
    """Xid codes by number, reasons by name."""
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def flags(
    reasons: Iterable[str] | None,
    ecc_errors_new: int | None,
    xid_errors: Sequence[int] | None,
    energy_counter_backwards: bool | None,
) -> list[str]:
    """The flags these observations raise, in the order of :data:`FLAGS`."""
    reasons = set(reasons or ())
    raised = {
        "counter_backwards": bool(energy_counter_backwards),
        "gpu_error": bool(ecc_errors_new) or bool(xid_errors),
        "throttled_thermal": bool(reasons & THERMAL_REASONS),
        "throttled_power": bool(reasons & POWER_REASONS),
        "throttled_other": bool(reasons - THERMAL_REASONS - POWER_REASONS - BENIGN_REASONS),
    }
    return [f for f in FLAGS if raised[f]]


def window_columns(health: WindowHealth) -> dict[str, Any]:
    """A trial's columns from the health of its windows (merged)."""
    raised = flags(
        health.clock_event_reasons,
        health.ecc_errors_new,
        health.xid_errors,
        health.energy_counter_backwards,
    )
    if raised:
        word = "+".join(raised)
    elif health.clock_event_reasons is None or health.energy_counter_backwards is None:
        word = UNKNOWN
    else:
        word = OK
    reasons = health.clock_event_reasons
    xids = health.xid_errors
    return {
        "clock_event_reasons": ",".join(sorted(reasons)) if reasons is not None else None,
        "sm_clock_min_mhz": health.sm_clock_min_mhz,
        "sm_clock_max_mhz": health.sm_clock_max_mhz,
        "gpu_temp_max_c": health.gpu_temp_max_c,
        "ecc_errors_new": health.ecc_errors_new,
        "xid_errors": ",".join(map(str, xids)) if xids is not None else None,
        "energy_counter_backwards": health.energy_counter_backwards,
        "gpu_health": word,
    }


def _word_flags(word: Any) -> list[str]:
    return [w for w in str(word).split("+") if w in FLAGS] if _known(word) else []


def point_columns(trials: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A point's columns from its measured trials' (trials journaled before these columns
    existed read as unknown): what any trial saw, and each trial's word."""
    words = [t.get("gpu_health") if _known(t.get("gpu_health")) else UNKNOWN for t in trials]
    raised = {f for w in words for f in _word_flags(w)}
    if raised:
        word = "+".join(f for f in FLAGS if f in raised)
    else:
        word = UNKNOWN if UNKNOWN in words else OK

    def union(col: str) -> str | None:
        sets = [s for s in (_names(t.get(col)) for t in trials) if s is not None]
        if not sets:
            return None
        return ",".join(sorted(set().union(*sets), key=_in_order))

    def numbers(col: str) -> list[float]:
        return [float(t[col]) for t in trials if _known(t.get(col))]

    ecc = numbers("ecc_errors_new")
    backwards = [
        bool(t["energy_counter_backwards"])
        for t in trials
        if _known(t.get("energy_counter_backwards"))
    ]
    return {
        "clock_event_reasons": union("clock_event_reasons"),
        "sm_clock_min_mhz": min(numbers("sm_clock_min_mhz"), default=math.nan),
        "sm_clock_max_mhz": max(numbers("sm_clock_max_mhz"), default=math.nan),
        "gpu_temp_max_c": max(numbers("gpu_temp_max_c"), default=math.nan),
        "ecc_errors_new": int(sum(ecc)) if ecc else None,
        "xid_errors": union("xid_errors"),
        "energy_counter_backwards": (
            any(backwards) if any(backwards) or len(backwards) == len(trials) else None
        ),
        "gpu_health": word,
        "trial_gpu_health": json.dumps(words),
    }


def gpu_health(df: pd.DataFrame) -> pd.Series:
    """Each row's word; ``unknown`` for rows without one (tables measured before it, and
    tables that carry it as text, empty where it was missing)."""
    if "gpu_health" not in df.columns:
        return pd.Series(UNKNOWN, index=df.index, dtype=object)
    words = df["gpu_health"]
    return words.where(words.notna() & (words.astype(str) != ""), UNKNOWN).astype(str)


def flagged(df: pd.DataFrame) -> pd.Series:
    """Rows whose GPUs throttled, erred or reset during their windows."""
    return ~gpu_health(df).isin({OK, UNKNOWN})


def row_flags(row: pd.Series | dict[str, Any]) -> list[str]:
    """The flags one row raises (none for ``ok`` and ``unknown``)."""
    return _word_flags(row.get("gpu_health"))


def complete(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with every health column, unknown in rows that lack it, and the counts as
    nullable integers and booleans (so that unknown stays unknown in Parquet)."""
    table = table.copy()
    for col, value in UNKNOWN_COLUMNS.items():
        if col not in table.columns:
            table[col] = value
        elif value is not None:
            table[col] = table[col].where(table[col].notna(), value)
    table["ecc_errors_new"] = pd.array(
        [int(v) if _known(v) else None for v in table["ecc_errors_new"]], dtype="Int64"
    )
    table["energy_counter_backwards"] = pd.array(
        [bool(v) if _known(v) else None for v in table["energy_counter_backwards"]],
        dtype="boolean",
    )
    for col in ("sm_clock_min_mhz", "sm_clock_max_mhz", "gpu_temp_max_c"):
        table[col] = table[col].astype(float)
    return table
