"""How much of a configuration the shipped rows cover, family by family and job by job.

Each point of the configuration's plan is one of four:

- ``complete``: a row of the tables stands for it as the workflow's ``resume_from_shipped``
  seeds a job (:func:`llm_energy.measure.resume.complete`): measured in at least the
  protocol's ``min_trials`` trials that met it, or recorded as not measured (out of memory,
  not attempted above a shape's bound, passed over below a bin's largest feasible batch);
- ``unshared``: a row meets the protocol but lacks the feed-forward time share that the job
  asks for (:func:`llm_energy.measure.resume.unshared`): a job measures it again;
- ``short``: rows of the point exist and none completes it (too few trials, a window under the
  protocol, a device error): a job measures it again from its first trial;
- ``unmeasured``: no row of the tables is the point's.

A point of several families counts under each. Tables measured with a layer that changes the
protocol (``config/h200_three_trials.yaml``'s three trials at most) file their rows under other
point ids than the study's own: each ``--variant`` (layers over the study, comma-separated)
counts too, a point being complete where the variant's plan holds a point of the same job,
shape (batch, lengths, decoding, request stream, prompts, serving: the point less the protocol
its family gives it) and family, and a row completes that point. The counts come from the
rows and the plans alone, so a closing note or a review can quote them without counting by
hand.

With ``--time-left``, the report also says what measuring the rest would take: each job's
GPU-hours and minutes for the points that are not complete, every one from its first trial, by
``llm-energy estimate-gpu-hours``'s time model fitted to the given tables' rows (at the trials
per point its engine's rows took): an estimate, never a measurement.

    python benchmarks/coverage.py CONFIG [CONFIG ...] --tables resources/measurements/h200 \\
        [--variant LAYER[,LAYER ...] ...] [--time-left] [--out COVERAGE.md]

A benchmark that reports numbers, not a test with a threshold.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from llm_energy.analysis.gpu_hours import estimate, gpu_names
from llm_energy.config import load_config
from llm_energy.errors import LlmEnergyError
from llm_energy.measure.job import JobPlan, PointSpec
from llm_energy.measure.plan import plan_study
from llm_energy.measure.resume import Tables, read_tables, rows_of_points, trials_left, unshared

STATUSES = ("complete", "unshared", "short", "unmeasured")


def _shape(key: tuple) -> tuple:
    """A point's key without the protocol a family gives its points (``PointSpec.key`` ends
    with ``"protocol"`` and that protocol's hash), which a variant's layers may change."""
    return key[: key.index("protocol")] if "protocol" in key else key


def _names(group: str, point: PointSpec) -> set[tuple]:
    """What a point is matched by across the study and its variants: its job, its shape and
    each of its families (a family gives all its points one protocol, so within a family the
    shape is the point)."""
    return {(group, _shape(point.key), family) for family in point.experiments or ("",)}


Found = dict[str, set[tuple]]


def _found(jobs: dict[str, JobPlan], tables: Tables) -> Found:
    """The names (:func:`_names`) of the points of ``jobs`` by what the rows of ``tables``
    make of them: ``complete`` (a row completes the point), ``unshared`` (a row lacks the
    feed-forward time share the job asks for) and ``short`` (some row is filed under it)."""
    found: Found = {status: set() for status in STATUSES[:-1]}
    for group, plan in jobs.items():
        left = trials_left(plan, None, tables)
        filed = {key for key, _, _ in rows_of_points(plan, tables)}
        without = set(unshared(plan, tables, [key for key, n in left.items() if n]))
        for point in plan.points:
            for status, holds in (
                ("complete", left[point.key] == 0),
                ("unshared", point.key in without),
                ("short", point.key in filed),
            ):
                if holds:
                    found[status] |= _names(group, point)
    return found


def point_status(plan: JobPlan, found: Found) -> pd.DataFrame:
    """One line per (point, family) of ``plan``: its job, family, point key, batch size and
    status, the first of :data:`STATUSES` whose names (:func:`_found`) hold one of the
    point's (:func:`_names`)."""
    lines = []
    for point in plan.points:
        names = _names(plan.group, point)
        status = next((s for s in STATUSES[:-1] if names & found[s]), "unmeasured")
        for family in point.experiments or ("",):
            lines.append((family, plan.group, point.key, point.batch_size, status))
    return pd.DataFrame(lines, columns=["family", "job", "point", "batch_size", "status"])


def coverage(
    configs: Sequence[str], tables: Tables, variants: Sequence[Sequence[str]] = ()
) -> pd.DataFrame:
    """Every (point, family) of the study ``configs`` describe (layered as the workflow
    layers them) with its status (:func:`point_status`); a point is complete where a row
    completes it under the study or under one of its ``variants`` (layers over it)."""
    jobs = plan_study(load_config(*configs))
    if not jobs:
        raise SystemExit(f"coverage: {' '.join(configs)} plans no measurement job")
    found = _found(jobs, tables)
    for layers in variants:
        more = _found(plan_study(load_config(*configs, *layers)), tables)
        found = {status: names | more[status] for status, names in found.items()}
    return pd.concat([point_status(plan, found) for plan in jobs.values()], ignore_index=True)


