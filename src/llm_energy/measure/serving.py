"""A served stream: requests replayed against a running server at their arrival times, with
latency per request and energy over the run's steady state.

One trial replays the stream's requests (the seeded draw of every stream point, so the offline
point of the same trace, count and caps serves the same lengths) at times from the trace's own
arrivals or a seeded Poisson process, scaled to the point's request rate. The client records,
per request, when it was sent, when its first and last tokens came back and how many tokens it
got (:class:`RequestRecord`); the meter is read every ``SAMPLE_INTERVAL_S`` meanwhile, so that
the energy of any part of the run is known afterwards (:class:`EnergyTimeline`).

**The steady state** (:func:`steady_state`). The number of requests in flight is a step
function of time. Its time-weighted median over the arrival phase (first to last request
sent) is the load the run holds; the window opens the first time that many requests are in
flight and closes when the last request is sent, after which the load only drains. Energy per
request and per output token are the window's energy over the work done inside it: each
request's output tokens are spread evenly from its first token to its last, a request counts
by the share of its tokens generated inside the window, and tokens by their number there.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from llm_energy.errors import BackendError, ConfigError, InputError
from llm_energy.measure import health
from llm_energy.measure.job import PointSpec, ServedSpec, stable_hash
from llm_energy.measure.trials import MEAN_COLUMNS, SERVED_MEAN_COLUMNS

if TYPE_CHECKING:
    from llm_energy.backends.base import Backend
    from llm_energy.inputs.prompts import TraceLengths
    from llm_energy.measure.job import JobPlan
    from llm_energy.meters.base import EnergyMeter

# How often the meter is read during a replay: NVML's counter updates about ten times a second.
SAMPLE_INTERVAL_S = 0.1
# A trial with a larger share of failed requests is not used (the job's server_options can
# change it).
MAX_FAILED_FRACTION = 0.01
# Latency percentiles, as vLLM's own benchmark computes them (numpy's linear interpolation).
PERCENTILES = {"p50": 50.0, "p99": 99.0}


@dataclass
class RequestRecord:
    """One request of a replay. Times are seconds on the replay's clock (``time.perf_counter``);
    NaN where the event did not happen."""

    index: int
    scheduled_s: float
    expected_tokens: int
    sent_s: float = math.nan
    first_token_s: float = math.nan
    last_token_s: float = math.nan
    done_s: float = math.nan  # when the response ended, a failed one too
    output_tokens: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def ttft_s(self) -> float:
        return self.first_token_s - self.sent_s

    @property
    def tpot_s(self) -> float:
        """Time per output token after the first (NaN for a one-token request)."""
        if self.output_tokens < 2:
            return math.nan
        return (self.last_token_s - self.first_token_s) / (self.output_tokens - 1)

    @property
    def e2e_s(self) -> float:
        return self.last_token_s - self.sent_s

    @property
    def end_s(self) -> float:
        """When the request stopped being in flight."""
        for t in (self.done_s, self.last_token_s):
            if not math.isnan(t):
                return t
        return self.sent_s


# --- arrivals ----------------------------------------------------------------------------------


def arrival_times(
    served: ServedSpec, requests: int, seed: int, trace_arrivals_s: np.ndarray | None = None
) -> np.ndarray:
    """Send times (seconds from the first request, which is at 0) of ``requests`` requests at a
    mean rate of ``served.request_rate`` per second.

    ``poisson``: exponential gaps, seeded by the seed, rate and count. ``trace``: the gaps
    between ``requests`` consecutive requests of the trace (``trace_arrivals_s``, its arrival
    times), from a seeded position, scaled so that they arrive at the rate on average: the
    trace's bursts and lulls at the rate asked for."""
    rate = served.request_rate
    if rate <= 0:
        raise ConfigError(f"request rate must be positive, not {rate:g}")
    if requests < 1:
        raise ConfigError("a served stream needs at least one request")
    if requests == 1:
        return np.zeros(1)
    draw = int(stable_hash([seed, served.arrival, rate, requests], 8), 16)
    rng = np.random.default_rng(draw)
    if served.arrival == "poisson":
        gaps = rng.exponential(1.0 / rate, size=requests - 1)
    elif served.arrival == "trace":
        if trace_arrivals_s is None:
            raise InputError("trace arrivals asked for, and the trace has no arrival times")
        times = np.sort(np.asarray(trace_arrivals_s, dtype=float))
        if len(times) < requests:
            raise InputError(
                f"the trace holds {len(times)} arrivals, fewer than the {requests} requests asked"
            )
        start = int(rng.integers(0, len(times) - requests + 1))
        gaps = np.diff(times[start : start + requests])
        if gaps.sum() <= 0:
            raise InputError(
                f"the trace's {requests} arrivals from request {start} all share one time"
            )
        gaps = gaps / gaps.mean() / rate
    else:
        raise ConfigError(f"unknown arrival '{served.arrival}' (known: trace, poisson)")
    return np.concatenate([[0.0], np.cumsum(gaps)])


