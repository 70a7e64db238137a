"""Run one job: load the engine once, then measure every point of its plan."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from llm_energy.backends import Backend, make_backend
from llm_energy.errors import DeviceUnusableError
from llm_energy.inputs.model_configs import architecture_hash, load_config_dict, resolve_model_dir
from llm_energy.inputs.prompts import PG19Prompts, TraceLengths, bin_groups, random_prompts
from llm_energy.measure import health, provenance, stop
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
    MEAN_COLUMNS,
    TrialSchedule,
    combine,
    least_trials_left,
    needs_trial,
    seeded,
    sessions_other_than,
)
from llm_energy.meters import EnergyMeter, make_meter

Log = Callable[[str], None]


def _order(points: Sequence[PointSpec], searched: Sequence[str] = ()) -> list[PointSpec]:
    """Smaller batches first at each shape, so that an out-of-memory batch bounds the rest;
    larger first at shapes whose points all want only the largest feasible batch."""
    search = search_shapes(points, searched)
    return sorted(
        points,
        key=lambda p: (shape_key(p), -p.batch_size if shape_key(p) in search else p.batch_size),
    )


def search_shapes(points: Sequence[PointSpec], searched: Sequence[str]) -> set[tuple[Any, ...]]:
    """Shapes at which every point serves only ``searched`` experiments (none without any)."""
    if not searched:
        return set()
    shapes = {shape_key(p) for p in points}
    for p in points:
        if not set(p.experiments) <= set(searched):
            shapes.discard(shape_key(p))
    return shapes


def shape_key(point: PointSpec) -> tuple[Any, ...]:
    """Everything but the batch size: points that differ only in batch size share a shape."""
    stream = point.stream.label if point.stream else ""
    if point.served is not None:
        stream += f" {point.served.label}"
    return (point.decoding.name, stream, point.input_tokens, point.output_tokens)


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
    proto = point.protocol or plan.protocol
    seed = int(stable_hash([proto.seed, point.key], 8), 16)
    extra: dict[str, Any] = {"prompt_id_modulo": 0}
    if point.served is not None:
        foreign = set(meter.foreign_processes() or [])
        load = HostLoad()
        load.start()
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
        prefill = measure_window(prefill_run, meter, proto, per_repetition_energy_min_s=lap_min_s)
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
    if set(point.experiments) & set(plan.ffn_time_share):
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
) -> pd.DataFrame:
    """Measure every point of ``plan`` not yet in the journal, then write the job's table.
    Request-stream points draw their lengths from the prepared traces in ``traces_dir`` or the
    classical tasks' lengths in ``tasks_dir``; PG-19 points cut their prompts from the tokens
    in ``pg19_path``. Without ``measure``, the table holds what the journal holds. With
    ``deadline``, the job starts no trial it would not finish before it."""
    journal = Journal(journal_dir, log=log)
    for earlier in journal.stops():
        log(f"journal: a run of this job stopped at {earlier['stopped_at']}: {earlier['reason']}")
    streams = TraceLengths(traces_dir, tasks_dir) if traces_dir is not None else None
    points = _order(select_points(plan, streams, log), plan.largest_feasible_only)
    ids = point_ids(plan, journal.version)
    trials = {p.key: journal.trials(ids[p.key]) for p in points}
    # A trial that failed on a device error is measured again: the device may be well now.
    failed = {k: [t for t in ts if _failed(t)] for k, ts in trials.items()}
    trials = {k: [t for t in ts if not _failed(t)] for k, ts in trials.items()}
    if any(failed.values()):
        log(
            f"journal: {sum(map(len, failed.values()))} trials that failed on a device error "
            "are measured again (their entries stay)"
        )
    here = provenance.machine_session()
    if measure:
        _set_aside_other_sessions(plan, points, ids, trials, journal, here, log)
    due = [p for p in points if needs_trial(trials[p.key], _protocol(plan, p), here)]
    log(
        f"job {plan.group}: {len(points)} points, {len(points) - len(due)} already in the "
        f"journal {journal_dir} (point ids version {journal.version}), {len(due)} with trials "
        f"to measure (at least {plan.protocol.min_trials}, at most {plan.protocol.max_trials} "
        "each)"
    )
    if due and not measure:
        log(
            f"measuring nothing: the table holds the {len(points) - len(due)} points whose "
            "trials are complete and what the journal holds of the rest"
        )
    if due and measure:
        if deadline is not None:
            log(
                f"the job's time ends in {deadline.left_s():.0f} s ({deadline.source}): a "
                "trial that its point's earlier trials say would end after it is left for the "
                "next run"
            )
        pg19 = PG19Prompts(pg19_path) if pg19_path is not None else None
        before = sum(len(t) for t in trials.values())
        try:
            _measure_points(plan, points, ids, trials, journal, log, streams, pg19, deadline)
        except stop.Stopped as exc:
            done = sum(len(t) for t in trials.values()) - before
            journal.record_stop(utc_now(), str(exc))
            raise stop.Stopped(
                f"{exc}; the journal {journal_dir} keeps every finished trial ({done} of them "
                "from this run), and running the job again measures the rest"
            ) from None
        except DeviceUnusableError as exc:
            journal.record_stop(utc_now(), str(exc))
            raise DeviceUnusableError(
                f"{exc}; the job stopped, the journal {journal_dir} keeps every finished "
                "trial, and running the job again (on another GPU if this one keeps failing) "
                "measures the rest"
            ) from None
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
        if needs_trial(have, _protocol(plan, point), session):
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


# The shape of the control point of a job made of request streams alone (classical tasks, claim
# 6's streams, trace replays): a plain batch of one, cut to the job's longest stream's caps so
# that the job's engine holds it.
STREAM_JOB_CONTROL = (512, 64)


def control_point(points: Sequence[PointSpec]) -> PointSpec | None:
    """The job's control point: its plain point (no request stream) of the smallest batch and
    shape; in a job of request streams alone, a plain batch of one at
    :data:`STREAM_JOB_CONTROL`'s lengths, cut to its longest stream's caps. Served jobs have
    none."""
    plain = [p for p in points if p.stream is None and p.served is None]
    if plain:
        return min(plain, key=lambda p: (p.batch_size, p.input_tokens, p.output_tokens))
    streams = [p for p in points if p.stream is not None and p.served is None]
    if not streams or len(streams) < len(points):
        return None
    longest = max(streams, key=lambda p: (p.input_tokens + p.output_tokens, p.input_tokens))
    tokens_in, tokens_out = STREAM_JOB_CONTROL
    return PointSpec(
        1, min(tokens_in, longest.input_tokens), min(tokens_out, longest.output_tokens)
    )


def drift_columns(controls: pd.DataFrame, session: str | None = None) -> dict[str, Any]:
    """The control point and its change over the job's runs in machine ``session``, the span
    the row's trials were measured in (a row's trials come from one session): from the first
    of those runs' start to the last end measured there (a run cut short measures none). With
    no end measured in that session the drift is unknown. Controls written before they named
    their session give the last run that has both edges."""
    nan = math.nan
    columns = {"control_point_id": "", "control_drift_energy": nan, "control_drift_duration": nan}
    if controls.empty:
        return columns
    if "machine_session" in controls and session is not None:
        at = controls[controls["machine_session"] == session].sort_values("run_started")
        starts, ends = at[at["edge"] == "start"], at[at["edge"] == "end"]
        if starts.empty or ends.empty:
            return columns
        return _drift(columns, starts.iloc[0], ends.iloc[-1])
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


def _protocol(plan: JobPlan, point: PointSpec) -> ProtocolSpec:
    return point.protocol or plan.protocol


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


def complete(row: dict[str, Any], protocol: ProtocolSpec) -> bool:
    """Whether a row measured elsewhere stands for its point under ``protocol``: a point not
    measured (out of memory, not attempted), or one measured in at least ``min_trials``
    trials that met the protocol (a row measured before trials counts as one). A row with
    fewer is not: the point is measured again, all its trials in this job, never topped up
    with trials of another session. Nor is a trial a device error ended."""
    if _failed(row):
        return False
    if not bool(row.get("feasible")) or not int(row.get("repetitions") or 0):
        return True
    trials = row.get("trials")
    if trials is None or pd.isna(trials):
        return protocol.min_trials <= 1
    met = row.get("protocol_met")
    return int(trials) >= protocol.min_trials and (met is None or bool(met))


Tables = Sequence[tuple[Path, pd.DataFrame]]


def read_tables(paths: Sequence[Path | str]) -> Tables:
    """Job tables measured elsewhere, each with its path, read once for every job they seed."""
    return [(Path(p), pd.read_parquet(p)) for p in paths]


def _seedable(
    plan: JobPlan, tables: Tables, version: int
) -> dict[str, tuple[dict[str, Any], Path]]:
    """The rows of ``tables`` that :func:`seed_journal` would copy, by the point id (of
    ``version``) they would be filed under, first table first; with the table each came from."""
    mine = point_ids(plan, version)
    protocols = {p.key: _protocol(plan, p) for p in plan.points}
    # Point key by id, per id version: named once for all the tables.
    keys_by_id: dict[int, dict[str, tuple]] = {}
    found: dict[str, tuple[dict[str, Any], Path]] = {}
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
                key = theirs[row["point_id"]]
                if mine[key] not in found and complete(row.to_dict(), protocols[key]):
                    found[mine[key]] = (row.to_dict(), path)
    return found


def seed_journal(plan: JobPlan, tables: Sequence[Path], journal_dir: Path) -> int:
    """Copy into the job's journal the rows of ``tables`` (job tables measured elsewhere, such
    as the shipped ones) that are points of ``plan`` under the same measurement setup and
    complete under its protocol (:func:`complete`), so that the job measures only the rest.
    A copied row is the point's, whole (``seeded_from`` names its table): the job adds no
    trial to it. Rows are matched by the id version they carry and filed under the
    journal's. Points already in the journal are kept. Returns how many rows were copied."""
    journal = Journal(journal_dir)
    copied = 0
    for pid, (row, path) in _seedable(plan, read_tables(tables), journal.version).items():
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


