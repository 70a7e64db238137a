"""The time models the GPU-time plan fits to an engine's measured rows (see
:mod:`llm_energy.analysis.gpu_hours`): batches by prefill and decode step, request streams by
their time per request, served replays by their send and drain, measured shapes as they are,
and the trials adaptive points took by the length of their window."""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from llm_energy.analysis.flops import Architecture
from llm_energy.errors import InputError
from llm_energy.inputs.prompts import TASK_STREAMS, TraceLengths, static_batches
from llm_energy.measure.job import JobPlan, PointSpec, StreamSpec
from llm_energy.measure.trials import trial_values


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


def measured_out_of_memory_s(rows: pd.DataFrame) -> float:
    """What one attempt that runs out of memory costs the engine behind ``rows``: the mean of
    its rows' ``out_of_memory_s`` (the attempt and the recovery from it; the mean, since a job
    pays their sum, and an attempt near the largest batch that fits runs longer than one far
    above it); NaN where no row records one (rows written before attempts were timed)."""
    if "out_of_memory_s" not in rows:
        return math.nan
    timed = rows["out_of_memory_s"].dropna().astype(float)
    return float(timed.mean()) if len(timed) else math.nan


def measured_first_warmup_ratio(rows: pd.DataFrame) -> float:
    """How much longer a point's first warm-up takes than one repetition of its window, on the
    engine behind ``rows``: the first timed warm-up of each batch row (``trial_warmup_s``'s
    first, its point's first trial, where the engine meets the shape first) summed over those
    rows' time per repetition summed, a ratio weighted by time, since a job pays the sum.
    PyTorch eager's first call at a shape runs longer than the calls after it (its allocator
    grows as the batch's cache does), vLLM's with CUDA graphs about as long. NaN where no row
    timed a warm-up (rows written before warm-ups were timed)."""
    if "trial_warmup_s" not in rows:
        return math.nan
    batches = rows[rows["feasible"].astype(bool)]
    if "trace" in batches:
        batches = batches[batches["trace"].fillna("").astype(str).eq("")]
    first = batches["trial_warmup_s"].map(lambda cell: (trial_values(cell) or [math.nan])[0])
    duration = pd.to_numeric(batches["duration_s"], errors="coerce")
    timed = first.notna() & duration.gt(0)
    if not timed.any():
        return math.nan
    return float(first[timed].sum() / duration[timed].sum())


