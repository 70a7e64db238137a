"""The classical tasks' rows of one machine session side by side: one line per row with its
energy per request and interval, its control point's drift, PyTorch's energy over vLLM's for
the same task and batch, and, where earlier tables hold the same task, engine and number of
examples, how this session's row compares with each earlier session's.

    python benchmarks/task_rows.py SESSION.parquet [SESSION.parquet ...] \
        [--earlier TABLE.parquet ...] [--out ROWS.csv]

Against an earlier row at the same batch: ``energy_vs_<session>_pct``, this row's energy per
request over the earlier one's, minus one, in per cent (two sessions of one point: the spread
between sessions), and likewise ``above_idle_vs_<session>_pct`` for the energy above the GPU's
idle power (``energy_above_idle_per_request_j``) and ``duration_vs_<session>_pct`` for the
trial's time: where two sessions' machines differ in speed, the idle power over the longer
time makes part of the difference, and the energy above idle shows the rest. At another batch:
``energy_per_request_batch<B>_<session>_j`` and this row's energy over it
(``over_batch<B>_<session>``). A PyTorch row beside an earlier session's vLLM row of the same
task and batch: ``energy_over_vllm_<session>`` (two sessions, so the spread between sessions is
inside the ratio). A benchmark that reports numbers, not a test with a threshold.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

KEY = ["engine", "task", "requests"]


def _measured(tables: list[Path]) -> pd.DataFrame:
    """The measured rows of request streams in trials, with their task named."""
    if not tables:
        return pd.DataFrame(
            columns=[
                *KEY,
                "batch_size",
                "machine_session",
                "energy_per_request_j",
                "energy_above_idle_j",
                "duration_s",
            ]
        )
    rows = pd.concat([pd.read_parquet(t) for t in tables], ignore_index=True)
    rows = rows[rows["feasible"].astype(bool) & rows["trials"].fillna(0).gt(0)]
    return rows.assign(task=rows["trace"])


def _session_name(session: str) -> str:
    return session.replace(":", "_")


def task_rows(session: pd.DataFrame, earlier: pd.DataFrame) -> pd.DataFrame:
    """One line per row of ``session``; see the module's docstring."""
    session = session.reset_index(drop=True)
    per_request = session["energy_per_request_j"]
    lines = pd.DataFrame(
        {
            "engine": session["engine"],
            "task": session["task"],
            "batch_size": session["batch_size"].astype(int),
            "requests": session["requests"].astype(int),
            "trials": session["trials"].astype(int),
            "protocol_met": session["protocol_met"].astype(bool),
            "energy_per_request_j": per_request.round(2),
            "energy_ci95_pct": (100 * session["energy_j_ci95"] / session["energy_j"]).round(2),
            "duration_s": session["duration_s"].round(2),
            "mean_power_w": session["mean_power_w"].round(1),
            "energy_above_idle_per_request_j": (
                session["energy_above_idle_j"] / session["requests"]
            ).round(2),
            "control_drift_energy_pct": (100 * session["control_drift_energy"]).round(2),
            "control_drift_duration_pct": (100 * session["control_drift_duration"]).round(2),
        }
    )
    stream = pd.Series(
        list(lines[["task", "batch_size", "requests"]].itertuples(index=False, name=None))
    )
    on_vllm = lines["engine"] == "vllm"
    vllm = dict(zip(stream[on_vllm], per_request[on_vllm], strict=True))
    # A vLLM row over itself says nothing: the ratio is PyTorch's alone.
    lines["energy_over_vllm"] = (per_request / stream.map(vllm)).round(2).where(~on_vllm)
    earlier = earlier[~earlier["machine_session"].isin(set(session["machine_session"]))]
    mine = list(lines[KEY].itertuples(index=False, name=None))
    for (name, batch), group in earlier.groupby(["machine_session", "batch_size"]):
        group = group.assign(above_idle=group["energy_above_idle_j"] / group["requests"])
        means = group.groupby(KEY)[["energy_per_request_j", "above_idle", "duration_s"]].mean()
        # The earlier session's means in the order of this session's lines (NaN where none).
        then = means.reindex(pd.MultiIndex.from_tuples(mine)).reset_index(drop=True).astype(float)
        before = then["energy_per_request_j"]
        label = _session_name(name)
        same = before.notna() & lines["batch_size"].eq(batch)
        other = before.notna() & ~same
        if same.any():
            for column, now, earlier_value in (
                (f"energy_vs_{label}_pct", per_request, before),
                (
                    f"above_idle_vs_{label}_pct",
                    lines["energy_above_idle_per_request_j"],
                    then["above_idle"],
                ),
                (f"duration_vs_{label}_pct", session["duration_s"], then["duration_s"]),
            ):
                lines.loc[same, column] = (100 * (now / earlier_value - 1)).round(1)
        if other.any():
            lines.loc[other, f"energy_per_request_batch{batch}_{label}_j"] = before.round(2)
            lines.loc[other, f"over_batch{batch}_{label}"] = (per_request / before).round(2)
        served = group[group["engine"] == "vllm"].groupby(["task", "requests"])
        vllm_before = served["energy_per_request_j"].mean()
        paired = pd.Series(
            [
                vllm_before.get((t, r), float("nan"))
                for t, r in zip(lines["task"], lines["requests"], strict=True)
            ],
            dtype=float,
        )
        beside = paired.notna() & lines["batch_size"].eq(batch) & ~on_vllm
        if beside.any():
            lines.loc[beside, f"energy_over_vllm_{label}"] = (per_request / paired).round(2)
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
