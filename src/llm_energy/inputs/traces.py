"""Request-length traces (BurstGPT, Azure LLM inference) for the offline workload energy model.

The real source of each trace is its public URL. A mirror folder laid out like ``shared/data``
(``traces/azure_2023/...``, ``traces/burstgpt/...``) is read first when configured, so that
machines without network access run the same code. A trace loads into one frame of
``input_tokens`` / ``output_tokens``; :func:`length_stats` gives the study's Tables 1 and 2,
:func:`bin_requests` maps every request to the smallest (input, output) bin at or above it
(section 4); ``figures.traces`` compares the real and binned length distributions (Fig 7).
:mod:`~llm_energy.analysis.summaries` reduces a prepared trace to what those use, so that the
tables and
figures can be rebuilt without the trace itself.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from llm_energy.errors import ConfigError, InputError


@dataclass(frozen=True)
class TraceSource:
    """Where one trace comes from and which of its columns hold the lengths."""

    name: str
    url: str
    mirror_path: str  # relative to a mirror folder laid out like shared/data
    input_column: str
    output_column: str
    model_column: str | None = None
    log_type_column: str | None = None
    zero_output_is_failure: bool = False  # BurstGPT logs failed requests with 0 response tokens
    # When each request arrived: a date and time (Azure), or seconds (BurstGPT).
    timestamp_column: str | None = None
    timestamp_is_seconds: bool = False


_AZURE_URL = "https://raw.githubusercontent.com/Azure/AzurePublicDataset/master/data/"


def _azure(name: str, file: str) -> TraceSource:
    url, rel = _AZURE_URL + file, "traces/azure_2023/" + file
    return TraceSource(
        name, url, rel, "ContextTokens", "GeneratedTokens", timestamp_column="TIMESTAMP"
    )


TRACES: dict[str, TraceSource] = {
    "burstgpt": TraceSource(
        "burstgpt",
        "https://github.com/HPMLL/BurstGPT/releases/download/v1.1/BurstGPT_1.csv",
        "traces/burstgpt/BurstGPT_1.csv",
        "Request tokens",
        "Response tokens",
        model_column="Model",
        log_type_column="Log Type",
        zero_output_is_failure=True,
        timestamp_column="Timestamp",
        timestamp_is_seconds=True,
    ),
    "azure_conversation": _azure("azure_conversation", "AzureLLMInferenceTrace_conv.csv"),
    "azure_code": _azure("azure_code", "AzureLLMInferenceTrace_code.csv"),
}

# Section 4 of the paper: the printed input bins, and those its formula 2^m (4 <= m <= 13) gives.
PRINTED_INPUT_BINS = (32, 128, 256, 512, 1024, 2048, 4096, 8192)
FORMULA_INPUT_BINS = tuple(2**m for m in range(4, 14))
OUTPUT_BINS = (8, 16, 32, 64, 128, 256, 512)


def paper_bins(variant: Literal["printed", "formula"] = "printed") -> tuple[tuple[int, ...], ...]:
    """(input bins, output bins) of the paper: as printed, or from its 2^m formula."""
    if variant not in ("printed", "formula"):
        raise ConfigError(f"unknown bin variant '{variant}'; use 'printed' or 'formula'")
    return (PRINTED_INPUT_BINS if variant == "printed" else FORMULA_INPUT_BINS), OUTPUT_BINS


def _source(name: str) -> TraceSource:
    if name not in TRACES:
        raise ConfigError(f"unknown trace '{name}'; known: {', '.join(sorted(TRACES))}")
    return TRACES[name]


def trace_path(name: str, mirror: str | Path | None, cache_dir: Path) -> Path:
    """The mirror's copy of the trace when it has one, else a (cached) download into cache_dir."""
    src = _source(name)
    if mirror and (Path(mirror) / src.mirror_path).is_file():
        return Path(mirror) / src.mirror_path
    dest = Path(cache_dir) / src.mirror_path
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(src.url, timeout=120) as resp:
            shutil.copyfileobj(resp, out)
        os.replace(tmp, dest)
    except Exception as exc:
        raise InputError(
            f"trace '{name}': could not download {src.url} ({exc}); "
            f"set mirror.data to a folder holding {src.mirror_path}"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _lengths(raw: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """The column as int64; the first bad value raises with its line in the file."""
    values = raw[column].str.strip()
    ok = values.str.fullmatch(r"[+-]?\d+(?:\.0*)?")
    if not ok.all():
        row = ok.idxmin()  # first False
        what = "missing length" if values[row] == "" else f"non-integer length {values[row]!r}"
        raise InputError(f"{path}: line {row + 2}: column '{column}': {what}")
    lengths = pd.to_numeric(values).astype("int64")
    if (lengths < 0).any():
        row = int(np.argmax(lengths.to_numpy() < 0))
        line = lengths.index[row] + 2
        raise InputError(
            f"{path}: line {line}: column '{column}': negative length {lengths.iloc[row]}"
        )
    return lengths


def _arrivals(raw: pd.DataFrame, src: TraceSource, path: Path) -> tuple[pd.Series | None, str]:
    """Seconds from the trace's first request to each, or None and why not. Only served
    streams need them, so a trace without good times still gives its lengths."""
    column = src.timestamp_column
    if column is None or column not in raw.columns:
        return None, f"{path}: no arrival times (no column {column!r})" if column else ""
    values = raw[column].str.strip()
    if src.timestamp_is_seconds:
        times = pd.to_numeric(values, errors="coerce")
    else:
        parsed = pd.to_datetime(values, errors="coerce", format="mixed")
        times = (parsed - parsed.min()).dt.total_seconds()
    bad = times.isna()
    if bad.any():
        row = bad.idxmax()  # first True
        return None, f"{path}: line {row + 2}: column '{column}': bad time {values[row]!r}"
    return (times - times.min()).astype("float64"), ""


def load_trace(
    name: str,
    path: str | Path,
    *,
    models: list[str] | None = None,
    log_types: list[str] | None = None,
    failed: Literal["drop", "keep"] = "drop",
) -> pd.DataFrame:
    """The trace's requests as int64 columns ``input_tokens`` and ``output_tokens``, and, for
    traces that log when requests arrived, ``arrival_s``: seconds since the trace's first request.

    BurstGPT rows can be filtered by ``Model`` and ``Log Type``; its failed requests (0 response
    tokens) are dropped or kept, and ``df.attrs['failed_dropped']`` says how many were dropped.
    """
    src, path = _source(name), Path(path)
    if failed not in ("drop", "keep"):
        raise ConfigError(f"failed must be 'drop' or 'keep', not {failed!r}")
    try:
        # Every physical line is one row (blank ones too), so row i is line i + 2 of the file.
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except pd.errors.EmptyDataError as exc:
        raise InputError(f"{path}: empty file, expected a CSV header and rows") from exc
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: cannot read the trace ({str(exc).strip()})") from exc
    raw.columns = [str(c).strip() for c in raw.columns]
    raw = raw.fillna("")
    raw = raw[(raw != "").any(axis=1)]  # blank lines
    if raw.empty:
        raise InputError(f"{path}: no rows, only a header")
    filters: dict[str, list[str]] = {}
    for col, wanted in ((src.model_column, models), (src.log_type_column, log_types)):
        if wanted is not None and col is None:
            raise InputError(f"{path}: trace '{name}' has no model / log-type column to filter on")
        if wanted is not None and col is not None:
            filters[col] = wanted
    required = [src.input_column, src.output_column, *filters]
    missing = [c for c in required if c not in raw.columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(repr(c) for c in missing)}; "
            f"found {', '.join(repr(c) for c in raw.columns)}"
        )
    inp, out = _lengths(raw, src.input_column, path), _lengths(raw, src.output_column, path)
    df = pd.DataFrame({"input_tokens": inp, "output_tokens": out})
    arrivals, arrivals_note = _arrivals(raw, src, path)
    if arrivals is not None:
        df["arrival_s"] = arrivals
    keep = pd.Series(True, index=raw.index)
    for col, wanted in filters.items():
        keep &= raw[col].str.strip().isin(wanted)
    df = df[keep]
    failures = (df["output_tokens"] == 0) & src.zero_output_is_failure
    dropped = int(failures.sum()) if failed == "drop" else 0
    if dropped:
        df = df[~failures]
    if df.empty:
        raise InputError(
            f"{path}: no requests left after filtering (models={models}, "
            f"log_types={log_types}, failed={failed})"
        )
    df = df.reset_index(drop=True)
    df.attrs.update(
        arrivals_note=arrivals_note,
        trace=name,
        source=str(path),
        failed_dropped=dropped,
        failed_kept=int(failures.sum()) - dropped,
    )
    return df


def length_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Rows input / output; columns mean, std (ddof 1), median, p99 (linear), count."""
    rows = {}
    for label, col in (("input", "input_tokens"), ("output", "output_tokens")):
        s = df[col]
        rows[label] = {
            "mean": s.mean(),
            "std": s.std(),
            "median": s.median(),
            "p99": s.quantile(0.99),
            "count": int(s.count()),
        }
    return pd.DataFrame.from_dict(rows, orient="index").astype({"count": "int64"})


@dataclass
class BinCounts:
    """Requests per (input, output) bin, with those above the largest bins counted: all that
    the workload estimate, Table 2's drop counts and Fig 7's binned curves need of a trace."""

    input_bins: tuple[int, ...]
    output_bins: tuple[int, ...]
    counts: pd.DataFrame  # input_bin, output_bin, requests (non-empty bins only)
    total: int
    dropped_input: int
    dropped_output: int
    dropped_total: int

    @property
    def kept(self) -> int:
        """Requests within the largest bins."""
        return self.total - self.dropped_total


@dataclass
class BinnedTrace(BinCounts):
    """Bin counts of a trace, and each kept request's lengths rounded up to its bins."""

    binned: pd.DataFrame  # per kept request: input_tokens, output_tokens rounded up to their bins

    def bin_counts(self) -> BinCounts:
        """The counts alone, without the per-request lengths."""
        return BinCounts(
            **{f.name: getattr(self, f.name) for f in fields(BinCounts)},
        )


def _sorted_bins(bins: Sequence[int], what: str) -> np.ndarray:
    arr = np.unique(np.asarray(list(bins), dtype=np.int64))
    if arr.size == 0 or arr[0] <= 0:
        raise ConfigError(f"{what} bins must be a non-empty list of positive lengths: {bins}")
    return arr


def bin_edges(bins: Sequence[int], what: str) -> tuple[int, ...]:
    """The bins as :func:`bin_requests` uses them: sorted, without repeats."""
    return tuple(int(b) for b in _sorted_bins(bins, what))


def bin_requests(
    df: pd.DataFrame, input_bins: Sequence[int], output_bins: Sequence[int]
) -> BinnedTrace:
    """Each request goes to the smallest bin at or above its length; longer ones are dropped."""
    ib, ob = _sorted_bins(input_bins, "input"), _sorted_bins(output_bins, "output")
    i_idx = np.searchsorted(ib, df["input_tokens"].to_numpy(), side="left")
    o_idx = np.searchsorted(ob, df["output_tokens"].to_numpy(), side="left")
    over_i, over_o = i_idx == ib.size, o_idx == ob.size
    kept = ~(over_i | over_o)
    binned = pd.DataFrame({"input_tokens": ib[i_idx[kept]], "output_tokens": ob[o_idx[kept]]})
    counts = (
        binned.groupby(["input_tokens", "output_tokens"])
        .size()
        .rename("requests")
        .reset_index()
        .rename(columns={"input_tokens": "input_bin", "output_tokens": "output_bin"})
    )
    return BinnedTrace(
        input_bins=tuple(int(b) for b in ib),
        output_bins=tuple(int(b) for b in ob),
        counts=counts,
        binned=binned,
        total=len(df),
        dropped_input=int(over_i.sum()),
        dropped_output=int(over_o.sum()),
        dropped_total=int((~kept).sum()),
    )
