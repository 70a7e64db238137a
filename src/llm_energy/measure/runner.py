"""Run one job: load the engine once, then measure every point of its plan."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from llm_energy.backends import Backend, make_backend
from llm_energy.errors import DeviceUnusableError, first_line
from llm_energy.inputs.model_configs import architecture_hash, load_config_dict, resolve_model_dir
from llm_energy.inputs.prompts import PG19Prompts, TraceLengths, bin_groups, random_prompts
from llm_energy.measure import health, heartbeat, provenance, runs, stop
from llm_energy.measure.bounds import (
    bound_below_out_of_memory,
    known_bounds,
    search_batch_bound,
    search_shapes,
    searchable,
    shape_key,
)
from llm_energy.measure.controls import control_point, drift_columns
from llm_energy.measure.host import CONTENDED_CORES, HostLoad
from llm_energy.measure.job import (
    EngineSpec,
    JobPlan,
    PointSpec,
    ProtocolSpec,
    stable_hash,
    warms_up,
)
from llm_energy.measure.point_ids import point_id, point_ids
from llm_energy.measure.protocol import WindowResult, measure_idle_power_w, measure_window
from llm_energy.measure.provenance import job_provenance, utc_now
from llm_energy.measure.serving import measure_served_point
from llm_energy.measure.store import Journal, write_parquet_atomic
from llm_energy.measure.trials import (
    FAILED,
    MEAN_COLUMNS,
    TrialSchedule,
    checked_trials_at_most,
    combine,
    failed_on_device,
    least_trials_left,
    needs_trial,
    seeded,
    sessions_other_than,
)
from llm_energy.meters import EnergyMeter, make_meter

Log = Callable[[str], None]


def _order(
    points: Sequence[PointSpec], searched: Sequence[str] = (), by: str = "shape"
) -> list[PointSpec]:
    """Smaller batches first at each shape, so that an out-of-memory batch bounds the rest;
    larger first at shapes whose points all want only the largest feasible batch. By
    ``"shape"``, a shape's batches together; by ``"batch"``, every shape at one batch size
    before the next (the searched shapes after them, each as by shape)."""
    search = search_shapes(points, searched)

    def key(p: PointSpec) -> tuple[Any, ...]:
        k = shape_key(p)
        if k in search:
            return (1, k, -p.batch_size)
        return (0, p.batch_size, k) if by == "batch" else (0, k, p.batch_size)

    return sorted(points, key=key)


def point_identity(plan: JobPlan, point: PointSpec) -> dict[str, Any]:
    """Columns that say what a row is, before anything is measured."""
    d, e, m = point.decoding, plan.engine, plan.model
    return {
        "experiments": "+".join(point.experiments),
        "group": plan.group,
        "hardware": plan.hardware,
        "device": plan.device,
        "model": m.name,
        "hub_id": m.hub_id,
        "weights": m.weights,
        "engine": e.name,
        "backend": e.backend,
        "torch_compile": e.torch_compile,
        "cuda_graphs": e.cuda_graphs,
        "tensor_parallel_size": e.tensor_parallel_size,
        "speculative_model": e.draft or "",
        "speculative_tokens": e.speculative_tokens,
        "speculative_acceptance": _acceptance(e),
        "dtype": plan.dtype,
        "decoding": d.name,
        "decoding_strategy": d.strategy,
        "num_beams": d.num_beams,
        "temperature": d.temperature if d.temperature is not None else math.nan,
        "top_p": d.top_p if d.top_p is not None else math.nan,
        "batch_size": point.batch_size,
        "input_tokens": point.input_tokens,
        "output_tokens": point.output_tokens,
        "serving": point.stream.serving if point.stream else "batch",
        "trace": point.stream.trace if point.stream else "",
        "requests": point.stream.requests if point.stream else point.batch_size,
        "prompts": point.prompts,
        **(
            {"request_rate": point.served.request_rate, "arrival": point.served.arrival}
            if point.served is not None
            else {}
        ),
    }


def _acceptance(engine: EngineSpec) -> str:
    """How a speculative engine's draft tokens are accepted: as the weights decide, or forced."""
    if not engine.draft:
        return ""
    return "forced" if engine.forced_acceptance else "measured"


def result_columns(
    full: WindowResult,
    prefill: WindowResult | None,
    point: PointSpec,
    idle_power_w: float,
    tokens: int | None = None,
) -> dict[str, Any]:
    """Per-batch (per-stream) numbers from the full window and, when measured, the prefill
    window. ``tokens`` is the number of output tokens one repetition generates."""
    energy = full.energy_j
    if tokens is None:
        tokens = point.batch_size * point.output_tokens
    requests = point.stream.requests if point.stream else point.batch_size
    if point.output_tokens == 1:  # the full window is a prefill; there is no decode phase
        prefill_energy, prefill_duration, decode_energy = energy, full.duration_s, 0.0
    elif prefill is not None:
        prefill_energy, prefill_duration = prefill.energy_j, prefill.duration_s
        decode_energy = energy - prefill_energy
    else:
        prefill_energy = prefill_duration = decode_energy = math.nan
    row = {
        "feasible": True,
        "error": "",
        "repetitions": full.repetitions,
        "duration_s": full.duration_s,
        "duration_std_s": full.duration_std_s,
        "energy_j": energy,
        "energy_std_j": full.energy_std_j,
        "prefill_repetitions": prefill.repetitions if prefill is not None else 0,
        "prefill_duration_s": prefill_duration,
        "prefill_energy_j": prefill_energy,
        "decode_duration_s": full.duration_s - prefill_duration,
        "decode_energy_j": decode_energy,
        "energy_per_output_token_j": energy / tokens,
        "energy_per_request_j": energy / requests,
        "generated_tokens": tokens,
        "output_tokens_per_s": tokens / full.duration_s,
        "mean_power_w": energy / full.duration_s,
        "idle_power_w": idle_power_w,
        "energy_above_idle_j": energy - idle_power_w * full.duration_s,
    }
    for name, total in full.cross_check_energy_j.items():
        row[f"energy_{name}_j"] = total / full.repetitions
    return row


