"""Estimate the GPU time of a configuration from measured wall times.

This is an *estimate* for planning cluster allocations, never a measurement. Generation time is
modelled from an engine's measured points as

    prefill(b, i)   = a0 + a1 * b * i + a2 * b * i^2     (seconds for one batch, one token out)
    step(b, i, o)   = c0 + c1 * b + c2 * b * (i + o / 2)  (seconds per further output token)
    full(b, i, o)   = prefill(b, i) + (o - 1) * step(b, i, o)

fitted by least squares with no coefficient below zero (:func:`nonnegative_lstsq`); ``a2``,
attention's cost quadratic in the input, only where the rows hold three or more input lengths. A
request stream, such as a classical task's examples, is timed (:func:`stream_timing`) by the
time per request of the same stream measured at the same batch where rows have it
(:func:`stream_request_seconds`), else, where the estimate is given the prepared lengths the
job draws its requests from, as the engine serves those requests (:func:`batched_stream_s`):
static batches each padded to its longest prompt and output (transformers), or each request at
its own lengths (vLLM: :meth:`TimeModel.static_batch_s`, online by continuous batching,
:meth:`TimeModel.continuous_s`), else by the time per request measured at the nearest smaller
batch, else as batches at the stream's length caps. A job whose model and engine have fewer
than four measured points (the three batch sizes of Fig 4) is timed instead by those points
where they are its own shapes (:class:`MeasuredShapes`). A ``torch.compile`` engine with no
rows of its own is timed by the same backend's rows without it, its compile time left out; a
model with no rows on its engine by another model's, scaled to its architecture
(:meth:`TimeModel.scaled`). A point's cost follows the protocol: each of its
``min_trials`` trials runs warm-ups, then prefill and full windows of at least
``min_duration_s`` and ``min_repetitions``; the job's control point is measured twice more
(and the engine started again, with two more, for each further batch of
``trials_per_engine_start`` trials). A point's first warm-up meets its shape first and takes
the engine's measured ratio to one
repetition (:func:`~.time_models.measured_first_warmup_ratio`: PyTorch eager's runs longer, vLLM's
with CUDA graphs about as long), the warm-ups of its later trials one repetition each.
Adaptive trials add up to ``max_trials`` where an interval stays wide, so the estimate is the
least the job takes; beside it, each point at the mean number of trials the engine's rows took
in windows as long as its own (:class:`TrialsByWindow`), what adaptive trials are expected to
cost. Beam search counts as a batch of ``batch * num_beams`` sequences. Points far outside the
measured shapes are extrapolations. A batch the engine's rows say does not fit
(:class:`MemoryModel`: vLLM's KV-cache capacity, or a line through the measured peak memory up
to what the GPU held) is not measured: the job runs it until it runs out of memory
(:func:`out_of_memory_seconds`, at the engine's rows' mean ``out_of_memory_s``, nothing where
no row timed one), and the larger batches of its shape, not attempted, cost nothing; a shape
searched for its largest feasible batch costs only that batch (:func:`counted_points`), the
batches above it each one attempt, and the probes below the first out of memory
(:func:`bound_probe_seconds`).

A served job (a ``vllm serve`` replaying requests, :mod:`llm_energy.measure.serving`) is timed
by its replays instead (:class:`ServedTimeModel`): a run of ``n`` requests at ``rate`` per
second sends them over ``(n - 1) / rate`` seconds and then drains, ``tail_s``, fitted to the
served rows of the server engine; the offline estimate serves its requests in static batches at
a time per request fitted to its rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence

import pandas as pd

from llm_energy.analysis.flops import Architecture
from llm_energy.analysis.gpu_hours.memory import (
    MemoryModel,
    counted_points,
    engine_memory_model,
    memory_limits,
    out_of_memory_attempts,
)
from llm_energy.analysis.gpu_hours.time_models import (
    MeasuredShapes,
    ServedTimeModel,
    TimeModel,
    TrialsByWindow,
    batched_stream_s,
    fittable,
    lengths_ratios,
    measured_stream_s,
    nonnegative_lstsq,
    scale_ratios,
    sequences_per_batch,
    served_rows,
    stream_point,
    stream_request_seconds,
    stream_rows,
    stream_seconds_per_request,
    trials_per_point,
)
from llm_energy.backends import pads_batches
from llm_energy.inputs.prompts import TraceLengths
from llm_energy.measure.bounds import BOUND_SEARCH_STEPS, search_shapes, shape_key
from llm_energy.measure.controls import control_point
from llm_energy.measure.job import JobPlan, ModelSpec, PointSpec, ProtocolSpec

__all__ = [
    "LENGTHS_SCALE_MIN_STREAMS",
    "LONG_TRIAL_MIN",
    "MODEL_LOAD_S",
    "NO_ROWS",
    "SERVER_START_S",
    "MeasuredShapes",
    "MemoryModel",
    "ServedTimeModel",
    "TimeModel",
    "TrialsByWindow",
    "TrialsLeft",
    "against_actual",
    "allocations",
    "batched_stream_s",
    "counted_points",
    "describe",
    "describe_against_actual",
    "estimate",
    "fittable",
    "job_gpu_hours",
    "lengths_ratios",
    "longest_trial",
    "memory_limits",
    "nonnegative_lstsq",
    "out_of_memory_seconds",
    "plan_estimate",
    "point_costs",
    "point_seconds",
    "sequences_per_batch",
    "served_point_seconds",
    "start_seconds",
    "stream_point",
    "stream_request_seconds",
    "stream_rows",
    "stream_seconds_per_request",
    "stream_timing",
    "trials_per_point",
    "window_seconds",
]

MODEL_LOAD_S = 60.0  # model build and engine start per job, a round allowance


# vllm serve from its start to a healthy server, by CUDA graphs on or off: Llama-3.1-8B on one
# H200, the job logs' "loaded ... in N s" in benchmarks/data/h200_2026-11-30b_job_times.csv.
SERVER_START_S = {True: 123.3, False: 62.2}


def _window_s(rep_s: float, protocol: ProtocolSpec) -> float:
    reps = max(protocol.min_repetitions, math.ceil(protocol.min_duration_s / rep_s))
    return min(reps, protocol.max_repetitions) * rep_s


# How a request stream's repetition is timed, in the order tried (:func:`stream_timing`), and
# what the plan's basis says of the streams each way times.
STREAM_TIMINGS = {
    "measured": "at measured times per request",
    "lengths": "by {their} requests' own lengths",
    "smaller batch": (
        "at the measured time per request of a smaller batch, an upper bound (no prepared "
        "lengths of {their} requests)"
    ),
    "caps": (
        "as batches at {their} length caps, an upper bound (neither a measured time per "
        "request nor {their} requests' prepared lengths)"
    ),
}


def stream_timing(
    model: TimeModel | MeasuredShapes, point: PointSpec, seed: int
) -> tuple[float, str]:
    """One repetition of a request-stream ``point`` (all its requests), in seconds, and how it
    is timed (a key of :data:`STREAM_TIMINGS`): at its measured time per request at the same
    batch size; else by its requests' own lengths where the model holds them (drawn with the
    protocol's ``seed``, :func:`batched_stream_s`; on the H200 rows within 15 % of what vLLM
    took, where translation's measured time per request at batch 1 was about 40 times its
    time at batch 128); else at the measured time per request of the nearest smaller batch;
    else as many batches at its length caps."""
    full = measured_stream_s(model.streams, point, smaller=False)
    if not math.isnan(full):
        return full, "measured"
    full = batched_stream_s(model, point, seed)
    if not math.isnan(full):
        return full, "lengths"
    full = measured_stream_s(model.streams, point)
    if not math.isnan(full):
        return full, "smaller batch"
    batches = math.ceil(point.stream.requests / point.batch_size)
    batch = point.batch_size * max(point.decoding.num_beams, 1)
    return model.full_s(batch, point.input_tokens, point.output_tokens) * batches, "caps"


def _repetition_s(
    model: TimeModel | MeasuredShapes, point: PointSpec, seed: int
) -> tuple[float, float]:
    """One batch of ``point`` and one repetition of its window (the whole stream for a
    request stream, :func:`stream_timing`), in seconds."""
    if point.stream is None:
        batch = point.batch_size * max(point.decoding.num_beams, 1)
        one_batch = model.full_s(batch, point.input_tokens, point.output_tokens)
        return one_batch, one_batch
    full, _ = stream_timing(model, point, seed)
    return full / math.ceil(point.stream.requests / point.batch_size), full


def window_seconds(
    model: TimeModel | MeasuredShapes | ServedTimeModel, point: PointSpec, protocol: ProtocolSpec
) -> float:
    """How long ``point``'s measurement window lasts (its full window, not its prefill one)."""
    if isinstance(model, ServedTimeModel):
        return served_point_seconds(model, point, protocol, windows_only=True)
    return _window_s(_repetition_s(model, point, protocol.seed)[1], protocol)


