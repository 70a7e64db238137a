"""What skipping the per-trial warm-up changes: the same points measured with a warm-up before
every trial and with one before each point's first trial only (``warmup_every_trial: false``,
``config/h200_warmup_once.yaml``), both in one machine session.

    python benchmarks/warmup_ab.py EVERY_TRIAL.parquet FIRST_TRIAL.parquet [--out TABLE.md]

For every point both tables hold, the change of energy and of time per batch (first-trial
over every-trial, minus one) with its 95 % interval from the two rows' intervals, and which
way the interval points (lower, higher, or holds no change), as the claims tables judge
comparisons the paper makes no claim about. A benchmark that reports numbers, not a test with
a threshold.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from llm_energy.analysis.claims import direction, relative_change

ON = ("batch_size", "input_tokens", "output_tokens")


def comparisons(every: pd.DataFrame, first: pd.DataFrame) -> pd.DataFrame:
    """One row per point and quantity: the change, its interval, the verdict, and whether
    the two rows share a machine session."""
    warmed = first["trial_warmed_up"].map(json.loads).map(sum)
    if (warmed > 1).any():
        raise ValueError("the second table has points warmed up before more than one trial")
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("every_trial", type=Path)
    ap.add_argument("first_trial", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    table = comparisons(pd.read_parquet(args.every_trial), pd.read_parquet(args.first_trial))
    shown = table.assign(
        **{c: (100 * table[c]).map("{:+.1f} %".format) for c in ("change", "ci95_low", "ci95_high")}
    )
    text = shown.to_markdown(index=False)
    verdicts = table.groupby("quantity")["verdict"].value_counts().to_dict()
    text += "\n\n" + "; ".join(f"{q}: {n} {v}" for (q, v), n in sorted(verdicts.items()))
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
