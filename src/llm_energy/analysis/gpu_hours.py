"""Estimate the GPU time of a configuration from measured wall times.

This is an *estimate* for planning cluster allocations, never a measurement. Generation time is
modelled from an engine's measured points as

    prefill(b, i)   = a0 + a1 * b * i + a2 * b * i^2     (seconds for one batch, one token out)
    step(b, i, o)   = c0 + c1 * b + c2 * b * (i + o / 2)  (seconds per further output token)
    full(b, i, o)   = prefill(b, i) + (o - 1) * step(b, i, o)

fitted by least squares with no coefficient below zero (:func:`nonnegative_lstsq`); ``a2``,
attention's cost quadratic in the input, only where the rows hold three or more input lengths. A
request stream, such as a classical task's examples, is timed by the time per request of the
same stream measured at the same or the nearest smaller batch where rows have it
(:func:`stream_request_seconds`), else as batches at the stream's length caps. A job whose model
and engine have fewer than four measured points (the three batch sizes of Fig 4) is timed
instead by those points where they are its own shapes (:class:`MeasuredShapes`). A
``torch.compile`` engine with no rows of its own is timed by the same backend's rows without it,
its compile time left out; a model with no rows on its engine by another model's, scaled to its
architecture (:meth:`TimeModel.scaled`). A point's cost follows the protocol: each of its
``min_trials`` trials runs warm-ups, then prefill and full windows of at least
``min_duration_s`` and ``min_repetitions``; the job's control point is measured twice more.
Adaptive trials add up to ``max_trials`` where an interval stays wide, so the estimate is the
least the job takes; beside it, each point at the mean number of trials the engine's rows took
in windows as long as its own (:class:`TrialsByWindow`), what adaptive trials are expected to
cost. Beam search counts as a batch of ``batch * num_beams`` sequences. Points far outside the
measured shapes are extrapolations. A batch the engine's rows say does not fit
(:class:`MemoryModel`: vLLM's KV-cache capacity, or a line through the measured peak memory up
to what the GPU held) costs nothing, as its out-of-memory attempt and the larger batches of its
shape, not attempted, cost next to nothing; a shape searched for its largest feasible batch
costs only that batch (:func:`counted_points`).

A served job (a ``vllm serve`` replaying requests, :mod:`llm_energy.measure.serving`) is timed
by its replays instead (:class:`ServedTimeModel`): a run of ``n`` requests at ``rate`` per
second sends them over ``(n - 1) / rate`` seconds and then drains, ``tail_s``, fitted to the
served rows of the server engine; the offline estimate serves its requests in static batches at
a time per request fitted to its rows.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from llm_energy.analysis.flops import Architecture
from llm_energy.measure.job import JobPlan, ModelSpec, PointSpec, ProtocolSpec
from llm_energy.measure.runner import control_point, search_shapes, shape_key

MODEL_LOAD_S = 60.0  # model build and engine start per job, a round allowance
# vllm serve from its start to a healthy server, by CUDA graphs on or off: Llama-3.1-8B on one
# H200, the job logs' "loaded ... in N s" in benchmarks/data/h200_2026-11-30b_job_times.csv.
SERVER_START_S = {True: 123.3, False: 62.2}


def fittable(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows a time model is fitted to: feasible, with a duration, one batch each (a
    request stream's duration spans many)."""
    rows = rows[rows["feasible"].astype(bool) & rows["duration_s"].notna()]
    if "serving" in rows:
        rows = rows[rows["serving"].fillna("batch").astype(str) == "batch"]
    return rows


def _complete(rows: pd.DataFrame) -> pd.DataFrame:
    """The fittable rows measured in trials that met the protocol's least number of them (a
    job stopped before that says nothing of how many a point needs)."""
    if "trials" not in rows:
        return rows.iloc[:0]
    rows = fittable(rows)
    rows = rows[pd.to_numeric(rows["trials"], errors="coerce").notna()]
    if "protocol_met" in rows:
        rows = rows[rows["protocol_met"].map(lambda v: v is None or pd.isna(v) or bool(v))]
    return rows


def trials_per_point(rows: pd.DataFrame) -> float:
    """The mean number of trials of the fittable rows measured in independent trials that met
    the protocol (NaN where none did): how many adaptive trials the engine took."""
    return TrialsByWindow.of(rows).overall


# Window lengths (s) that part the rows by how far their trials spread: in windows of about
# 2 s the energy drawn differs more from trial to trial, so adaptive trials add more of them
# (benchmarks/trial_spread.py).
WINDOW_BANDS_S = (2.5, 5.0)