def trials_left(plan: JobPlan, journal_dir: Path | None, tables: Tables = ()) -> dict[tuple, int]:
    """Trials each point of ``plan`` still needs (by point key): none where the job's journal
    (none where ``journal_dir`` is None) or a row of ``tables`` (as :func:`read_tables` reads
    them, that :func:`seed_journal` would copy) completes it, else at least its ``min_trials``
    less the trials the journal holds, and one more where the interval is still wide. What a
    run that starts now would measure, before its points are selected from the traces; nothing
    is written. Trials of every machine session count here: where the job will run is not known
    yet (a run on another machine measures short points again from their first trial)."""
    from llm_energy.measure.point_ids import CURRENT_VERSION

    journal = None
    if journal_dir is not None and (
        (journal_dir / Journal.MARKER).is_file() or any(journal_dir.glob("*.parquet"))
    ):
        journal = Journal(journal_dir)
    version = journal.version if journal is not None else CURRENT_VERSION
    seeded_ids = set(_seedable(plan, tables, version)) if tables else set()
    ids = point_ids(plan, version)
    left = {}
    for point in plan.points:
        proto = _protocol(plan, point)
        pid = ids[point.key]
        have = journal.trials(pid) if journal is not None else []
        have = [t for t in have if not _failed(t)]
        left[point.key] = 0 if not have and pid in seeded_ids else least_trials_left(have, proto)
    return left


