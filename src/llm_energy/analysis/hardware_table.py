"""The study's Table 5: the hardware and software the rows were measured on, from the rows'
own provenance (not from a description of the cluster)."""

from __future__ import annotations

import pandas as pd

# What one setup is: a GPU model with its driver, power limit and software.
SETUP = (
    "hardware",
    "gpu_name",
    "driver_version",
    "power_limit_w",
    "cuda_version",
    "torch_version",
    "backend",
    "backend_version",
    "meter",
)


def _joined(values: pd.Series) -> str:
    return " ".join(sorted({str(v) for v in values.dropna() if str(v)}))


def hardware_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per setup (GPU model, driver, power limit, CUDA, torch, backend, meter): how
    many rows, GPUs (distinct UUIDs), hosts and commits were measured on it, the largest number
    of GPUs one job used, and the first and last measurement."""
    rows = df[df["repetitions"].fillna(0) > 0] if "repetitions" in df else df
    if rows.empty:
        raise ValueError("no measured rows to describe")
    rows = rows.copy()
    for col in SETUP:
        if col not in rows:
            rows[col] = ""
    rows[list(SETUP)] = rows[list(SETUP)].fillna("").astype(str)
    gpus = rows["gpu_uuids"].fillna("").astype(str).str.split(",") if "gpu_uuids" in rows else None
    table = []
    for setup, group in rows.groupby(list(SETUP), sort=True):
        uuids = set()
        if gpus is not None:
            uuids = {u.strip() for us in gpus.loc[group.index] for u in us if u.strip()}
        entry = dict(zip(SETUP, setup, strict=True))
        entry.update(
            rows=len(group),
            gpus=len(uuids),
            largest_job_gpus=int(pd.to_numeric(group.get("gpu_count"), errors="coerce").max())
            if "gpu_count" in group
            else 0,
            hosts=_joined(group["host"]) if "host" in group else "",
            git_commits=len(set(group["git_commit"].dropna())) if "git_commit" in group else 0,
            first_measured=str(group["timestamp"].min()) if "timestamp" in group else "",
            last_measured=str(group["timestamp"].max()) if "timestamp" in group else "",
        )
        table.append(entry)
    return pd.DataFrame(table)
