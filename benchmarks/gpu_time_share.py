"""How much of a measurement job's GPU time lies inside measurement windows, and how many trials
the adaptive protocol spent against fixed counts.

    python benchmarks/gpu_time_share.py --journals DIR [--job-times CSV] [--estimate CSV] \
        [--json OUT]

``DIR`` holds one journal folder per job (``results/journal/{hardware}/{group}``). Each run of a
job's process (a job resumed from its journal has several) is read from the journal, which
records when it started and ended (``run.*.json``), its engine start being its trials'
``engine_load_s``; a run killed outright has no end there and is left out, said on stderr.
``--job-times CSV`` gives the runs instead (journals written before runs were recorded):
``job, started_utc, ended_utc`` and optionally ``engine_loaded_s`` (the job log's "loaded ... in
N s"), one line per run. A
trial's window time is its repetitions times its time per repetition, prefill windows included;
its warm-up, where it had one, is its first warm-up call as timed, or in trials written before
warm-ups were timed one repetition more (a request stream's, one batch of each of its groups,
at that batch's share of the stream's requests; a served trial's window is its replay's steady
state, the rest of the replay is counted apart, and its warm-up is not timed); the rest of the
job is engine start, the idle-power window, the control point and the harness. Where batch
trials timed their warm-ups, ``warmup_over_repetition_median`` and ``_max`` say how much
longer a warm-up took than a repetition of its window: about 1 where it found the shape warm.
``first_warmup_over_repetition_max`` and ``later_warmup_over_repetition_max`` split them into
the warm-ups before a point's first trial in its run's engine instance (a trial's run is the
one whose start and end hold its timestamp) and those before its later trials, and
``later_warmups_s`` is what the later ones took: the time that warming a point up once per
engine instance (``warmup_every_trial: false``) would not spend, and
``share_if_warmed_up_once`` the share of the job's time inside windows without it.
``bound_searches_s`` is the
probes' time below the batches out of memory, where their rows timed it (``bound_search_s``),
and ``out_of_memory_attempts_s`` the attempts that ran out of memory, where their rows timed
them (``out_of_memory_s``); ``rest_s`` is the job's time outside the engine start, the windows,
the warm-ups, the replays, those probes and those attempts: the idle-power window, the control
point, the harness, and the probes and attempts whose rows did not time them.
``harness_in_trials_s`` is the harness's part of that rest inside the batch trials whose wall
time the journal holds (``trial_s``; ``trials_timed`` of them): a trial's wall time less its
windows and its warm-up (prompts, meter and clock reads, the GPU watch, the host's load), and
``harness_over_windows`` that time over those trials' windows, the harness's overhead measured
in every job.
``trials_against_plan`` counts the trials whose run kept the plan's estimate of their point's
trial in its record (a run given ``--time-model-rows``), and ``trial_over_plan_median``,
``_min`` and ``_max`` their wall time over it: how far off the plan the job's own estimate was,
trial by trial, read from the journal alone.
``--estimate`` (the table ``llm-energy estimate-gpu-hours`` prints, as CSV with ``group`` and
``estimated_gpu_hours``, and ``estimated_job_min`` or ``gpus``) adds each job's planned wall
time beside the actual one, and the actual over it where the job ran the estimate's three trials
per point. A benchmark that reports numbers, not a test with a threshold.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def window_seconds(trial: pd.Series) -> float:
    seconds = float(trial["repetitions"]) * float(trial["duration_s"])
    prefill = trial.get("prefill_repetitions", 0)
    if prefill and not pd.isna(trial.get("prefill_duration_s")):
        seconds += float(prefill) * float(trial["prefill_duration_s"])
    return seconds


def warmup_seconds(trial: pd.Series) -> float:
    """A trial's warm-up: its first warm-up call as timed (``warmup_s``), or in trials written
    before warm-ups were timed one repetition of its window; and one call at the prefill shape
    when it measures prefill. A request stream's untimed warm-up is one batch of each of its
    groups (the whole stream, or each bin of a binned replay), counted at that batch's share of
    the stream's requests."""
    timed = trial.get("warmup_s")
    seconds = float(trial["duration_s"])
    if timed is not None and not pd.isna(timed):
        seconds = float(timed)
    elif trial.get("trace", "") and trial.get("requests", 0) and not pd.isna(trial["requests"]):
        requests = trial["requests"]
        bins = trial.get("stream_bins")
        sizes = json.loads(bins).values() if isinstance(bins, str) and bins else [requests]
        batch = int(trial["batch_size"])
        return seconds * sum(min(batch, int(n)) for n in sizes) / float(requests)
    if trial.get("prefill_repetitions", 0) and not pd.isna(trial.get("prefill_duration_s")):
        seconds += float(trial["prefill_duration_s"])
    return seconds