def point_seconds(
    model: TimeModel | MeasuredShapes,
    point: PointSpec,
    protocol: ProtocolSpec,
    warm_up: bool = True,
    first: bool = False,
    windows_only: bool = False,
) -> float:
    """One trial of ``point``: warm-up (unless ``warm_up`` is off), window(s); with
    ``windows_only``, its windows alone (what the energy is read over). A request
    stream's repetition serves all its requests (:func:`stream_timing`); its warm-up serves
    one batch. The ``first`` trial of a point meets its shape first: its first warm-up call
    takes the model's ``first_warmup_ratio`` of one batch."""
    warmups = protocol.warmup_repetitions if warm_up else 0
    batch = point.batch_size * max(point.decoding.num_beams, 1)
    one_batch, full = _repetition_s(model, point, protocol.seed)
    ratio = getattr(model, "first_warmup_ratio", math.nan)
    extra = ratio - 1 if first and warmups and not math.isnan(ratio) else 0.0
    seconds = _window_s(full, protocol)
    if not windows_only:
        seconds += (warmups + extra) * one_batch
    if protocol.measure_prefill and point.output_tokens > 1 and point.stream is None:
        prefill = model.prefill_s(batch, point.input_tokens)
        seconds += _window_s(prefill, protocol)
        if warm_up and not windows_only:
            seconds += prefill
    return seconds


def served_point_seconds(
    model: ServedTimeModel, point: PointSpec, protocol: ProtocolSpec, windows_only: bool = False
) -> float:
    """One trial of a served job's point: ``warmup_repetitions`` of the stream's first batch
    (``min(batch_size, requests)`` requests at once), then the replay, or for the offline
    estimate a window of whole-stream repetitions; with ``windows_only``, the replay or the
    window alone (a replay counted whole, though its energy is read over its steady state)."""
    if windows_only:
        protocol = dataclasses.replace(protocol, warmup_repetitions=0)
    if point.stream is None:
        raise ValueError("a served job's points are request streams")
    requests = point.stream.requests
    warmup_s = protocol.warmup_repetitions * model.batch_s(
        min(point.batch_size, requests), point.batch_size
    )
    if point.served is not None:
        return warmup_s + model.run_s(requests, point.served.request_rate)
    return warmup_s + _window_s(model.batch_s(requests, point.batch_size), protocol)


def _trial_seconds(
    model: TimeModel | MeasuredShapes | ServedTimeModel,
    point: PointSpec,
    protocol: ProtocolSpec,
    windows_only: bool = False,
) -> tuple[float, float]:
    """A first trial of ``point``, with its warm-up at a shape the engine meets first, and a
    later one: without a warm-up, with one where every trial has one (and for a server's
    replays), or the mean of the two where later trials take turns; with ``windows_only``,
    their windows alone."""
    if isinstance(model, ServedTimeModel):
        seconds = served_point_seconds(model, point, protocol, windows_only)
        return seconds, seconds
    first = point_seconds(model, point, protocol, first=True, windows_only=windows_only)
    warm = point_seconds(model, point, protocol, windows_only=windows_only)
    if protocol.warmup_every_trial is True:
        return first, warm
    cold = point_seconds(model, point, protocol, warm_up=False, windows_only=windows_only)
    if protocol.warmup_every_trial == "alternate":  # every other later trial warms up
        return first, (warm + cold) / 2
    return first, cold