def measured_load_s(rows: pd.DataFrame) -> float:
    """The time a job's engine takes to start, from the runs behind ``rows``
    (``engine_load_s``); NaN where no row records it.

    Where rows name their machine session, the median over those sessions of each one's first
    start (the run that wrote its earliest row): a session's later starts of the same engine
    find its compilation caches warm and take less than its first, while a plan is for a job
    on a machine of its own. Otherwise the median over the runs, each run's value once whatever
    its number of rows.
    """
    if "engine_load_s" not in rows:
        return math.nan
    timed = rows.dropna(subset=["engine_load_s"])
    if timed.empty:
        return math.nan
    if {"machine_session", "timestamp"} <= set(timed):
        named = timed.dropna(subset=["machine_session", "timestamp"])
        if not named.empty:
            when = pd.to_datetime(named["timestamp"], utc=True, format="ISO8601")
            first = named.assign(when=when).sort_values("when")
            first = first.groupby("machine_session")["engine_load_s"].first()
            return float(np.median(first.astype(float)))
    return float(np.median(timed["engine_load_s"].astype(float).unique()))


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
    # One attempt that runs out of memory, measured (NaN: not known, counted as nothing).
    out_of_memory_s: float = math.nan
    # A point's first warm-up over one repetition, measured (NaN: not known, counted as 1).
    first_warmup_ratio: float = math.nan
    # The one input length of fitted rows without a prefill window, whose fit cannot tell
    # prefill from decoding (0: the rows can).
    inseparable_input: int = 0
    # Prefill's term in b * i^2 (attention over the input), 0 where the rows cannot show it.
    prefill_quadratic: float = 0.0
    # The most prompt and generated tokens of one batch among the fitted rows (0: not known):
    # a point past either is timed by extrapolation.
    reach: tuple[int, int] = (0, 0)
    # The prepared lengths that a job's request streams draw from (None: not given), which
    # time a stream with no measured time per request as the batches its requests make.
    stream_lengths: TraceLengths | None = dataclasses.field(default=None, compare=False)
    # Whether the engine pads a static batch to its longest prompt and output (transformers)
    # or serves each request at its own lengths (vLLM: :meth:`static_batch_s`).
    padded_batches: bool = dataclasses.field(default=True, compare=False)
    # What a stream timed by its requests' lengths is multiplied by: the median of what the
    # engine's measured streams took over such a time (:func:`lengths_ratios`; 1: not scaled).
    lengths_scale: float = 1.0

    @classmethod
    def fit(cls, rows: pd.DataFrame, *, weighted: bool = True) -> TimeModel:
        """One least-squares fit of the six coefficients to every feasible row's full
        duration (prefill plus ``output_tokens - 1`` decoding steps) and, where a row has one,
        its prefill duration; rows measured without a prefill window count through their full
        duration alone. Each duration is weighted by its inverse (``weighted=False``: all
        alike), as the variance of a sum of steps grows with their number: an unweighted fit
        lets the long batches set the small ones' step time (on the H100 rows it timed
        Llama-3.1-8B's batch-1 task streams on vLLM at 0.33 and 0.66 of what they took, and at
        0.52 and 0.84 weighted; benchmarks/data/h100_2026-12-05_time_model_weighting.md). A
        batch is its sequences (beams included). No coefficient is negative (no term makes a
        batch faster: :func:`nonnegative_lstsq`), and prefill's quadratic term is fitted only
        where the rows hold three or more input lengths."""
        attempt_s = measured_out_of_memory_s(rows)
        first_warmup = measured_first_warmup_ratio(rows)
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
        # Weights 1 / duration: rows and target scaled by their square root.
        scale = 1 / np.sqrt(np.maximum(target, 1e-6)) if weighted else np.ones_like(target)
        coef[kept] = nonnegative_lstsq(design[:, kept] * scale[:, None], target * scale)
        return cls(
            prefill=(coef[0], coef[1]),
            step=tuple(coef[3:]),
            points=len(rows),
            load_s=measured_load_s(rows),
            out_of_memory_s=attempt_s,
            first_warmup_ratio=first_warmup,
            inseparable_input=inputs.pop() if len(inputs) == 1 and not has_prefill.any() else 0,
            prefill_quadratic=float(coef[2]),
            reach=(int((b * i).max()), int((b * o).max())),
        )

    def caveat(self, plan: JobPlan, points: Sequence[PointSpec] | None = None) -> str:
        """What the basis says of the plan's points beyond the fit: prefill, where the rows
        are all of one input length without a prefill window and the plan has other input
        lengths, so that the rows cannot time it well; a point's first warm-up, where the rows
        took it 5 % or more longer or shorter than a repetition; and the points past the most
        prompt or generated tokens of one batch among the rows, timed by extrapolation (the
        time per batch of a decode-heavy shape at a large batch can be well above the line
        through smaller ones), among ``points``, the ones the job spends time on (default: all
        of the plan's)."""
        said = ""
        inputs = {p.input_tokens for p in plan.points}
        if self.inseparable_input and not inputs <= {self.inseparable_input}:
            said += (
                f"; its rows, all {self.inseparable_input} tokens in and without prefill "
                "windows, cannot tell prefill from decoding, so other input lengths' prefill "
                "may be under- or overestimated"
            )
        ratio = self.first_warmup_ratio
        if not math.isnan(ratio) and abs(ratio - 1) >= 0.05:
            said += f"; a point's first warm-up {ratio:.2f} times a repetition, as its rows took"
        beyond = self.beyond(plan.points if points is None else points)
        if beyond:
            prompt, generated = self.reach
            said += (
                f"; {beyond} of its points go past the most tokens of one batch its rows hold "
                f"({prompt:,} prompt, {generated:,} generated), timed by extrapolation"
            )
        return said

    def beyond(self, points: Sequence[PointSpec]) -> int:
        """How many of these batch points go past the fitted rows' reach (:meth:`past`)."""
        return sum(
            self.past(p.batch_size * max(p.decoding.num_beams, 1), p.input_tokens, p.output_tokens)
            for p in points
            if p.stream is None and p.served is None
        )

    def past(self, sequences: int, input_tokens: int, output_tokens: int) -> bool:
        """Whether a batch of this shape holds more prompt or generated tokens than any fitted
        row's (never where the reach is not known)."""
        if self.reach == (0, 0):
            return False
        prompt, generated = self.reach
        return sequences * input_tokens > prompt or sequences * output_tokens > generated

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

    def static_batch_s(self, requests: Sequence[tuple[int, int]]) -> float:
        """One static batch of ``requests`` (input, output tokens each). Padded
        (``padded_batches``), as transformers serves it: one batch of the longest prompt and the
        longest output. Else, as vLLM serves it, each request at its own lengths while the
        longest runs (:meth:`_own_lengths_s`; requests of one length time as :meth:`full_s`).
        On the H200 rows the padded batches timed vLLM's task streams at batch 128 at 2 to 4
        times what they took, the requests' own lengths within 15 %
        (benchmarks/data/time_model_task_streams_2026-12-05.md)."""
        if self.padded_batches:
            return self.full_s(
                len(requests), max(i for i, _ in requests), max(o for _, o in requests)
            )
        return self._own_lengths_s(requests, max(o for _, o in requests) - 1, admissions=1)

    def continuous_s(self, requests: Sequence[tuple[int, int]], concurrency: int) -> float:
        """``requests`` (input, output tokens each, in the order they are sent) served by
        continuous batching with at most ``concurrency`` in flight, each at its own lengths,
        a finished one's place taken by the next at once: the decoding steps run until the
        last request ends (each request on the place that frees first), the prefill constant
        once per ``concurrency`` requests admitted. On the H200 rows of Fig 9 vLLM's online
        streams took 0.92 to 1.09 of this time, and 0.69 to 0.83 of padded static batches'
        (benchmarks/data/time_model_task_streams_2026-12-05.md)."""
        places = [0] * min(concurrency, len(requests))
        for _, o in requests:
            heapq.heapreplace(places, places[0] + o - 1)
        admissions = math.ceil(len(requests) / concurrency)
        return self._own_lengths_s(requests, max(places), admissions)

    def _own_lengths_s(
        self, requests: Sequence[tuple[int, int]], steps: int, admissions: int
    ) -> float:
        """Requests at their own lengths: prefill over their prompts' tokens, its constant
        term ``admissions`` times; ``steps`` decoding steps of the batch's constant term, with
        the terms of a sequence's size and cached tokens counted for each request while it runs
        (its ``output - 1`` steps)."""
        c0, c1, c2 = self.step
        prefill = (
            self.prefill[0] * admissions
            + self.prefill[1] * sum(i for i, _ in requests)
            + self.prefill_quadratic * sum(i * i for i, _ in requests)
        )
        decoding = c0 * steps + sum((o - 1) * (c1 + c2 * (i + o / 2)) for i, o in requests)
        return max(prefill, 1e-3) + max(decoding, 1e-4 * steps)