def _ratio(trial: pd.Series) -> float:
    """A batch trial's timed warm-up over its time per repetition (NaN where not timed)."""
    if trial.get("trace", "") or pd.isna(trial.get("warmup_s", float("nan"))):
        return math.nan
    return float(trial["warmup_s"]) / float(trial["duration_s"])


def _utc(stamp: object) -> pd.Timestamp:
    """A timestamp in UTC; one written without a zone is UTC already."""
    at = pd.Timestamp(stamp)
    return at.tz_localize("UTC") if at.tzinfo is None else at


def later_in_instance(trials: list[pd.Series], runs: pd.DataFrame) -> list[bool]:
    """For each trial, whether an earlier trial of its point ran in the same run (engine
    instance): its run is the one whose start and end hold its timestamp; a trial that no run
    holds (copied from another journal) is its own."""
    starts = pd.to_datetime(runs["started_utc"], utc=True).tolist()
    ends = pd.to_datetime(runs["ended_utc"], utc=True).tolist()

    def run_of(trial: pd.Series) -> int | None:
        stamp = trial.get("timestamp")
        if stamp is None or pd.isna(stamp):
            return None
        at = _utc(stamp)
        hits = [i for i, (a, b) in enumerate(zip(starts, ends, strict=True)) if a <= at <= b]
        return hits[0] if hits else None

    order = sorted(range(len(trials)), key=lambda i: str(trials[i].get("timestamp", "")))
    seen: set[tuple[int, str]] = set()
    later = [False] * len(trials)
    for i in order:
        run = run_of(trials[i])
        if run is None:
            continue
        key = (run, str(trials[i]["point_id"]))
        later[i] = key in seen
        seen.add(key)
    return later


def timed_sum(trials: list, column: str) -> float:
    """The sum of ``column`` over the trials that timed it; NaN where none did (rows written
    before it was timed), so that the time stays in the rest rather than reading as zero."""
    timed = [float(t[column]) for t in trials if not pd.isna(t.get(column))]
    return sum(timed) if timed else math.nan


def journal_trials(journal: Path) -> list[pd.Series]:
    """Every trial the job's journal holds (those set aside under other_sessions/ apart)."""
    return [pd.read_parquet(p).iloc[0] for p in sorted(journal.glob("*.t*.parquet"))]


def recorded_runs(journal: Path) -> pd.DataFrame:
    """The runs the job's journal records (``run.*.json``), as ``--job-times`` lines: job,
    started_utc, ended_utc, engine_loaded_s (the ``engine_load_s`` of the first trial the run
    measured, NaN where it measured none) and exit_status. A run without an end, killed
    outright, is left out and said."""
    trials = journal_trials(journal)
    stamps = [_utc(t["timestamp"]) for t in trials]
    lines = []
    for path in sorted(journal.glob("run.*.json")):
        run = json.loads(path.read_text())
        if "ended_utc" not in run:
            print(f"{journal.name}: the run of {run['started_utc']} has no end", file=sys.stderr)
            continue
        start, end = (pd.Timestamp(run[k]) for k in ("started_utc", "ended_utc"))
        loads = [
            float(t["engine_load_s"])
            for t, at in zip(trials, stamps, strict=True)
            if start <= at <= end and not pd.isna(t.get("engine_load_s"))
        ]
        lines.append(
            {
                "job": journal.name,
                "started_utc": run["started_utc"],
                "ended_utc": run["ended_utc"],
                "engine_loaded_s": loads[0] if loads else math.nan,
                "exit_status": run["exit_status"],
            }
        )
    return pd.DataFrame(lines, columns=[*JOB_TIMES, "engine_loaded_s", "exit_status"])


JOB_TIMES = ["job", "started_utc", "ended_utc"]


