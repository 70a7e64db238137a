"""What a job has left to measure: the rows measured elsewhere (the shipped tables) that
stand for its points, copied into its journal, and the trials each point still needs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from llm_energy.measure.job import JobPlan, ProtocolSpec
from llm_energy.measure.point_ids import point_ids
from llm_energy.measure.store import Journal, read_table
from llm_energy.measure.trials import (
    failed_on_device,
    interval_wider_than_target,
    least_trials_left,
)


def wider_than_target(row: dict[str, Any], protocol: ProtocolSpec) -> bool:
    """Whether a measured row's interval is wider than ``protocol``'s target, as the runner
    judges its trials (:func:`~llm_energy.measure.trials.interval_wider_than_target`), while
    its trials are fewer than the protocol's ``max_trials``: a run that a deadline or
    ``--trials-at-most`` stopped before its trials narrowed the interval."""
    trials = row.get("trials")
    if trials is None or pd.isna(trials):
        return False
    return int(trials) < protocol.max_trials and interval_wider_than_target(row, protocol)


def complete(row: dict[str, Any], protocol: ProtocolSpec, wide_again: bool = False) -> bool:
    """Whether a row measured elsewhere stands for its point under ``protocol``: a point not
    measured (out of memory, not attempted), or one measured in at least ``min_trials``
    trials that met the protocol (a row measured before trials counts as one). A row with
    fewer is not: the point is measured again, all its trials in this job, never topped up
    with trials of another session. Nor is a trial a device error ended. With
    ``wide_again``, nor is a row :func:`wider_than_target`: its point is measured again, every
    trial in this job, up to ``max_trials``."""
    if failed_on_device(row):
        return False
    if not bool(row.get("feasible")) or not int(row.get("repetitions") or 0):
        return True
    trials = row.get("trials")
    if trials is None or pd.isna(trials):
        return protocol.min_trials <= 1
    if wide_again and wider_than_target(row, protocol):
        return False
    met = row.get("protocol_met")
    return int(trials) >= protocol.min_trials and (met is None or bool(met))


Tables = Sequence[tuple[Path, pd.DataFrame]]


def read_tables(paths: Sequence[Path | str]) -> Tables:
    """Job tables measured elsewhere, each with its path, read once for every job they seed."""
    return [(Path(p), read_table(p)) for p in paths]


def rows_of_points(plan: JobPlan, tables: Tables) -> Iterator[tuple[tuple, dict[str, Any], Path]]:
    """Every row of ``tables`` filed under a point of ``plan`` (by the point id version the
    row carries), table by table in order: the point's key, the row and its table."""
    # Point key by id, per id version: named once for all the tables.
    keys_by_id: dict[int, dict[str, tuple]] = {}
    for path, table in tables:
        if "point_id" not in table.columns:
            continue
        versions = (
            table["point_id_version"].fillna(1).astype(int)
            if "point_id_version" in table.columns
            else pd.Series(1, index=table.index)
        )
        for their_version in sorted(set(versions)):
            if their_version not in keys_by_id:
                ids = point_ids(plan, their_version)
                keys_by_id[their_version] = {pid: key for key, pid in ids.items()}
            theirs = keys_by_id[their_version]
            rows = table[(versions == their_version) & table["point_id"].isin(theirs)]
            for _, row in rows.iterrows():
                yield theirs[row["point_id"]], row.to_dict(), path


def under_another_setup(plan: JobPlan, tables: Tables, keys: Sequence[tuple]) -> list[tuple]:
    """Those of ``keys`` (points of ``plan``) whose shape rows of ``tables`` of the plan's
    model and engine hold only under other point ids: measured under another setup or
    protocol (say a layer's ``warmup_repetitions``, or ``max_trials: 3`` in ids of version 2),
    so no run seeds them and the point is measured again."""
    from llm_energy.measure.point_ids import VERSIONS, shape, shape_of_id

    own = [point_ids(plan, v) for v in VERSIONS]
    ids_by_shape: dict[str, set[str]] = {}
    for _, table in tables:
        if not {"point_id", "model", "engine"} <= set(table.columns):
            continue
        mine = table[(table["model"] == plan.model.name) & (table["engine"] == plan.engine.name)]
        for pid in mine["point_id"].dropna().astype(str):
            ids_by_shape.setdefault(shape_of_id(pid), set()).add(pid)
    points = {p.key: p for p in plan.points}
    found = []
    for key in keys:
        theirs = ids_by_shape.get(shape(points[key]), set())
        # A point with a row of its own id is left for that row's trials or interval.
        if theirs and not theirs & {ids[key] for ids in own}:
            found.append(key)
    return found


def timed_points(plan: JobPlan) -> set[tuple]:
    """Keys of the points whose rows ``plan`` asks to carry the feed-forward blocks' share of
    the time (``architectures.ffn_time_share``), where its engine times them
    (:func:`llm_energy.backends.times_feed_forward`)."""
    from llm_energy.backends import times_feed_forward

    if not plan.ffn_time_share or not times_feed_forward(plan.engine):
        return set()
    return {p.key for p in plan.points if plan.asks_ffn_share(p)}


