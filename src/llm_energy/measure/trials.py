"""Independent trials of one point, and the confidence interval they give.

A trial is one full measurement of a point: warm-up at its shape, then its windows (see
:mod:`llm_energy.measure.protocol`). The repetitions inside one window run back to back, so
their spread hides what changes between moments of a job (a busy host, a neighbour, drift);
trials of one point are spread over the job instead: every point once, then again in a seeded
shuffled order, and so on (:class:`TrialSchedule`; with ``points_in_flight``, over that many
points at a time). A point gets at least ``min_trials`` and, while the 95 % confidence
interval of its energy per batch (of its time, when the meter reads no energy) is wider than
``target_ci95_rel`` of the mean, more, up to ``max_trials``.

The point's row is the mean over its trials, with the half-width of the 95 % interval
(Student's t over trials) and every trial's value, so that anything can be recomputed; its GPU
health is what any trial saw, with every trial's word (:mod:`llm_energy.measure.health`).

A served stream's trial (:mod:`llm_energy.measure.serving`) is one replay whose window is its
steady state, of a length of its own: it is judged by its energy per request, the window is
met when the steady state lasts ``min_duration_s``, and its latency percentiles are means over
trials too.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

import numpy as np

from llm_energy.errors import ConfigError
from llm_energy.measure import health
from llm_energy.measure.job import ProtocolSpec

# The --trials-at-most of every job a workflow starts, set once in the environment of snakemake
# (llm-energy measure reads it, and so do the estimate and the measure rule's time limit).
TRIALS_AT_MOST_ENV = "LLM_ENERGY_TRIALS_AT_MOST"


def checked_trials_at_most(given: int | None) -> int | None:
    """``--trials-at-most`` as given (none: no cap), refused below 1."""
    if given is not None and given < 1:
        raise ConfigError(f"--trials-at-most {given}: expected 1 or more")
    return given


def trials_at_most(given: int | None = None, environ: Mapping[str, str] = os.environ) -> int | None:
    """``--trials-at-most`` (:func:`checked_trials_at_most`), else the environment's
    :data:`TRIALS_AT_MOST_ENV`, else none: no point gets more trials than that in a run."""
    if given is not None:
        return checked_trials_at_most(given)
    value = environ.get(TRIALS_AT_MOST_ENV, "").strip()
    if not value:
        return None
    try:
        at_most = int(value)
    except ValueError:
        at_most = 0
    if at_most < 1:
        raise ConfigError(f"{TRIALS_AT_MOST_ENV}={value}: expected a whole number, 1 or more")
    return at_most


# How the error of a trial that a device error ended begins (the runner's
# _after_device_error): such a trial is measured again and stands for no point.
FAILED = "failed: "


def failed_on_device(trial: dict[str, Any]) -> bool:
    """A trial that a device error ended."""
    return str(trial.get("error") or "").startswith(FAILED)


# Student's t, 97.5th percentile, by degrees of freedom (two-sided 95 %).
T975 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    12: 2.179,
    15: 2.131,
    20: 2.086,
    30: 2.042,
}


def t975(df: int) -> float:
    """Student's t quantile for a two-sided 95 % interval (the next smaller tabled degrees of
    freedom, which errs wide; 1.96 past 30)."""
    if df < 1:
        return math.nan
    if df > 30:
        return 1.96
    return T975[max(k for k in T975 if k <= df)]


def trial_values(cell: object) -> list[float]:
    """A row's per-trial column (``trial_energy_j`` and its like, a JSON list) as numbers;
    empty for a row without one or one that cannot be read."""
    if not isinstance(cell, str) or not cell.startswith("["):
        return []
    try:
        return [float(v) for v in json.loads(cell)]
    except (TypeError, ValueError):
        return []


def ci95_half_width(values: Sequence[float]) -> float:
    """Half-width of the 95 % confidence interval of the mean of ``values`` (NaN for fewer
    than two values or any NaN)."""
    if len(values) < 2 or any(math.isnan(v) for v in values):
        return math.nan
    return t975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


def ratio_half_width(ratio: float, rel_a: float, rel_b: float) -> float:
    """The 95 % half-width of ``b / a`` from the relative half-widths of ``a`` and ``b``, to
    first order (independent trials)."""
    return abs(ratio) * math.hypot(rel_a, rel_b)


# Per-trial columns that the point's row gives as the mean over trials.
MEAN_COLUMNS = (
    "duration_s",
    "duration_std_s",
    "energy_j",
    "energy_std_j",
    "prefill_duration_s",
    "prefill_energy_j",
    "decode_duration_s",
    "decode_energy_j",
    "energy_per_output_token_j",
    "energy_per_request_j",
    "output_tokens_per_s",
    "mean_power_w",
    "energy_above_idle_j",
    "peak_memory_gib",
    "host_cpu_others_cores",
)


# Per-trial columns of served streams, averaged over trials as MEAN_COLUMNS are.
SERVED_MEAN_COLUMNS = (
    "ttft_p50_s",
    "ttft_p99_s",
    "tpot_p50_s",
    "tpot_p99_s",
    "e2e_p50_s",
    "e2e_p99_s",
    "steady_state_s",
    "steady_state_fraction",
    "steady_state_in_flight",
    "steady_state_requests",
    "steady_state_tokens",
    "run_s",
)
# The prefill window's quantities, measured in every trial that measures prefill, and the
# decode ones derived from them (full minus prefill): intervals over trials, and the prefill
# window's value of every trial (decode's is the full window's less it).
PHASE_INTERVALS = ("prefill_energy_j", "decode_energy_j", "prefill_duration_s", "decode_duration_s")
PHASE_TRIALS = ("prefill_energy_j", "prefill_duration_s")
# Served streams' rows give these intervals too: their windows differ in length between trials,
# so energy per request, not per window, is what their trials are judged by.
SERVED_INTERVALS = ("energy_per_request_j", "energy_per_output_token_j")


def served(row: dict[str, Any]) -> bool:
    """Whether the row is a served stream's (a replay with a steady-state window)."""
    return row.get("serving") == "served"