def _expected_trials(
    trials: float | TrialsByWindow,
    model: TimeModel | MeasuredShapes | ServedTimeModel,
    point: PointSpec,
    protocol: ProtocolSpec,
) -> float:
    """The trials ``point`` is expected to take: ``trials`` (a mean, or one by the point's
    window) within the protocol's ``min_trials`` and ``max_trials``; ``min_trials`` where
    nothing says."""
    mean = trials
    if isinstance(trials, TrialsByWindow):
        mean = trials.at(window_seconds(model, point, protocol))
    if math.isnan(mean):
        return float(protocol.min_trials)
    return min(max(mean, protocol.min_trials), protocol.max_trials)


# Trials each point still needs, by point key: what the job's journal (and the shipped rows
# it would be seeded with) leave to measure (llm_energy.measure.resume.trials_left).
TrialsLeft = Mapping[tuple, int]


def _trials_needed(point: PointSpec, proto: ProtocolSpec, left: TrialsLeft | None) -> int:
    """The trials ``point`` still needs at its ``min_trials`` by ``left`` (its journal's
    count, by point key): all of them without one."""
    return proto.min_trials if left is None else left.get(point.key, proto.min_trials)


def _trials_this_run(
    expected: float, proto: ProtocolSpec, needed: int, at_most: int | None = None
) -> float:
    """The trials a point costs a run: the ``expected`` adaptive trials, at most ``at_most``
    in all (``--trials-at-most``), less those its journal holds (``needed`` of its
    ``min_trials`` are left); none where it needs none."""
    if not needed:
        return 0.0
    if at_most is not None:
        expected = min(expected, at_most)
    return max(expected - proto.min_trials + needed, 0.0)


def job_gpu_hours(
    model: TimeModel | MeasuredShapes | ServedTimeModel,
    plan: JobPlan,
    left: TrialsLeft | None = None,
    trials: float | TrialsByWindow = math.nan,
    fits: MemoryModel | None = None,
    windows_only: bool = False,
    trials_at_most: int | None = None,
) -> float:
    """GPU-hours of one job at each point's ``min_trials`` trials (or the trials ``left``
    says it still needs; with ``trials_at_most``, no point more than that many in all), its
    control point (:func:`control_point`: its smallest plain point, or in a job of request
    streams a batch of one of its own) included, and the engine's
    start: as the fitted rows measured it, else ``SERVER_START_S`` for a server
    and ``MODEL_LOAD_S`` for the others. With ``trials`` (a mean number of trials per point,
    :func:`trials_per_point`, or one by the point's window, :class:`TrialsByWindow`), each
    point costs that many, within its protocol's ``min_trials`` and ``max_trials``; a point
    its journal holds costs the rest of them.
    Without ``warmup_every_trial``, a point warms up before its first trial only (the
    control point before its first measurement, at the run's start). A job with no trial
    left does not start: 0. Only the points that :func:`counted_points` counts cost time.
    With ``windows_only``, the hours of its trials' windows alone: no engine start, warm-up,
    control point, probe or attempt out of memory, what the job's share inside windows
    (``benchmarks/gpu_time_share.py``) counts. A job whose protocol sets
    ``trials_per_engine_start`` starts its engine again for each further batch of trials
    (:func:`engine_starts`), each start with its control point (:func:`restart_seconds`)."""
    points = counted_points(plan, fits)
    protocols = [plan.protocol_of(p) for p in points]

    def count(point: PointSpec, proto: ProtocolSpec) -> float:
        expected = _expected_trials(trials, model, point, proto)
        needed = _trials_needed(point, proto, left)
        return _trials_this_run(expected, proto, needed, trials_at_most)

    trials_each = [count(p, proto) for p, proto in zip(points, protocols, strict=True)]
    if not any(trials_each):
        return 0.0
    if windows_only:
        seconds = 0.0
        for point, proto, n in zip(points, protocols, trials_each, strict=True):
            if n:
                warm, cold = _trial_seconds(model, point, proto, windows_only=True)
                seconds += warm + (n - 1) * cold
        return seconds * plan.engine.tensor_parallel_size / 3600.0
    seconds = start_seconds(model, plan)

    control = control_point(plan.points, plan.protocol) if plan.protocol.control_point else None
    for point, proto, n in zip(points, protocols, trials_each, strict=True):
        measurements = n + (2 if point == control else 0)
        if measurements:
            warm, cold = _trial_seconds(model, point, proto)
            seconds += warm + (measurements - 1) * cold
        if n:
            seconds += bound_probe_seconds(model, plan, point, fits)
    seconds += out_of_memory_seconds(model, plan, fits, left)
    if control is not None and control not in plan.points:
        # A control point of its own (a job of request streams alone, or a window longer than
        # its point's), measured twice.
        seconds += _control_seconds(model, plan, control)
    seconds += (engine_starts(plan, trials_each) - 1) * restart_seconds(model, plan, control)
    return seconds * plan.engine.tensor_parallel_size / 3600.0


def engine_starts(plan: JobPlan, trials_each: Sequence[float]) -> int:
    """How many engine starts a run of the job makes for ``trials_each`` (trials by point):
    one, or with ``trials_per_engine_start`` as many as its most trials of a point take
    (:mod:`llm_energy.measure.engine_starts`)."""
    per_start = plan.protocol.trials_per_engine_start
    if not per_start or not trials_each:
        return 1
    return max(1, math.ceil(max(trials_each) / per_start - 1e-9))


def restart_seconds(
    model: TimeModel | MeasuredShapes | ServedTimeModel,
    plan: JobPlan,
    control: PointSpec | None,
) -> float:
    """What each engine start after a run's first adds: the engine's start and idle-power
    window (:func:`start_seconds`) and the control point's two measurements."""
    return start_seconds(model, plan) + _control_seconds(model, plan, control)


def _control_seconds(
    model: TimeModel | MeasuredShapes | ServedTimeModel,
    plan: JobPlan,
    control: PointSpec | None,
) -> float:
    """The control point's two measurements of one run (0 for none, or for a shape a
    MeasuredShapes model never measured)."""
    if control is not None:
        with contextlib.suppress(KeyError):  # shapes a MeasuredShapes model never measured
            warm, cold = _trial_seconds(model, control, plan.protocol_of(control))
            return warm + cold
    return 0.0