# A stream's measured seconds per request, by (trace, serving, input cap, output cap), then
# by batch size.
StreamTimes = dict[tuple[str, str, int, int], dict[int, float]]


def stream_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The feasible rows of request streams with a duration, served offline or online: binned
    replays, whose bins are served apart, left out; none where the rows have no stream
    columns."""
    if not {"serving", "trace", "requests"} <= set(rows):
        return rows.iloc[:0]
    rows = rows[rows["feasible"].astype(bool) & rows["duration_s"].notna()]
    rows = rows[rows["serving"].isin(["offline", "online"]) & (rows["requests"] > 0)]
    if "stream_bins" in rows:
        rows = rows[rows["stream_bins"].fillna("").astype(str).isin(["", "{}"])]
    return rows


def stream_request_seconds(rows: pd.DataFrame) -> StreamTimes:
    """Each request stream's measured time per request (a repetition's duration over its
    requests, the median over rows), by the stream (trace, static or continuous batching, and
    its length caps) and its batch size, over :func:`stream_rows`."""
    rows = stream_rows(rows)
    if rows.empty:
        return {}
    per_request = rows["duration_s"].astype(float) / rows["requests"].astype(float)
    keys = ["trace", "serving", "input_tokens", "output_tokens", "batch_size"]
    medians = per_request.groupby([rows[k] for k in keys]).median()
    times: StreamTimes = {}
    for (trace, serving, cap_in, cap_out, batch), seconds in medians.items():
        stream = (str(trace), str(serving), int(cap_in), int(cap_out))
        times.setdefault(stream, {})[int(batch)] = float(seconds)
    return times


def measured_stream_s(times: StreamTimes, point: PointSpec, *, smaller: bool = True) -> float:
    """One repetition of ``point``'s stream at its measured time per request: at the same batch
    size, else (unless ``smaller`` is off) at the nearest smaller one measured (an upper bound
    where larger batches serve a request faster); NaN where neither was measured."""
    stream = point.stream
    if stream is None or stream.binned:
        return math.nan
    key = (stream.trace, stream.serving, point.input_tokens, point.output_tokens)
    seconds, batch = stream_seconds_per_request(times, key, point.batch_size)
    if not smaller and batch != point.batch_size:
        return math.nan
    return seconds * stream.requests


def batched_stream_s(model: TimeModel | MeasuredShapes, point: PointSpec, seed: int) -> float:
    """One repetition of ``point``'s stream by the requests' own lengths (the job's draw from
    the prepared lengths, :class:`~llm_energy.inputs.prompts.TraceLengths`, with the protocol's
    ``seed``): served online by an engine that pads no batch, by continuous batching
    (:meth:`TimeModel.continuous_s`); otherwise as its static batches, each as the engine
    serves it (:meth:`TimeModel.static_batch_s`: padded to its longest prompt and output by
    transformers, each request at its own lengths by vLLM). NaN where the model holds no
    lengths or the stream's are not prepared."""
    if not isinstance(model, TimeModel) or model.stream_lengths is None or point.stream is None:
        return math.nan
    try:
        drawn = model.stream_lengths.lengths(point, seed)
    except InputError:
        return math.nan
    if point.stream.serving == "online" and not point.stream.binned and not model.padded_batches:
        return model.continuous_s(drawn, point.batch_size) * model.lengths_scale
    batches = static_batches(drawn, point)
    return sum(model.static_batch_s([drawn[k] for k in b]) for b in batches) * model.lengths_scale


