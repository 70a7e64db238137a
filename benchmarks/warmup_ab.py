"""What skipping the per-trial warm-up changes: the same points measured with a warm-up before
every trial and with one before each point's first trial only (``warmup_every_trial: false``,
``config/h200_warmup_once.yaml``), both in one machine session.

    python benchmarks/warmup_ab.py EVERY_TRIAL.parquet FIRST_TRIAL.parquet [--out TABLE.md]

For every point both tables hold, the change of energy and of time per batch (first-trial
over every-trial, minus one) with its 95 % interval from the two rows' intervals, and which
way the interval points (lower, higher, or holds no change), as the claims tables judge
comparisons the paper makes no claim about. Then, within the second table's rows, the same
change between a point's trials without a warm-up and its trials with one (a job that ran in
several engine instances warms a point up once in each), for every point with two or more of
each. A benchmark that reports numbers, not a test with a threshold.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from llm_energy.analysis.claims import direction, relative_change
from llm_energy.measure.trials import ci95_half_width, ratio_half_width

ON = ("batch_size", "input_tokens", "output_tokens")


def comparisons(every: pd.DataFrame, first: pd.DataFrame) -> pd.DataFrame:
    """One row per point and quantity: the change, its interval, the verdict, and whether
    the two rows share a machine session."""
    if not every["trial_warmed_up"].map(json.loads).map(all).all():
        raise ValueError("the first table has trials without a warm-up")
    if first["trial_warmed_up"].map(json.loads).map(all).all():
        raise ValueError("the second table warmed up before every trial")
    rows = []
    for quantity in ("energy_j", "duration_s"):
        for c in relative_change(every, first, ON, quantity):
            low, high = c.value - c.half_width, c.value + c.half_width
            rows.append(
                {
                    "quantity": quantity,
                    "point": c.condition,
                    "change": c.value,
                    "ci95_low": low,
                    "ci95_high": high,
                    "verdict": direction(0.0, 0, c.value, low, high),
                    "same_session": c.same_session,
                }
            )
    return pd.DataFrame(rows)


def within_rows(first: pd.DataFrame, quantity: str = "energy_j") -> pd.DataFrame:
    """Per row of ``first``: the mean of its trials without a warm-up over the mean of those
    with one, minus one, with the interval of the two means (Student's t within each)."""
    rows = []
    for _, row in first.iterrows():
        warmed = json.loads(row["trial_warmed_up"])
        values = json.loads(row[f"trial_{quantity}"])
        cold = [v for v, w in zip(values, warmed, strict=True) if not w]
        warm = [v for v, w in zip(values, warmed, strict=True) if w]
        if min(len(cold), len(warm)) < 2:
            continue
        mean_cold, mean_warm = sum(cold) / len(cold), sum(warm) / len(warm)
        ratio = mean_cold / mean_warm
        half = ratio_half_width(
            ratio, ci95_half_width(warm) / mean_warm, ci95_half_width(cold) / mean_cold
        )
        change = ratio - 1
        rows.append(
            {
                "quantity": quantity,
                "point": ", ".join(f"{k} {row[k]}" for k in ON),
                "trials without, with": f"{len(cold)}, {len(warm)}",
                "change": change,
                "ci95_low": change - half,
                "ci95_high": change + half,
                "verdict": direction(0.0, 0, change, change - half, change + half),
            }
        )
    return pd.DataFrame(rows)


def _markdown(table: pd.DataFrame) -> str:
    shown = table.assign(
        **{c: (100 * table[c]).map("{:+.1f} %".format) for c in ("change", "ci95_low", "ci95_high")}
    )
    verdicts = table.groupby("quantity")["verdict"].value_counts().to_dict()
    counts = "; ".join(f"{q}: {n} {v}" for (q, v), n in sorted(verdicts.items()))
    return shown.to_markdown(index=False) + "\n\n" + counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("every_trial", type=Path)
    ap.add_argument("first_trial", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    every, first = (pd.read_parquet(p) for p in (args.every_trial, args.first_trial))
    text = "## Every trial warmed up against the first only\n\n" + _markdown(
        comparisons(every, first)
    )
    inside = pd.concat([within_rows(first, q) for q in ("energy_j", "duration_s")])
    if len(inside):
        text += (
            "\n\n## Within the second table's rows: trials without a warm-up against trials "
            "with one\n\n" + _markdown(inside)
        )
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