@dataclass(frozen=True)
class TrialsByWindow:
    """The mean trials per point the engine's rows took (:func:`trials_per_point`), by the
    length of their window (:data:`WINDOW_BANDS_S`); a band without rows takes the mean of
    all."""

    means: tuple[float, ...]
    overall: float

    @classmethod
    def of(cls, rows: pd.DataFrame) -> TrialsByWindow:
        rows = _complete(rows)
        if rows.empty:
            return cls((math.nan,) * (len(WINDOW_BANDS_S) + 1), math.nan)
        trials = pd.to_numeric(rows["trials"]).to_numpy(float)
        overall = float(trials.mean())
        window = np.full(len(rows), np.nan)
        if "repetitions" in rows:
            window = (rows["repetitions"] * rows["duration_s"]).to_numpy(float)
        band = np.where(
            np.isnan(window), -1, np.searchsorted(WINDOW_BANDS_S, np.nan_to_num(window), "right")
        )
        means = tuple(
            float(trials[band == k].mean()) if (band == k).any() else math.nan
            for k in range(len(WINDOW_BANDS_S) + 1)
        )
        return cls(means, overall)

    def at(self, window_s: float) -> float:
        mean = self.means[int(np.searchsorted(WINDOW_BANDS_S, window_s, side="right"))]
        return self.overall if math.isnan(mean) else mean


def measured_load_s(rows: pd.DataFrame) -> float:
    """The median time the runs behind ``rows`` took to start their engine (``engine_load_s``,
    one value per run, whatever its number of rows); NaN where no row records it."""
    if "engine_load_s" not in rows:
        return math.nan
    loads = rows["engine_load_s"].dropna().astype(float).unique()
    return float(np.median(loads)) if len(loads) else math.nan


def scale_ratios(source: Architecture, target: Architecture) -> tuple[float, float, float]:
    """Target over source: layers, projection and feed-forward FLOPs per token, attention
    width (FLOPs of one query against one key)."""
    return (
        target.layers / source.layers,
        target.linear_flops_per_token() / source.linear_flops_per_token(),
        target.attention_flops(1, 1) / source.attention_flops(1, 1),
    )