def against_plan(journal: Path, trials: list[pd.Series]) -> list[float]:
    """Each timed trial's wall time (``trial_s``) over what its run expected of its point's
    trial: the plan's estimate that the run's record keeps (``expected_trial_s`` by point id,
    written by runs given ``--time-model-rows``). The trial's run is the recorded one whose
    start and end hold its timestamp (a run without an end holds what came after its start);
    trials of runs that kept no estimate are left out."""
    runs = []
    for path in sorted(journal.glob("run.*.json")):
        run = json.loads(path.read_text())
        if run.get("expected_trial_s"):
            end = _utc(run.get("ended_utc", pd.Timestamp.max))
            runs.append((_utc(run["started_utc"]), end, run["expected_trial_s"]))
    ratios = []
    for trial in trials:
        stamp, took = trial.get("timestamp"), trial.get("trial_s", math.nan)
        if stamp is None or pd.isna(stamp) or pd.isna(took):
            continue
        at = _utc(stamp)
        expected = [e for start, end, e in runs if start <= at <= end]
        seconds = expected[0].get(str(trial["point_id"])) if expected else None
        if seconds:
            ratios.append(float(took) / float(seconds))
    return ratios


def job_share(journal: Path, runs: pd.DataFrame) -> dict:
    trials = journal_trials(journal)
    measured = [t for t in trials if bool(t["feasible"]) and int(t["repetitions"] or 0) > 0]
    # Points with no trial measured (out of memory, passed over beside a larger batch that
    # fits, not attempted) cost next to nothing and count apart.
    points = {str(t["point_id"]) for t in measured}
    # Trials of another machine session that a resumed run set aside (a row's trials come
    # from one session): GPU time spent, no row uses them.
    set_aside = list(journal.glob("other_sessions/*/*.t*.parquet"))
    wall_s = float(
        (pd.to_datetime(runs["ended_utc"]) - pd.to_datetime(runs["started_utc"]))
        .dt.total_seconds()
        .sum()
    )
    windows_s = sum(window_seconds(t) for t in measured)
    # A served trial's window is its replay's steady state; the rest of the replay (the ramp up
    # and the tail) runs outside it. Its warm-up, one batch sent at once, is not timed.
    served = [t for t in measured if not pd.isna(t.get("run_s", float("nan")))]
    batches = [t for t in measured if pd.isna(t.get("run_s", float("nan")))]
    replays_outside_windows_s = sum(float(t["run_s"]) - float(t["duration_s"]) for t in served)
    # Without warmup_every_trial, only a point's first trial in each engine instance warms up
    # (``warmed_up``; trials written before it all did).
    warmups_s = sum(warmup_seconds(t) for t in batches if bool(t.get("warmed_up", True)))
    loaded_s = float(runs["engine_loaded_s"].sum()) if "engine_loaded_s" in runs else float("nan")
    # A batch trial's timed warm-up over its time per repetition: about 1 where the engine had
    # the shape warm already, so that the warm-up bought nothing.
    cold = [r for r in map(_ratio, batches) if not math.isnan(r)]
    warmed = [t for t in batches if bool(t.get("warmed_up", True))]
    later = later_in_instance(warmed, runs)
    ratios = [_ratio(t) for t in warmed]
    first_ratios = [
        r for r, late in zip(ratios, later, strict=True) if not late and not math.isnan(r)
    ]
    later_ratios = [r for r, late in zip(ratios, later, strict=True) if late and not math.isnan(r)]
    later_warmups_s = sum(warmup_seconds(t) for t, late in zip(warmed, later, strict=True) if late)
    # Probes below a batch out of memory, timed on its row (rows written before they were
    # timed leave it unknown, in the rest).
    bound_searches_s = timed_sum(trials, "bound_search_s")
    # Attempts that ran out of memory, timed on their rows likewise.
    attempts_s = timed_sum(trials, "out_of_memory_s")
    # Inside a batch trial, as its wall time (trial_s) records it: the harness's own time
    # around its warm-up and windows (prompts, meter and clock reads, the GPU watch, the host's
    # load), over those windows. Trials written before trial_s was recorded are left out.
    timed_trials = [t for t in batches if not pd.isna(t.get("trial_s", float("nan")))]
    timed_windows_s = sum(window_seconds(t) for t in timed_trials)
    harness_in_trials_s = sum(
        float(t["trial_s"])
        - window_seconds(t)
        - (warmup_seconds(t) if bool(t.get("warmed_up", True)) else 0.0)
        for t in timed_trials
    )
    planned = against_plan(journal, measured)
    outside = (loaded_s, windows_s, warmups_s, replays_outside_windows_s, bound_searches_s)
    rest_s = wall_s - sum(x for x in (*outside, attempts_s) if not math.isnan(x))
    return {
        "job": journal.name,
        "runs": len(runs),
        "points": len(points),
        "points_not_measured": len({str(t["point_id"]) for t in trials} - points),
        "trials": len(measured),
        "trials_set_aside": len(set_aside),
        "trials_if_3_each": 3 * len(points),
        "trials_if_6_each": 6 * len(points),
        "job_s": round(wall_s, 1),
        "windows_s": round(windows_s, 1),
        "warmups_s": round(warmups_s, 1),
        "warmup_over_repetition_median": round(float(np.median(cold)), 2) if cold else math.nan,
        "warmup_over_repetition_max": round(max(cold), 2) if cold else math.nan,
        "first_warmup_over_repetition_max": round(max(first_ratios), 2)
        if first_ratios
        else math.nan,
        "later_warmup_over_repetition_max": round(max(later_ratios), 2)
        if later_ratios
        else math.nan,
        "later_warmups_s": round(later_warmups_s, 1),
        "replays_outside_windows_s": round(replays_outside_windows_s, 1),
        "engine_loaded_s": round(loaded_s, 1),
        "bound_searches_s": round(bound_searches_s, 1),
        "out_of_memory_attempts_s": round(attempts_s, 1),
        "rest_s": round(rest_s, 1),
        "trials_timed": len(timed_trials),
        "harness_in_trials_s": round(harness_in_trials_s, 2) if timed_trials else math.nan,
        "harness_over_windows": round(harness_in_trials_s / timed_windows_s, 4)
        if timed_windows_s
        else math.nan,
        "trials_against_plan": len(planned),
        "trial_over_plan_median": round(float(np.median(planned)), 2) if planned else math.nan,
        "trial_over_plan_min": round(min(planned), 2) if planned else math.nan,
        "trial_over_plan_max": round(max(planned), 2) if planned else math.nan,
        "share_in_windows": round(windows_s / wall_s, 3) if wall_s else float("nan"),
        "share_if_warmed_up_once": round(windows_s / (wall_s - later_warmups_s), 3)
        if wall_s > later_warmups_s
        else float("nan"),
    }


