"""The job's control point, measured at the start and the end of every run, and the drift
between the two that each row says."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from llm_energy.measure.job import PointSpec, ProtocolSpec

# The shape of the control point of a job made of request streams alone (classical tasks, claim
# 6's streams, trace replays): a plain batch of one, cut to the job's longest stream's caps so
# that the job's engine holds it.
STREAM_JOB_CONTROL = (512, 64)


def control_point(points: Sequence[PointSpec], protocol: ProtocolSpec) -> PointSpec | None:
    """The job's control point: its plain point (no request stream) of the smallest batch and
    shape; in a job of request streams alone, a plain batch of one at
    :data:`STREAM_JOB_CONTROL`'s lengths, cut to its longest stream's caps. Served jobs have
    none. Its window lasts at least the job ``protocol``'s ``control_min_duration_s``: where
    that is longer than the point's own window, the control point is measured under a
    protocol of its own (and named apart from the job's point of that shape), without a
    prefill window, which the drift does not read."""
    plain = [p for p in points if p.stream is None and p.served is None]
    streams = [p for p in points if p.stream is not None and p.served is None]
    if plain:
        point = min(plain, key=lambda p: (p.batch_size, p.input_tokens, p.output_tokens))
    elif streams and len(streams) == len(points):
        longest = max(streams, key=lambda p: (p.input_tokens + p.output_tokens, p.input_tokens))
        tokens_in, tokens_out = STREAM_JOB_CONTROL
        point = PointSpec(
            1, min(tokens_in, longest.input_tokens), min(tokens_out, longest.output_tokens)
        )
    else:
        return None
    own = point.protocol or protocol
    if protocol.control_min_duration_s <= own.min_duration_s:
        return point
    window = dataclasses.replace(
        own, min_duration_s=protocol.control_min_duration_s, measure_prefill=False
    )
    return dataclasses.replace(point, protocol=window)


def drift_columns(controls: pd.DataFrame, session: str | None = None) -> dict[str, Any]:
    """The control point and its change over the job's runs in machine ``session``, the span
    the row's trials were measured in (a row's trials come from one session): from the first
    of those runs' start to the last end measured there (a run cut short measures none), both
    of the same control point (a run under another control window, or with another smallest
    point, measured another). With no end measured in that session the drift is unknown.
    Controls written before they named their session give the last run that has both edges."""
    nan = math.nan
    columns = {"control_point_id": "", "control_drift_energy": nan, "control_drift_duration": nan}
    if controls.empty:
        return columns
    if "machine_session" in controls and session is not None:
        at = controls[controls["machine_session"] == session].sort_values("run_started")
        ends = at[at["edge"] == "end"]
        if ends.empty:
            return columns
        end = ends.iloc[-1]
        starts = at[(at["edge"] == "start") & (at["point_id"] == end["point_id"])]
        if starts.empty:
            return columns
        return _drift(columns, starts.iloc[0], end)
    for run in sorted(set(controls["run_started"]), reverse=True):
        at = controls[controls["run_started"] == run].set_index("edge")
        if {"start", "end"} <= set(at.index):
            return _drift(columns, at.loc["start"], at.loc["end"])
    return columns


def _drift(columns: dict[str, Any], start: pd.Series, end: pd.Series) -> dict[str, Any]:
    columns = {**columns, "control_point_id": str(end["point_id"])}
    for q in ("energy", "duration"):
        col = "energy_j" if q == "energy" else "duration_s"
        columns[f"control_drift_{q}"] = float(end[col]) / float(start[col]) - 1
    return columns