def out_of_memory_seconds(
    model: TimeModel | MeasuredShapes | ServedTimeModel,
    plan: JobPlan,
    fits: MemoryModel | None,
    left: TrialsLeft | None = None,
) -> float:
    """The attempts the job runs that run out of memory (:func:`out_of_memory_attempts`, less
    those its journal holds, ``left``), each at what the engine's rows measured one to cost on
    average (``out_of_memory_s``); 0 where no row measured one."""
    attempt_s = getattr(model, "out_of_memory_s", math.nan)
    if math.isnan(attempt_s):
        return 0.0
    attempts = out_of_memory_attempts(plan, fits)
    return attempt_s * sum(1 for p in attempts if left is None or left.get(p.key, 1))


def bound_probe_seconds(
    model: TimeModel | MeasuredShapes | ServedTimeModel,
    plan: JobPlan,
    point: PointSpec,
    fits: MemoryModel | None,
) -> float:
    """The probes a search largest first runs below its first batch out of memory
    (:func:`~llm_energy.measure.bounds.search_batch_bound`, after ``point``'s first trial):
    where ``point`` is the largest batch of its searched shape that ``fits`` holds and the
    plan's next batch up does not fit, ``BOUND_SEARCH_STEPS`` generations at the batch midway,
    none for an engine that knows its largest batch (vLLM) or where nothing says what fits."""
    if fits is None or plan.engine.backend == "vllm" or isinstance(model, ServedTimeModel):
        return 0.0
    shape = shape_key(point)
    if shape not in search_shapes(plan.points, plan.largest_feasible_only):
        return 0.0
    above = [p for p in plan.points if shape_key(p) == shape and p.batch_size > point.batch_size]
    if not above:
        return 0.0
    rung = min(above, key=lambda p: p.batch_size)
    if rung.batch_size - point.batch_size <= 1 or fits.fits(rung):
        return 0.0
    midway = (point.batch_size + rung.batch_size) // 2
    try:
        return BOUND_SEARCH_STEPS * model.full_s(midway, point.input_tokens, point.output_tokens)
    except KeyError:  # a MeasuredShapes model times only the shapes it measured
        return 0.0


def start_seconds(model: TimeModel | MeasuredShapes | ServedTimeModel, plan: JobPlan) -> float:
    """What every run of the job spends before its first trial: the engine's start, as the
    fitted rows measured it (else ``SERVER_START_S`` for a server, ``MODEL_LOAD_S`` for the
    others), and the idle-power window."""
    if not math.isnan(model.load_s):
        seconds = model.load_s
    elif isinstance(model, ServedTimeModel):
        seconds = SERVER_START_S[plan.engine.cuda_graphs]
    else:
        seconds = MODEL_LOAD_S
    return seconds + plan.protocol.idle_duration_s


def allocations(
    job_s: float, start_s: float, longest_trial_s: float, allocation_s: float
) -> tuple[float, float]:
    """How many allocations of ``allocation_s`` seconds (a Slurm job's time limit, a lent
    machine's call) a job of ``job_s`` seconds takes, one start of ``start_s`` included, and
    its seconds over all of them. Every run starts the engine again, and every run that its
    time limit ends leaves unused the time at its end that no trial left fits (a job starts no
    trial that would end after its limit, and fills the time with the trials that fit),
    counted as half the job's longest trial. A job whose longest trial does not fit one
    allocation after the start never finishes: ``inf`` both."""
    if job_s <= allocation_s:
        return 1.0, job_s
    lost = longest_trial_s / 2
    usable = allocation_s - start_s - lost
    if longest_trial_s > allocation_s - start_s or usable <= 0:
        return math.inf, math.inf
    work = job_s - start_s
    runs = float(max(2, math.ceil((work - lost) / usable)))
    return runs, work + runs * start_s + (runs - 1) * lost


# The time limit a measurement job asks its scheduler for (Slurm's ``runtime``, minutes): its
# expected time with this margin and allowance, in steps of RUNTIME_STEP_MIN; without rows to
# fit, RUNTIME_UNKNOWN_MIN, and never past RUNTIME_MAX_MIN. A job its limit ends goes on from
# its journal in its next attempt.
RUNTIME_MARGIN = 1.5
RUNTIME_ALLOWANCE_MIN = 15
RUNTIME_STEP_MIN = 15
RUNTIME_UNKNOWN_MIN = 720
RUNTIME_MAX_MIN = 1440


def runtime_minutes(
    expected_gpu_hours: float, gpus: int, attempt: int = 1, longest_trial_min: float = math.nan
) -> int:
    """The time limit, in minutes, for a job expected to take ``expected_gpu_hours`` on
    ``gpus`` GPUs (NaN: nothing to fit), at its ``attempt``-th attempt: each attempt asks for
    that many times as much, so that a job the estimate undersold still ends in its retries.
    At least its longest trial with the allowance (a job starts no trial that would end after
    its limit), never more than RUNTIME_MAX_MIN (a day, the longest many GPU partitions allow:
    a job past it goes on from its journal in its next attempt)."""
    if math.isnan(expected_gpu_hours):
        minutes = RUNTIME_UNKNOWN_MIN
    else:
        wall_min = expected_gpu_hours / max(gpus, 1) * 60
        minutes = wall_min * RUNTIME_MARGIN + RUNTIME_ALLOWANCE_MIN
    if not math.isnan(longest_trial_min):
        minutes = max(minutes, longest_trial_min * RUNTIME_MARGIN + RUNTIME_ALLOWANCE_MIN)
    steps = math.ceil(minutes * max(attempt, 1) / RUNTIME_STEP_MIN)
    return min(max(steps, 2) * RUNTIME_STEP_MIN, RUNTIME_MAX_MIN)