# --- latency -----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of the values that are not NaN, by linear interpolation;
    NaN when none is."""
    data = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    return float(np.percentile(data, q)) if data.size else math.nan


def latency_columns(records: Sequence[RequestRecord]) -> dict[str, float]:
    """p50 and p99 of time to first token, time per output token and end-to-end latency over
    the replay's successful requests (as ``vllm bench serve`` reports them)."""
    ok = [r for r in records if r.ok]
    columns = {}
    for name, values in (
        ("ttft", [r.ttft_s for r in ok]),
        ("tpot", [r.tpot_s for r in ok]),
        ("e2e", [r.e2e_s for r in ok]),
    ):
        for label, q in PERCENTILES.items():
            columns[f"{name}_{label}_s"] = percentile(values, q)
    return columns


# --- the steady state --------------------------------------------------------------------------


@dataclass(frozen=True)
class SteadyState:
    """The window a run's energy is measured over, on the replay's clock."""

    open_s: float
    close_s: float
    run_start_s: float
    run_end_s: float
    in_flight: float  # the load it holds: the time-weighted median of requests in flight

    @property
    def duration_s(self) -> float:
        return max(self.close_s - self.open_s, 0.0)

    @property
    def run_s(self) -> float:
        return self.run_end_s - self.run_start_s

    @property
    def fraction(self) -> float:
        return self.duration_s / self.run_s if self.run_s > 0 else math.nan


def in_flight_steps(records: Sequence[RequestRecord]) -> tuple[np.ndarray, np.ndarray]:
    """(times, requests in flight from each time to the next) of the requests that were sent."""
    events = []
    for r in records:
        if math.isnan(r.sent_s):
            continue
        events += [(r.sent_s, 1), (max(r.end_s, r.sent_s), -1)]
    if not events:
        return np.zeros(0), np.zeros(0)
    # At equal times a request that ends leaves before one that starts arrives.
    events.sort(key=lambda e: (e[0], e[1]))
    times = np.array([t for t, _ in events])
    counts = np.cumsum([d for _, d in events])
    return times, counts


def steady_state(records: Sequence[RequestRecord]) -> SteadyState:
    """The window from the first time the run holds its load (the time-weighted median of the
    requests in flight over the arrival phase, at least one) to the last request sent."""
    sent = [r.sent_s for r in records if not math.isnan(r.sent_s)]
    if not sent:
        return SteadyState(math.nan, math.nan, math.nan, math.nan, math.nan)
    first, last = min(sent), max(sent)
    end = max(max(r.end_s for r in records if not math.isnan(r.sent_s)), last)
    times, counts = in_flight_steps(records)
    # Each step's length within the arrival phase [first, last].
    starts = np.clip(times, first, last)
    ends = np.clip(np.append(times[1:], times[-1]), first, last)
    lengths = ends - starts
    if lengths.sum() > 0:
        order = np.argsort(counts, kind="stable")
        cumulative = np.cumsum(lengths[order])
        median = float(counts[order][np.searchsorted(cumulative, cumulative[-1] / 2)])
    else:
        median = 1.0
    target = max(median, 1.0)
    reached = times[counts >= target]
    opens = float(reached[0]) if reached.size else last
    return SteadyState(min(opens, last), last, first, end, target)


