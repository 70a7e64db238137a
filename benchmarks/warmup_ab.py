"""What skipping the per-trial warm-up changes: the same points measured with a warm-up before
every trial and with one before each point's first trial only (``warmup_every_trial: false``,
``config/h200_warmup_once.yaml``), both in one machine session; or, in one job, a point's
trials with and without one in the same engine instance (``warmup_every_trial: alternate``,
``config/h200_warmup_alternate.yaml``).

    python benchmarks/warmup_ab.py EVERY_TRIAL.parquet FIRST_TRIAL.parquet [--out TABLE.md]
    python benchmarks/warmup_ab.py --alternate TABLE.parquet [TABLE.parquet ...] [--out TABLE.md]

For every point both tables hold, the change of energy and of time per batch (first-trial
over every-trial, minus one) with its 95 % interval from the two rows' intervals, and which
way the interval points (lower, higher, or holds no change), as the claims tables judge
comparisons the paper makes no claim about. Then, within the second table's rows, the same
change between a point's trials without a warm-up and its trials with one (a job that ran in
several engine instances warms a point up once in each), for every point with two or more of
each. With ``--alternate``, that change for each row with a trial of each kind, and over the
rows: the mean of the rows' changes with its Student's t interval over rows, each row one
paired comparison inside one engine instance. A benchmark that reports numbers, not a test
with a threshold.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
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
    for entry, cold, warm in _pairs(first, quantity, least=2):
        mean_cold, mean_warm = sum(cold) / len(cold), sum(warm) / len(warm)
        half = ratio_half_width(
            mean_cold / mean_warm,
            ci95_half_width(warm) / mean_warm,
            ci95_half_width(cold) / mean_cold,
        )
        change = entry["change"]
        rows.append(
            {
                **entry,
                "ci95_low": change - half,
                "ci95_high": change + half,
                "verdict": direction(0.0, 0, change, change - half, change + half),
            }
        )
    return pd.DataFrame(rows)


def _pairs(
    table: pd.DataFrame, quantity: str, least: int
) -> Iterator[tuple[dict, list[float], list[float]]]:
    """Each row with at least ``least`` trials without a warm-up and as many with one: its
    point, trial counts and change (the mean without over the mean with, minus one), and the
    trials' values of ``quantity`` without and with."""
    for _, row in table.iterrows():
        if not isinstance(row.get("trial_warmed_up"), str):  # a row written before trials
            continue
        warmed = json.loads(row["trial_warmed_up"])
        values = json.loads(row[f"trial_{quantity}"])
        cold = [v for v, w in zip(values, warmed, strict=True) if not w]
        warm = [v for v, w in zip(values, warmed, strict=True) if w]
        if min(len(cold), len(warm)) < least:
            continue
        entry = {
            "quantity": quantity,
            "point": ", ".join(f"{k} {row[k]}" for k in ON),
            "trials without, with": f"{len(cold)}, {len(warm)}",
            "change": (sum(cold) / len(cold)) / (sum(warm) / len(warm)) - 1,
        }
        yield entry, cold, warm


def paired(table: pd.DataFrame, quantity: str = "energy_j") -> tuple[pd.DataFrame, dict]:
    """Per row with a trial of each kind, its trials' mean without a warm-up over their mean
    with one, minus one; and over those rows, the mean change with its 95 % interval
    (Student's t over rows: the rows are the independent pairs)."""
    rows = [entry for entry, _, _ in _pairs(table, quantity, least=1)]
    changes = [r["change"] for r in rows]
    summary = {"quantity": quantity, "rows": len(changes)}
    if len(changes) >= 2:
        mean = sum(changes) / len(changes)
        half = ci95_half_width(changes)
        summary.update(
            change=mean,
            ci95_low=mean - half,
            ci95_high=mean + half,
            verdict=direction(0.0, 0, mean, mean - half, mean + half),
        )
    return pd.DataFrame(rows), summary


def alternate_report(table: pd.DataFrame) -> str:
    """The ``--alternate`` report: each row's change, then the mean over rows per quantity."""
    if not table["trial_warmed_up"].map(json.loads).map(lambda w: not all(w)).any():
        raise ValueError(
            "no trial without a warm-up: not measured with warmup_every_trial alternate"
        )
    parts, summaries = [], []
    for quantity in ("energy_j", "duration_s"):
        each, summary = paired(table, quantity)
        parts.append(each)
        summaries.append(summary)
    each = pd.concat(parts)
    shown = each.assign(change=(100 * each["change"]).map("{:+.2f} %".format))
    over = pd.DataFrame(summaries)
    for c in ("change", "ci95_low", "ci95_high"):
        if c in over:
            over[c] = (100 * over[c]).map("{:+.2f} %".format)
    return (
        "## Trials without a warm-up against trials with one, row by row (one engine instance)"
        "\n\n"
        + shown.to_markdown(index=False)
        + "\n\n## Over the rows\n\n"
        + over.to_markdown(index=False)
    )


def _markdown(table: pd.DataFrame) -> str:
    shown = table.assign(
        **{c: (100 * table[c]).map("{:+.1f} %".format) for c in ("change", "ci95_low", "ci95_high")}
    )
    verdicts = table.groupby("quantity")["verdict"].value_counts().to_dict()
    counts = "; ".join(f"{q}: {n} {v}" for (q, v), n in sorted(verdicts.items()))
    return shown.to_markdown(index=False) + "\n\n" + counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "tables",
        type=Path,
        nargs="+",
        help="EVERY_TRIAL FIRST_TRIAL, or with "
        "--alternate the tables of jobs measured with warmup_every_trial alternate",
    )
    ap.add_argument("--alternate", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.alternate:
        text = alternate_report(pd.concat(pd.read_parquet(p) for p in args.tables))
        print(text)
        if args.out:
            args.out.write_text(text + "\n")
        return
    if len(args.tables) != 2:
        ap.error("give the every-trial table and the first-trial table, or --alternate")
    args.every_trial, args.first_trial = args.tables
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
