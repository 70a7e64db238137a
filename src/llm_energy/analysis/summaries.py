"""Small derived aggregates of the raw inputs: all that Tables 1 to 4 and Figs 1 and 7 use of them.

Those tables and figures read raw inputs: the request traces (Tables 1, 2, 4; Figs 1, 7), each
model's config.json (the FLOPs and memory of the ideal baselines) and the classical tasks' texts
with the Llama 3 tokenizer (Table 3). The pipeline's summary stage reduces each to the
aggregates they use and writes them under ``results/data/summaries/``:

* ``traces/TRACE.json``, a :class:`TraceSummary`: the length statistics of Tables 1 and 2, the
  bin counts under the configured bins and the study's two lists of bins (Table 2, Table 4,
  Fig 1), and the quantiles of the input and output lengths (Fig 7's real curves);
* ``models/MODEL.json``, an :class:`ArchitectureSummary`: the fields of
  :class:`~llm_energy.analysis.flops.Architecture` read from the model's config.json;
* ``tasks/table3_token_stats.csv``: Table 3 itself (:func:`task_table`), one row per task.

Each carries its provenance: the sha256 of the file it was computed from, the pipeline's git
commit and the time. ``resources/summaries/`` ships copies made that way; a build with
``shipped_measurements`` reads them instead of the raw inputs, so that it needs neither the data
mirror nor the network, and the ``check`` functions say in one message when a shipped summary
was made for another configuration.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from llm_energy import __version__
from llm_energy.analysis.flops import Architecture
from llm_energy.errors import InputError
from llm_energy.inputs.traces import BinCounts, bin_edges, bin_requests, length_stats, paper_bins
from llm_energy.measure.provenance import git_commit, utc_now
from llm_energy.measure.store import write_atomic

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Side = Literal["input", "output"]
SIDES: tuple[Side, ...] = ("input", "output")
# Lengths at the probabilities 0, 0.001, ..., 1: Fig 7's real curves are then the empirical
# CDFs to within a thousandth of the requests.
QUANTILES = 1001
QUANTILE_METHOD = "inverted_cdf"  # numpy's: the smallest length whose CDF reaches p
STATS = ("mean", "std", "median", "p99", "count")
TRACE_KIND = "trace_summary"
ARCHITECTURE_KIND = "architecture_summary"
# Where the shipped copies are, and what rebuilds them (said by every mismatch message).
SHIPPED_DIR = "resources/summaries"
REBUILD = (
    "rebuild the summaries from the raw inputs (shipped_measurements: false, mirror set) "
    f"and copy results/data/summaries/ into {SHIPPED_DIR}/ (see {SHIPPED_DIR}/README.md)"
)


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_provenance() -> dict[str, str]:
    """The code and the time that made a summary."""
    return {"git_commit": git_commit(), "package_version": __version__, "created_utc": utc_now()}


def _one_line(match: re.Match[str]) -> str:
    try:
        return json.dumps(json.loads(match.group()))
    except json.JSONDecodeError:  # brackets inside a string
        return match.group()


def write_json_atomic(data: dict[str, Any], path: Path | str) -> None:
    """Indented JSON whose innermost lists (bins, counts, quantiles) each take one line."""
    text = re.sub(r"\[[^\[\]{}]*\]", _one_line, json.dumps(data, indent=1)) + "\n"
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _read_json(path: Path | str, kind: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read the summary ({exc})") from exc
    if not isinstance(data, dict) or data.get("kind") != kind:
        raise InputError(f"{path}: not a {kind.replace('_', ' ')} (its 'kind' is not '{kind}')")
    return data


def _listed(bins: Sequence[int]) -> str:
    return " ".join(str(b) for b in bins)


# --------------------------------------------------------------------------- traces


@dataclass(frozen=True, eq=False)
class TraceSummary:
    """What the trace tables, Fig 7 and the workload estimate use of one prepared trace."""

    trace: str
    lengths: dict[str, dict[str, float]]  # side -> mean, std, median, p99, count (Tables 1, 2)
    binnings: tuple[BinCounts, ...]  # the configured bins and the study's two lists
    quantiles: dict[str, tuple[int, ...]]  # side -> lengths at probabilities k / (n - 1)
    failed_dropped: int  # BurstGPT's failed requests left out when the trace was prepared
    provenance: dict[str, str]

    @property
    def requests(self) -> int:
        return int(self.lengths["input"]["count"])

    def length_stats(self) -> pd.DataFrame:
        """Tables 1 and 2 of the trace, as :func:`~llm_energy.inputs.traces.length_stats` gives
        them."""
        table = pd.DataFrame.from_dict(self.lengths, orient="index").loc[list(SIDES), list(STATS)]
        return table.astype({"count": "int64"})

    def binning(self, input_bins: Sequence[int], output_bins: Sequence[int]) -> BinCounts:
        """The bin counts under these bins; an error naming the bins it holds otherwise."""
        wanted = (bin_edges(input_bins, "input"), bin_edges(output_bins, "output"))
        for counts in self.binnings:
            if (counts.input_bins, counts.output_bins) == wanted:
                return counts
        held = "; ".join(
            f"input {_listed(b.input_bins)} / output {_listed(b.output_bins)}"
            for b in self.binnings
        )
        raise InputError(
            f"the summary of trace '{self.trace}' holds bin counts for the bins {held}, not for "
            f"the configured input bins {_listed(wanted[0])} and output bins "
            f"{_listed(wanted[1])}; {REBUILD}"
        )

    def cdf(self, side: Side) -> tuple[np.ndarray, np.ndarray]:
        """(length, probability) at the quantile grid. Drawn as a step curve (``post``), it is
        the empirical CDF of the lengths to within 1 / (points - 1) everywhere."""
        values = np.asarray(self.quantiles[side], dtype=np.int64)
        return values, np.linspace(0.0, 1.0, values.size)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": TRACE_KIND,
            "trace": self.trace,
            "requests": self.requests,
            "failed_requests_dropped": self.failed_dropped,
            "lengths": self.lengths,
            "binnings": [_binning_dict(b) for b in self.binnings],
            "quantiles": {
                "method": f"numpy.quantile(method='{QUANTILE_METHOD}') at k / (n - 1), k = 0..n-1",
                **{f"{side}_tokens": list(self.quantiles[side]) for side in SIDES},
            },
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TraceSummary:
        quantiles = {
            side: tuple(int(v) for v in data["quantiles"][f"{side}_tokens"]) for side in SIDES
        }
        if any(len(q) < 2 for q in quantiles.values()):
            raise ValueError("fewer than two quantiles")
        return cls(
            trace=str(data["trace"]),
            lengths={
                side: {k: (int if k == "count" else float)(data["lengths"][side][k]) for k in STATS}
                for side in SIDES
            },
            binnings=tuple(_binning_from(b) for b in data["binnings"]),
            quantiles=quantiles,
            failed_dropped=int(data["failed_requests_dropped"]),
            provenance={str(k): str(v) for k, v in data["provenance"].items()},
        )


def _binning_dict(b: BinCounts) -> dict[str, Any]:
    return {
        "input_bins": list(b.input_bins),
        "output_bins": list(b.output_bins),
        "total": b.total,
        "dropped_input": b.dropped_input,
        "dropped_output": b.dropped_output,
        "dropped_total": b.dropped_total,
        "counts": [
            [int(r.input_bin), int(r.output_bin), int(r.requests)] for r in b.counts.itertuples()
        ],
        "counts_columns": ["input_bin", "output_bin", "requests"],
    }


def _binning_from(data: dict[str, Any]) -> BinCounts:
    counts = pd.DataFrame(
        [[int(v) for v in row] for row in data["counts"]],
        columns=["input_bin", "output_bin", "requests"],
        dtype="int64",
    )
    return BinCounts(
        input_bins=tuple(int(b) for b in data["input_bins"]),
        output_bins=tuple(int(b) for b in data["output_bins"]),
        counts=counts,
        total=int(data["total"]),
        dropped_input=int(data["dropped_input"]),
        dropped_output=int(data["dropped_output"]),
        dropped_total=int(data["dropped_total"]),
    )


def summarise_trace(
    name: str,
    df: pd.DataFrame,
    input_bins: Sequence[int],
    output_bins: Sequence[int],
    provenance: dict[str, str] | None = None,
) -> TraceSummary:
    """The summary of a prepared trace (``input_tokens``, ``output_tokens``), binned with the
    configured bins and the study's printed and formula bins.

    ``provenance`` adds to what the trace's attrs say of its source (its path and, when
    prepare-trace recorded it, the sha256 of the raw file).
    """
    stats = length_stats(df)
    lengths = {
        side: {
            k: int(stats.loc[side, k]) if k == "count" else float(stats.loc[side, k]) for k in STATS
        }
        for side in SIDES
    }
    binnings: list[BinCounts] = []
    for inp, out in ((input_bins, output_bins), paper_bins("printed"), paper_bins("formula")):
        counts = bin_requests(df, inp, out).bin_counts()
        if all(
            (b.input_bins, b.output_bins) != (counts.input_bins, counts.output_bins)
            for b in binnings
        ):
            binnings.append(counts)
    probabilities = np.linspace(0.0, 1.0, QUANTILES)
    quantiles = {
        side: tuple(
            int(v)
            for v in np.quantile(
                df[f"{side}_tokens"].to_numpy(), probabilities, method=QUANTILE_METHOD
            )
        )
        for side in SIDES
    }
    return TraceSummary(
        trace=name,
        lengths=lengths,
        binnings=tuple(binnings),
        quantiles=quantiles,
        failed_dropped=int(df.attrs.get("failed_dropped", 0)),
        provenance={
            "source": str(df.attrs.get("source", "")),
            "source_sha256": str(df.attrs.get("source_sha256", "")),
            **(provenance or {}),
        },
    )


def write_trace_summary(summary: TraceSummary, path: Path | str) -> None:
    write_json_atomic(summary.to_dict(), path)


def read_trace_summary(path: Path | str) -> TraceSummary:
    data = _read_json(path, TRACE_KIND)
    try:
        return TraceSummary.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: malformed trace summary ({type(exc).__name__}: {exc})") from exc


def check_trace_summary(
    path: Path | str, trace: str, input_bins: Sequence[int], output_bins: Sequence[int]
) -> TraceSummary:
    """A summary of ``trace`` holding counts for the configured bins, or one error saying what
    it holds instead."""
    summary = read_trace_summary(path)
    if summary.trace != trace:
        raise InputError(f"{path}: the summary of trace '{summary.trace}', not of '{trace}'")
    try:
        summary.binning(input_bins, output_bins)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from exc
    return summary


# --------------------------------------------------------------------------- model architectures


@dataclass(frozen=True)
class ArchitectureSummary:
    """The architecture of one model as the FLOP count, the ideal and the roofline use it."""

    model: str
    hub_id: str
    architecture: Architecture
    provenance: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": ARCHITECTURE_KIND,
            "model": self.model,
            "hub_id": self.hub_id,
            "architecture": dataclasses.asdict(self.architecture),
            "provenance": self.provenance,
        }


def architecture_summary(
    model: str, hub_id: str, config_json: Path, provenance: dict[str, str] | None = None
) -> ArchitectureSummary:
    """The summary of a model from its config.json, with that file's path and sha256."""
    try:
        config = json.loads(config_json.read_text(encoding="utf-8"))
        arch = Architecture.from_config(config)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{config_json}: cannot read the model's config ({exc})") from exc
    except (KeyError, TypeError) as exc:
        raise InputError(
            f"{config_json}: not a transformer config ({type(exc).__name__}: {exc})"
        ) from exc
    return ArchitectureSummary(
        model=model,
        hub_id=hub_id,
        architecture=arch,
        provenance={
            "config": str(config_json),
            "config_sha256": sha256_file(config_json),
            **(provenance or {}),
        },
    )


