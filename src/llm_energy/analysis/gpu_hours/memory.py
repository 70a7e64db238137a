"""Which batches fit the GPU, from an engine's measured rows, and the points a job spends time
on (see :mod:`llm_energy.analysis.gpu_hours`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from llm_energy.analysis.gpu_hours.time_models import (
    TimeModel,
    nonnegative_lstsq,
    sequences_per_batch,
)
from llm_energy.errors import InputError
from llm_energy.inputs.prompts import TraceLengths, static_batches
from llm_energy.measure.bounds import search_shapes, shape_key
from llm_energy.measure.job import JobPlan, PointSpec

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
    counts as fitting. A request stream fits where ``stream_tokens`` gives the tokens of its
    largest batch (:func:`padded_stream_tokens`: padded, as transformers serves it) and that
    batch is below the limit; otherwise, and always on vLLM, whose scheduler admits what its
    cache holds, and for a server, it counts as fitting."""

    kv_cache_tokens: float = math.inf
    kv_block_tokens: int = VLLM_BLOCK_TOKENS
    base_gib: float = 0.0
    gib_per_token: float = 0.0
    limit_gib: float = math.inf
    stream_tokens: Callable[[PointSpec], int | None] | None = dataclasses.field(
        default=None, compare=False
    )

    def fits(self, point: PointSpec) -> bool:
        if point.served is not None:
            return True
        if point.stream is not None:
            tokens = None if self.stream_tokens is None else self.stream_tokens(point)
            return tokens is None or self.base_gib + self.gib_per_token * tokens < self.limit_gib
        sequences = point.batch_size * max(point.decoding.num_beams, 1)
        per_sequence = point.input_tokens + point.output_tokens
        blocks = math.ceil(per_sequence / self.kv_block_tokens)
        if sequences * blocks * self.kv_block_tokens > self.kv_cache_tokens:
            return False
        return self.base_gib + self.gib_per_token * sequences * per_sequence < self.limit_gib

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


def padded_stream_tokens(
    lengths: TraceLengths, seed_of: Callable[[PointSpec], int]
) -> Callable[[PointSpec], int | None]:
    """For a request-stream point, the tokens of its largest static batch padded to the
    batch's longest prompt and output, as transformers serves it, over the requests the job
    draws from the prepared ``lengths`` with its protocol's seed (``seed_of``; None where they
    are not prepared). On the H100, the line through PyTorch's peaks put summarization at batch 128
    (283,136 padded tokens) at 62.0 GiB against the 58.7 the card's rows ran out of memory at,
    and it did (benchmarks/data/h100_2026-12-06_estimate_memory.txt)."""
    known: dict[tuple, int | None] = {}

    def tokens(point: PointSpec) -> int | None:
        if point.key not in known:
            try:
                drawn = lengths.lengths(point, seed_of(point))
            except InputError:
                known[point.key] = None
            else:
                known[point.key] = max(
                    len(b) * (max(drawn[k][0] for k in b) + max(drawn[k][1] for k in b))
                    for b in static_batches(drawn, point)
                )
        return known[point.key]

    return tokens


def engine_memory_model(
    own: pd.DataFrame,
    limits: Mapping[str, float],
    model: object = None,
    plan: JobPlan | None = None,
) -> MemoryModel | None:
    """The memory model of an engine's own rows (None without any), bounded where they never
    ran out of memory by what their GPU held (``limits``, :func:`memory_limits`). Where
    ``model`` is a time model that holds the streams' prepared lengths and pads batches, the
    padded batches of ``plan``'s streams are weighed too (:func:`padded_stream_tokens`)."""
    if own.empty:
        return None
    fits = MemoryModel.of(own, limits.get(str(own["gpu_name"].iloc[0]), math.inf))
    if (
        plan is not None
        and isinstance(model, TimeModel)
        and model.stream_lengths is not None
        and model.padded_batches
    ):
        tokens = padded_stream_tokens(model.stream_lengths, lambda p: plan.protocol_of(p).seed)
        fits = dataclasses.replace(fits, stream_tokens=tokens)
    return fits


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
    """The points a job measures: those that fit (``fits``; the attempts that run out of
    memory are :func:`out_of_memory_attempts`), and of a shape
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


def out_of_memory_attempts(plan: JobPlan, fits: MemoryModel | None) -> list[PointSpec]:
    """The points a job runs that ``fits`` says run out of memory: of a shape searched largest
    first, every batch above the largest that fits (each is tried before the next one down);
    of another shape, its smallest batch that does not fit, the larger ones recorded as not
    attempted. None where nothing says what fits."""
    if fits is None:
        return []
    searched = search_shapes(plan.points, plan.largest_feasible_only)
    smallest: dict[tuple, PointSpec] = {}
    attempts = []
    for p in plan.points:
        if fits.fits(p):
            continue
        k = shape_key(p)
        if k in searched:
            attempts.append(p)
        elif k not in smallest or p.batch_size < smallest[k].batch_size:
            smallest[k] = p
    return attempts + list(smallest.values())