def with_estimate(table: pd.DataFrame, estimate: pd.DataFrame) -> pd.DataFrame:
    """The jobs' table with each job's planned wall time (``estimated_job_s``) and the actual one
    over it; the estimate counts three trials per point, so a job that ran fewer (stopped by its
    deadline) has no ratio: its time is not the time the estimate is of."""
    est = estimate.set_index("group")
    if "estimated_job_min" in est:
        job_s = est["estimated_job_min"] * 60
    else:  # a job over two GPUs spends twice its wall time in GPU time
        job_s = est["estimated_gpu_hours"] * 3600 / est.get("gpus", 1)
    table = table.copy()
    table["estimated_job_s"] = table["job"].map(job_s).round(0)
    ran_the_plan = table["trials"] >= table["trials_if_3_each"]
    ratio = (table["job_s"] / table["estimated_job_s"]).round(2)
    table["actual_over_estimated"] = ratio.where(ran_the_plan)
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--journals", type=Path, required=True)
    ap.add_argument("--job-times", type=Path)
    ap.add_argument("--estimate", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.job_times:
        times = pd.read_csv(args.job_times)
    else:
        journals = sorted(p for p in args.journals.iterdir() if p.is_dir())
        times = pd.concat([recorded_runs(j) for j in journals], ignore_index=True)
    rows = [
        job_share(args.journals / job, runs)
        for job, runs in times.groupby("job", sort=False)
        if (args.journals / job).is_dir()
    ]
    table = pd.DataFrame(rows)
    if args.estimate:
        table = with_estimate(table, pd.read_csv(args.estimate))
    total = table[["job_s", "windows_s"]].sum()
    print(table.to_markdown(index=False))
    print(
        f"\nall jobs: {total['windows_s']:.0f} s of {total['job_s']:.0f} s inside windows "
        f"({total['windows_s'] / total['job_s']:.1%}); {table['trials'].sum()} trials of "
        f"{table['points'].sum()} measured points where "
        f"three per point would be {table['trials_if_3_each'].sum()} and six "
        f"{table['trials_if_6_each'].sum()}"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