def _quantity(row: dict[str, Any]) -> str:
    """What a point's trials are judged by: energy (per request for a served stream), or time
    when the meter read none."""
    energy = row.get("energy_j")
    if energy is None or math.isnan(float(energy)):
        return "duration_s"
    return "energy_per_request_j" if served(row) else "energy_j"


def interval_wider_than_target(row: dict[str, Any], protocol: ProtocolSpec) -> bool:
    """Whether a point's row has an interval, of what its trials are judged by
    (:func:`_quantity`), wider than ``protocol``'s ``target_ci95_rel`` of its mean; a row with
    no interval or a zero mean has none."""
    quantity = _quantity(row)
    mean, ci = row.get(quantity), row.get(f"{quantity}_ci95")
    if not mean or ci is None or math.isnan(float(mean)) or math.isnan(float(ci)):
        return False
    return float(ci) / abs(float(mean)) > protocol.target_ci95_rel


def window_met(row: dict[str, Any], protocol: ProtocolSpec) -> bool:
    """Whether one trial's window meets the study's protocol: at least ``min_duration_s`` long
    and ``min_repetitions`` repetitions (a family's own lighter windows do not); a served
    stream's steady state at least ``min_duration_s`` long."""
    if served(row):
        return float(row.get("steady_state_s") or 0.0) >= protocol.min_duration_s
    reps = int(row.get("repetitions") or 0)
    duration = float(row.get("duration_s") or 0.0) * reps
    return reps >= protocol.min_repetitions and duration >= protocol.min_duration_s


def _copied(trial: dict[str, Any]) -> bool:
    return bool(str(trial.get("seeded_from") or ""))


