"""Which machine session each row comes from.

A machine session is one host between two boots (``machine_session``, written by the measuring
job). The study's comparisons are made within one session. Rows written before the column
existed are grouped by host and commit: each of those sessions ran a commit of its own.
"""

from __future__ import annotations

import pandas as pd


def _text(rows: pd.DataFrame, col: str) -> pd.Series:
    if col not in rows:
        return pd.Series("", index=rows.index, dtype=object)
    return rows[col].map(lambda v: "" if v is None or pd.isna(v) else str(v))


def machine_sessions(rows: pd.DataFrame) -> pd.Series:
    """Each row's machine session."""
    fallback = _text(rows, "host") + "@" + _text(rows, "git_commit").str.slice(0, 7)
    own = _text(rows, "machine_session")
    return own.where(own != "", fallback).astype(str)
