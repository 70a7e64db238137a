"""The workload estimate's bins in parts that each fit one run of every engine's job.

Claim 8 compares one trace's binned energy on two engines, and two machines of one GPU type can
differ by more than a job's trials resolve, so each bin's two engines are best measured in one
machine session. Where the whole estimate outlasts one allocation (a Slurm job's runtime, a lent
machine's session), it is measured a part at a time: each part a set of bins
(``experiments.workload_estimates.bins``) whose points, on every engine's job, take no longer
than the allocation by the GPU-time estimate, engine starts included. Bins go into parts in
the traces' order (input bin, then output bin), or, given how many of each trace's requests each
bin holds, in the order that covers the most of the traces' estimated time per minute of
measuring (:func:`bin_shares`), so that the bins a claim-8 total leans on most are measured
first; a bin that alone outlasts the allocation gets a part of its own, and the table says so.

Split again after a part is measured (the time model fitted to more rows), the parts whose
every bin the measurements complete on every job keep their bins and come first
(:func:`measured_parts`), so that the layers their shipped tables were measured with still name
the same points; the other bins are split anew after them.
"""

from __future__ import annotations

import contextlib
import math
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from llm_energy.errors import InputError
from llm_energy.families.workload_estimates import NAME as FAMILY
from llm_energy.measure.job import JobPlan

# What a part's layer measures: the traces' bins and the estimate, no other family.
LAYER_EXPERIMENTS = ("workload_traces", FAMILY)

Bin = tuple[int, int]


@dataclass
class Part:
    """One part: its bins, and the estimated minutes of each job's points over them."""

    bins: list[Bin] = field(default_factory=list)
    minutes: dict[str, float] = field(default_factory=dict)
    measured: bool = False
    share: float = math.nan  # of the traces' estimated time its bins hold (bin_shares)

    def points_min(self) -> float:
        return sum(self.minutes.values())