def write_architecture_summary(summary: ArchitectureSummary, path: Path | str) -> None:
    write_json_atomic(summary.to_dict(), path)


def read_architecture_summary(path: Path | str) -> ArchitectureSummary:
    data = _read_json(path, ARCHITECTURE_KIND)
    try:
        fields = dict(data["architecture"])
        expected = {f.name for f in dataclasses.fields(Architecture)}
        if set(fields) != expected:
            odd = ", ".join(sorted(set(fields) ^ expected))
            raise ValueError(f"architecture fields differ from Architecture's: {odd}")
        return ArchitectureSummary(
            model=str(data["model"]),
            hub_id=str(data["hub_id"]),
            architecture=Architecture(**fields),
            provenance={str(k): str(v) for k, v in data["provenance"].items()},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: malformed architecture summary ({exc})") from exc


def check_architecture_summary(path: Path | str, hub_id: str) -> ArchitectureSummary:
    """A summary of the model with this hub id, or one error naming the one it is of."""
    summary = read_architecture_summary(path)
    if summary.hub_id != hub_id:
        raise InputError(
            f"{path}: the architecture of {summary.hub_id}, but the configuration's model is "
            f"{hub_id}; {REBUILD}"
        )
    return summary


# --------------------------------------------------------------------------- Table 3

# Provenance columns of Table 3: the texts, how they were sampled, the tokenizer, the code.
TABLE3_PROVENANCE = (
    "source",
    "samples_requested",
    "seed",
    "tokenizer",
    "git_commit",
    "created_utc",
)


def task_table(
    samples: Sequence[pd.DataFrame], tokenizer: PreTrainedTokenizerBase, tokenizer_name: str
) -> pd.DataFrame:
    """Table 3 (:func:`llm_energy.inputs.texts.token_stats`), each row with the provenance of its
    sample (the attrs prepare-task wrote: source, size asked for, seed), the tokenizer, the
    code's commit and the time. The table is its own summary."""
    from llm_energy.inputs.texts import token_stats

    stats = token_stats(pd.concat(samples, ignore_index=True), tokenizer)
    attrs = {str(s["task"].iloc[0]): s.attrs for s in samples if len(s)}
    run = run_provenance()
    for column, key in (("source", "source"), ("samples_requested", "requested"), ("seed", "seed")):
        stats[column] = [attrs.get(str(task), {}).get(key, "") for task in stats.index]
    stats["tokenizer"] = tokenizer_name
    stats["git_commit"] = run["git_commit"]
    stats["created_utc"] = run["created_utc"]
    return stats.rename_axis("task").reset_index()


def check_task_table(path: Path | str, roles: Sequence[str], samples: int, seed: int) -> None:
    """A Table 3 of the configured tasks (in order), sample size and seed, or one error."""
    try:
        table = pd.read_csv(path)
        made = (
            list(table["role"].astype(str)),
            sorted(set(table["samples_requested"].astype(int))),
            sorted(set(table["seed"].astype(int))),
        )
    except (OSError, ValueError, KeyError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: cannot read Table 3 with its provenance ({exc})") from exc
    if made != (list(roles), [int(samples)], [int(seed)]):
        raise InputError(
            f"{path}: Table 3 of the tasks {', '.join(made[0])} with "
            f"{'/'.join(map(str, made[1]))} samples and seed {'/'.join(map(str, made[2]))}; the "
            f"configuration asks for {', '.join(roles)} with {samples} samples and seed {seed}; "
            f"{REBUILD}"
        )


def task_table_beside_paper(stats: pd.DataFrame) -> pd.DataFrame:
    """Table 3 as the report shows it: each task's token statistics (the summary that
    :func:`task_table` writes) beside the paper's, and ours over the paper's mean."""
    from llm_energy.analysis.paper import PAPER_TABLE3

    table = stats.copy()
    nan = (float("nan"),) * 3
    paper = [PAPER_TABLE3.get(task, nan) for task in table["task"]]
    for i, stat in enumerate(("mean", "std", "max")):
        table[f"paper_{stat}"] = [values[i] for values in paper]
    table["mean_over_paper"] = table["mean"] / table["paper_mean"]
    first = ["task", "role", "mean", "paper_mean", "std", "paper_std", "max", "paper_max"]
    return table[first + [c for c in table.columns if c not in first]]