def nonnegative_lstsq(design: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least squares with every coefficient at least 0 (Lawson and Hanson's active set), on
    columns scaled to unit norm: an unconstrained fit that comes out all positive is kept as
    it is; otherwise the terms that would be negative are 0 and the others refitted."""
    unconstrained = np.linalg.lstsq(design, target, rcond=None)[0]
    if (unconstrained >= 0).all():
        return unconstrained
    scale = np.linalg.norm(design, axis=0)
    scale[scale == 0] = 1.0
    a = design / scale
    x = np.zeros(a.shape[1])
    free = np.zeros(a.shape[1], dtype=bool)
    tol = 1e-10 * max(1.0, float(np.abs(a.T @ target).max()))
    for _ in range(3 * a.shape[1]):
        gradient = a.T @ (target - a @ x)
        if free.all() or gradient[~free].max() <= tol:
            break
        free[np.argmax(np.where(free, -np.inf, gradient))] = True
        while True:
            trial = np.zeros_like(x)
            trial[free] = np.linalg.lstsq(a[:, free], target, rcond=None)[0]
            if (trial[free] > 0).all():
                x = trial
                break
            blocking = free & (trial <= 0)
            gap = x[blocking] - trial[blocking]
            step = float(np.min(np.divide(x[blocking], gap, out=np.zeros_like(gap), where=gap > 0)))
            x = x + step * (trial - x)
            free &= x > tol
            x[~free] = 0.0
    return x / scale


@dataclass(frozen=True)
class TimeModel:
    prefill: tuple[float, float]
    step: tuple[float, float, float]
    points: int
    load_s: float = math.nan  # engine start, measured (NaN: MODEL_LOAD_S stands in)
    streams: StreamTimes = dataclasses.field(default_factory=dict)
    # The one input length of fitted rows without a prefill window, whose fit cannot tell
    # prefill from decoding (0: the rows can).
    inseparable_input: int = 0
    # Prefill's term in b * i^2 (attention over the input), 0 where the rows cannot show it.
    prefill_quadratic: float = 0.0

    @classmethod
    def fit(cls, rows: pd.DataFrame) -> TimeModel:
        """One least-squares fit of the six coefficients to every feasible row's full
        duration (prefill plus ``output_tokens - 1`` decoding steps) and, where a row has one,
        its prefill duration; rows measured without a prefill window count through their full
        duration alone. A batch is its sequences (beams included). No coefficient is negative
        (no term makes a batch faster: :func:`nonnegative_lstsq`), and prefill's quadratic term
        is fitted only where the rows hold three or more input lengths."""
        rows = fittable(rows)
        if len(rows) < 4:
            raise ValueError("at least four feasible measured points are needed to fit")
        b = sequences_per_batch(rows).to_numpy(float)
        i, o = (rows[c].to_numpy(float) for c in ("input_tokens", "output_tokens"))
        steps = o - 1
        # Columns: a0, a1, a2, c0, c1, c2.
        full = np.c_[np.ones_like(b), b * i, b * i * i, steps, steps * b, steps * b * (i + o / 2)]
        has_prefill = rows["prefill_duration_s"].notna().to_numpy()
        prefill = np.c_[np.ones_like(b), b * i, b * i * i, np.zeros((len(b), 3))][has_prefill]
        design = np.r_[full, prefill]
        target = np.r_[rows["duration_s"].to_numpy(float), rows["prefill_duration_s"][has_prefill]]
        inputs = set(i.astype(int))
        kept = [0, 1, 2, 3, 4, 5] if len(inputs) >= 3 else [0, 1, 3, 4, 5]
        coef = np.zeros(design.shape[1])
        coef[kept] = nonnegative_lstsq(design[:, kept], target)
        return cls(
            prefill=(coef[0], coef[1]),
            step=tuple(coef[3:]),
            points=len(rows),
            load_s=measured_load_s(rows),
            inseparable_input=inputs.pop() if len(inputs) == 1 and not has_prefill.any() else 0,
            prefill_quadratic=float(coef[2]),
        )

    def caveat(self, plan: JobPlan) -> str:
        """What the basis says when the fitted rows cannot time the plan's prefill: all of
        one input length without a prefill window, and the plan has other input lengths."""
        if not self.inseparable_input:
            return ""
        if {p.input_tokens for p in plan.points} <= {self.inseparable_input}:
            return ""
        return (
            f"; its rows, all {self.inseparable_input} tokens in and without prefill windows, "
            "cannot tell prefill from decoding, so other input lengths' prefill may be "
            "under- or overestimated"
        )

    def scaled(
        self, source: Architecture, target: Architecture, *, graphed: bool = False
    ) -> TimeModel:
        """The model of another architecture on the same engine: the terms that grow with the
        batch's tokens by the ratio of projection and feed-forward FLOPs per token, those of
        attention (over the cached tokens, and prefill's quadratic one) by the ratio of
        attention widths, and a decoding
        step's constant term by what bounds a small batch's step (:func:`scale_ratios`).
        ``graphed`` (CUDA graphs, a compiled graph): reading the weights, so the ratio of FLOPs
        per token (of parameters); eager: the host launching each layer's kernels, so the
        ratio of layers. Measured on one H200 at batch 1, 512/64: Qwen1.5-32B's batch took
        3.6 times Llama-3.1-8B's on vLLM with CUDA graphs (FLOPs per token x4.44, layers x2)
        and 1.3 times on PyTorch eager. The engine start is the source's; the request streams,
        the source's own, are dropped."""
        layers, flops, attention = scale_ratios(source, target)
        c0, c1, c2 = self.step
        return dataclasses.replace(
            self,
            prefill=(self.prefill[0] * layers, self.prefill[1] * flops),
            prefill_quadratic=self.prefill_quadratic * attention,
            step=(c0 * (flops if graphed else layers), c1 * flops, c2 * attention),
            streams={},
        )

    def prefill_s(self, batch: int, input_tokens: int) -> float:
        linear = self.prefill[0] + self.prefill[1] * batch * input_tokens
        return max(linear + self.prefill_quadratic * batch * input_tokens**2, 1e-3)

    def full_s(self, batch: int, input_tokens: int, output_tokens: int) -> float:
        c0, c1, c2 = self.step
        step = max(c0 + c1 * batch + c2 * batch * (input_tokens + output_tokens / 2), 1e-4)
        return self.prefill_s(batch, input_tokens) + (output_tokens - 1) * step


# A stream's measured seconds per request, by (trace, serving, input cap, output cap), then
# by batch size.
StreamTimes = dict[tuple[str, str, int, int], dict[int, float]]


def stream_request_seconds(rows: pd.DataFrame) -> StreamTimes:
    """Each request stream's measured time per request (a repetition's duration over its
    requests, the median over rows), by the stream (trace, static or continuous batching, and
    its length caps) and its batch size. Binned replays, whose bins are served apart, are left
    out."""
    if not {"serving", "trace", "requests"} <= set(rows):
        return {}
    rows = rows[rows["feasible"].astype(bool) & rows["duration_s"].notna()]
    rows = rows[rows["serving"].isin(["offline", "online"]) & (rows["requests"] > 0)]
    if "stream_bins" in rows:
        rows = rows[rows["stream_bins"].fillna("").astype(str).isin(["", "{}"])]
    per_request = rows["duration_s"].astype(float) / rows["requests"].astype(float)
    keys = ["trace", "serving", "input_tokens", "output_tokens", "batch_size"]
    medians = per_request.groupby([rows[k] for k in keys]).median()
    times: StreamTimes = {}
    for (trace, serving, cap_in, cap_out, batch), seconds in medians.items():
        stream = (str(trace), str(serving), int(cap_in), int(cap_out))
        times.setdefault(stream, {})[int(batch)] = float(seconds)
    return times


def measured_stream_s(times: StreamTimes, point: PointSpec) -> float:
    """One repetition of ``point``'s stream at its measured time per request: at the same batch
    size, else at the nearest smaller one measured (an upper bound where larger batches serve a
    request faster); NaN where neither was measured."""
    stream = point.stream
    if stream is None or stream.binned:
        return math.nan
    batches = times.get((stream.trace, stream.serving, point.input_tokens, point.output_tokens))
    below = [b for b in batches or {} if b <= point.batch_size]
    if not below:
        return math.nan
    return batches[max(below)] * stream.requests


def sequences_per_batch(rows: pd.DataFrame) -> pd.Series:
    """Sequences per batch: the batch size, times the beams of beam search."""
    beams = rows["num_beams"] if "num_beams" in rows else pd.Series(1, index=rows.index)
    return rows["batch_size"].astype(int) * beams.fillna(1).clip(lower=1).astype(int)


@dataclass(frozen=True)
class MeasuredShapes:
    """Each measured shape's own times, for a job whose model and engine have too few points to
    fit a :class:`TimeModel` but whose points were all measured before: a batch's full duration
    by (sequences, input, output), the median over the rows of that shape; its prefill by
    (sequences, input), the rows' prefill window where they had one, else one output token's
    share of the full batch (less than a prefill takes, so the estimate errs low)."""

    full: dict[tuple[int, int, int], float]
    prefill: dict[tuple[int, int], float]
    points: int
    load_s: float = math.nan
    streams: StreamTimes = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, rows: pd.DataFrame) -> MeasuredShapes:
        rows = fittable(rows)
        shape = pd.DataFrame(
            {
                "sequences": sequences_per_batch(rows),
                "input_tokens": rows["input_tokens"].astype(int),
                "output_tokens": rows["output_tokens"].astype(int),
                "full": rows["duration_s"].astype(float),
                "prefill": rows["prefill_duration_s"]
                .astype(float)
                .fillna(rows["duration_s"].astype(float) / rows["output_tokens"].astype(float)),
            }
        )
        full = shape.groupby(["sequences", "input_tokens", "output_tokens"])["full"].median()
        prefill = shape.groupby(["sequences", "input_tokens"])["prefill"].median()
        return cls(
            full={tuple(map(int, k)): float(v) for k, v in full.items()},
            prefill={tuple(map(int, k)): float(v) for k, v in prefill.items()},
            points=len(full),
            load_s=measured_load_s(rows),
        )

    def covers(self, plan: JobPlan) -> bool:
        """Whether every point of ``plan`` is a measured shape (and none a request stream)."""
        return bool(plan.points) and all(
            p.stream is None
            and (p.batch_size * max(p.decoding.num_beams, 1), p.input_tokens, p.output_tokens)
            in self.full
            for p in plan.points
        )

    def prefill_s(self, batch: int, input_tokens: int) -> float:
        return self.prefill[(batch, input_tokens)]

    def full_s(self, batch: int, input_tokens: int, output_tokens: int) -> float:
        return self.full[(batch, input_tokens, output_tokens)]


# The KV-cache block vLLM allocates on CUDA by default, for rows written before their engine
# detail named it (`kv_block_tokens=`).
VLLM_BLOCK_TOKENS = 16


@dataclass(frozen=True)
class MemoryModel:
    """Which batches fit the GPU, from an engine's rows, by the tokens a batch holds (its
    sequences, beams included, times input plus output): within vLLM's KV-cache capacity, each
    sequence taking whole blocks of ``kv_block_tokens`` as the engine allocates them; for other
    engines, below the peak memory that the least such batch that ran out of memory would take,
    the peak a line through the measured ones. Where no row ran out of memory, every batch
    counts as fitting. Request streams always do (their batches are the trace's)."""

    kv_cache_tokens: float = math.inf
    kv_block_tokens: int = VLLM_BLOCK_TOKENS
    base_gib: float = 0.0
    gib_per_token: float = 0.0
    limit_gib: float = math.inf

    def fits(self, point: PointSpec) -> bool:
        if point.stream is not None or point.served is not None:
            return True
        sequences = point.batch_size * max(point.decoding.num_beams, 1)
        tokens = sequences * (point.input_tokens + point.output_tokens)
        block = self.kv_block_tokens
        if sequences * block * math.ceil(tokens / sequences / block) > self.kv_cache_tokens:
            return False
        return self.base_gib + self.gib_per_token * tokens < self.limit_gib

    @classmethod
    def of(cls, rows: pd.DataFrame, limit_gib: float = math.inf) -> MemoryModel:
        """From one engine's rows; ``limit_gib`` (:func:`memory_limits`): where none of them
        ran out of memory, the limit another engine's rows found on the same GPU."""
        rows = _batch_rows(rows)
        if "kv_cache_tokens" in rows and rows["kv_cache_tokens"].notna().any():
            detail = rows.get("engine_detail", pd.Series("", index=rows.index)).astype(str)
            block = detail.str.extract(r"kv_block_tokens=(\d+)", expand=False).dropna()
            return cls(
                kv_cache_tokens=float(rows["kv_cache_tokens"].median()),
                kv_block_tokens=int(block.iloc[0]) if len(block) else VLLM_BLOCK_TOKENS,
            )
        line = _peak_line(rows)
        if line is None:
            return cls()
        base, per_token = line
        out_of_memory = _out_of_memory(rows)
        if out_of_memory.any():
            limit_gib = base + per_token * float(_tokens(rows)[out_of_memory].min())
        return cls(base_gib=base, gib_per_token=per_token, limit_gib=limit_gib)


def _batch_rows(rows: pd.DataFrame) -> pd.DataFrame:
    if "serving" in rows:
        rows = rows[rows["serving"].fillna("batch").astype(str) == "batch"]
    return rows


def _tokens(rows: pd.DataFrame) -> pd.Series:
    """The tokens each row's batch holds (sequences, beams included, times input plus output)."""
    return sequences_per_batch(rows) * (rows["input_tokens"] + rows["output_tokens"]).astype(int)


def _out_of_memory(rows: pd.DataFrame) -> pd.Series:
    if "error" not in rows:
        return pd.Series(False, index=rows.index)
    error = rows["error"].fillna("").astype(str)
    return ~rows["feasible"].astype(bool) & error.str.startswith("out of memory")


def _peak_line(rows: pd.DataFrame) -> tuple[float, float] | None:
    """The measured peak memory as a line in the batch's tokens (GiB, GiB per token), where
    the rows hold peaks at two or more token counts."""
    if "peak_memory_gib" not in rows:
        return None
    peak = pd.to_numeric(rows["peak_memory_gib"], errors="coerce")
    ran = rows["feasible"].astype(bool) & peak.notna()
    tokens = _tokens(rows)[ran].to_numpy(float)
    if len(set(tokens)) < 2:
        return None
    base, per_token = nonnegative_lstsq(np.c_[np.ones(len(tokens)), tokens], peak[ran].to_numpy())
    return float(base), float(per_token)


def _memory_model(own: pd.DataFrame, limits: Mapping[str, float]) -> MemoryModel | None:
    """The memory model of an engine's own rows (None without any), bounded where they never
    ran out of memory by what their GPU held (``limits``, :func:`memory_limits`)."""
    if own.empty:
        return None
    return MemoryModel.of(own, limits.get(str(own["gpu_name"].iloc[0]), math.inf))


def memory_limits(measurements: pd.DataFrame) -> dict[str, float]:
    """Per GPU name, the least peak memory (GiB) that a batch that ran out of memory would
    have taken, on the line of its own engine's measured peaks: about what the GPU holds."""
    limits: dict[str, float] = {}
    if "gpu_name" not in measurements:
        return limits
    for (gpu, _, _), group in measurements.groupby(["gpu_name", "model", "engine"]):
        limit = MemoryModel.of(group).limit_gib
        if math.isfinite(limit):
            limits[str(gpu)] = min(limits.get(str(gpu), math.inf), limit)
    return limits


def counted_points(plan: JobPlan, fits: MemoryModel | None = None) -> list[PointSpec]:
    """The points a job spends time on: those that fit (``fits``; an out-of-memory attempt,
    and the points above it, recorded as not attempted, cost next to nothing), and of a shape
    searched for its largest feasible batch only that batch (the largest, where nothing says
    which fit: the one the search tries first, and the longest)."""
    points = [p for p in plan.points if fits is None or fits.fits(p)]
    searched = search_shapes(plan.points, plan.largest_feasible_only)
    largest: dict[tuple, int] = {}
    for p in points:
        if shape_key(p) in searched:
            largest[shape_key(p)] = max(largest.get(shape_key(p), 0), p.batch_size)
    return [
        p for p in points if shape_key(p) not in searched or p.batch_size == largest[shape_key(p)]
    ]


def _window_s(rep_s: float, protocol: ProtocolSpec) -> float:
    reps = max(protocol.min_repetitions, math.ceil(protocol.min_duration_s / rep_s))
    return min(reps, protocol.max_repetitions) * rep_s


def _repetition_s(model: TimeModel | MeasuredShapes, point: PointSpec) -> tuple[float, float]:
    """One batch of ``point`` and one repetition of its window (the whole stream for a
    request stream), in seconds."""
    batch = point.batch_size * max(point.decoding.num_beams, 1)
    one_batch = model.full_s(batch, point.input_tokens, point.output_tokens)
    if point.stream is None:
        return one_batch, one_batch
    batches = math.ceil(point.stream.requests / point.batch_size)
    measured = measured_stream_s(model.streams, point)
    full = measured if not math.isnan(measured) else one_batch * batches
    return full / batches, full


def window_seconds(
    model: TimeModel | MeasuredShapes | ServedTimeModel, point: PointSpec, protocol: ProtocolSpec
) -> float:
    """How long ``point``'s measurement window lasts (its full window, not its prefill one)."""
    if isinstance(model, ServedTimeModel):
        return served_point_seconds(
            model, point, dataclasses.replace(protocol, warmup_repetitions=0)
        )
    return _window_s(_repetition_s(model, point)[1], protocol)


def point_seconds(
    model: TimeModel | MeasuredShapes,
    point: PointSpec,
    protocol: ProtocolSpec,
    warm_up: bool = True,
) -> float:
    """One trial of ``point``: warm-up (unless ``warm_up`` is off), window(s). A request
    stream's repetition serves all its requests: at the stream's measured time per request
    (:func:`measured_stream_s`), else as ``ceil(requests / batch)`` batches each at the
    stream's length caps (an upper bound for static batches, and for continuous batching
    too); its warm-up serves one batch."""
    warmups = protocol.warmup_repetitions if warm_up else 0
    batch = point.batch_size * max(point.decoding.num_beams, 1)
    one_batch, full = _repetition_s(model, point)
    seconds = warmups * one_batch + _window_s(full, protocol)
    if protocol.measure_prefill and point.output_tokens > 1 and point.stream is None:
        prefill = model.prefill_s(batch, point.input_tokens)
        seconds += (prefill if warm_up else 0.0) + _window_s(prefill, protocol)
    return seconds


def served_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows a :class:`ServedTimeModel` is fitted to: feasible served runs with a request
    rate and a run length, and offline estimates with a duration; none without a served run.
    These are never rows that :func:`fittable` takes."""
    if not {"serving", "request_rate", "requests"} <= set(rows):
        return rows.iloc[:0]
    rows = rows[rows["feasible"].astype(bool)]
    serving = rows["serving"].astype(str)
    served = rows[serving == "served"]
    served = served[(served["request_rate"] > 0) & np.isfinite(_run_s(served))]
    offline = rows[(serving == "offline") & rows["duration_s"].notna() & (rows["requests"] > 0)]
    return pd.concat([served, offline]) if len(served) else rows.iloc[:0]


def _run_s(rows: pd.DataFrame) -> pd.Series:
    """Each served row's whole run, first request sent to last done: ``run_s``, else its steady
    state over the fraction of the run it was."""
    run = rows["steady_state_s"] / rows["steady_state_fraction"]
    return rows["run_s"].fillna(run) if "run_s" in rows else run


@dataclass(frozen=True)
class ServedTimeModel:
    """A server's replays: ``n`` requests at ``rate`` per second run ``(n - 1) / rate + tail_s``
    (sent over the arrival phase, spaced as :func:`~llm_energy.measure.serving.arrival_times`
    spaces them, then drained); requests present at once, in static batches, take
    ``offline_request_s`` each (NaN without an offline row)."""

    tail_s: float
    offline_request_s: float
    runs: int
    offline_runs: int
    load_s: float = math.nan  # server start, measured (NaN: SERVER_START_S stands in)

    @classmethod
    def fit(cls, rows: pd.DataFrame) -> ServedTimeModel:
        """``tail_s``: the median over the served rows of the run less its arrival phase (a
        Poisson run's phase is only (n - 1) / rate on average); ``offline_request_s``: the
        median over the offline rows of a repetition's duration per request."""
        rows = served_rows(rows)
        serving = rows["serving"].astype(str)
        served, offline = rows[serving == "served"], rows[serving == "offline"]
        if served.empty:
            raise ValueError("at least one served run is needed to fit")
        arrival_s = (served["requests"].astype(float) - 1) / served["request_rate"]
        tail_s = float(np.median(_run_s(served) - arrival_s))
        per_request_s = offline["duration_s"] / offline["requests"].astype(float)
        return cls(
            tail_s=max(tail_s, 0.0),
            offline_request_s=float(np.median(per_request_s)) if len(offline) else math.nan,
            runs=len(served),
            offline_runs=len(offline),
            load_s=measured_load_s(rows),
        )

    def run_s(self, requests: int, request_rate: float) -> float:
        return (requests - 1) / request_rate + self.tail_s

    def batch_s(self, requests: int, batch_size: int) -> float:
        """``requests`` present at once, in static batches of ``batch_size``: at the offline
        time per request, else a run's tail per batch."""
        if math.isnan(self.offline_request_s):
            return self.tail_s * math.ceil(requests / batch_size)
        return self.offline_request_s * requests


def served_point_seconds(model: ServedTimeModel, point: PointSpec, protocol: ProtocolSpec) -> float:
    """One trial of a served job's point: ``warmup_repetitions`` of the stream's first batch
    (``min(batch_size, requests)`` requests at once), then the replay, or for the offline
    estimate a window of whole-stream repetitions."""
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
    model: TimeModel | MeasuredShapes | ServedTimeModel, point: PointSpec, protocol: ProtocolSpec
) -> tuple[float, float]:
    """One trial of ``point`` with its warm-up, and one without (the same where every trial
    has one, and for a server's replays)."""
    if isinstance(model, ServedTimeModel):
        seconds = served_point_seconds(model, point, protocol)
        return seconds, seconds
    warm = point_seconds(model, point, protocol)
    if protocol.warmup_every_trial:
        return warm, warm
    return warm, point_seconds(model, point, protocol, warm_up=False)


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
# it would be seeded with) leave to measure (llm_energy.measure.runner.trials_left).
TrialsLeft = Mapping[tuple, int]


def job_gpu_hours(
    model: TimeModel | MeasuredShapes | ServedTimeModel,
    plan: JobPlan,
    left: TrialsLeft | None = None,
    trials: float | TrialsByWindow = math.nan,
    fits: MemoryModel | None = None,
) -> float:
    """GPU-hours of one job at each point's ``min_trials`` trials (or the trials ``left``
    says it still needs), its control point (the first plain point, if any) included, and
    the engine's start: as the fitted rows measured it, else ``SERVER_START_S`` for a server
    and ``MODEL_LOAD_S`` for the others. With ``trials`` (a mean number of trials per point,
    :func:`trials_per_point`, or one by the point's window, :class:`TrialsByWindow`), each
    point costs that many, within its protocol's ``min_trials`` and ``max_trials``; a point
    its journal holds costs the rest of them.
    Without ``warmup_every_trial``, a point warms up before its first trial only (the
    control point before its first measurement, at the run's start). A job with no trial
    left does not start: 0. Only the points that :func:`counted_points` counts cost time."""
    points = counted_points(plan, fits)
    protocols = [p.protocol or plan.protocol for p in points]

    def count(point: PointSpec, proto: ProtocolSpec) -> float:
        least = proto.min_trials
        extra = _expected_trials(trials, model, point, proto) - least
        needed = least if left is None else left.get(point.key, least)
        return needed + extra if needed else 0

    trials_each = [count(p, proto) for p, proto in zip(points, protocols, strict=True)]
    if not any(trials_each):
        return 0.0
    if isinstance(model, ServedTimeModel):
        seconds = SERVER_START_S[plan.engine.cuda_graphs]
    else:
        seconds = MODEL_LOAD_S
    if not math.isnan(model.load_s):
        seconds = model.load_s
    seconds += plan.protocol.idle_duration_s

    control = control_point(plan.points) if plan.protocol.control_point else None
    for point, proto, n in zip(points, protocols, trials_each, strict=True):
        measurements = n + (2 if point is control else 0)
        if measurements:
            warm, cold = _trial_seconds(model, point, proto)
            seconds += warm + (measurements - 1) * cold
    return seconds * plan.engine.tensor_parallel_size / 3600.0


def _gpus(rows: pd.DataFrame) -> str:
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
    basis += f" measured on {_gpus(rows)}{other}"
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
            f"fitted to {fitted.points} points of {name} measured on {_gpus(rows)}, scaled to "
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
) -> tuple[TimeModel | MeasuredShapes | ServedTimeModel | None, str, pd.DataFrame]:
    """The model that times ``plan``, what the basis says of it, and the rows whose trials
    per point say what adaptive trials cost (empty where there are none of its own)."""
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
        basis = f"fitted to {fitted.points} points measured on {_gpus(measured)}"
        basis += fitted.caveat(plan)
        timed = sum(not math.isnan(measured_stream_s(streams, p)) for p in plan.points)
        if timed:
            basis += f"; {_plural(timed, 'request stream')} at measured times per request"
        return fitted, basis + stand_in, measured
    if len(fittable(measured)) and (shapes := MeasuredShapes.of(measured)).covers(plan):
        basis = f"timed by its {shapes.points} points as measured on {_gpus(measured)}"
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
        seconds = _trial_seconds(model, point, point.protocol or plan.protocol)[0]
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
) -> pd.DataFrame:
    """GPU-hours per job, for jobs whose (model, engine) has measurements to fit: a time
    model of the batch rows (:func:`fittable`), or with fewer than four of them the measured
    times of the job's own shapes (:class:`MeasuredShapes`), or for a server's jobs its served
    rows (:func:`served_rows`), or for a model with no rows on its engine another model's,
    scaled. With ``left`` (by group), each job costs only the trials its journal leaves to
    measure; ``points_left`` counts the points that need one. Beside the hours, the job's
    longest trial (:func:`longest_trial`)."""
    rows = []
    known = {p.model.name: p.model for p in plans.values()}
    limits = memory_limits(measurements)
    for group, plan in sorted(plans.items()):
        mine = None if left is None else left.get(group)
        hours, expected, adaptive = math.nan, math.nan, math.nan
        longest_s, longest = math.nan, None
        points_left = (
            len(plan.points) if mine is None else sum(mine.get(p.key, 1) > 0 for p in plan.points)
        )
        if not points_left:
            hours, basis = 0.0, "every point already measured"
        else:
            model, basis, own = _time_model(plan, measurements, known)
            fits = _memory_model(own, limits)
            if model is not None:
                hours = job_gpu_hours(model, plan, mine, fits=fits)
                by_window = TrialsByWindow.of(own)
                adaptive = by_window.overall
                if not math.isnan(adaptive):
                    expected = job_gpu_hours(model, plan, mine, by_window, fits)
                longest_s, longest = longest_trial(model, plan, mine, fits)
                basis += _infeasible(plan, fits)
        rows.append(
            {
                "group": group,
                "points": len(plan.points),
                "points_left": points_left,
                "gpus": plan.engine.tensor_parallel_size,
                "estimated_gpu_hours": hours,
                # At the trials per point its engine's rows took, where they were in trials.
                "trials_per_point": adaptive,
                "expected_gpu_hours": hours if math.isnan(expected) else expected,
                "longest_trial_min": longest_s / 60,
                "longest_trial": _label(longest),
                "basis": basis,
                "device": plan.device,
            }
        )
    return pd.DataFrame(rows)