def infeasible_columns(reason: str) -> dict[str, Any]:
    nan = math.nan
    return {
        "feasible": False,
        "error": reason,
        "contention_checked": False,
        "contended": False,
        "foreign_gpu_pids": "",
        "repetitions": 0,
        "prefill_repetitions": 0,
        # What a measured trial gives as numbers, NaN: never a zero for energy not measured.
        **{k: nan for k in (*MEAN_COLUMNS, "generated_tokens", "idle_power_w")},
        **health.UNKNOWN_COLUMNS,
    }


def measure_point(
    backend: Backend,
    plan: JobPlan,
    point: PointSpec,
    meter: EnergyMeter,
    cross_check: Sequence[EnergyMeter],
    idle_power_w: float,
    streams: TraceLengths | None = None,
    pg19: PG19Prompts | None = None,
    warmed: dict[tuple, int] | None = None,
) -> dict[str, Any]:
    """Warm up and measure one point; raises whatever the backend raises (OOM included).
    ``warmed``: how many times this engine instance has measured each point, which with
    ``warmup_every_trial`` other than true decides whether it warms up (:func:`warms_up`)."""
    proto = plan.protocol_of(point)
    seed = int(stable_hash([proto.seed, point.key], 8), 16)
    extra: dict[str, Any] = {"prompt_id_modulo": 0}
    if point.served is not None:
        foreign = set(meter.foreign_processes() or [])
        load = HostLoad()
        load.start()
        heartbeat.phase("served replay")
        row = measure_served_point(backend, plan, point, meter, idle_power_w, streams, seed)
        row["peak_memory_gib"] = backend.peak_memory_gib()
        return _with_contention(row, meter, foreign, load)
    if point.stream is not None:
        if streams is None:
            raise ValueError("a request-stream point needs the prepared traces")
        if point.prompts != "random":
            raise ValueError(f"request streams take random prompts, not {point.prompts}")
        stream = point.stream
        lengths, extra["clipped_requests"] = streams.draw(point, proto.seed)
        vocab = backend.vocab_size
        prompts = [random_prompts(vocab, 1, n, seed + i)[0] for i, (n, _) in enumerate(lengths)]
        # A binned replay serves each bin's requests apart; otherwise the stream is one group.
        if stream.binned:
            groups = bin_groups(lengths, stream.input_bins, stream.output_bins)
            extra["stream_bins"] = json.dumps({f"{i}x{o}": len(g) for (i, o), g in groups.items()})
        else:
            groups = {(0, 0): list(range(len(lengths)))}
        continuous = stream.serving == "online"
        tokens = sum(o for _, o in lengths)

        def serving(members: list[list[int]]) -> Callable[[], None]:
            batches = [
                (backend.prepare([prompts[k] for k in m]), [lengths[k][1] for k in m])
                for m in members
            ]

            def run() -> None:
                for prepared, outputs in batches:
                    backend.serve(prepared, outputs, point.batch_size, continuous=continuous)
                backend.synchronize()

            return run

        full_run = serving(list(groups.values()))
        # The warm-up serves one batch of each group, not the whole stream: the shapes and
        # kernels it warms are a batch's, and a stream's window repeats many batches.
        warmup_run = serving([g[: point.batch_size] for g in groups.values()])
        prefill_run = full_run
        measure_prefill = False
    else:
        if point.prompts == "pg19":
            if pg19 is None:
                raise ValueError("a PG-19 point needs the prepared PG-19 tokens")
            prompts, extra["prompt_id_modulo"] = pg19.prompts(
                point.batch_size, point.input_tokens, backend.vocab_size
            )
        else:
            prompts = random_prompts(backend.vocab_size, point.batch_size, point.input_tokens, seed)
        prepared = backend.prepare(prompts)
        tokens = point.batch_size * point.output_tokens

        def generate(n_tokens: int) -> Callable[[], None]:
            def run() -> None:
                backend.generate(prepared, n_tokens, point.decoding)
                backend.synchronize()

            return run

        full_run, prefill_run = generate(point.output_tokens), generate(1)
        warmup_run = full_run
        measure_prefill = proto.measure_prefill and point.output_tokens > 1
    foreign = set(meter.foreign_processes() or [])
    load = HostLoad()
    load.start()
    backend.reset_peak_memory()
    warm_up = warmed is None or warms_up(proto, point.key, warmed.get(point.key, 0))
    # The first warm-up's time beside the window's says what the warm-up found: about a
    # repetition's time where the engine had the shape warm already, more where it had not.
    warmup_s = math.nan
    heartbeat.phase("warm-up")
    for n in range(proto.warmup_repetitions if warm_up else 0):
        started = time.perf_counter()
        warmup_run()
        if n == 0:
            warmup_s = time.perf_counter() - started
        stop.check()
    lap_min_s = proto.per_repetition_energy_min_s
    prefill = None
    if measure_prefill:
        if warm_up:
            prefill_run()  # warm-up at the prefill shape
            stop.check()
        heartbeat.phase("prefill window")
        prefill = measure_window(prefill_run, meter, proto, per_repetition_energy_min_s=lap_min_s)
    heartbeat.phase("window")
    before = backend.counters()
    full = measure_window(
        full_run, meter, proto, cross_check, per_repetition_energy_min_s=lap_min_s
    )
    extra.update(backend.counter_columns(before, backend.counters(), full.repetitions))
    if warmed is not None:
        warmed[point.key] = warmed.get(point.key, 0) + 1
    row = result_columns(full, prefill, point, idle_power_w, tokens)
    row["warmed_up"] = warm_up
    row["warmup_s"] = warmup_s
    row.update(extra)
    windows = full.health if prefill is None else prefill.health.merge(full.health)
    row.update(health.window_columns(windows))
    row["peak_memory_gib"] = backend.peak_memory_gib()
    row = _with_contention(row, meter, foreign, load)
    if plan.asks_ffn_share(point):
        # One more run, after the windows: the timers' synchronisation would perturb them.
        row.update(backend.feed_forward_time_share(full_run))
    return row