def stream_point(row: object) -> PointSpec:
    """The request-stream point that a row of :func:`stream_rows` measured: its trace, requests,
    batching and length caps; a task's requests at their own input lengths, a trace's where the
    row's point id holds the label of such a stream."""
    stream = StreamSpec(str(row.trace), int(row.requests), str(row.serving), vary_input=True)
    if row.trace not in TASK_STREAMS and stream.label not in str(getattr(row, "point_id", "")):
        stream = dataclasses.replace(stream, vary_input=False)
    return PointSpec(
        int(row.batch_size), int(row.input_tokens), int(row.output_tokens), stream=stream
    )


def lengths_ratios(model: TimeModel, rows: pd.DataFrame, seed: int) -> list[float]:
    """Each request stream of ``rows`` (:func:`stream_rows`) measured over its time by its
    requests' own lengths (:func:`batched_stream_s`, unscaled, the requests drawn with
    ``seed``); streams whose lengths ``model`` does not hold are left out."""
    unscaled = dataclasses.replace(model, lengths_scale=1.0)
    ratios = []
    for row in stream_rows(rows).itertuples(index=False):
        predicted = batched_stream_s(unscaled, stream_point(row), seed)
        if predicted > 0:
            ratios.append(float(row.duration_s) / predicted)
    return ratios


def stream_seconds_per_request(
    times: StreamTimes, stream: tuple[str, str, int, int], batch_size: int
) -> tuple[float, int | None]:
    """A stream's measured time per request at ``batch_size``, else at the nearest smaller
    batch measured, and the batch it was measured at; (NaN, None) where neither was."""
    batches = times.get(stream) or {}
    below = [b for b in batches if b <= batch_size]
    if not below:
        return math.nan, None
    return batches[max(below)], max(below)


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
    out_of_memory_s: float = math.nan
    first_warmup_ratio: float = math.nan

    @classmethod
    def of(cls, rows: pd.DataFrame) -> MeasuredShapes:
        attempt_s = measured_out_of_memory_s(rows)
        first_warmup = measured_first_warmup_ratio(rows)
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
            out_of_memory_s=attempt_s,
            first_warmup_ratio=first_warmup,
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
