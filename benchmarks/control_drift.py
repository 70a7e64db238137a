"""The control points' drift as the rows carry it: one line per machine session and control
point, its drift in energy and in time between the job's start and end, and the share of the
energy drift that the time does not explain, by engine.

    python benchmarks/control_drift.py TABLE.parquet [TABLE.parquet ...] [--out TABLE.md]

A control point measured in a window of about two seconds (``min_duration_s``, the windows of
the rows measured before ``control_min_duration_s``) reads its energy through a counter that
updates about ten times a second: where the energy drifts by several per cent while the time
does not, the counter's steps are a likely part of it. A benchmark that reports numbers, not a
test with a threshold.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

KEY = ["engine", "machine_session", "control_point_id"]


def control_drifts(tables: list[Path]) -> pd.DataFrame:
    """One line per (engine, machine session, control point) and drift, in per cent: a job
    resumed over several runs gives its rows of different runs their own drift."""
    frames = [pd.read_parquet(p) for p in tables]
    rows = pd.concat([f for f in frames if "control_drift_energy" in f], ignore_index=True)
    drifts = ["control_drift_energy", "control_drift_duration"]
    rows = rows[rows["control_drift_energy"].notna()].drop_duplicates([*KEY, *drifts])
    table = rows[KEY].copy()
    table["energy_drift_pct"] = (100 * rows["control_drift_energy"]).round(2)
    table["time_drift_pct"] = (100 * rows["control_drift_duration"]).round(2)
    table["energy_less_time_pct"] = (table["energy_drift_pct"] - table["time_drift_pct"]).round(2)
    return table.sort_values(["engine", "energy_drift_pct"]).reset_index(drop=True)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """By engine: lines, and the median and largest size of each drift."""
    size = table.assign(
        **{
            c: table[c].abs()
            for c in ("energy_drift_pct", "time_drift_pct", "energy_less_time_pct")
        }
    )
    grouped = size.groupby("engine")
    return pd.DataFrame(
        {
            "lines": grouped.size(),
            "energy_median_pct": grouped["energy_drift_pct"].median().round(2),
            "energy_max_pct": grouped["energy_drift_pct"].max().round(2),
            "time_median_pct": grouped["time_drift_pct"].median().round(2),
            "time_max_pct": grouped["time_drift_pct"].max().round(2),
            "lines_time_under_1pct": grouped["time_drift_pct"].apply(lambda s: int((s < 1).sum())),
            "energy_less_time_median_pct": grouped["energy_less_time_pct"].median().round(2),
        }
    ).reset_index()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tables", nargs="+", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    table = control_drifts(args.tables)
    text = (
        "Sizes of the drift by engine (per cent):\n\n"
        f"{summary(table).to_markdown(index=False)}\n\n"
        f"Every job's control point:\n\n{table.to_markdown(index=False)}\n"
    )
    if args.out:
        args.out.write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
