"""The classical tasks' rows of one machine session side by side: one line per row with its
energy per request and interval, its control point's drift, PyTorch's energy over vLLM's for
the same task and batch, and, where earlier tables hold the same task, engine and number of
examples, how this session's row compares with each earlier session's.

    python benchmarks/task_rows.py SESSION.parquet [SESSION.parquet ...] \
        [--earlier TABLE.parquet ...] [--out ROWS.csv]

Against an earlier row at the same batch: ``energy_vs_<session>_pct``, this row's energy per
request over the earlier one's, minus one, in per cent (two sessions of one point: the spread
between sessions). At another batch: ``energy_per_request_batch<B>_<session>_j`` and this
row's energy over it (``over_batch<B>_<session>``). A benchmark that reports numbers, not a
test with a threshold.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

KEY = ["engine", "task", "requests"]


def _measured(tables: list[Path]) -> pd.DataFrame:
    """The measured rows of request streams in trials, with their task named."""
    if not tables:
        return pd.DataFrame(columns=[*KEY, "batch_size", "machine_session", "energy_j"])
    rows = pd.concat([pd.read_parquet(t) for t in tables], ignore_index=True)
    rows = rows[rows["feasible"].astype(bool) & rows["trials"].fillna(0).gt(0)]
    return rows.assign(task=rows["trace"])


def _session_name(session: str) -> str:
    return session.replace(":", "_")


def task_rows(session: pd.DataFrame, earlier: pd.DataFrame) -> pd.DataFrame:
    """One line per row of ``session``; see the module's docstring."""
    lines = pd.DataFrame(
        {
            "engine": session["engine"],
            "task": session["task"],
            "batch_size": session["batch_size"].astype(int),
            "requests": session["requests"].astype(int),
            "trials": session["trials"].astype(int),
            "protocol_met": session["protocol_met"].astype(bool),
            "energy_per_request_j": (session["energy_j"] / session["requests"]).round(2),
            "energy_ci95_pct": (100 * session["energy_j_ci95"] / session["energy_j"]).round(2),
            "duration_s": session["duration_s"].round(2),
            "mean_power_w": session["mean_power_w"].round(1),
            "control_drift_energy_pct": (100 * session["control_drift_energy"]).round(2),
            "control_drift_duration_pct": (100 * session["control_drift_duration"]).round(2),
        }
    ).reset_index(drop=True)
    per_request = session["energy_j"].to_numpy() / session["requests"].to_numpy()
    vllm = {
        (r.task, r.batch_size, r.requests): e
        for r, e in zip(lines.itertuples(), per_request, strict=True)
        if r.engine == "vllm"
    }
    lines["energy_over_vllm"] = [
        round(e / vllm[(r.task, r.batch_size, r.requests)], 2)
        if (r.task, r.batch_size, r.requests) in vllm
        else float("nan")
        for r, e in zip(lines.itertuples(), per_request, strict=True)
    ]
    sessions = set(session["machine_session"])
    earlier = earlier[~earlier["machine_session"].isin(sessions)]
    for (name, batch), group in earlier.groupby(["machine_session", "batch_size"]):
        before = (group["energy_j"] / group["requests"]).groupby([group[k] for k in KEY]).mean()
        matched = [before.get((r.engine, r.task, r.requests)) for r in lines.itertuples()]
        label = _session_name(name)
        for i, (r, e, b) in enumerate(zip(lines.itertuples(), per_request, matched, strict=True)):
            if b is None:
                continue
            if r.batch_size == batch:
                lines.loc[i, f"energy_vs_{label}_pct"] = round(100 * (e / b - 1), 1)
            else:
                lines.loc[i, f"energy_per_request_batch{batch}_{label}_j"] = round(b, 2)
                lines.loc[i, f"over_batch{batch}_{label}"] = round(e / b, 2)
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tables", nargs="+", type=Path, help="the session's tables")
    parser.add_argument("--earlier", nargs="*", type=Path, default=[], help="earlier tables")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    lines = task_rows(_measured(args.tables), _measured(args.earlier))
    text = lines.to_csv(index=False)
    if args.out:
        args.out.write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