def seeded(trials: Sequence[dict[str, Any]]) -> bool:
    """Whether the point's journal holds a row copied from a table measured elsewhere
    (``seeded_from``): that row is the point's, whole, and no trial is added to it."""
    return any(map(_copied, trials))


def sessions_other_than(trials: Sequence[dict[str, Any]], session: str) -> list[str]:
    """The machine sessions other than ``session`` that measured some of these trials (rows
    written before ``machine_session`` existed count as another's)."""
    return sorted({str(t.get("machine_session") or "unknown") for t in trials} - {session})


def _listed(value: Any) -> float | None:
    """A trial's number for a JSON list: rounded, or null where there is none (no warm-up, a
    trial written before warm-ups were timed, one that did not time its feed-forward
    blocks)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), 6)


def needs_trial(
    trials: Sequence[dict[str, Any]], protocol: ProtocolSpec, session: str | None = None
) -> bool:
    """Whether a point with these trials so far needs another: fewer than ``min_trials``, or
    an interval wider than the target and fewer than ``max_trials``. A point that was not
    measured (out of memory, not attempted, not needed), or whose row was copied from a table
    measured elsewhere, needs none. Measuring in machine ``session``, a point whose
    ``min_trials`` or more trials another session measured needs none either: a row's trials
    come from one machine session, and two machines of one type differ by more than the
    trials within one see. (Fewer trials of another session are the runner's to set aside.)"""
    if not trials:
        return True
    if seeded(trials):
        return False
    if not all(bool(t.get("feasible")) and int(t.get("repetitions") or 0) > 0 for t in trials):
        return False
    if len(trials) < protocol.min_trials:
        return True
    if session is not None and sessions_other_than(trials, session):
        return False
    if len(trials) >= protocol.max_trials:
        return False
    quantity = _quantity(trials[0])
    values = [float(t[quantity]) for t in trials]
    mean = statistics.fmean(values)
    return not mean or ci95_half_width(values) / abs(mean) > protocol.target_ci95_rel


def least_trials_left(
    trials: Sequence[dict[str, Any]], protocol: ProtocolSpec, session: str | None = None
) -> int:
    """The fewest trials a point with these trials so far still takes: none where it needs
    none (:func:`needs_trial`), else what it lacks of ``min_trials``, and at least one."""
    if not needs_trial(trials, protocol, session):
        return 0
    return max(protocol.min_trials - len(trials), 1)


Point = TypeVar("Point", bound=Hashable)


class TrialSchedule(Generic[Point]):
    """The order of one run's trials, pass after pass (:meth:`passes`).

    A set of points is in flight, at most ``points_in_flight`` of them (None: every point).
    Before each pass, the points that no longer need a trial leave it (``due`` says which
    do, read again then) and the next due points of the planned order enter, as many as
    there is room for. A pass is one trial of each point in flight: first the points that
    entered for this pass, in the planned order, then those in flight since an earlier pass
    in a seeded shuffled order (``np.random.default_rng([seed, pass number])``). Every point
    that has no trial yet enters before its first trial, so first trials follow the planned
    order over the whole run: a searched shape tries its largest batch first, and a batch that
    runs out of memory bounds the larger ones of its shape before they are tried.

    With every point in flight, pass 1 is every due point in the planned order and pass ``k``
    the points still due in the order of ``[seed, k]``: rounds over the whole job. With ``N``,
    a run cut at any moment leaves at most ``N`` points with some but not all of their trials
    (a run on another machine measures those again, :func:`needs_trial`), and a point's
    trials are spread over the passes of its ``N`` points, not over the whole job.

    A point has at most ``most_trials`` trials in one run (None: as many as ``due`` asks).
    """

    def __init__(
        self,
        planned: Sequence[Point],
        due: Callable[[Point], bool],
        seed: int,
        points_in_flight: int | None = None,
        most_trials: int | None = None,
    ) -> None:
        self.planned = list(planned)
        self.due = due
        self.seed = seed
        if points_in_flight is not None and points_in_flight < 1:
            raise ValueError(f"points_in_flight must be at least 1, not {points_in_flight}")
        self.room = len(self.planned) if points_in_flight is None else int(points_in_flight)
        self.most_trials = most_trials
        # Due points not yet in flight, in the planned order; their trials change only once
        # they are, so they stay due until then.
        self.waiting: deque[Point] = deque(p for p in self.planned if due(p))
        self.in_flight: list[Point] = []  # in the planned order
        self.trials_here: Counter[Point] = Counter()
        self.number = 0  # of the current pass

    def _still_due(self, point: Point) -> bool:
        if self.most_trials is not None and self.trials_here[point] >= self.most_trials:
            return False
        return self.due(point)

    def passes(self) -> Iterator[list[Point]]:
        """Each pass's points in the order their trials are measured. A pass is worked out
        when the previous one has been measured: call for the next only then."""
        while True:
            staying = [p for p in self.in_flight if self._still_due(p)]
            entering: list[Point] = []
            while len(staying) + len(entering) < self.room and self.waiting:
                entering.append(self.waiting.popleft())
            # Entering points come later in the planned order than any earlier one.
            self.in_flight = staying + entering
            if not self.in_flight:
                return
            self.number += 1
            if staying:
                shuffled = np.random.default_rng([self.seed, self.number])
                staying = [staying[i] for i in shuffled.permutation(len(staying))]
            order = entering + staying
            yield order
            self.trials_here.update(order)

    def counts(self) -> tuple[int, int, int]:
        """Points done (no trial left to them in this run), in flight (a trial still due) and
        waiting to enter, out of every planned point."""
        in_flight = sum(map(self._still_due, self.in_flight))
        waiting = len(self.waiting)
        return len(self.planned) - in_flight - waiting, in_flight, waiting

    def still_due(self) -> list[Point]:
        """The points in flight that a trial is still due to, and those waiting."""
        return [p for p in self.in_flight if self._still_due(p)] + list(self.waiting)


def engine_starts(trials: Sequence[dict[str, Any]]) -> int | None:
    """How many runs of the job, each its own engine start, measured ``trials``; None where
    none says (trials written before they named their run)."""
    runs = {str(t["run_started"]) for t in trials if t.get("run_started")}
    return len(runs) or None


def _ffn_time_shares(measured: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``ffn_time_share`` as the mean over the trials that timed the feed-forward blocks, its
    95 % half-width over them (``ffn_time_share_ci95``, NaN for one), and every trial's
    (``trial_ffn_time_share``, null for a trial without); nothing where none did."""
    shares = [_listed(t.get("ffn_time_share")) for t in measured]
    timed = [s for s in shares if s is not None]
    if not timed:
        return {}
    return {
        "ffn_time_share": statistics.fmean(timed),
        "ffn_time_share_ci95": ci95_half_width(timed),
        "trial_ffn_time_share": json.dumps(shares),
    }


def combine(trials: Sequence[dict[str, Any]], protocol: ProtocolSpec) -> dict[str, Any]:
    """The point's row from its trials' rows (in the order they were measured); a row copied
    from a table measured elsewhere as that table has it."""
    if seeded(trials):
        return dict(next(filter(_copied, trials)))
    measured = [t for t in trials if bool(t.get("feasible")) and int(t.get("repetitions") or 0)]
    # A measured point's row describes its last measured trial; a trial that failed after it
    # (a device error) is said in the note.
    last = dict(measured[-1] if measured else trials[-1])
    row = dict(last)
    # The last trial's alone; trial_warmed_up and trial_warmup_s have every trial's. A
    # trial's wall time (trial_s) is the journal's, for a later run's deadline.
    row.pop("warmed_up", None)
    row.pop("warmup_s", None)
    row.pop("trial_s", None)
    row.pop("run_started", None)
    row["trials"] = len(measured)
    row["engine_starts"] = engine_starts(measured)
    if served(last):
        # Failed requests of every trial, those of trials not used too: never dropped silently.
        failed = [int(t.get("requests_failed") or 0) for t in trials]
        row["requests_failed"] = sum(failed)
        row["trial_requests_failed"] = json.dumps(failed)
    if not measured:
        error = str(last.get("error", ""))
        row.update(
            energy_j_ci95=math.nan,
            duration_s_ci95=math.nan,
            trial_energy_j="[]",
            trial_duration_s="[]",
            trial_warmed_up="[]",
            trial_warmup_s="[]",
            **{f"{col}_ci95": math.nan for col in PHASE_INTERVALS},
            **{f"trial_{col}": "[]" for col in PHASE_TRIALS},
            trial_gpu_health="[]",
            protocol_met=False,
            # Points passed over already say so ("not measured: …", "not attempted: …").
            protocol_note=error if error.startswith("not ") else "not measured: " + error,
        )
        return row
    is_served = served(last)
    for col in (*MEAN_COLUMNS, *(SERVED_MEAN_COLUMNS if is_served else ())):
        values = [float(t[col]) for t in measured if t.get(col) is not None]
        row[col] = statistics.fmean(values) if values else math.nan
    row["repetitions"] = min(int(t["repetitions"]) for t in measured)
    energies = [float(t["energy_j"]) for t in measured]
    durations = [float(t["duration_s"]) for t in measured]
    row["energy_j_ci95"] = ci95_half_width(energies)
    row["duration_s_ci95"] = ci95_half_width(durations)
    if is_served:
        for col in SERVED_INTERVALS:
            row[f"{col}_ci95"] = ci95_half_width([float(t[col]) for t in measured])

    row["trial_energy_j"] = json.dumps([round(v, 6) for v in energies])
    row["trial_duration_s"] = json.dumps([round(v, 6) for v in durations])
    # Trials written before warm-ups could be skipped all had one.
    row["trial_warmed_up"] = json.dumps([bool(t.get("warmed_up", True)) for t in measured])
    row["trial_warmup_s"] = json.dumps([_listed(t.get("warmup_s")) for t in measured])
    for col in PHASE_INTERVALS:
        values = [math.nan if t.get(col) is None else float(t[col]) for t in measured]
        row[f"{col}_ci95"] = ci95_half_width(values)  # NaN unless every trial measured it
        if col in PHASE_TRIALS:
            kept = not any(math.isnan(v) for v in values)
            row[f"trial_{col}"] = json.dumps([round(v, 6) for v in values] if kept else [])
    row.update(_ffn_time_shares(measured))
    row["contended"] = any(bool(t.get("contended")) for t in measured)
    row.update(health.point_columns(measured))
    notes = [
        f"trial {i + 1} {t['error']}"
        for i, t in enumerate(trials)
        if str(t.get("error") or "").startswith("failed: ")
    ]
    if len(measured) < protocol.min_trials:
        notes.append(f"{len(measured)} of {protocol.min_trials} trials")
    short = [i + 1 for i, t in enumerate(measured) if not window_met(t, protocol)]
    if short:
        notes.append(
            f"trial {', '.join(map(str, short))}: window under {protocol.min_duration_s:g} s "
            f"or {protocol.min_repetitions} repetitions"
        )
    quantity = _quantity(measured[0])
    ci = row[f"{quantity}_ci95"]
    if len(measured) > 1 and interval_wider_than_target(row, protocol):
        notes.append(
            f"{quantity} interval ±{100 * ci / abs(row[quantity]):.1f} % after "
            f"{len(measured)} trials (target ±{100 * protocol.target_ci95_rel:g} %)"
        )
    # The interval target is a goal, not a condition: a wide interval is reported as it is.
    row["protocol_met"] = len(measured) >= protocol.min_trials and not short
    row["protocol_note"] = "; ".join(notes)
    return row
