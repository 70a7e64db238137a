"""Which machine session each row comes from.

A machine session is one host between two boots (``machine_session``, written by the measuring
job). The study's comparisons are made within one session; rows written before the column
existed are grouped by host and UTC day, the closest they can say.
"""

from __future__ import annotations

import pandas as pd


def machine_sessions(rows: pd.DataFrame) -> pd.Series:
    """Each row's machine session."""
    host = rows["host"].astype(str) if "host" in rows else pd.Series("unknown", rows.index)
    day = (
        rows["timestamp"].astype(str).str.slice(0, 10)
        if "timestamp" in rows
        else pd.Series("", rows.index)
    )
    fallback = host + ":" + day
    if "machine_session" not in rows:
        return fallback
    own = rows["machine_session"].astype("string").fillna("")
    return own.where(own != "", fallback).astype(str)
