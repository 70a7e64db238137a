"""Where drawn rows come from: what was measured, on which GPUs, in which machine sessions and
by which commit; one footer under every figure and one paragraph in its report caption."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from llm_energy.analysis.sessions import machine_sessions
from llm_energy.measure.health import FLAGS, flagged, gpu_health


def _text(rows: pd.DataFrame, col: str) -> pd.Series:
    if col not in rows:
        return pd.Series("", index=rows.index, dtype=object)
    return rows[col].map(lambda v: "" if v is None or pd.isna(v) else str(v))


def _uniq(rows: pd.DataFrame, col: str) -> str:
    vals = sorted(set(_text(rows, col)) - {"", "nan"})
    return ", ".join(vals) if vals else "n/a"


def short_commit(commit: object) -> str:
    """A commit as the docs quote it: 7 hex digits, and ``-dirty`` when the tree had changes."""
    text = "" if commit is None or pd.isna(commit) else str(commit)
    dirty = text.endswith("-dirty")
    return text.removesuffix("-dirty")[:7] + ("-dirty" if dirty and text else "")


def session_names(rows: pd.DataFrame) -> pd.Series:
    """The machine session each row was measured in (:func:`machine_sessions`), named by the
    commit it ran, and by the session too where one commit ran in several."""
    session = machine_sessions(rows)
    commit = _text(rows, "git_commit").map(short_commit)
    name = ("git " + commit).where(commit != "", "commit unknown")
    several = pd.DataFrame({"session": session, "name": name}).groupby("name")["session"]
    shared = several.transform("nunique") > 1
    return name.where(~shared, name + " on " + session)


@dataclass(frozen=True)
class Session:
    name: str
    host: str
    written: str
    rows: int

    def describe(self, holds: str = "") -> str:
        where = ", ".join(p for p in (f"host {self.host}" if self.host else "", self.written) if p)
        what = f": {holds}" if holds else ""
        count = f"{self.rows} row" if self.rows == 1 else f"{self.rows} rows"
        return f"{self.name} ({where + ', ' if where else ''}{count}{what})"


def _written(first: pd.Timestamp, last: pd.Timestamp) -> str:
    """When a session's rows were written (each when its point finished): "rows written
    2026-01-02 03:04–05:06 UTC", the last's date given where it differs; empty without."""
    if pd.isna(first):
        return ""
    if last.floor("min") == first.floor("min"):
        return f"rows written {first:%Y-%m-%d %H:%M} UTC"
    end = f"{last:%H:%M}" if last.date() == first.date() else f"{last:%Y-%m-%d %H:%M}"
    return f"rows written {first:%Y-%m-%d %H:%M}–{end} UTC"


def sessions(rows: pd.DataFrame) -> list[Session]:
    """The sessions of ``rows`` in the order their first rows were written."""
    names = session_names(rows)
    when = pd.to_datetime(_text(rows, "timestamp"), errors="coerce", utc=True)
    host = _text(rows, "host")
    out = []
    for name in dict.fromkeys(names):
        mine = names == name
        out.append(
            Session(
                name,
                ", ".join(sorted(set(host[mine]) - {""})),
                _written(when[mine].min(), when[mine].max()),
                int(mine.sum()),
            )
        )
    order = {s.name: when[names == s.name].min() for s in out}
    return sorted(out, key=lambda s: (pd.isna(order[s.name]), order[s.name], s.name))


def gpu_note(rows: pd.DataFrame) -> str:
    """Each GPU model the rows were measured on, with how many distinct GPUs (by UUID): "8
    NVIDIA H200 by UUID" are eight cards, whether one machine held them or eight sessions."""
    names = _text(rows, "gpu_name")
    uuids = _text(rows, "gpu_uuids").str.split(",")
    parts = []
    for name in sorted(set(names) - {""}):
        ids = {u.strip() for ids in uuids[names == name] for u in ids if u.strip()}
        parts.append(f"{len(ids)} {name} by UUID" if ids else f"{name} (UUIDs not recorded)")
    return "GPUs: " + ("; ".join(parts) if parts else "n/a")