def _with_contention(
    row: dict[str, Any], meter: EnergyMeter, foreign: set[int], load: HostLoad
) -> dict[str, Any]:
    """The row with who else used the job's GPUs (before and after its windows) and host."""
    after = meter.foreign_processes()
    row["contention_checked"] = after is not None
    foreign |= set(after or [])
    row["foreign_gpu_pids"] = ",".join(str(p) for p in sorted(foreign))
    row["host_cpu_others_cores"] = load.stop()
    row["contended"] = bool(foreign) or row["host_cpu_others_cores"] > CONTENDED_CORES
    return row


def run_job(
    plan: JobPlan,
    out: Path,
    journal_dir: Path,
    log: Log = print,
    traces_dir: Path | None = None,
    tasks_dir: Path | None = None,
    pg19_path: Path | None = None,
    measure: bool = True,
    deadline: stop.Deadline | None = None,
    expected_trial_s: Mapping[tuple, float] | None = None,
    trials_at_most: int | None = None,
) -> pd.DataFrame:
    """Measure every point of ``plan`` not yet in the journal, then write the job's table.
    Request-stream points draw their lengths from the prepared traces in ``traces_dir`` or the
    classical tasks' lengths in ``tasks_dir``; PG-19 points cut their prompts from the tokens
    in ``pg19_path``. Without ``measure``, the table holds what the journal holds. With
    ``deadline``, the job starts no trial it would not finish before it, by the point's trials
    so far, else by ``expected_trial_s`` (a point's first trial by the plan's estimate, by
    point key). With ``trials_at_most``, no point gets a trial past that many (its journal's
    included): one whose interval is still wider than the target is left for a later run."""
    checked_trials_at_most(trials_at_most)
    journal = Journal(journal_dir, log=log)
    for line in runs.earlier_runs(journal):
        log(line)
    streams = TraceLengths(traces_dir, tasks_dir) if traces_dir is not None else None
    points = _order(
        select_points(plan, streams, log), plan.largest_feasible_only, plan.protocol.point_order
    )
    ids = point_ids(plan, journal.version)
    trials = {p.key: journal.trials(ids[p.key]) for p in points}
    # A trial that failed on a device error is measured again: the device may be well now.
    failed = {k: [t for t in ts if failed_on_device(t)] for k, ts in trials.items()}
    trials = {k: [t for t in ts if not failed_on_device(t)] for k, ts in trials.items()}
    if any(failed.values()):
        log(
            f"journal: {sum(map(len, failed.values()))} trials that failed on a device error "
            "are measured again (their entries stay)"
        )
    here = provenance.machine_session()
    if measure:
        _set_aside_other_sessions(plan, points, ids, trials, journal, here, log)

    def wants_trial(p: PointSpec) -> bool:
        return _wants_trial(trials[p.key], plan.protocol_of(p), here, trials_at_most)

    due = [p for p in points if wants_trial(p)]
    most = plan.protocol.max_trials
    if trials_at_most is not None and trials_at_most < most:
        most_said = f"{trials_at_most} in this run (--trials-at-most), {most} by the protocol"
    else:
        most_said = str(most)
    log(
        f"job {plan.group}: {len(points)} points, {len(points) - len(due)} already in the "
        f"journal {journal_dir} (point ids version {journal.version}), {len(due)} with trials "
        f"to measure (at least {plan.protocol.min_trials}, at most {most_said} each)"
    )
    if due and not measure:
        log(
            f"measuring nothing: the table holds the {len(points) - len(due)} points whose "
            "trials are complete and what the journal holds of the rest"
        )
    if due and measure:
        if deadline is not None and deadline.left_s() > 0:
            log(
                f"the job's time ends in {deadline.left_s():.0f} s ({deadline.source}): a "
                "trial that its point's earlier trials say would end after it is left for the "
                "next run"
            )
        pg19 = PG19Prompts(pg19_path) if pg19_path is not None else None
        before = sum(len(t) for t in trials.values())
        try:
            if deadline is not None and deadline.left_s() <= 0:
                raise stop.Stopped(
                    f"the job's time ended at {deadline.ends_utc()} ({deadline.source}) before "
                    "its engine started"
                )
            # Each point's longest trial in the journal's earlier runs, this machine's or
            # another's (same hardware), so that a point's first trial in this run has
            # something to go by too. Only a run with a deadline asks, so only such a run reads
            # the trials set aside.
            took_before = (
                _earlier_trial_s(points, ids, trials, journal) if deadline is not None else {}
            )
            if deadline is not None and (
                why := _none_fits(due, ids, took_before, deadline, expected_trial_s or {})
            ):
                raise stop.Stopped(why)
            _measure_points(
                plan,
                points,
                ids,
                trials,
                journal,
                log,
                streams,
                pg19,
                deadline,
                expected_trial_s,
                took_before,
                trials_at_most,
            )
        except stop.Stopped as exc:
            done = sum(len(t) for t in trials.values()) - before
            raise stop.Stopped(
                f"{exc}; the journal {journal_dir} keeps every finished trial ({done} of them "
                "from this run), and running the job again measures the rest"
            ) from None
        except DeviceUnusableError as exc:
            raise DeviceUnusableError(
                f"{exc}; the job stopped, the journal {journal_dir} keeps every finished "
                "trial, and running the job again (on another GPU if this one keeps failing) "
                "measures the rest"
            ) from None
    if measure and trials_at_most is not None:
        capped = [
            p
            for p in points
            if not wants_trial(p) and needs_trial(trials[p.key], plan.protocol_of(p), here)
        ]
        if capped:
            log(
                f"{len(capped)} points stopped at --trials-at-most {trials_at_most} with their "
                "interval wider than the target: a later run of this job on this machine "
                "adds their trials"
            )
    controls = journal.controls()
    # A copied row keeps its own session's drift; the others get their session's of this job.
    rows = []
    for p in points:
        if trials[p.key]:
            row = combine(trials[p.key], plan.protocol)
            if not seeded(trials[p.key]):
                row.update(drift_columns(controls, row.get("machine_session")))
            rows.append(row)
    table = pd.DataFrame(rows)
    # Which experiments a point serves is the plan's to say, also for points measured earlier;
    # so is its prompt source (rows measured before sources existed used random prompts).
    tags = {ids[p.key]: "+".join(p.experiments) for p in points}
    sources = {ids[p.key]: p.prompts for p in points}
    if len(table):
        table["experiments"] = table["point_id"].map(tags)
        table["prompts"] = table["point_id"].map(sources)
        table = health.complete(table)
    write_parquet_atomic(table, out)
    log(f"wrote {len(table)} rows to {out}")
    return table


