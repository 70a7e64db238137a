"""Where a shape's batches stop fitting: the shape of a point, the shapes searched largest
first, and the largest feasible batch bisected between one that runs and one out of memory."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from llm_energy.inputs.prompts import random_prompts
from llm_energy.measure import heartbeat, stop
from llm_energy.measure.job import JobPlan, PointSpec, stable_hash

if TYPE_CHECKING:
    from llm_energy.backends import Backend

Log = Callable[[str], None]


def shape_key(point: PointSpec) -> tuple[Any, ...]:
    """Everything but the batch size: points that differ only in batch size share a shape."""
    stream = point.stream.label if point.stream else ""
    if point.served is not None:
        stream += f" {point.served.label}"
    return (point.decoding.name, stream, point.input_tokens, point.output_tokens)


def search_shapes(points: Sequence[PointSpec], searched: Sequence[str]) -> set[tuple[Any, ...]]:
    """Shapes at which every point serves only ``searched`` experiments (none without any)."""
    if not searched:
        return set()
    shapes = {shape_key(p) for p in points}
    for p in points:
        if not set(p.experiments) <= set(searched):
            shapes.discard(shape_key(p))
    return shapes


def known_bounds(trials: dict, points: Sequence[PointSpec]) -> tuple[dict, dict]:
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


# Probes between a shape's last feasible batch and its first out-of-memory one: each halves the
# gap (three narrow 512..1,024 to 64).
BOUND_SEARCH_STEPS = 3


def searchable(point: PointSpec) -> bool:
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
    proto = plan.protocol_of(point)
    for _ in range(steps):
        if infeasible - feasible <= 1:
            break
        batch = (feasible + infeasible) // 2
        heartbeat.phase(f"probing batch {batch}")
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


def bound_below_out_of_memory(
    point: PointSpec,
    row: dict,
    points: Sequence[PointSpec],
    trials: dict,
    oom_bound: dict,
    session: str,
) -> PointSpec | None:
    """In a search largest first, the out-of-memory point whose bound is still to find once
    ``point`` (just measured, ``row``) fits: the smallest batch of its shape out of memory
    (``oom_bound``, as :func:`known_bounds` and each trial keep it), in this machine session,
    more than one above ``point``'s, whose row gives no largest feasible batch yet (an engine
    that knows it gave it already, a rerun finds it in the journal). The job then bisects
    between the two as an ascending ladder's search does, so the bin's largest feasible batch
    is found rather than read off the ladder. None where nothing is left to find."""
    k = shape_key(point)
    if not (searchable(point) and row["feasible"] and row["repetitions"]) or k not in oom_bound:
        return None
    if oom_bound[k] - point.batch_size <= 1:
        return None
    nearest = next(p for p in points if shape_key(p) == k and p.batch_size == oom_bound[k])
    first = trials[nearest.key][0]
    known = first.get("largest_feasible_batch")
    if known is not None and not pd.isna(known):
        return None
    return nearest if first.get("machine_session", session) == session else None