def window_shares(records: Sequence[RequestRecord], window: SteadyState) -> tuple[float, int]:
    """(requests, output tokens) generated inside the window: each successful request's tokens
    spread evenly from its first token to its last, a request counted by its share of them."""
    requests, tokens = 0.0, 0
    for r in records:
        if not r.ok or r.output_tokens < 1:
            continue
        k = r.output_tokens
        if k == 1:
            inside = int(window.open_s <= r.first_token_s <= window.close_s)
        else:
            step = (r.last_token_s - r.first_token_s) / (k - 1)
            times = r.first_token_s + step * np.arange(k)
            inside = int(((times >= window.open_s) & (times <= window.close_s)).sum())
        requests += inside / k
        tokens += inside
    return requests, tokens


# --- energy over time --------------------------------------------------------------------------


@dataclass
class EnergyTimeline:
    """The meter's cumulative energy at sampled times (seconds on the replay's clock, joules
    since the first sample)."""

    times_s: list[float] = field(default_factory=list)
    energy_j: list[float] = field(default_factory=list)

    def add(self, t: float, lap_j: float) -> None:
        """A sample at ``t``: ``lap_j`` since the previous one (the first sample is zero)."""
        self.times_s.append(t)
        self.energy_j.append(self.energy_j[-1] + lap_j if self.energy_j else 0.0)

    def energy_between(self, t0: float, t1: float) -> float:
        """Energy from ``t0`` to ``t1``, the cumulative counter interpolated linearly between
        samples (NaN when the meter reads no energy or the timeline does not cover them)."""
        if len(self.times_s) < 2 or any(math.isnan(v) for v in self.energy_j):
            return math.nan
        if t0 < self.times_s[0] - 1e-9 or t1 > self.times_s[-1] + 1e-9:
            return math.nan
        e = np.interp([t0, t1], self.times_s, self.energy_j)
        return float(e[1] - e[0])


class MeterSampler:
    """Reads ``meter`` every ``interval_s`` on a thread of its own, from ``start`` to
    ``stop``: the replay runs meanwhile, and the window is chosen after it."""

    def __init__(self, meter: EnergyMeter, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.meter = meter
        self.interval_s = interval_s
        self.timeline = EnergyTimeline()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="meter-sampler", daemon=True)
        self._error: BaseException | None = None

    def start(self) -> None:
        self.meter.start()
        self.timeline.add(time.perf_counter(), 0.0)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval_s):
                self._sample()
        except BaseException as exc:  # raised again by stop(), in the job's thread
            self._error = exc

    def _sample(self) -> None:
        lap = self.meter.lap()
        self.timeline.add(time.perf_counter(), lap.energy_j)

    def stop(self) -> EnergyTimeline:
        self._stop.set()
        self._thread.join()
        if self._error is not None:
            raise self._error
        self._sample()
        return self.timeline


# --- one trial ---------------------------------------------------------------------------------