def _set_aside_other_sessions(
    plan: JobPlan,
    points: Sequence[PointSpec],
    ids: dict,
    trials: dict[tuple, list[dict[str, Any]]],
    journal: Journal,
    session: str,
    log: Log,
) -> None:
    """A journal carried to another machine (a job resumed on another node, a copied journal)
    holds trials of another machine session. A point with fewer than ``min_trials`` of them
    is measured again here from its first trial, its earlier trials kept under the journal's
    ``other_sessions/``; one with enough is complete as that session left it
    (:func:`needs_trial`). Either way a row's trials come from one machine session."""
    redo: dict[str, list[str]] = {}
    kept: set[str] = set()
    for point in points:
        have = trials[point.key]
        others = sessions_other_than(have, session) if have and not seeded(have) else []
        if not others:
            continue
        # Still short of its minimum: another session's trials are all it has.
        if needs_trial(have, plan.protocol_of(point), session):
            folder = "+".join(o.replace(":", "_") for o in others)
            journal.set_aside(ids[point.key], folder)
            trials[point.key] = []
            redo.setdefault(", ".join(others), []).append(ids[point.key])
        else:
            kept.update(others)
    for others, pids in redo.items():
        log(
            f"journal: {len(pids)} points hold fewer than {plan.protocol.min_trials} trials, "
            f"measured in machine session {others}, not this one ({session}): they are "
            f"measured again here from their first trial, the earlier trials kept under "
            f"{journal.directory / 'other_sessions'}, so that a row's trials come from one "
            "machine session"
        )
    if kept:
        log(
            f"journal: points whose trials machine session {', '.join(sorted(kept))} "
            "completed are kept as it left them, with no trial of this session added"
        )