def without_share(row: dict[str, Any]) -> bool:
    """Whether a measured row lacks ``ffn_time_share``: a row of a job that did not ask."""
    measured = bool(row.get("feasible")) and bool(int(row.get("repetitions") or 0))
    share = row.get("ffn_time_share")
    return measured and (share is None or bool(pd.isna(share)))


def unshared(plan: JobPlan, tables: Tables, keys: Sequence[tuple]) -> list[tuple]:
    """Those of ``keys`` (points of ``plan``) whose rows in ``tables`` under their own point
    ids lack the feed-forward time share that ``plan`` asks of them (:func:`timed_points`),
    so that no run seeds them and the point is measured again."""
    timed = timed_points(plan) & set(keys)
    lacking: set[tuple] = set()
    whole: set[tuple] = set()
    for key, row, _ in rows_of_points(plan, tables):
        if key in timed:
            (lacking if without_share(row) else whole).add(key)
    return [key for key in keys if key in lacking - whole]


def left_notes(plan: JobPlan, tables: Tables, left: dict[tuple, int]) -> list[str]:
    """A line each on why points that ``left`` (trials by point key) gives trials are
    measured again although ``tables`` hold rows at their shapes: rows under another setup or
    protocol (:func:`under_another_setup`), rows without the feed-forward time share the job
    asks for (:func:`unshared`)."""
    keys = [key for key, n in left.items() if n > 0]
    notes = []
    for found, why in (
        (
            under_another_setup(plan, tables, keys),
            "a row in the given tables at the same shape under another setup or protocol "
            "(another point id: a layer's warm-up, say, or a protocol before trials), which no "
            "run seeds",
        ),
        (
            unshared(plan, tables, keys),
            "a row in the given tables without the feed-forward time share that the job asks "
            "for (measured by a job without architectures.ffn_time_share), which no run seeds",
        ),
    ):
        if found:
            verb = "has" if len(found) == 1 else "have"
            notes.append(
                f"job {plan.group}: of its {len(keys)} points left, {len(found)} {verb} {why}; "
                "they are measured again"
            )
    return notes


def _seedable(
    plan: JobPlan, tables: Tables, version: int, wide_again: bool = False
) -> dict[str, tuple[dict[str, Any], Path]]:
    """The rows of ``tables`` that :func:`seed_journal` would copy, by the point id (of
    ``version``) they would be filed under, first table first; with the table each came from."""
    mine = point_ids(plan, version)
    protocols = {p.key: plan.protocol_of(p) for p in plan.points}
    timed = timed_points(plan)
    found: dict[str, tuple[dict[str, Any], Path]] = {}
    for key, row, path in rows_of_points(plan, tables):
        if mine[key] in found or (key in timed and without_share(row)):
            continue
        if complete(row, protocols[key], wide_again):
            found[mine[key]] = (row, path)
    return found


def seed_journal(plan: JobPlan, tables: Tables, journal_dir: Path, wide_again: bool = False) -> int:
    """Copy into the job's journal the rows of ``tables`` (job tables measured elsewhere, such
    as the shipped ones, as :func:`read_tables` reads them) that are points of ``plan`` under
    the same measurement setup and complete under its protocol (:func:`complete`), and with the
    feed-forward time share where the job asks for it (:func:`timed_points`), so that the job
    measures only the rest.
    A copied row is the point's, whole (``seeded_from`` names its table): the job adds no
    trial to it. Rows are matched by the id version they carry and filed under the
    journal's. Points already in the journal are kept. With ``wide_again``, a row wider than
    its protocol's target is not copied (:func:`complete`). Returns how many rows were
    copied."""
    journal = Journal(journal_dir)
    copied = 0
    seedable = _seedable(plan, tables, journal.version, wide_again)
    for pid, (row, path) in seedable.items():
        if not journal.has(pid):
            entry = {
                **row,
                "point_id": pid,
                "point_id_version": journal.version,
                "seeded_from": str(path),
            }
            journal.record(pid, entry)
            copied += 1
    return copied


def trials_left(
    plan: JobPlan, journal_dir: Path | None, tables: Tables = (), wide_again: bool = False
) -> dict[tuple, int]:
    """Trials each point of ``plan`` still needs (by point key): none where the job's journal
    (none where ``journal_dir`` is None) or a row of ``tables`` (as :func:`read_tables` reads
    them, that :func:`seed_journal` would copy) completes it, else at least its ``min_trials``
    less the trials the journal holds, and one more where the interval is still wide. What a
    run that starts now would measure, before its points are selected from the traces; nothing
    is written. Trials of every machine session count here: where the job will run is not known
    yet (a run on another machine measures short points again from their first trial).
    ``wide_again`` as :func:`seed_journal` takes it."""
    from llm_energy.measure.point_ids import CURRENT_VERSION

    journal = Journal.existing(journal_dir)
    version = journal.version if journal is not None else CURRENT_VERSION
    seeded_ids = set(_seedable(plan, tables, version, wide_again)) if tables else set()
    ids = point_ids(plan, version)
    left = {}
    for point in plan.points:
        proto = plan.protocol_of(point)
        pid = ids[point.key]
        have = journal.trials(pid) if journal is not None else []
        have = [t for t in have if not failed_on_device(t)]
        left[point.key] = 0 if not have and pid in seeded_ids else least_trials_left(have, proto)
    return left
