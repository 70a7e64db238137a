"""How far a point's independent trials spread, against the length of its window: the
coefficient of variation over trials of energy and of time per batch for every row measured in
two or more trials, sorted by window length, and the spread by window-length band.

    python benchmarks/trial_spread.py TABLE.parquet [TABLE.parquet ...] [--out TABLE.md]
    python benchmarks/trial_spread.py LONGER.parquet --against SHORTER.parquet [--out TABLE.md]
    python benchmarks/trial_spread.py ONE.parquet --against OTHER.parquet --names ONE OTHER

With ``--against``, the same shapes measured with two window lengths (config/h200_window_6s.yaml
layered on config/h200_window_ab.yaml, beside the job without it), shape by shape: each one's
window, trials, spread, interval reached and seconds spent in windows, and its energy per batch
in the longer windows over the shorter (a window's length should not change it). ``--names``
labels the two sides otherwise, for any two tables of the same shapes (two machines, say).
Where both sides' rows measured prefill windows, each side's time of one prefill and the
prefill energy's ratio with its interval follow.

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

from llm_energy.measure.trials import ratio_half_width

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
                "energy_j": rows["energy_j"],
                **_prefill(rows),
            }
        )
        .sort_values("window_s")
        .reset_index(drop=True)
    )


def _prefill(rows: pd.DataFrame) -> dict[str, pd.Series]:
    """A row's prefill window, where its trials measured one: energy, its relative interval and
    the time of one prefill."""
    if "prefill_energy_j_ci95" not in rows:
        return {}
    return {
        "prefill_energy_j": rows["prefill_energy_j"],
        "prefill_ci95_rel": rows["prefill_energy_j_ci95"] / rows["prefill_energy_j"],
        "prefill_s": rows["prefill_duration_s"],
    }


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


SHAPE = ["batch_size", "input_tokens", "output_tokens"]


def _ratio(both: pd.DataFrame, value: str, rel: str, a: str, b: str) -> tuple[pd.Series, list]:
    """Side ``a``'s ``value`` over side ``b``'s, and the ratio's 95 % half-width from the two
    sides' relative half-widths (column ``rel``)."""
    ratio = both[f"{value}_{a}"] / both[f"{value}_{b}"]
    rel_a, rel_b = both[f"{rel}_{a}"], both[f"{rel}_{b}"]
    half = [ratio_half_width(r, x, y) for r, x, y in zip(ratio, rel_a, rel_b, strict=True)]
    return ratio, half


def side_by_side(
    one: pd.DataFrame, other: pd.DataFrame, names: tuple[str, str] = ("longer", "shorter")
) -> pd.DataFrame:
    """The shapes both tables measured, one line each: window, trials, energy spread and
    interval in each, the seconds their windows took (trials x window), and ``one``'s energy
    per batch over ``other``'s with its 95 % interval. ``names`` suffix each side's columns:
    by default the longer windows (``one``) against the shorter."""
    a, b = names
    both = spread(one).merge(spread(other), on=SHAPE, suffixes=(f"_{a}", f"_{b}"))
    out = both[SHAPE].copy()
    for side in (b, a):
        out[f"window_s_{side}"] = both[f"window_s_{side}"]
        out[f"trials_{side}"] = both[f"trials_{side}"]
        out[f"energy_cv_{side}"] = both[f"energy_cv_{side}"]
        out[f"energy_ci95_rel_{side}"] = both[f"energy_ci95_rel_{side}"]
        out[f"window_seconds_{side}"] = both[f"trials_{side}"] * both[f"window_s_{side}"]
    out["energy_ratio"], out["energy_ratio_ci95"] = _ratio(
        both, "energy_j", "energy_ci95_rel", a, b
    )
    if f"prefill_energy_j_{a}" in both and f"prefill_energy_j_{b}" in both:
        # The prefill window alone: at short prompts it lasts milliseconds a repetition.
        for side in (b, a):
            out[f"prefill_s_{side}"] = both[f"prefill_s_{side}"]
        prefill = _ratio(both, "prefill_energy_j", "prefill_ci95_rel", a, b)
        out["prefill_ratio"], out["prefill_ratio_ci95"] = prefill
    return out


def _percent(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return table.assign(**{c: (100 * table[c]).map("{:.2f} %".format) for c in columns})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("tables", type=Path, nargs="+")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--against", type=Path, help="the same shapes measured in shorter windows")
    ap.add_argument(
        "--names",
        nargs=2,
        default=("longer", "shorter"),
        metavar=("TABLES", "AGAINST"),
        help="what the two sides are, for their columns (default: longer shorter)",
    )
    args = ap.parse_args()
    if args.against:
        one = pd.concat([pd.read_parquet(p) for p in args.tables], ignore_index=True)
        a, b = args.names
        table = side_by_side(one, pd.read_parquet(args.against), (a, b))
        cv = [c for c in table.columns if c.startswith(("energy_cv", "energy_ci95_rel"))]
        text = _percent(table, cv).to_markdown(index=False, floatfmt=".3f")
        seconds = table.filter(like="window_seconds").sum()
        text += (
            f"\n\nSeconds in windows: {seconds[f'window_seconds_{b}']:.1f} in {b}, "
            f"{seconds[f'window_seconds_{a}']:.1f} in {a}; rows within ±3 %: "
            f"{(table[f'energy_ci95_rel_{b}'] <= 0.03).sum()} and "
            f"{(table[f'energy_ci95_rel_{a}'] <= 0.03).sum()} of {len(table)}; "
            f"energy_ratio is {a} over {b}."
        )
        print(text)
        if args.out:
            args.out.write_text(text + "\n")
        return
    table = spread(pd.concat([pd.read_parquet(p) for p in args.tables], ignore_index=True))
    shown = _percent(
        table.drop(columns="energy_j"), ["energy_cv", "duration_cv", "energy_ci95_rel"]
    )
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