def select_points(plan: JobPlan, streams: TraceLengths | None, log: Log) -> list[PointSpec]:
    """The plan's points less those that a family's run-time selection leaves out (points that
    another family also asked for are kept)."""
    from llm_energy.families import families

    points = list(plan.points)
    for name, options in plan.selections.items():
        family = families()[name]
        own = [p for p in points if set(p.experiments) <= set(family.tags)]
        if streams is None:
            raise ValueError(f"{name} chooses its points from the traces; no traces folder given")
        kept = {p.key for p in family.select(own, options, streams)}
        mine = {p.key for p in own}
        log(f"{name}: {len(kept)} of its {len(own)} points fit the data")
        points = [p for p in points if p.key not in mine or p.key in kept]
    return points


def unmeasured_columns(reason: str) -> dict[str, Any]:
    """A point left out because a larger batch of its shape fits, or whose trial failed:
    feasible, nothing measured."""
    return {**infeasible_columns(reason), "feasible": True}


@dataclass
class DeviceFaults:
    """The job's device errors so far: how many trials in a row ended in one."""

    in_a_row: int = 0


def _after_device_error(
    backend: Backend, point: PointSpec, exc: BaseException, faults: DeviceFaults
) -> dict[str, Any]:
    """The row of a trial that a device error ended, once the backend has freed what it can;
    raises DeviceUnusableError (carrying the row) when the device takes no more work."""
    message = first_line(exc)
    row = unmeasured_columns(FAILED + message)
    faults.in_a_row += 1
    where = (
        f"batch {point.batch_size}, {point.input_tokens} in, {point.output_tokens} out, "
        f"{point.decoding.name}"
    )
    why = ""
    if backend.is_unusable(exc):
        why = "an error that CUDA keeps for the rest of the process"
    elif faults.in_a_row > 1:
        why = f"the {faults.in_a_row} last trials each ended in one"
    else:
        try:
            backend.recover()
        except Exception as again:
            why = f"freeing the device failed too ({first_line(again)})"
    if why:
        raise DeviceUnusableError(
            f"the GPU is unusable after a CUDA error at {where}: {message} ({why})", row
        )
    return row