def bin_minutes(
    plans: Mapping[str, JobPlan], measurements: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per (job, bin): the estimated minutes of the job's workload points of that bin
    (:func:`~llm_energy.analysis.gpu_hours.point_costs`) and the estimated seconds of one
    request at the largest batch the job measures of it (``request_s``: a batch's time over
    its size; NaN where the job measures none), and per job the minutes of one engine start
    and idle window (:func:`~llm_energy.analysis.gpu_hours.start_seconds`). Jobs without
    workload points, or without rows to time them, are left out."""
    from llm_energy.analysis.gpu_hours import _time_model, start_seconds, timed_point_costs

    lines, starts = [], {}
    for group, plan in plans.items():
        own = [FAMILY in p.experiments for p in plan.points]
        if not any(own):
            continue
        model, _, rows = _time_model(plan, measurements, {plan.model.name: plan.model})
        if model is None:
            continue
        costs = timed_point_costs(plan, model, rows, measurements)
        starts[group] = start_seconds(model, plan) / 60
        for point, mine, minutes, counted in zip(
            plan.points, own, costs["minutes"], costs["counted"], strict=True
        ):
            if mine:
                request_s = math.nan
                if counted:
                    with contextlib.suppress(KeyError):  # a shape MeasuredShapes never measured
                        batch_s = model.full_s(
                            point.batch_size, point.input_tokens, point.output_tokens
                        )
                        request_s = batch_s / point.batch_size
                lines.append(
                    (group, point.input_tokens, point.output_tokens, float(minutes), request_s)
                )
    columns = ["group", "input_bin", "output_bin", "minutes", "request_s"]
    table = pd.DataFrame(lines, columns=columns)
    table = table.groupby(["group", "input_bin", "output_bin"], as_index=False).agg(
        minutes=("minutes", "sum"), request_s=("request_s", "min")
    )
    return table, starts


def trace_bin_requests(folder: Path, traces: Mapping[str, Any]) -> dict[str, dict[Bin, int]]:
    """Each trace's requests per bin, from its summary ``folder/TRACE.json`` under the bins of
    ``traces`` (``experiments.workload_traces``); an error naming a trace without one."""
    from llm_energy.analysis.summaries import read_trace_summary

    held = {}
    for trace in traces["traces"]:
        path = folder / f"{trace}.json"
        if not path.is_file():
            raise InputError(
                f"{path}: no summary of trace '{trace}' (the summaries stage writes it, "
                "results/data/summaries/traces/, and resources/summaries/traces/ ships some)"
            )
        counts = read_trace_summary(path).binning(traces["input_bins"], traces["output_bins"])
        held[trace] = {
            (int(i), int(o)): int(n)
            for i, o, n in counts.counts[["input_bin", "output_bin", "requests"]].itertuples(
                index=False
            )
        }
    return held


def bin_shares(by_bin: pd.DataFrame, requests: Mapping[str, Mapping[Bin, int]]) -> pd.Series:
    """Per bin of ``by_bin`` (:func:`bin_minutes`): how much of the traces' totals measuring
    it covers, as the mean over the traces (``requests``: each trace's requests per bin) and
    the jobs of the bin's share of the trace's estimated time on that job (its requests times
    ``request_s``, over the same sum for every bin the job times). A bin no trace's request
    falls in covers nothing. An estimate for ordering the parts, not a measurement."""
    key = ["input_bin", "output_bin"]
    shares = pd.Series(0.0, index=pd.MultiIndex.from_frame(by_bin[key].drop_duplicates()))
    shares = shares.sort_index()
    timed = by_bin.dropna(subset=["request_s"]).set_index(key)
    totals = 0
    for counts in requests.values():
        held = pd.Series(counts, dtype=float)
        for _, job in timed.groupby("group"):
            seconds = job["request_s"] * held.reindex(job.index, fill_value=0.0)
            if seconds.sum() > 0:
                shares = shares.add(seconds / seconds.sum(), fill_value=0.0)
                totals += 1
    return shares / totals if totals else shares


def measured_bins(
    plans: Mapping[str, JobPlan], tables: Sequence[tuple[Path, pd.DataFrame]]
) -> set[Bin]:
    """The bins that every job's rows in ``tables`` have measured (as
    :func:`~llm_energy.measure.resume.trials_left` counts them from shipped rows): every
    workload point of the bin complete, or, where the job searches each bin's largest feasible
    batch (``largest_feasible_only``), its ladder walked down to a batch that fits, so that the
    points still short of trials lie between two complete ones. Those are the rungs a finer
    ladder adds between the batches measured (a batch that fits and one above it out of
    memory, or its ladder's top): the bin was measured on a coarser ladder, and what its
    rungs between cost is the plan's to say."""
    from llm_energy.measure.resume import trials_left

    done: set[Bin] | None = None
    for plan in plans.values():
        own = [p for p in plan.points if FAMILY in p.experiments]
        if not own:
            continue
        left = trials_left(plan, None, tables)
        searched = FAMILY in plan.largest_feasible_only
        batches: dict[Bin, dict[int, int]] = {}
        for p in own:
            batches.setdefault((p.input_tokens, p.output_tokens), {})[p.batch_size] = left[p.key]
        bins = {b for b, ladder in batches.items() if _measured(ladder, searched)}
        done = bins if done is None else done & bins
    return done or set()


def _measured(ladder: Mapping[int, int], searched: bool) -> bool:
    """Whether a bin's points (trials left by batch) are measured: all complete, or, searched,
    some complete and every other one between two complete ones."""
    complete = sorted(b for b, n in ladder.items() if n == 0)
    if len(complete) == len(ladder):
        return True
    if not searched or not complete:
        return False
    return all(complete[0] < b < complete[-1] for b, n in ladder.items() if n)


def read_parts(folder: Path) -> list[list[Bin]]:
    """The bins of the layers ``folder/partN.yaml`` that :func:`part_layer` wrote, by N."""
    layers = []
    for path in folder.glob("part*.yaml"):
        found = re.fullmatch(r"part(\d+)", path.stem)
        if found:
            layer = yaml.safe_load(path.read_text()) or {}
            bins = layer.get("experiments", {}).get(FAMILY, {}).get("bins", [])
            layers.append((int(found.group(1)), [(int(i), int(o)) for i, o in bins]))
    return [bins for _, bins in sorted(layers)]


def measured_parts(earlier: Sequence[Sequence[Bin]], done: set[Bin]) -> list[list[Bin]]:
    """Of the parts split earlier, those whose every bin is measured (``done``), in their
    order."""
    return [list(bins) for bins in earlier if bins and set(bins) <= done]


def workload_parts(
    by_bin: pd.DataFrame,
    starts: Mapping[str, float],
    part_min: float,
    keep: Sequence[Sequence[Bin]] = (),
    shares: pd.Series | None = None,
) -> list[Part]:
    """The bins of ``by_bin`` (:func:`bin_minutes`) in parts of at most ``part_min`` minutes
    each, every job's engine start counted once per part. The parts in ``keep`` (measured
    ones, :func:`measured_parts`) come first with their bins as they are; the other bins are
    split after them, in the traces' order, or with ``shares`` (:func:`bin_shares`) by their
    share over their minutes, the largest first (bins of no share last, in the traces'
    order)."""
    if not part_min > 0:
        raise ValueError(f"a part of {part_min:g} min holds nothing")
    room = part_min - sum(starts.values())
    groups = sorted(starts)
    minutes = by_bin.pivot_table(
        index=["input_bin", "output_bin"], columns="group", values="minutes", aggfunc="sum"
    ).reindex(columns=groups, fill_value=0.0)
    minutes = minutes.fillna(0.0).sort_index()
    parts: list[Part] = []
    for bins in keep:
        at = minutes.reindex(list(bins), fill_value=0.0)
        kept = {g: float(at[g].sum()) for g in groups}
        parts.append(Part(bins=list(bins), minutes=kept, measured=True))
    kept_bins = {b for bins in keep for b in bins}
    minutes = minutes[[b not in kept_bins for b in minutes.index]]
    if shares is not None:
        cost = minutes.sum(axis=1)
        share = shares.reindex(minutes.index, fill_value=0.0)
        value = (share / cost.where(cost > 0)).fillna(0.0)
        order = sorted(range(len(minutes)), key=lambda n: (-value.iloc[n], minutes.index[n]))
        minutes = minutes.iloc[order]
    current = Part()
    for (i, o), row in minutes.iterrows():
        cost = float(row.sum())
        if current.bins and current.points_min() + cost > room:
            parts.append(current)
            current = Part()
        current.bins.append((int(i), int(o)))
        for group in groups:
            current.minutes[group] = current.minutes.get(group, 0.0) + float(row[group])
    if current.bins:
        parts.append(current)
    if shares is not None:
        for part in parts:
            part.share = float(shares.reindex(part.bins, fill_value=0.0).sum())
    return parts


def describe_parts(parts: Sequence[Part], starts: Mapping[str, float], part_min: float) -> str:
    """One line per part: its bins, each job's minutes with its engine start, the total, and
    where the parts were split by share (:func:`bin_shares`), the share of the traces'
    estimated time its bins hold and the parts' up to it."""
    lines = []
    for n, part in enumerate(parts, start=1):
        jobs = {g: m + starts[g] for g, m in part.minutes.items()}
        total = sum(jobs.values())
        over = f" (over {part_min:g} min: one bin alone)" if total > part_min else ""
        if part.measured:
            over = " (measured: kept as it was)"
        lines.append(
            {
                "part": n,
                "bins": len(part.bins),
                "first_bin": "{} in, {} out".format(*part.bins[0]),
                "last_bin": "{} in, {} out".format(*part.bins[-1]),
                **{f"{g}_min": m for g, m in jobs.items()},
                "total_min": total,
                **(
                    {}
                    if math.isnan(part.share)
                    else {"share_pct": 100 * part.share, "share_so_far_pct": math.nan}
                ),
                "note": over.strip(),
            }
        )
    table = pd.DataFrame(lines)
    if "share_pct" in table:
        table["share_so_far_pct"] = table["share_pct"].cumsum()
    return table.to_string(index=False, float_format=lambda v: f"{v:.1f}")


def part_layer(
    part: Part, n: int, count: int, configfiles: Sequence[str], starts: Mapping[str, float]
) -> str:
    """A configuration layer that measures one part's bins alone (``only_experiments`` keeps
    the traces' bins and the estimate, so no other family's points join the part)."""
    jobs = ", ".join(f"{g} {m + starts[g]:.1f} min" for g, m in sorted(part.minutes.items()))
    total = sum(part.minutes.values()) + sum(starts.values())
    layers = " ".join(configfiles)
    header = (
        f"Part {n} of {count} of the workload estimate's bins ({len(part.bins)} bins): about "
        f"{total:.1f} min by the GPU-time estimate ({jobs}; engine starts included)"
        + (", measured (its bins kept when the others were split again)" if part.measured else "")
        + (
            ""
            if math.isnan(part.share)
            else f"; its bins hold about {100 * part.share:.1f} % of the traces' estimated time"
        )
        + f". Layered on {layers}:"
    )
    layer = {
        "only_experiments": list(LAYER_EXPERIMENTS),
        "experiments": {FAMILY: {"bins": [[i, o] for i, o in part.bins]}},
    }
    return (
        textwrap.fill(header, width=99, initial_indent="# ", subsequent_indent="# ")
        + f"\n#   snakemake --configfile {layers} <this file> --resources gpu=1\n"
        + yaml.safe_dump(layer, default_flow_style=None, sort_keys=False)
    )


def total_minutes(parts: Sequence[Part], starts: Mapping[str, float]) -> float:
    """Every part's points and engine starts."""
    if not parts:
        return math.nan
    return sum(p.points_min() for p in parts) + len(parts) * sum(starts.values())
