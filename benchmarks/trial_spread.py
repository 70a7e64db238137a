"""How far a point's independent trials spread, against the length of its window: the
coefficient of variation over trials of energy and of time per batch for every row measured in
two or more trials, sorted by window length, and the spread by window-length band.

    python benchmarks/trial_spread.py TABLE.parquet [TABLE.parquet ...] [--out TABLE.md]

A row's interval is Student's t over its trials, so the spread decides how many trials a point
needs to reach the protocol's target (``target_ci95_rel``). Where energy spreads more than time,
the power drawn differs from trial to trial; where both shrink as the window grows, a longer
``min_duration_s`` buys the target with fewer trials. A benchmark that reports numbers, not a
test with a threshold.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

BANDS_S = (0.0, 2.5, 5.0, float("inf"))


def _cv(values: str) -> float:
    trials = np.asarray(json.loads(values), dtype=float)
    return float(trials.std(ddof=1) / trials.mean()) if len(trials) > 1 else float("nan")


def spread(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per row measured in two or more trials: its shape, trials, window (s) and the
    spread over trials of energy and of time per batch."""
    rows = rows[rows["trials"].fillna(0) >= 2]
    return (
        pd.DataFrame(
            {
                "batch_size": rows["batch_size"],
                "input_tokens": rows["input_tokens"],
                "output_tokens": rows["output_tokens"],
                "trials": rows["trials"].astype(int),
                "window_s": rows["repetitions"] * rows["duration_s"],
                "energy_cv": rows["trial_energy_j"].map(_cv),
                "duration_cv": rows["trial_duration_s"].map(_cv),
                "energy_ci95_rel": rows["energy_j_ci95"] / rows["energy_j"],
            }
        )
        .sort_values("window_s")
        .reset_index(drop=True)
    )


def by_band(table: pd.DataFrame) -> pd.DataFrame:
    """The rows' spread by window-length band: how many, and the median and largest of each."""
    band = pd.cut(table["window_s"], BANDS_S, right=False)
    grouped = table.groupby(band, observed=True)
    return pd.DataFrame(
        {
            "rows": grouped.size(),
            "energy_cv_median": grouped["energy_cv"].median(),
            "energy_cv_max": grouped["energy_cv"].max(),
            "duration_cv_median": grouped["duration_cv"].median(),
            "energy_ci95_rel_max": grouped["energy_ci95_rel"].max(),
        }
    ).rename_axis("window_s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("tables", type=Path, nargs="+")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    table = spread(pd.concat([pd.read_parquet(p) for p in args.tables], ignore_index=True))
    percent = ("energy_cv", "duration_cv", "energy_ci95_rel")
    shown = table.assign(**{c: (100 * table[c]).map("{:.2f} %".format) for c in percent})
    bands = by_band(table)
    bands_shown = bands.assign(
        **{c: (100 * bands[c]).map("{:.2f} %".format) for c in bands.columns if c != "rows"}
    )
    text = (
        shown.to_markdown(index=False, floatfmt=".2f")
        + "\n\nBy window length:\n\n"
        + bands_shown.to_markdown()
    )
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