def _measure_points(
    plan: JobPlan,
    points: list[PointSpec],
    ids: dict,
    trials: dict[tuple, list[dict[str, Any]]],
    journal: Journal,
    log: Log,
    streams: TraceLengths | None = None,
    pg19: PG19Prompts | None = None,
    deadline: stop.Deadline | None = None,
    expected_trial_s: Mapping[tuple, float] | None = None,
    took_before: Mapping[tuple, float] | None = None,
    trials_at_most: int | None = None,
) -> None:
    """Measure trials until no point needs one, pass after pass over the points in flight
    (:class:`~llm_energy.measure.trials.TrialSchedule`, at most the protocol's
    ``points_in_flight`` of them): first trials in the planned order, later ones in a seeded
    shuffled order, so that what changes over the job lands in each point's spread rather
    than in one point. Before ``deadline``, a trial that would not finish with the control
    point after it (by the longest of the point's trials so far in this run, else in the
    journal's earlier runs, ``took_before`` (:func:`_earlier_trial_s`), else by
    ``expected_trial_s``) is not started: its point is passed
    over for the rest of the run (a searched shape whole) and the trials that still fit go on;
    then the job measures its control point and stops
    (:class:`~llm_energy.measure.stop.Stopped`), naming what it passed over."""
    proto = plan.protocol
    model_dir = resolve_model_dir(plan.model, plan.mirror.get("models"))
    arch_hash = architecture_hash(load_config_dict(model_dir))
    t_load = time.perf_counter()
    backend = make_backend(plan.model, plan.engine, plan.device, plan.dtype)
    backend.log = log
    backend.server_options = dict(plan.server_options)
    if plan.draft_model is not None:
        backend.draft_dir = str(resolve_model_dir(plan.draft_model, plan.mirror.get("models")))
    # Sized from every point of the plan, not only those left, so that a resumed job runs the
    # same engine.
    backend.configure(
        max(p.batch_size for p in plan.points),
        max(p.input_tokens + p.output_tokens for p in plan.points),
    )
    try:
        backend.load(str(model_dir), proto.seed)
        load_s = time.perf_counter() - t_load
        log(
            f"loaded {plan.model.name} ({plan.model.weights} weights, architecture {arch_hash}) "
            f"on {plan.engine.name} in {load_s:.1f} s"
        )
        gpus = plan.engine.tensor_parallel_size
        uuids = backend.device_uuids() or None
        cc = plan.meter.codecarbon
        meter = make_meter(plan.meter.primary, plan.device, uuids, gpus, cc)
        cross = [make_meter(n, plan.device, uuids, gpus, cc) for n in plan.meter.cross_check]
    except BaseException:
        # An engine with processes of its own (a server) does not outlive a failed start.
        backend.close()
        raise
    try:
        idle_w = measure_idle_power_w(meter, proto.idle_duration_s)
        log(f"idle power {idle_w:.1f} W over {proto.idle_duration_s:.1f} s ({meter.name})")
        base = {
            "architecture_hash": arch_hash,
            "meter": meter.name,
            "energy_source": meter.energy_source,
            "cross_check_meters": ",".join(m.name for m in cross),
            "config_hash": plan.config_hash,
            "engine_load_s": load_s,
            "gpu_name": "",
            "gpu_count": 0,
            "gpu_uuids": "",
            "driver_version": "",
            "power_limit_w": math.nan,
            **meter.info(),
            **backend.versions(),
            **backend.details(),
            **job_provenance(),
        }
        if not base["gpu_name"]:
            base["gpu_name"] = "none (cpu)" if not plan.device.startswith("cuda") else "unknown"
        oom_bound, fits = known_bounds(trials, points)
        search = search_shapes(plan.points, plan.largest_feasible_only)
        control = control_point(points, plan.protocol) if plan.protocol.control_point else None
        here = base["machine_session"]
        # The control points of this run are filed under its start: the run's record in the
        # journal (llm_energy.measure.runs) where the command keeps one, else the engine's.
        run_started = os.environ.get(runs.RUN_ENV) or utc_now()
        faults = DeviceFaults()
        warmed: dict[tuple, int] = {}  # how often this engine instance measured each point

        def measure_control(edge: str) -> None:
            """The control point, measured at the run's start and end: their difference is
            the drift of the engine and machine over the run."""
            if control is None:
                return
            row = _measure_trial(
                backend,
                plan,
                control,
                meter,
                cross,
                idle_w,
                streams,
                pg19,
                {},
                {},
                set(),
                faults,
                warmed,
            )
            if not row["feasible"] or not row["repetitions"]:
                return
            control_id = ids.get(control.key) or point_id(plan, control, journal.version)
            journal.record_control(run_started, edge, control_id, {**row, "machine_session": here})
            log(
                f"control point at the run's {edge}: {row['duration_s']:.3f} s, "
                f"{row['energy_j']:.2f} J"
            )

        clock = deadline.clock if deadline is not None else time.monotonic
        started = clock()
        measure_control("start")
        control_s = clock() - started
        took: dict[tuple, float] = {}  # the longest trial of each point in this run (s)
        # Points whose next trial would end after the deadline: passed over for the rest of
        # the run (the time left only shrinks), with the reason of each, and a searched
        # shape's points with its largest batch's, whose bound they would otherwise search.
        passed_over: dict[tuple, str] = {}
        shapes_passed_over: set[tuple] = set()

        def due(p: PointSpec) -> bool:
            if p.key in passed_over or shape_key(p) in shapes_passed_over:
                return False
            return _wants_trial(trials[p.key], plan.protocol_of(p), here, trials_at_most)

        schedule = TrialSchedule(
            points,
            due,
            proto.seed,
            proto.points_in_flight,
            most_trials=max(plan.protocol_of(p).max_trials for p in points),
        )
        for order in schedule.passes():
            pass_started = time.perf_counter()
            for n, point in enumerate(order, start=1):
                stop.check()
                if shape_key(point) in shapes_passed_over:
                    continue  # a smaller batch of a searched shape whose largest waits
                known = _trial_time(point.key, took, took_before or {}, expected_trial_s or {})
                if deadline is not None and known is not None:
                    left_s = deadline.left_s()
                    if known[0] + control_s > left_s:
                        passed_over[point.key] = _passed_over(
                            ids[point.key], known, left_s, control_s, deadline, started
                        )
                        if shape_key(point) in search:
                            shapes_passed_over.add(shape_key(point))
                        log(f"passed over for this run: {passed_over[point.key]}")
                        continue
                trial_started = clock()
                trial = journal.next_trial(ids[point.key])
                row = {
                    **point_identity(plan, point),
                    **base,
                    "point_id": ids[point.key],
                    "point_id_version": journal.version,
                    "trial": trial,
                    # The run, and so the engine start, that measured the trial.
                    "run_started": run_started,
                }
                unusable = None
                beat = heartbeat.Heartbeat(
                    log,
                    f"trial {trial} {_point_label(point)}",
                    f"the point's trials {known[1]}" if known is not None else None,
                )
                try:
                    with beat:
                        measured = _measure_trial(
                            backend,
                            plan,
                            point,
                            meter,
                            cross,
                            idle_w,
                            streams,
                            pg19,
                            oom_bound,
                            fits,
                            search,
                            faults,
                            warmed,
                        )
                except DeviceUnusableError as exc:
                    unusable, measured = exc, exc.row or {}
                row.update(measured)
                row["timestamp"] = utc_now()
                row["trial_s"] = clock() - trial_started
                journal.record_trial(ids[point.key], trial, row)
                trials[point.key].append(row)
                took[point.key] = max(took.get(point.key, 0.0), row["trial_s"])
                if unusable is not None:
                    raise unusable
                above = (
                    bound_below_out_of_memory(point, row, points, trials, oom_bound, here)
                    if shape_key(point) in search
                    else None
                )
                if above is not None:
                    searching = f"the largest feasible batch below {_point_label(above)}"
                    with heartbeat.Heartbeat(log, searching):
                        bound = search_batch_bound(
                            backend, plan, point, point.batch_size, above.batch_size, log=log
                        )
                    bounded = {**trials[above.key][0], **bound}
                    journal.record_trial(ids[above.key], bounded["trial"], bounded)
                    trials[above.key][0] = bounded
                done, in_flight, waiting = schedule.counts()
                owed = sum(
                    least_trials_left(trials[p.key], plan.protocol_of(p), here)
                    for p in schedule.still_due()
                )
                pass_left_s = (time.perf_counter() - pass_started) / n * (len(order) - n)
                log(
                    _progress(
                        f"[pass {schedule.number}, {n}/{len(order)}; points {done} done, "
                        f"{in_flight} in flight, {waiting} waiting]",
                        trial,
                        point,
                        row,
                        _against_plan(row, (expected_trial_s or {}).get(point.key))
                        + f"pass ends in ~{pass_left_s:.0f} s, {_trials_left(owed)}",
                    )
                )
        measure_control("end")
        if passed_over:
            first, *others = passed_over.values()
            more = f" (and {len(others)} more points, each said above)" if others else ""
            raise stop.Stopped(f"stopped before a trial of {first}{more}")
    finally:
        for m in (meter, *cross):
            m.close()
        try:
            backend.close()
        except Exception as exc:  # a device that failed may fail to close too: said, not raised
            log(f"closing the engine failed: {first_line(exc)}")