def _known_bounds(trials: dict, points: Sequence[PointSpec]) -> tuple[dict, dict]:
    """Per shape, among points already measured: the smallest out-of-memory batch, and the
    largest batch measured feasible."""
    oom: dict[tuple[Any, ...], int] = {}
    fits: dict[tuple[Any, ...], int] = {}
    for p in points:
        if not trials.get(p.key):
            continue
        row = trials[p.key][0]
        k = shape_key(p)
        if not bool(row["feasible"]) and str(row["error"]).startswith("out of memory"):
            oom[k] = min(oom.get(k, p.batch_size), p.batch_size)
        elif bool(row["feasible"]) and row["repetitions"] > 0:
            fits[k] = max(fits.get(k, p.batch_size), p.batch_size)
    return oom, fits


def unmeasured_columns(reason: str) -> dict[str, Any]:
    """A point left out because a larger batch of its shape fits, or whose trial failed:
    feasible, nothing measured."""
    return {**infeasible_columns(reason), "feasible": True}


FAILED = "failed: "


def _first_line(exc: BaseException) -> str:
    """An exception's first line, or its type when it says nothing."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _failed(trial: dict[str, Any]) -> bool:
    """A trial that a device error ended (see :func:`_after_device_error`)."""
    return str(trial.get("error") or "").startswith(FAILED)


@dataclass
class DeviceFaults:
    """The job's device errors so far: how many trials in a row ended in one."""

    in_a_row: int = 0