def served_columns(
    records: Sequence[RequestRecord],
    timeline: EnergyTimeline,
    idle_power_w: float,
    max_failed_fraction: float = MAX_FAILED_FRACTION,
) -> dict[str, Any]:
    """A served trial's row: latency, the steady state and the energy over it, failures."""
    window = steady_state(records)
    energy = timeline.energy_between(window.open_s, window.close_s)
    requests, tokens = window_shares(records, window)
    failed = [r for r in records if not r.ok]
    nan = math.nan
    row: dict[str, Any] = {
        "feasible": True,
        "error": "",
        "repetitions": 1,
        "prefill_repetitions": 0,
        "duration_s": window.duration_s,
        "duration_std_s": nan,
        "energy_j": energy,
        "energy_std_j": nan,
        "prefill_duration_s": nan,
        "prefill_energy_j": nan,
        "decode_duration_s": nan,
        "decode_energy_j": nan,
        "energy_per_request_j": energy / requests if requests else nan,
        "energy_per_output_token_j": energy / tokens if tokens else nan,
        "generated_tokens": sum(r.output_tokens for r in records if r.ok),
        "output_tokens_per_s": tokens / window.duration_s if window.duration_s else nan,
        "mean_power_w": energy / window.duration_s if window.duration_s else nan,
        "idle_power_w": idle_power_w,
        "energy_above_idle_j": energy - idle_power_w * window.duration_s,
        **latency_columns(records),
        "steady_state_s": window.duration_s,
        "steady_state_fraction": window.fraction,
        "steady_state_in_flight": window.in_flight,
        "steady_state_requests": requests,
        "steady_state_tokens": tokens,
        "run_s": window.run_s,
        "requests_failed": len(failed),
        "request_error": _errors(failed),
    }
    share = len(failed) / len(records) if records else 1.0
    if share > max_failed_fraction:
        # Not used: its energy and latency would describe a server that failed its load.
        blank = (*MEAN_COLUMNS, *SERVED_MEAN_COLUMNS, "generated_tokens")
        row.update({k: nan for k in blank if k in row and k != "run_s"})
        row.update(
            repetitions=0,
            error=(
                f"{len(failed)} of {len(records)} requests failed ({100 * share:.1f} %, more "
                f"than {100 * max_failed_fraction:g} %): {failed[0].error}"
            ),
        )
    elif window.duration_s <= 0:
        row["error"] = "no steady state: the requests arrived all at once"
    return row


def _errors(failed: Sequence[RequestRecord]) -> str:
    """The failed requests' errors, each kind once with its count (JSON; empty without)."""
    if not failed:
        return ""
    kinds: dict[str, int] = {}
    for r in failed:
        kinds[r.error] = kinds.get(r.error, 0) + 1
    return json.dumps(kinds)


def measure_served_point(
    backend: Backend,
    plan: JobPlan,
    point: PointSpec,
    meter: EnergyMeter,
    idle_power_w: float,
    streams: TraceLengths | None,
    prompt_seed: int,
) -> dict[str, Any]:
    """One trial of a served point: warm-up, then the replay with the meter sampled. Prompt
    i is seeded ``prompt_seed + i``, as a request stream's are."""
    from llm_energy.inputs.prompts import random_prompts

    if point.stream is None or point.served is None:
        raise ValueError("not a served point")
    if streams is None:
        raise ValueError("a served point needs the prepared traces")
    proto = plan.protocol_of(point)
    lengths, clipped = streams.draw(point, proto.seed)
    vocab = backend.vocab_size
    prompts = [random_prompts(vocab, 1, n, prompt_seed + i)[0] for i, (n, _) in enumerate(lengths)]
    outputs = [o for _, o in lengths]
    arrivals = streams.arrivals(point.stream.trace) if point.served.arrival == "trace" else None
    send_s = arrival_times(point.served, len(lengths), proto.seed, arrivals)
    # Warm-up: the first batch of the stream at once, as the server's largest batch runs it.
    # A server that fails a handful of requests at once is broken, not loaded.
    k = min(point.batch_size, len(prompts))
    for _ in range(proto.warmup_repetitions):
        warm = backend.replay(backend.prepare(prompts[:k]), outputs[:k], [0.0] * k)
        failed = [r for r in warm if not r.ok]
        if failed:
            raise BackendError(f"warm-up: {len(failed)} of {k} requests failed: {failed[0].error}")
    prepared = backend.prepare(prompts)
    # The devices are watched over the whole replay, as over any window (throttling, clocks,
    # temperature, errors).
    watch = meter.watch()
    try:
        sampler = MeterSampler(meter)
        sampler.start()
        try:
            records = backend.replay(prepared, outputs, list(send_s))
        finally:
            timeline = sampler.stop()
    finally:
        seen = watch.stop()
    options = plan.server_options
    row = served_columns(
        records,
        timeline,
        idle_power_w,
        float(options.get("max_failed_fraction", MAX_FAILED_FRACTION)),
    )
    row.update(health.window_columns(seen))
    row["clipped_requests"] = clipped
    row["prompt_id_modulo"] = 0
    return row