def point_costs(plan: JobPlan, measurements: pd.DataFrame) -> pd.DataFrame:
    """One line per point of ``plan``: what it measures, whether the engine's rows say it fits
    and whether the job spends time on it (:func:`counted_points`), one trial's minutes with
    its warm-up, the trials adaptive trials are expected to take in a window as long as its
    own (:class:`TrialsByWindow`), and the minutes of those trials; what to measure first
    where a session is short. Empty where no rows time the job."""
    known = {plan.model.name: plan.model}
    model, _, own = _time_model(plan, measurements, known)
    columns = ["point", "experiments", "fits", "counted", "trial_min", "trials", "minutes"]
    if model is None:
        return pd.DataFrame(columns=columns)
    fits = _memory_model(own, memory_limits(measurements))
    by_window = TrialsByWindow.of(own)
    counted = {p.key for p in counted_points(plan, fits)}
    lines = []
    for point in plan.points:
        proto = point.protocol or plan.protocol
        warm, cold = _trial_seconds(model, point, proto)
        trials = _expected_trials(by_window, model, point, proto)
        spent = point.key in counted
        lines.append(
            {
                "point": _label(point),
                "experiments": "+".join(point.experiments),
                "fits": fits is None or fits.fits(point),
                "counted": spent,
                "trial_min": warm / 60,
                "trials": trials,
                "minutes": (warm + (trials - 1) * cold) / 60 if spent else 0.0,
            }
        )
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
) -> pd.DataFrame:
    """:func:`estimate` fitted to the shipped rows of ``hardware`` when ``tables`` (shipped
    job tables by hardware label) has any, else to those of every label; ``basis`` says which.
    """
    labels = [hardware] if tables.get(hardware) else sorted(tables)
    paths = [p for label in labels for p in tables.get(label, [])]
    if not paths:
        columns = ["group", "points", "points_left", "gpus", "estimated_gpu_hours"]
        columns += ["trials_per_point", "expected_gpu_hours", "basis"]
        return pd.DataFrame(columns=[*columns, "device"])
    measured = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    return estimate(plans, measured, left)


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
            f"{_adaptive(r)} ({r.basis}){_long_trial(r)}"
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