def _after_device_error(
    backend: Backend, point: PointSpec, exc: BaseException, faults: DeviceFaults
) -> dict[str, Any]:
    """The row of a trial that a device error ended, once the backend has freed what it can;
    raises DeviceUnusableError (carrying the row) when the device takes no more work."""
    message = _first_line(exc)
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
            why = f"freeing the device failed too ({_first_line(again)})"
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
) -> None:
    """Measure trials until no point needs one, pass after pass over the points in flight
    (:class:`~llm_energy.measure.trials.TrialSchedule`, at most the protocol's
    ``points_in_flight`` of them): first trials in the planned order, later ones in a seeded
    shuffled order, so that what changes over the job lands in each point's spread rather
    than in one point. Before ``deadline``, a trial that would not finish with the control
    point after it (by the longest of the point's trials so far in this run) is not started:
    the job measures its control point and stops (:class:`~llm_energy.measure.stop.Stopped`)."""
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
        oom_bound, fits = _known_bounds(trials, points)
        search = search_shapes(plan.points, plan.largest_feasible_only)
        control = control_point(points) if plan.protocol.control_point else None
        here = base["machine_session"]
        run_started = utc_now()
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
        stopping = None
        schedule = TrialSchedule(
            points,
            lambda p: needs_trial(trials[p.key], _protocol(plan, p), here),
            proto.seed,
            proto.points_in_flight,
            most_trials=max(_protocol(plan, p).max_trials for p in points),
        )
        for order in schedule.passes():
            pass_started = time.perf_counter()
            for n, point in enumerate(order, start=1):
                stop.check()
                if deadline is not None and point.key in took:
                    left_s = deadline.left_s()
                    if took[point.key] + control_s > left_s:
                        stopping = (
                            f"stopped before a trial of {ids[point.key]}: the job's time ends "
                            f"in {left_s:.0f} s ({deadline.source}), and the point's trials "
                            f"took up to {took[point.key]:.0f} s in this run, the control "
                            f"point {control_s:.0f} s"
                        )
                        break
                trial_started = clock()
                trial = journal.next_trial(ids[point.key])
                row = {
                    **point_identity(plan, point),
                    **base,
                    "point_id": ids[point.key],
                    "point_id_version": journal.version,
                    "trial": trial,
                }
                unusable = None
                try:
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
                journal.record_trial(ids[point.key], trial, row)
                trials[point.key].append(row)
                took[point.key] = max(took.get(point.key, 0.0), clock() - trial_started)
                if unusable is not None:
                    raise unusable
                above = (
                    _bound_below_out_of_memory(point, row, points, trials, oom_bound, here)
                    if shape_key(point) in search
                    else None
                )
                if above is not None:
                    bounded = {
                        **trials[above.key][0],
                        **search_batch_bound(
                            backend, plan, point, point.batch_size, above.batch_size, log=log
                        ),
                    }
                    journal.record_trial(ids[above.key], bounded["trial"], bounded)
                    trials[above.key][0] = bounded
                done, in_flight, waiting = schedule.counts()
                owed = sum(
                    least_trials_left(trials[p.key], _protocol(plan, p), here)
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
                        f"pass ends in ~{pass_left_s:.0f} s, {owed} trials left at min_trials",
                    )
                )
            if stopping:
                break
        measure_control("end")
        if stopping:
            raise stop.Stopped(stopping)
    finally:
        for m in (meter, *cross):
            m.close()
        try:
            backend.close()
        except Exception as exc:  # a device that failed may fail to close too: said, not raised
            log(f"closing the engine failed: {_first_line(exc)}")


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
                f"{_first_line(exc)}); the window is not written"
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
        if exact is not None and exact < point.batch_size and _searchable(point):
            row.update(largest_feasible_batch=exact, smallest_infeasible_batch=exact + 1)
        elif k in fits and fits[k] < point.batch_size and _searchable(point):
            row.update(search_batch_bound(backend, plan, point, fits[k], point.batch_size))
        return row
    faults.in_a_row = 0
    fits[k] = max(fits.get(k, point.batch_size), point.batch_size)
    return row