def time_left(configs: Sequence[str], status: pd.DataFrame, tables: Tables) -> pd.DataFrame:
    """Per job of the study ``configs`` describe: its points that ``status`` (:func:`coverage`)
    does not count complete, and the GPU-hours and job minutes they would take, each from its
    first trial, at the trials per point its engine's rows took (``expected_gpu_hours`` of
    :func:`llm_energy.analysis.gpu_hours.estimate`, fitted to the rows of ``tables``); NaN
    where the tables hold no rows to fit a job's time by."""
    if not tables:
        raise LlmEnergyError(
            "--time-left fits the time model to the tables' rows, and no table was given"
        )
    jobs = plan_study(load_config(*configs))
    open_points = status.loc[status["status"] != "complete", ["job", "point"]]
    wanted = set(open_points.itertuples(index=False, name=None))
    left = {
        group: {
            p.key: plan.protocol_of(p).min_trials if (group, p.key) in wanted else 0
            for p in plan.points
        }
        for group, plan in jobs.items()
    }
    measured = pd.concat([table for _, table in tables], ignore_index=True)
    table = estimate(jobs, measured, left)
    out = table[["group", "points_left", "gpus", "expected_gpu_hours"]].rename(
        columns={"group": "job", "expected_gpu_hours": "gpu_hours_left"}
    )
    out["job_min_left"] = 60 * out["gpu_hours_left"] / out["gpus"]
    return out


def _render_time_left(left: pd.DataFrame, device: str) -> list[str]:
    """The jobs with points left, their estimated time, and the sum, said to be an estimate."""
    open_jobs = left[left["points_left"] > 0]
    if open_jobs.empty:
        return ["", "left to measure: nothing"]
    known = open_jobs["gpu_hours_left"].dropna()
    unfitted = open_jobs.loc[open_jobs["gpu_hours_left"].isna(), "job"].tolist()
    without = f"; {len(unfitted)} without rows to fit ({', '.join(unfitted)})" if unfitted else ""
    return [
        "",
        "What the points left would take, by `llm-energy estimate-gpu-hours`'s time model "
        f"fitted to these tables' rows on {device}, each point from its first trial "
        "(ESTIMATE, not a measurement):",
        "",
        open_jobs.to_markdown(index=False, floatfmt=".2f"),
        "",
        f"left to measure: {int(open_jobs['points_left'].sum())} points of "
        f"{len(open_jobs)} jobs, {known.sum():.2f} GPU-hours for the {len(known)} jobs "
        f"with rows to fit{without}",
    ]


def counts(status: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Points by ``by`` (columns of :func:`coverage`'s lines), counted by status, with the
    share complete."""
    out = (
        status.groupby(list(by))["status"]
        .value_counts()
        .unstack("status", fill_value=0)
        .reindex(columns=list(STATUSES), fill_value=0)
        .reset_index()
    )
    out.columns.name = None
    out.insert(len(by), "points", out[list(STATUSES)].sum(axis=1))
    out["complete_share"] = out["complete"] / out["points"]
    return out


def _counted(row: pd.Series) -> str:
    """One line of a count's statuses, the feed-forward shares only where some lack them."""
    unshared = (
        f"{row['unshared']} without the feed-forward time share the job asks for, "
        if row["unshared"]
        else ""
    )
    return (
        f"{row['complete']} of {row['points']} points complete, {unshared}"
        f"{row['short']} short of the protocol, {row['unmeasured']} without a row"
    )


def render(
    status: pd.DataFrame, tables: Tables, command: str = "", left: pd.DataFrame | None = None
) -> str:
    """The counts by family and job, by family, and of the study's points each once, under
    the ``command`` that wrote them; with ``left`` (:func:`time_left`), what the rest would
    take."""
    lines = [f"`{command}`: {len(tables)} tables", ""] if command else []
    lines += [
        counts(status, ["family", "job"]).to_markdown(index=False, floatfmt=".3f"),
        "",
    ]
    for _, row in counts(status, ["family"]).iterrows():
        lines.append(f"- {row['family']}: {_counted(row)}")
    each = status.drop_duplicates(["job", "point"]).assign(study="all")
    total = counts(each, ["study"]).iloc[0]
    lines.append(f"\nthe study's points, each once: {_counted(total)}")
    if left is not None:
        lines += _render_time_left(left, gpu_names(pd.concat([t for _, t in tables])))
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("configs", nargs="+", help="the study's configuration and its layers")
    ap.add_argument(
        "--tables", nargs="+", type=Path, required=True, help="job tables, or folders of them"
    )
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        help="layers over the study, comma-separated, whose plans' rows count too",
    )
    ap.add_argument(
        "--time-left",
        action="store_true",
        help="also estimate the GPU time the points that are not complete would take",
    )
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    variants = [layers.split(",") for layers in args.variant]
    paths = sorted(
        p for given in args.tables for p in (given.glob("*.parquet") if given.is_dir() else [given])
    )
    try:
        tables = read_tables(paths)
        status = coverage(args.configs, tables, variants)
        left = time_left(args.configs, status, tables) if args.time_left else None
    except LlmEnergyError as exc:  # a wrong config key, a missing table: one line, no trace
        raise SystemExit(f"coverage: {exc}") from None
    given = [*args.configs, "--tables", *map(str, args.tables)]
    given += [word for layers in args.variant for word in ("--variant", layers)]
    given += ["--time-left"] if args.time_left else []
    command = shlex.join(["python", "benchmarks/coverage.py", *given])
    text = render(status, tables, command, left)
    print(text, end="")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