def gpu_names(rows: pd.DataFrame) -> str:
    """The GPUs the rows were measured on, as the basis names them."""
    return ", ".join(sorted(set(rows["gpu_name"].astype(str))))


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _served_model(plan: JobPlan, of_model: pd.DataFrame) -> tuple[ServedTimeModel | None, str]:
    """(time model, basis) of a served job, fitted to the served rows of its engine, else to
    those of the same server (engine, CUDA graphs, max_num_seqs) at another tensor-parallel
    size, else to those of the same engine's servers at another max_num_seqs."""
    from llm_energy.families.served_traces import engine_of_server, server_over_any_gpus

    engine = plan.engine
    rows, other = served_rows(of_model[of_model["engine"] == engine.name]), ""
    names = of_model["engine"].astype(str)
    fallbacks = (
        (server_over_any_gpus, "the same server at another TP size"),
        (engine_of_server, "the same engine's server at another max_num_seqs"),
    )
    for same, what in fallbacks:
        if not rows.empty:
            break
        rows = served_rows(of_model[names.map(same) == same(engine.name)])
        measured = ", ".join(sorted(set(rows["engine"].astype(str))))
        other = f", of {measured} (none of {engine.name}: {what})"
    if rows.empty:
        return None, NO_ROWS
    fitted = ServedTimeModel.fit(rows)
    basis = f"fitted to {_plural(fitted.runs, 'served run')}"
    if fitted.offline_runs:
        basis += f" and {_plural(fitted.offline_runs, 'offline run')}"
    basis += f" measured on {gpu_names(rows)}{other}"
    return fitted, basis