# Probes between a shape's last feasible batch and its first out-of-memory one: each halves the
# gap (three narrow 512..1,024 to 64).
BOUND_SEARCH_STEPS = 3


def _searchable(point: PointSpec) -> bool:
    """Points whose batch is one generation of random prompts: a probe can run it alone."""
    return point.stream is None and point.prompts == "random"


def search_batch_bound(
    backend: Backend,
    plan: JobPlan,
    point: PointSpec,
    feasible: int,
    infeasible: int,
    steps: int = BOUND_SEARCH_STEPS,
    log: Log = print,
) -> dict[str, int | float]:
    """The largest batch that runs and the smallest that runs out of memory at ``point``'s
    shape, bisected between ``feasible`` and ``infeasible`` in at most ``steps`` probes, as the
    row columns ``largest_feasible_batch`` and ``smallest_infeasible_batch``, with the probes'
    time in ``bound_search_s``. A probe is one generation of the shape at the probed batch,
    without a window: it tells whether the batch fits, nothing more."""
    started = time.perf_counter()
    proto = point.protocol or plan.protocol
    for _ in range(steps):
        if infeasible - feasible <= 1:
            break
        batch = (feasible + infeasible) // 2
        seed = int(stable_hash([proto.seed, point.key, batch], 8), 16)
        prompts = random_prompts(backend.vocab_size, batch, point.input_tokens, seed)
        try:
            backend.generate(backend.prepare(prompts), point.output_tokens, point.decoding)
            backend.synchronize()
            feasible = batch
        except Exception as exc:
            if stop.requested():
                raise stop.Stopped(
                    f"stopped by {stop.requested()} while probing batch {batch}"
                ) from exc
            if not backend.is_out_of_memory(exc):
                raise
            backend.recover()
            infeasible = batch
        stop.check()
    log(
        f"largest feasible batch at in={point.input_tokens} out={point.output_tokens} "
        f"{point.decoding.name}: {feasible} (batch {infeasible} is out of memory)"
    )
    return {
        "largest_feasible_batch": feasible,
        "smallest_infeasible_batch": infeasible,
        "bound_search_s": time.perf_counter() - started,
    }


def _bound_below_out_of_memory(
    point: PointSpec,
    row: dict,
    points: Sequence[PointSpec],
    trials: dict,
    oom_bound: dict,
    session: str,
) -> PointSpec | None:
    """In a search largest first, the out-of-memory point whose bound is still to find once
    ``point`` (just measured, ``row``) fits: the smallest batch of its shape out of memory
    (``oom_bound``, as :func:`_known_bounds` and each trial keep it), in this machine session,
    more than one above ``point``'s, whose row gives no largest feasible batch yet (an engine
    that knows it gave it already, a rerun finds it in the journal). The job then bisects
    between the two as an ascending ladder's search does, so the bin's largest feasible batch
    is found rather than read off the ladder. None where nothing is left to find."""
    k = shape_key(point)
    if not (_searchable(point) and row["feasible"] and row["repetitions"]) or k not in oom_bound:
        return None
    if oom_bound[k] - point.batch_size <= 1:
        return None
    nearest = next(p for p in points if shape_key(p) == k and p.batch_size == oom_bound[k])
    first = trials[nearest.key][0]
    known = first.get("largest_feasible_batch")
    if known is not None and not pd.isna(known):
        return None
    return nearest if first.get("machine_session", session) == session else None


def _progress(place: str, trial: int, point: PointSpec, row: dict, outlook: str) -> str:
    """One line per trial: where the run is (``place``), the trial, and what is left
    (``outlook``). The time estimate covers the current pass only, whose trials are known;
    the trials left are counted as each point's ``min_trials`` asks: a point whose interval
    stays wide takes more, a batch found not to fit or not to be needed fewer."""
    head = (
        f"{place} trial {trial} batch={point.batch_size} "
        f"in={point.input_tokens} "
        f"out={point.output_tokens} {point.decoding.name}"
        + (f" {point.stream.label}" if point.stream else "")
        + (f" {point.served.label}" if point.served else "")
        + (f" {point.prompts} prompts" if point.prompts != "random" else "")
        + ": "
    )
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
