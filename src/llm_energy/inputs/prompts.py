"""Prompt sources. Cost of fixed-length generation depends on lengths, not on content, so the
controlled sweeps can use seeded random token ids, or real PG-19 text as the study did
(:class:`PG19Prompts`); request streams take their lengths from a trace or from a classical
task's examples (:class:`TraceLengths`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from llm_energy.errors import InputError
from llm_energy.measure.job import PointSpec, stable_hash
from llm_energy.measure.store import read_table


def random_prompts(
    vocab_size: int, batch_size: int, input_tokens: int, seed: int, reserved: int = 16
) -> list[list[int]]:
    """``batch_size`` prompts of ``input_tokens`` ids drawn from [reserved, vocab_size).

    The lowest ids are left out because tokenizers put special tokens there.
    """
    low = min(reserved, max(vocab_size - 1, 0))
    rng = np.random.default_rng(seed)
    ids = rng.integers(low, vocab_size, size=(batch_size, input_tokens), dtype=np.int64)
    return ids.tolist()


# Streams named after a classical task draw from its examples' lengths, not from a trace.
TASK_STREAMS = ("classification", "translation", "summarization", "generation")


class TraceLengths:
    """Request lengths drawn from prepared traces (``{folder}/{trace}.parquet``, written by the
    prepare_trace rule) or, for a stream named after a classical task, from the task's
    examples (``{tasks_folder}/{task}.parquet``, written by the task_lengths rule)."""

    def __init__(self, folder: Path, tasks_folder: Path | None = None) -> None:
        self.folder = Path(folder)
        self.tasks_folder = Path(tasks_folder) if tasks_folder is not None else None
        self._tables: dict[str, pd.DataFrame] = {}

    def _path(self, trace: str) -> tuple[Path, str]:
        if trace in TASK_STREAMS:
            if self.tasks_folder is None:
                raise InputError(f"stream '{trace}' is a classical task; no task folder given")
            return self.tasks_folder / f"{trace}.parquet", "task_lengths"
        return self.folder / f"{trace}.parquet", "prepare_trace"

    def table(self, trace: str) -> pd.DataFrame:
        if trace not in self._tables:
            path, rule = self._path(trace)
            if not path.is_file():
                raise InputError(
                    f"{path}: prepared lengths not found (snakemake builds them with the "
                    f"{rule} rule)"
                )
            try:
                table = read_table(path, columns=["input_tokens", "output_tokens"])
            except InputError as exc:
                raise InputError(
                    f"{exc}; delete it and build it again with the {rule} rule"
                ) from exc
            self._tables[trace] = servable(table)
        return self._tables[trace]

    def arrivals(self, trace: str) -> np.ndarray:
        """The trace's arrival times (seconds since its first request), every request's."""
        path, _ = self._path(trace)
        table = pd.read_parquet(path) if path.is_file() else None
        if table is None or "arrival_s" not in table.columns:
            self.table(trace)  # names the rule when the file is missing
            raise InputError(
                f"{path}: no arrival times (trace '{trace}' logs none, or the file was prepared "
                "before they were kept: delete it and run again); use arrival poisson"
            )
        return np.sort(table["arrival_s"].to_numpy(dtype=float))

    def lengths(self, point: PointSpec, seed: int) -> list[tuple[int, int]]:
        """(input, output) lengths of the point's requests, clipped to its input and output
        caps. The draw depends on the trace, the count and the caps, not on the batch size or
        the serving mode, so that offline and online serve the same requests."""
        return self.draw(point, seed)[0]

    def draw(self, point: PointSpec, seed: int) -> tuple[list[tuple[int, int]], int]:
        """:meth:`lengths`, and how many of the requests the caps shortened."""
        if point.stream is None:
            raise ValueError("not a request-stream point")
        return draw_lengths(self.table(point.stream.trace), point, seed)


def servable(trace: pd.DataFrame) -> pd.DataFrame:
    """A trace's (input, output) lengths without the requests that generated nothing."""
    df = trace[["input_tokens", "output_tokens"]]
    return df[df["output_tokens"] > 0].reset_index(drop=True)