def energy_label(df: pd.DataFrame) -> str:
    """Says how the energy numbers were obtained, e.g. 'measured (nvml)'."""
    kinds = sorted({f"{s} ({m})" for s, m in zip(df["energy_source"], df["meter"], strict=True)})
    return ", ".join(kinds) if kinds else "none"


def session_note(rows: pd.DataFrame, series: pd.Series | None = None) -> str:
    """The sessions of ``rows``: each with its host, when its rows were written and how many,
    and, when there are several and ``series`` names what each row is drawn as, what each
    session holds."""
    found = sessions(rows)
    names = session_names(rows)
    parts = []
    for s in found:
        holds = ""
        if series is not None and len(found) > 1:
            holds = "; ".join(dict.fromkeys(series[names == s.name].astype(str)))
        parts.append(s.describe(holds))
    head = "1 session" if len(found) == 1 else f"{len(found)} sessions"
    return f"{head}: " + " · ".join(parts)


def provenance_note(df: pd.DataFrame, series: pd.Series | None = None) -> str:
    """Two lines: what was measured with which software and meter; then the GPUs, and the
    machine sessions and commits the rows come from (see :func:`session_note`)."""
    what = (
        f"{_uniq(df, 'model')} ({_uniq(df, 'weights')} weights, {_uniq(df, 'dtype')}) · "
        f"{_uniq(df, 'backend_version')} · torch {_uniq(df, 'torch_version')} · "
        f"energy: {energy_label(df) if 'meter' in df else 'n/a'}"
    )
    note = f"{what}\n{gpu_note(df)} · {session_note(df, series)}"
    return note + (f"\n{health}" if (health := health_note(df)) else "")


def health_note(df: pd.DataFrame) -> str:
    """How many of the measured rows drawn had their GPU throttle, err or reset during their
    windows, by flag ("" when none, or when the rows cannot tell)."""
    if "feasible" in df and "repetitions" in df:
        df = df[df["feasible"].fillna(False).astype(bool) & (df["repetitions"].fillna(0) > 0)]
    bad = flagged(df)
    if not bad.any():
        return ""
    words = gpu_health(df)[bad].str.split("+")
    counts = ((f, int(words.map(lambda w, f=f: f in w).sum())) for f in FLAGS)
    named = ", ".join(f"{f} {n}" for f, n in counts if n)
    return f"{int(bad.sum())} of {len(df)} rows with GPU health flagged ({named})"


# What names one measurement: its point and when it finished (the same point measured
# again, in another session or table, is another measurement).
MEASUREMENT = ("point_id", "timestamp")


def measurements(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with each measurement once (a workload estimate's bins repeat theirs)."""
    key = [c for c in MEASUREMENT if c in rows]
    return rows.drop_duplicates(key) if key else rows


def files_holding(rows: pd.DataFrame, tables: Iterable[str | Path]) -> list[str]:
    """The measurement tables among ``tables`` that hold any of ``rows``."""
    key = [c for c in MEASUREMENT if c in rows]
    if not key:
        return []
    wanted = set(map(tuple, rows[key].astype(str).to_numpy()))
    found = []
    for table in tables:
        try:
            held = pd.read_parquet(table, columns=key).astype(str)
        except (KeyError, ValueError, OSError):
            continue
        if wanted & set(map(tuple, held.to_numpy())):
            found.append(str(table))
    return found


def _shown(path: str | Path) -> str:
    """A path as the reader's checkout names it: relative to the working directory."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def caption(
    rows: pd.DataFrame, files: Sequence[str], configfiles: Sequence[str], hardware: str
) -> str:
    """The report caption's paragraph on where the output's rows come from (reStructuredText)."""
    listed = ", ".join(f"``{_shown(f)}``" for f in files) or "none"
    configs = ", ".join(f"``{_shown(c)}``" for c in configfiles) or "the embedded default"
    return (
        f"**Rows.** {len(rows)} measurements of hardware ``{hardware}``, configuration "
        f"{configs}. {gpu_note(rows)}. {session_note(rows)}. Files: {listed}.\n"
    )
