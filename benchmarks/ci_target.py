"""Which rows of engines with CUDA graphs end their trials with an energy interval wider than
the protocol's target (``target_ci95_rel``, ±3 % by default), and what sets each one apart:

- ``served``: a replay of requests through continuous batching or a server, whose trials
  include how the engine scheduled the requests, not one fixed batch;
- ``above_graph_capture``: a batch larger than the largest batch the engine captured as a CUDA
  graph (``cuda_graph_max_batch``, where the row records it), which runs without graphs;
- ``repetition_under_1s``: a repetition shorter than a second, where a window of many short
  repetitions spreads more from trial to trial;
- ``trials``: how many trials the point had; the interval's Student's t shrinks from 4.30 at
  three trials to 2.57 at six;
- ``energy_ci95_rel_after_first``: the interval of its trials after the first, where a point's
  first trial alone sets it apart (its first window in the job, after the engine's start or
  other points' shapes).

    python benchmarks/ci_target.py resources/measurements/h200/*.parquet [--out TABLE.md]

A benchmark that reports numbers, not a test with a threshold.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from llm_energy.measure.trials import ci95_half_width, trial_values

SERVED = ("online", "served")


def _cv(values: str) -> float:
    trials = np.asarray(json.loads(values), dtype=float)
    return float(trials.std(ddof=1) / trials.mean()) if len(trials) > 1 else float("nan")


def _after_first(values: object) -> float:
    later = trial_values(values)[1:]
    return ci95_half_width(later) / float(np.mean(later)) if len(later) > 1 else float("nan")


def graph_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The feasible rows of engines with CUDA graphs measured in two or more trials."""
    measured = rows["feasible"].astype(bool) & rows["trials"].fillna(0).ge(2)
    return rows[measured & rows["cuda_graphs"].fillna(False).astype(bool)]


def short_of_target(rows: pd.DataFrame, target: float = 0.03) -> pd.DataFrame:
    """One line per row of :func:`graph_rows` whose energy interval is wider than ``target``
    of its mean, widest first, with what sets it apart."""
    graphs = graph_rows(rows)
    relative = graphs["energy_j_ci95"] / graphs["energy_j"]
    wide = graphs[relative > target]
    capture = pd.to_numeric(wide["cuda_graph_max_batch"], errors="coerce")
    out = pd.DataFrame(
        {
            "table": wide.get("table", pd.Series("", index=wide.index)),
            "model": wide["model"],
            "engine": wide["engine"],
            "serving": wide["serving"],
            "batch_size": wide["batch_size"],
            "input_tokens": wide["input_tokens"],
            "output_tokens": wide["output_tokens"],
            "trials": wide["trials"].astype(int),
            "energy_ci95_rel": relative[relative > target],
            "energy_cv": wide["trial_energy_j"].map(_cv),
            "energy_ci95_rel_after_first": wide["trial_energy_j"].map(_after_first),
            "repetition_s": wide["duration_s"],
            "served": wide["serving"].isin(SERVED),
            "above_graph_capture": wide["batch_size"] > capture,
            "repetition_under_1s": wide["duration_s"] < 1.0,
        }
    )
    return out.sort_values("energy_ci95_rel", ascending=False).reset_index(drop=True)


def summary(rows: pd.DataFrame, wide: pd.DataFrame, target: float = 0.03) -> str:
    """How many rows with CUDA graphs there are, how many are wider than ``target``, and how
    many of those each trait holds (a row may hold several, or none)."""
    plain = ~(wide["served"] | wide["above_graph_capture"] | wide["repetition_under_1s"])
    return (
        f"{len(graph_rows(rows))} rows of engines with CUDA graphs in two or more trials; "
        f"{len(wide)} wider than ±{100 * target:g} %: {int(wide['served'].sum())} served, "
        f"{int(wide['above_graph_capture'].sum())} above the graph capture, "
        f"{int(wide['repetition_under_1s'].sum())} with repetitions under 1 s, "
        f"{int(plain.sum())} with none of these; "
        f"{int(wide['trials'].le(3).sum())} of them in three trials or fewer; "
        f"{int(wide['energy_ci95_rel_after_first'].le(target).sum())} within it without their "
        "first trial."
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("tables", type=Path, nargs="+")
    ap.add_argument("--target", type=float, default=0.03)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    rows = pd.concat(
        [pd.read_parquet(p).assign(table=p.stem) for p in args.tables], ignore_index=True
    )
    wide = short_of_target(rows, args.target)
    shown = wide.assign(
        **{
            c: (100 * wide[c]).map("{:.1f} %".format)
            for c in ("energy_ci95_rel", "energy_cv", "energy_ci95_rel_after_first")
        }
    )
    text = (
        shown.to_markdown(index=False, floatfmt=".3f") + "\n\n" + summary(rows, wide, args.target)
    )
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