def _against_plan(row: dict[str, Any], expected_s: float | None) -> str:
    """How long the trial took, warm-up and harness included, against the plan's estimate of
    the point's trial, for its line in the log (an empty string where the plan timed none)."""
    if expected_s is None or not math.isfinite(expected_s) or expected_s <= 0:
        return ""
    took = row["trial_s"]
    return f"took {took:.0f} s, {took / expected_s:.2f} of the plan's {expected_s:.0f} s; "


def _wants_trial(
    trials: Sequence[dict[str, Any]],
    protocol: ProtocolSpec,
    session: str | None,
    at_most: int | None,
) -> bool:
    """Whether this run measures another trial of a point: the protocol asks for one
    (:func:`needs_trial`) and the point has fewer than ``at_most`` trials."""
    if at_most is not None and len(trials) >= at_most:
        return False
    return needs_trial(trials, protocol, session)


def _trials_left(owed: int) -> str:
    """The fewest trials the job's due points still take: more where an interval stays wide."""
    if owed == 0:
        return "no trial left"
    return f"at least {owed} trial{'s' if owed > 1 else ''} left"


def _passed_over(
    point_id: str,
    known: tuple[float, str],
    left_s: float,
    control_s: float,
    deadline: stop.Deadline,
    started: float,
) -> str:
    """Why a point's next trial is not started: it would end after the job's time, and where
    it is longer than the job's whole time from the run's first control point, that no run of
    this length ever measures it."""
    reason = (
        f"{point_id}: the job's time ends in {left_s:.0f} s ({deadline.source}), and the "
        f"point's trials {known[1]}, the control point {control_s:.0f} s"
    )
    whole_s = deadline.at - started
    if known[0] + 2 * control_s > whole_s:
        reason += (
            f"; longer than the whole {whole_s:.0f} s this run had, so a run with the same time "
            "never measures it: give the job a longer time limit (the measure rule's runtime)"
        )
    return reason


def _earlier_trial_s(
    points: Sequence[PointSpec],
    ids: dict,
    trials: Mapping[tuple, Sequence[dict[str, Any]]],
    journal: Journal,
) -> dict[tuple, float]:
    """The longest trial of each point in the journal's earlier runs, this machine's or
    another's (the trials set aside too): what a point's first trial in a run goes by."""
    took: dict[tuple, float] = {}
    for p in points:
        earlier = [*trials[p.key], *journal.set_aside_trials(ids[p.key])]
        if longest := _longest_trial_s(earlier):
            took[p.key] = longest
    return took


def _none_fits(
    due: Sequence[PointSpec],
    ids: dict,
    took_before: Mapping[tuple, float],
    deadline: stop.Deadline,
    expected: Mapping[tuple, float],
) -> str | None:
    """Why the job starts no engine: every point it has left takes, by its trials in earlier
    runs (``took_before``, :func:`_earlier_trial_s`) or the plan's estimate
    (:func:`_trial_time`), longer than the time left, so the engine's start would buy no
    trial. None where one may fit or a point's time is unknown."""
    left_s = deadline.left_s()
    known = [(p, _trial_time(p.key, {}, took_before, expected)) for p in due]
    if not known or any(k is None or k[0] <= left_s for _, k in known):
        return None
    point, (_, said) = known[0]
    more = f" (and {len(known) - 1} more points, each longer too)" if len(known) > 1 else ""
    return (
        f"no trial fits the {left_s:.0f} s left before the job's time ends ({deadline.source}), "
        f"so its engine did not start: {ids[point.key]}'s trials {said}{more}; give the job a "
        "longer time limit (the measure rule's runtime)"
    )


def _trial_time(
    key: tuple,
    this_run: Mapping[tuple, float],
    earlier_runs: Mapping[tuple, float],
    expected: Mapping[tuple, float],
) -> tuple[float, str] | None:
    """How long the point's next trial may take, and what says so: its longest trial in this
    run, else in the journal's earlier runs, else the plan's estimate; None where nothing does."""
    if key in this_run:
        return this_run[key], f"took up to {this_run[key]:.0f} s in this run"
    if key in earlier_runs:
        return earlier_runs[key], f"took up to {earlier_runs[key]:.0f} s in earlier runs"
    if key in expected and math.isfinite(expected[key]):
        return expected[
            key
        ], f"are expected to take {expected[key]:.0f} s each by the plan's estimate"
    return None


