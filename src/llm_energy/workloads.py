"""Prompt sources. Cost of fixed-length generation depends on lengths, not on content, so the
controlled sweeps can use seeded random token ids; request streams take their lengths from a
trace."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from llm_energy.errors import InputError
from llm_energy.spec import PointSpec, stable_hash


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


class TraceLengths:
    """Request lengths drawn from prepared traces (``{folder}/{trace}.parquet``, written by the
    prepare_trace rule) for request-stream points."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._tables: dict[str, pd.DataFrame] = {}

    def table(self, trace: str) -> pd.DataFrame:
        if trace not in self._tables:
            path = self.folder / f"{trace}.parquet"
            if not path.is_file():
                raise InputError(
                    f"{path}: prepared trace not found (snakemake builds it with the "
                    f"prepare_trace rule: results/data/traces/{trace}.parquet)"
                )
            df = pd.read_parquet(path, columns=["input_tokens", "output_tokens"])
            self._tables[trace] = df[df["output_tokens"] > 0].reset_index(drop=True)
        return self._tables[trace]

    def lengths(self, point: PointSpec, seed: int) -> list[tuple[int, int]]:
        """(input, output) lengths of the point's requests, clipped to its input and output
        caps. The draw depends on the trace, the count and the caps, not on the batch size or
        the serving mode, so that offline and online serve the same requests."""
        stream = point.stream
        if stream is None:
            raise ValueError("not a request-stream point")
        df = self.table(stream.trace)
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
        out = np.clip(df["output_tokens"].to_numpy()[rows], 1, point.output_tokens)
        if stream.vary_input:
            inp = np.clip(df["input_tokens"].to_numpy()[rows], 1, point.input_tokens)
        else:
            inp = np.full(stream.requests, point.input_tokens)
        return [(int(i), int(o)) for i, o in zip(inp, out, strict=True)]


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