def draw_lengths(
    df: pd.DataFrame, point: PointSpec, seed: int
) -> tuple[list[tuple[int, int]], int]:
    """The seeded sample of a stream point's (input, output) lengths from a servable trace,
    and how many of the requests the point's caps shortened."""
    stream = point.stream
    if stream is None:
        raise ValueError("not a request-stream point")
    if stream.binned:  # only requests that the bins hold, as the binned estimate counts
        df = df[
            (df["input_tokens"] <= max(stream.input_bins))
            & (df["output_tokens"] <= max(stream.output_bins))
        ]
    if df.empty:
        raise InputError(f"trace '{stream.trace}' has no request within the point's limits")
    draw = stable_hash(
        [
            seed,
            stream.trace,
            stream.requests,
            stream.vary_input,
            point.input_tokens,
            point.output_tokens,
        ],
        8,
    )
    rng = np.random.default_rng(int(draw, 16))
    rows = rng.choice(len(df), size=stream.requests, replace=len(df) < stream.requests)
    raw_out = df["output_tokens"].to_numpy()[rows]
    out = np.clip(raw_out, 1, point.output_tokens)
    clipped = raw_out > point.output_tokens
    if stream.vary_input:
        raw_in = df["input_tokens"].to_numpy()[rows]
        inp = np.clip(raw_in, 1, point.input_tokens)
        clipped |= raw_in > point.input_tokens
    else:
        inp = np.full(stream.requests, point.input_tokens)
    pairs = [(int(i), int(o)) for i, o in zip(inp, out, strict=True)]
    return pairs, int(clipped.sum())


class PG19Prompts:
    """Batches of PG-19 text cut to an input length, from the token ids of the prepared books
    (``token_id`` column, written by the prepare_pg19 rule).

    Row r of a batch starts ``r * stride`` tokens into the stream, with the windows spread over
    the whole stream (overlapping where it is shorter than ``batch_size * input_tokens``), so
    that no two rows share a prefix; row 0 is the study's prompt, the first ``input_tokens``
    tokens. Ids at or above the model's vocabulary size (a model with a smaller vocabulary than
    the Llama 3 tokenizer's) are taken modulo it, and :meth:`prompts` says so.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._ids: np.ndarray | None = None

    def ids(self) -> np.ndarray:
        if self._ids is None:
            if not self.path.is_file():
                raise InputError(
                    f"{self.path}: prepared PG-19 tokens not found (snakemake builds them with "
                    "the prepare_pg19 rule)"
                )
            self._ids = pd.read_parquet(self.path, columns=["token_id"])["token_id"].to_numpy()
        return self._ids

    def prompts(
        self, batch_size: int, input_tokens: int, vocab_size: int
    ) -> tuple[list[list[int]], int]:
        """``batch_size`` prompts of ``input_tokens`` ids, and the vocabulary size the ids were
        reduced modulo (0 when they are the tokenizer's own ids)."""
        ids = self.ids()
        spare = len(ids) - input_tokens
        if spare < batch_size - 1:
            raise InputError(
                f"{self.path}: {len(ids)} PG-19 tokens cannot give {batch_size} distinct prompts "
                f"of {input_tokens} tokens; prepare more text"
            )
        stride = input_tokens if batch_size == 1 else min(input_tokens, spare // (batch_size - 1))
        rows = np.stack([ids[r * stride : r * stride + input_tokens] for r in range(batch_size)])
        modulo = vocab_size if int(ids.max(initial=0)) >= vocab_size else 0
        if modulo:
            rows = rows % modulo
        return rows.astype(np.int64).tolist(), modulo


def static_batches(lengths: list[tuple[int, int]], point: PointSpec) -> list[list[int]]:
    """Request indices of each static batch of ``point``'s stream, in the order the job serves
    them: the requests in ``point.batch_size`` at a time, a binned stream's bins apart."""
    stream = point.stream
    if stream is None:
        raise ValueError("not a request-stream point")
    groups = (
        bin_groups(lengths, stream.input_bins, stream.output_bins).values()
        if stream.binned
        else [list(range(len(lengths)))]
    )
    size = point.batch_size
    return [g[k : k + size] for g in groups for k in range(0, len(g), size)]


def bin_groups(
    lengths: list[tuple[int, int]], input_bins: tuple[int, ...], output_bins: tuple[int, ...]
) -> dict[tuple[int, int], list[int]]:
    """Request indices by (input bin, output bin): the smallest bin at or above each length."""
    ib, ob = sorted(input_bins), sorted(output_bins)
    groups: dict[tuple[int, int], list[int]] = {}
    for k, (i, o) in enumerate(lengths):
        key = (next(b for b in ib if b >= i), next(b for b in ob if b >= o))
        groups.setdefault(key, []).append(k)
    return dict(sorted(groups.items()))