def _longest_trial_s(trials: Sequence[dict[str, Any]]) -> float:
    """The longest wall time of these trials, warm-up and harness included (``trial_s``, which
    trials written before it was recorded lack); 0 where none says."""
    seconds = [float(t["trial_s"]) for t in trials if t.get("trial_s") is not None]
    return max((x for x in seconds if math.isfinite(x)), default=0.0)


def _measure_trial(
    backend: Backend,
    plan: JobPlan,
    point: PointSpec,
    meter: EnergyMeter,
    cross: Sequence[EnergyMeter],
    idle_w: float,
    streams: TraceLengths | None,
    pg19: PG19Prompts | None,
    oom_bound: dict,
    fits: dict,
    search: set,
    faults: DeviceFaults,
    warmed: dict[tuple, int] | None = None,
) -> dict[str, Any]:
    """One trial of one point: measured, or recorded as not attempted (above a batch that ran
    out of memory), not needed (below the largest feasible batch of a searched shape), out
    of memory, or failed (a device error the device recovered from)."""
    k = shape_key(point)
    if k in oom_bound and point.batch_size > oom_bound[k]:
        return infeasible_columns(f"not attempted: batch {oom_bound[k]} was already out of memory")
    if k in search and point.batch_size < fits.get(k, 0):
        return unmeasured_columns(
            f"not measured: batch {fits[k]} of this shape fits, and only the largest feasible "
            "batch is needed"
        )
    attempted = time.perf_counter()
    try:
        row = measure_point(backend, plan, point, meter, cross, idle_w, streams, pg19, warmed)
    except stop.Stopped:
        raise
    except Exception as exc:
        if stop.requested():
            # The signal that stops the job reaches the engine's own processes too (vLLM's
            # engine, under Slurm), which may end the current call first.
            raise stop.Stopped(
                f"stopped by {stop.requested()}, which reached the engine's own processes too "
                f"and ended the current window early ({type(exc).__name__}: "
                f"{first_line(exc)}); the window is not written"
            ) from exc
        if backend.is_device_error(exc):
            return _after_device_error(backend, point, exc, faults)
        if not backend.is_out_of_memory(exc):
            raise
        backend.recover()
        oom_bound[k] = min(oom_bound.get(k, point.batch_size), point.batch_size)
        row = infeasible_columns(f"out of memory: {str(exc).splitlines()[0]}")
        row["out_of_memory_s"] = time.perf_counter() - attempted
        exact = backend.largest_batch(point.input_tokens, point.output_tokens)
        if exact is not None and exact < point.batch_size and searchable(point):
            row.update(largest_feasible_batch=exact, smallest_infeasible_batch=exact + 1)
        elif k in fits and fits[k] < point.batch_size and searchable(point):
            row.update(search_batch_bound(backend, plan, point, fits[k], point.batch_size))
        return row
    faults.in_a_row = 0
    fits[k] = max(fits.get(k, point.batch_size), point.batch_size)
    return row


def _point_label(point: PointSpec) -> str:
    """The point as the job's log names it."""
    return (
        f"batch={point.batch_size} in={point.input_tokens} out={point.output_tokens} "
        f"{point.decoding.name}"
        + (f" {point.stream.label}" if point.stream else "")
        + (f" {point.served.label}" if point.served else "")
        + (f" {point.prompts} prompts" if point.prompts != "random" else "")
    )


def _progress(place: str, trial: int, point: PointSpec, row: dict, outlook: str) -> str:
    """One line per trial: where the run is (``place``), the trial, and what is left
    (``outlook``). The time estimate covers the current pass only, whose trials are known;
    the trials left are counted as each point's ``min_trials`` asks: a point whose interval
    stays wide takes more, a batch found not to fit or not to be needed fewer."""
    head = f"{place} trial {trial} {_point_label(point)}: "
    if not row["feasible"]:
        return head + f"infeasible ({row['error']}); {outlook}"
    if not row["repetitions"]:
        return head + f"{row['error']}; {outlook}"
    if row.get("gpu_health") not in (None, health.OK, health.UNKNOWN):
        head += (
            f"GPU {row['gpu_health']} (clock events {row['clock_event_reasons'] or 'none'}, "
            f"{row['gpu_temp_max_c']:.0f} C at most), "
        )
    if row["contended"]:
        head += (
            f"CONTENDED (GPU pids {row['foreign_gpu_pids'] or 'none'}, other processes "
            f"{row['host_cpu_others_cores']:.1f} cores of CPU), "
        )
    if point.served is not None:
        return head + (
            f"steady state {row['steady_state_s']:.2f} s of {row['run_s']:.2f} s "
            f"({row['steady_state_in_flight']:g} in flight), {row['energy_per_request_j']:.3f} "
            f"J/request, TTFT p50 {row['ttft_p50_s']:.3f} s, TPOT p99 {row['tpot_p99_s']:.4f} s, "
            f"{row['requests_failed']} failed ({row['energy_source']})"
            + (f"; {row['error']}" if row["error"] else "")
            + f"; {outlook}"
        )
    return head + (
        f"{row['duration_s']:.3f} s, {row['energy_j']:.2f} J, "
        f"{row['energy_per_output_token_j']:.4f} J/token ({row['repetitions']} reps, "
        f"{row['energy_source']}); {outlook}"
    )