def _uncompiled_stand_in(plan: JobPlan, of_model: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """For a ``torch.compile`` engine with no rows of its own: the rows of the same model on
    the same backend and number of GPUs without ``torch.compile``, and what the basis says of
    them. Compiled generation runs no slower than eager, so the windows are timed at most; the
    compile itself is not in the estimate."""
    engine = plan.engine
    if not engine.torch_compile or "torch_compile" not in of_model:
        return of_model.iloc[:0], ""
    rows = of_model[
        (of_model["backend"].astype(str) == engine.backend)
        & ~of_model["torch_compile"].fillna(False).astype(bool)
        & (of_model["tensor_parallel_size"].fillna(1).astype(int) == engine.tensor_parallel_size)
    ]
    measured = ", ".join(sorted(set(rows["engine"].astype(str))))
    note = (
        f", of {measured} (none of {engine.name}: the same backend without torch.compile; "
        "the compile time is not in it)"
    )
    return rows, note


def _local_architecture(spec: ModelSpec, mirror: str | None) -> Architecture | None:
    """A model's architecture from a config.json already on this machine, else None (also
    where it cannot be read: a plan is no place to fail the job that will say so)."""
    from llm_energy.errors import InputError
    from llm_energy.inputs.model_configs import load_config_dict, local_config_path

    path = local_config_path(spec, mirror)
    if path is None:
        return None
    try:
        return Architecture.from_config(load_config_dict(path.parent))
    except (InputError, KeyError, TypeError, ZeroDivisionError):
        return None


def _scaled_from_another_model(
    plan: JobPlan, measurements: pd.DataFrame, known: Mapping[str, ModelSpec]
) -> tuple[TimeModel | None, str]:
    """(time model, basis) of a job whose model has no rows on its engine: the time model of
    the engine's rows of the model with most of them, scaled to the job's architecture
    (:meth:`TimeModel.scaled`); NaN where no config.json of the two lies on this machine.
    ``known``: the configuration's models, by name (a model of the rows outside it is looked
    up by its hub id)."""
    nothing = (None, NO_ROWS)
    mirror = plan.mirror.get("models")
    target = _local_architecture(plan.model, mirror)
    if target is None or "hub_id" not in measurements:
        return nothing
    engine = measurements[
        (measurements["engine"] == plan.engine.name) & (measurements["model"] != plan.model.name)
    ]
    counts = fittable(engine).groupby("model").size().sort_values(ascending=False, kind="stable")
    for name in counts[counts >= 4].index:
        rows = engine[engine["model"] == name]
        spec = known.get(name) or ModelSpec(name, str(rows["hub_id"].iloc[0]))
        source = _local_architecture(spec, mirror)
        if source is None:
            continue
        fitted = TimeModel.fit(rows)
        layers, flops, _ = scale_ratios(source, target)
        graphed = plan.engine.torch_compile or plan.engine.launches_graphs
        basis = (
            f"fitted to {fitted.points} points of {name} measured on {gpu_names(rows)}, scaled to "
            f"{plan.model.name} (none of its own: layers x{layers:.2f}, "
            f"FLOPs per token x{flops:.2f}"
            + (", a graphed step by FLOPs)" if graphed else ", an eager step by layers)")
            + fitted.caveat(plan)
        )
        return fitted.scaled(source, target, graphed=graphed), basis
    return nothing


NO_ROWS = "no measurements of this model and engine"


# A trial is what the journal keeps: a job stopped inside one measures it again from its start.
# Past this, the plan names a job's longest trial, so that its allocation can be sized to it.
LONG_TRIAL_MIN = 10.0


def _time_model(
    plan: JobPlan,
    measurements: pd.DataFrame,
    known: Mapping[str, ModelSpec],
    lengths: TraceLengths | None = None,
) -> tuple[TimeModel | MeasuredShapes | ServedTimeModel | None, str, pd.DataFrame]:
    """The model that times ``plan``, what the basis says of it, and the rows whose trials
    per point say what adaptive trials cost (empty where there are none of its own). A fitted
    model holds ``lengths`` (:func:`_with_lengths`)."""
    model, basis, own = _fitted_model(plan, measurements, known)
    if isinstance(model, TimeModel):
        model, said = _with_lengths(model, plan, lengths, own)
        basis += said
    return model, basis, own


# The fewest measured streams of an engine whose median scales the streams timed by their
# requests' lengths (:func:`_with_lengths`).
LENGTHS_SCALE_MIN_STREAMS = 3


def _with_lengths(
    model: TimeModel, plan: JobPlan, lengths: TraceLengths | None, own: pd.DataFrame
) -> tuple[TimeModel, str]:
    """``model`` holding the prepared ``lengths`` its request streams draw from, and what the
    basis says of how it times the plan's streams (:func:`stream_timing`). Where the engine's
    own rows (``own``) hold :data:`LENGTHS_SCALE_MIN_STREAMS` or more measured streams whose
    lengths are prepared, a stream timed by its requests' lengths is scaled by the median of
    what they took over such a time (:func:`lengths_ratios`): the batch rows time the padded
    batches of transformers' streams short (on the H200 rows they took 0.93 to 2.08 of it,
    median 1.23) and vLLM's close (0.85 to 1.09;
    benchmarks/data/time_model_task_streams_2026-12-05.md). One scale per engine: scaling by
    the streams of the same batch size brought vLLM on the H100 closer (off by 5.5 % in the
    median where one scale is off by 10.7 %), but neither vLLM on the H200 nor PyTorch
    (benchmarks/data/time_model_stream_scale_by_batch_2026-12-06.md)."""
    model = dataclasses.replace(
        model, stream_lengths=lengths, padded_batches=pads_batches(plan.engine.backend)
    )
    ratios = lengths_ratios(model, own, plan.protocol.seed) if lengths is not None else []
    # Measured streams whose requests' lengths are not prepared here (a trace or task the
    # machine has no --traces or --task-lengths for) cannot be timed by them, so a plan made
    # elsewhere may have scaled by more streams: the basis says how many were left out.
    unprepared = len(stream_rows(own)) - len(ratios) if lengths is not None else 0
    if len(ratios) >= LENGTHS_SCALE_MIN_STREAMS:
        model = dataclasses.replace(model, lengths_scale=statistics.median(ratios))
    ways = [
        stream_timing(model, p, plan.protocol_of(p).seed)[1]
        for p in plan.points
        if p.stream is not None and p.served is None
    ]
    said = ""
    for way, text in STREAM_TIMINGS.items():
        if count := ways.count(way):
            their = "its" if count == 1 else "their"
            said += f"; {_plural(count, 'request stream')} {text.format(their=their)}"
            if way == "lengths" and model.lengths_scale != 1.0:
                said += (
                    f", scaled by {model.lengths_scale:.2f}, the median of what its "
                    f"{len(ratios)} measured streams took over such a time ({min(ratios):.2f} "
                    f"to {max(ratios):.2f})"
                )
            if way == "lengths" and unprepared:
                said += (
                    f" ({_plural(unprepared, 'more measured stream')} left out: "
                    "their requests' lengths are not prepared here)"
                )
    return model, said


def _fitted_model(
    plan: JobPlan,
    measurements: pd.DataFrame,
    known: Mapping[str, ModelSpec],
) -> tuple[TimeModel | MeasuredShapes | ServedTimeModel | None, str, pd.DataFrame]:
    """:func:`_time_model` before it is given the streams' lengths."""
    of_model = measurements[measurements["model"] == plan.model.name]
    measured = of_model[of_model["engine"] == plan.engine.name]
    stand_in = ""
    if measured.empty:
        measured, stand_in = _uncompiled_stand_in(plan, of_model)
    if plan.engine.backend == "vllm_server":
        return (*_served_model(plan, of_model), measured.iloc[:0])
    if len(fittable(measured)) >= 4:
        streams = stream_request_seconds(measured)
        fitted = dataclasses.replace(TimeModel.fit(measured), streams=streams)
        basis = f"fitted to {fitted.points} points measured on {gpu_names(measured)}"
        basis += fitted.caveat(plan, counted_points(plan))
        return fitted, basis + stand_in, measured
    if len(fittable(measured)) and (shapes := MeasuredShapes.of(measured)).covers(plan):
        basis = f"timed by its {shapes.points} points as measured on {gpu_names(measured)}"
        return shapes, basis + stand_in, measured
    if measured.empty:
        return (*_scaled_from_another_model(plan, measurements, known), measured)
    return None, NO_ROWS, measured.iloc[:0]


def longest_trial(
    model: TimeModel | MeasuredShapes | ServedTimeModel,
    plan: JobPlan,
    left: TrialsLeft | None = None,
    fits: MemoryModel | None = None,
) -> tuple[float, PointSpec | None]:
    """The seconds of the job's longest trial (with its warm-up) among the points it still
    measures (:func:`counted_points`), and that point."""
    longest, which = 0.0, None
    for point in counted_points(plan, fits):
        if left is not None and not left.get(point.key, 1):
            continue
        seconds = _trial_seconds(model, point, plan.protocol_of(point))[0]
        if seconds > longest:
            longest, which = seconds, point
    return longest, which


def _infeasible(plan: JobPlan, fits: MemoryModel | None) -> str:
    """What the basis says of the points that the engine's rows say do not fit."""
    if fits is None:
        return ""
    left_out = sum(not fits.fits(p) for p in plan.points)
    if not left_out:
        return ""
    by = (
        "vLLM's KV-cache capacity"
        if math.isfinite(fits.kv_cache_tokens)
        else "a line through its rows' peak memory, up to what this GPU held"
    )
    return f"; {_plural(left_out, 'point')} left out as out of memory by {by}"


def _label(point: PointSpec | None) -> str:
    if point is None:
        return ""
    what = point.stream.label if point.stream is not None else point.decoding.name
    return f"batch {point.batch_size}, {point.input_tokens} in, {point.output_tokens} out, {what}"


def estimate(
    plans: dict[str, JobPlan],
    measurements: pd.DataFrame,
    left: Mapping[str, TrialsLeft] | None = None,
    allocation_s: float | None = None,
    lengths: TraceLengths | None = None,
    trials_at_most: int | None = None,
) -> pd.DataFrame:
    """GPU-hours per job, for jobs whose (model, engine) has measurements to fit: a time
    model of the batch rows (:func:`fittable`), or with fewer than four of them the measured
    times of the job's own shapes (:class:`MeasuredShapes`), or for a server's jobs its served
    rows (:func:`served_rows`), or for a model with no rows on its engine another model's,
    scaled. With ``left`` (by group), each job costs only the trials its journal leaves to
    measure; ``points_left`` counts the points that need one. Beside the hours, the share of
    the expected hours inside the trials' windows (``share_in_windows``, as
    ``benchmarks/gpu_time_share.py`` measures it after the job) and the job's longest trial
    (:func:`longest_trial`). With ``allocation_s`` (the time limit of one run),
    the runs each job takes at its expected trials and its hours over them
    (:func:`allocations`). With ``lengths``, the prepared lengths that request streams draw
    from, a stream without a measured time per request is timed by the batches its requests
    make. With ``trials_at_most`` (``--trials-at-most``), no point costs more trials than that
    in all."""
    rows = []
    capped = {"trials_at_most": trials_at_most}
    known = {p.model.name: p.model for p in plans.values()}
    limits = memory_limits(measurements)
    for group, plan in sorted(plans.items()):
        mine = None if left is None else left.get(group)
        hours, expected, adaptive, windows = math.nan, math.nan, math.nan, math.nan
        longest_s, longest, start_s = math.nan, None, math.nan
        points_left = (
            len(plan.points) if mine is None else sum(mine.get(p.key, 1) > 0 for p in plan.points)
        )
        if not points_left:
            hours, basis = 0.0, "every point already measured"
        else:
            model, basis, own = _time_model(plan, measurements, known, lengths)
            fits = engine_memory_model(own, limits, model, plan)
            if model is not None:
                hours = job_gpu_hours(model, plan, mine, fits=fits, **capped)
                by_window = TrialsByWindow.of(own)
                adaptive = by_window.overall
                trials = by_window if not math.isnan(adaptive) else math.nan
                if not math.isnan(adaptive):
                    expected = job_gpu_hours(model, plan, mine, by_window, fits, **capped)
                windows = job_gpu_hours(
                    model, plan, mine, trials, fits, windows_only=True, **capped
                )
                longest_s, longest = longest_trial(model, plan, mine, fits)
                start_s = start_seconds(model, plan)
                basis += _infeasible(plan, fits)
        gpus = plan.engine.tensor_parallel_size
        expected = hours if math.isnan(expected) else expected
        row = {
            "group": group,
            "points": len(plan.points),
            "points_left": points_left,
            "gpus": gpus,
            "estimated_gpu_hours": hours,
            # At the trials per point its engine's rows took, where they were in trials.
            "trials_per_point": adaptive,
            "expected_gpu_hours": expected,
            # The share of the expected hours inside the trials' measurement windows.
            "share_in_windows": windows / expected if expected else math.nan,
            "longest_trial_min": longest_s / 60,
            "longest_trial": _label(longest),
            "basis": basis,
            "device": plan.device,
        }
        if allocation_s is not None:
            runs, seconds = math.nan, math.nan
            if expected == 0:
                runs, seconds = 0.0, 0.0
            elif not math.isnan(expected):
                runs, seconds = allocations(
                    expected * 3600 / gpus, start_s, longest_s, allocation_s
                )
            row["allocations"] = runs
            row["allocated_gpu_hours"] = seconds * gpus / 3600
        rows.append(row)
    return pd.DataFrame(rows)


def point_costs(
    plan: JobPlan,
    measurements: pd.DataFrame,
    lengths: TraceLengths | None = None,
    left: TrialsLeft | None = None,
    trials_at_most: int | None = None,
) -> pd.DataFrame:
    """One line per point of ``plan``: what it measures, whether the engine's rows say it fits
    and whether the job spends time on it (:func:`counted_points`), one trial's minutes with
    its warm-up, the trials adaptive trials are expected to take in a window as long as its
    own (:class:`TrialsByWindow`), and the minutes of those trials; what to measure first
    where a session is short. Empty where no rows time the job. ``lengths``: as
    :func:`estimate` takes them; ``left``: the job's trials its journal leaves, as
    :func:`estimate` takes them by job, so that the points add up to the job's estimate;
    ``trials_at_most``: likewise."""
    known = {plan.model.name: plan.model}
    model, _, own = _time_model(plan, measurements, known, lengths)
    return timed_point_costs(plan, model, own, measurements, left, trials_at_most)


def first_trial_seconds(
    plan: JobPlan, measurements: pd.DataFrame, lengths: TraceLengths | None = None
) -> tuple[dict[tuple, float], str]:
    """Each point's first trial in a run, warm-up included, as the plan's estimate times it
    (:func:`_time_model` fitted to ``measurements``, with the streams' ``lengths`` as
    :func:`estimate` takes them), by point key; and the model's basis. Empty where no rows
    time the job."""
    model, basis, _ = _time_model(plan, measurements, {plan.model.name: plan.model}, lengths)
    if model is None:
        return {}, basis
    return {p.key: _trial_seconds(model, p, plan.protocol_of(p))[0] for p in plan.points}, basis


def timed_point_costs(
    plan: JobPlan,
    model: TimeModel | MeasuredShapes | ServedTimeModel | None,
    own: pd.DataFrame,
    measurements: pd.DataFrame,
    left: TrialsLeft | None = None,
    trials_at_most: int | None = None,
) -> pd.DataFrame:
    """:func:`point_costs` by a time model already fitted (:func:`_time_model`'s model and the
    job's own rows), for a caller that needs the model too. A point's minutes hold the probes
    its search runs below a batch out of memory (:func:`bound_probe_seconds`); a point the job
    runs out of memory costs one attempt (:func:`out_of_memory_seconds`). With ``left``, a
    column ``trials_left`` gives the trials each point's journal leaves at ``min_trials``, and
    a point costs the rest of its trials, as in :func:`job_gpu_hours`: none when it has
    none left."""
    columns = ["point", "experiments", "fits", "counted", "trial_min", "trials", "minutes"]
    if left is not None:
        columns.insert(columns.index("trials"), "trials_left")
    if model is None:
        return pd.DataFrame(columns=columns)
    fits = engine_memory_model(own, memory_limits(measurements), model, plan)
    by_window = TrialsByWindow.of(own)
    counted = {p.key for p in counted_points(plan, fits)}
    attempt_s = getattr(model, "out_of_memory_s", math.nan)
    attempted = (
        set() if math.isnan(attempt_s) else {p.key for p in out_of_memory_attempts(plan, fits)}
    )
    lines = []
    for point in plan.points:
        proto = plan.protocol_of(point)
        warm, cold = _trial_seconds(model, point, proto)
        needed = _trials_needed(point, proto, left)
        expected = _expected_trials(by_window, model, point, proto)
        trials = _trials_this_run(expected, proto, needed, trials_at_most)
        spent = point.key in counted and bool(trials)
        probes = bound_probe_seconds(model, plan, point, fits) if spent else 0.0
        line = {
            "point": _label(point),
            "experiments": "+".join(point.experiments),
            "fits": fits is None or fits.fits(point),
            "counted": spent,
            "trial_min": warm / 60,
            "trials_left": needed,
            "trials": trials,
            "minutes": (warm + (trials - 1) * cold + probes) / 60
            if spent
            else (attempt_s / 60 if point.key in attempted and needed else 0.0),
        }
        lines.append({name: line[name] for name in columns})
    return pd.DataFrame(lines, columns=columns)


def _unit(devices: object) -> str:
    """GPU-minutes for jobs on GPUs, CPU-minutes for jobs that ran on the CPU (a smoke run)."""
    known = pd.Series(devices, dtype=object).dropna().astype(str)
    return "CPU" if len(known) and not known.str.startswith("cuda").any() else "GPU"


def plan_estimate(
    plans: dict[str, JobPlan],
    tables: dict[str, list[str]],
    hardware: str,
    left: Mapping[str, TrialsLeft] | None = None,
    lengths: TraceLengths | None = None,
    trials_at_most: int | None = None,
) -> pd.DataFrame:
    """:func:`estimate` fitted to the shipped rows of ``hardware`` when ``tables`` (shipped
    job tables by hardware label) has any, else to those of every label; ``basis`` says which.
    ``lengths`` and ``trials_at_most``: as :func:`estimate` takes them."""
    labels = [hardware] if tables.get(hardware) else sorted(tables)
    paths = [p for label in labels for p in tables.get(label, [])]
    if not paths:
        columns = ["group", "points", "points_left", "gpus", "estimated_gpu_hours"]
        columns += ["trials_per_point", "expected_gpu_hours", "basis"]
        return pd.DataFrame(columns=[*columns, "device"])
    measured = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    return estimate(plans, measured, left, lengths=lengths, trials_at_most=trials_at_most)


def _points(row: object) -> str:
    """A job's points, and how many of them are left where its journal holds some."""
    points, left = row.points, getattr(row, "points_left", row.points)
    return f"{points} points" if left == points else f"{left} of {points} points left"


def _adaptive(row: object) -> str:
    """What adaptive trials are expected to add, where the engine's rows say."""
    expected = getattr(row, "expected_gpu_hours", math.nan)
    if not expected > 1.05 * row.estimated_gpu_hours:  # NaN, or within 5 %
        return ""
    return (
        f", ~{expected * 60:.1f} with as many trials as its rows took in windows as long "
        f"({row.trials_per_point:.1f} a point on average)"
    )


def _share(row: object) -> str:
    """The share of the job's expected time inside its trials' windows, where known."""
    share = getattr(row, "share_in_windows", math.nan)
    return "" if math.isnan(share) else f", {share:.0%} of it inside windows"


def _long_trial(row: object) -> str:
    """The job's longest trial, where it is longer than :data:`LONG_TRIAL_MIN`."""
    minutes = getattr(row, "longest_trial_min", math.nan)
    if not minutes > LONG_TRIAL_MIN:
        return ""
    return (
        f"; its longest trial ({row.longest_trial}) takes ~{minutes:.0f} minutes, and a job "
        "stopped inside a trial measures it again from its start"
    )


def describe(table: pd.DataFrame) -> str:
    """The estimate as the lines printed before a run."""
    known = table["estimated_gpu_hours"].dropna()
    lines = [
        f"  {r.group}: {_points(r)}, "
        + (
            f"~{r.estimated_gpu_hours * 60:.0f} {_unit([getattr(r, 'device', None)])}-minutes"
            f"{_adaptive(r)}{_share(r)} ({r.basis}){_long_trial(r)}"
            if not math.isnan(r.estimated_gpu_hours)
            else r.basis
        )
        for r in table.itertuples()
    ]
    lines.append(
        f"ESTIMATE (not a measurement): {known.sum() * 60:.0f} "
        f"{_unit(table.get('device'))}-minutes for the "
        f"{len(known)} of {len(table)} jobs with shipped rows of their model and engine to fit, "
        "at the least number of trials per point (adaptive trials may add more)"
    )
    return "\n".join(lines)


def against_actual(estimated: pd.DataFrame, actual_s: dict[str, float]) -> pd.DataFrame:
    """The estimate of each job that ran beside its wall time (Snakemake's benchmark of the
    measure rule, ``actual_s`` by group), as GPU-hours both, and actual over estimated."""
    ran = estimated[estimated["group"].isin(actual_s)].copy()
    ran["actual_gpu_hours"] = [
        actual_s[g] * gpus / 3600.0 for g, gpus in zip(ran["group"], ran["gpus"], strict=True)
    ]
    ran["actual_over_estimate"] = ran["actual_gpu_hours"] / ran["estimated_gpu_hours"]
    if "expected_gpu_hours" in ran:
        ran["actual_over_expected"] = ran["actual_gpu_hours"] / ran["expected_gpu_hours"]
    return ran.reset_index(drop=True)


def describe_against_actual(table: pd.DataFrame) -> str:
    """The comparison as the lines printed after a run."""
    lines = []
    for r in table.itertuples():
        planned = (
            f"estimated ~{r.estimated_gpu_hours * 60:.1f}, actual/estimated "
            f"{r.actual_over_estimate:.2f}"
            if not math.isnan(r.estimated_gpu_hours)
            else "no estimate"
        )
        if _adaptive(r):
            planned += (
                f"; ~{r.expected_gpu_hours * 60:.1f} with adaptive trials, actual/expected "
                f"{r.actual_over_expected:.2f}"
            )
        unit = _unit([getattr(r, "device", None)])
        lines.append(f"  {r.group}: {r.actual_gpu_hours * 60:.1f} {unit}-minutes ({planned})")
    both = table.dropna(subset=["estimated_gpu_hours"])
    unit = _unit(table.get("device"))
    if len(both):
        lines.append(
            f"{unit} time of the {len(table)} measurement jobs that ran: "
            f"{table['actual_gpu_hours'].sum() * 60:.1f} {unit}-minutes; the {len(both)} with an "
            f"estimate took {both['actual_gpu_hours'].sum() * 60:.1f} against "
            f"{both['estimated_gpu_hours'].sum() * 60:.1f} estimated"
        )
    return "\n".join(lines)
