"""Beyond the study: the binned workload estimate checked against a direct measurement.

A ``trace_replay`` stream serves a sample of a trace's requests with their real lengths, each
bin's requests apart in static batches of the point's batch size, and records how many requests
fell in each bin (``stream_bins``). The estimate for the same requests is the study's rule at
that batch size: the sum over bins of N / B batches times the measured energy of one batch of B
requests at the bin's (input, output) shape; ``ceil(N / B)`` whole batches beside it.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

KEYS = ["hardware", "model", "engine", "batch_size"]


def _bin_energy(rows: pd.DataFrame) -> dict[tuple[int, int], tuple[float, str]]:
    """Measured energy of one batch per (input, output) shape, with its point id."""
    fixed = rows[(rows["serving"] == "batch") & rows["feasible"].astype(bool)]
    return {
        (int(r.input_tokens), int(r.output_tokens)): (float(r.energy_j), str(r.point_id))
        for r in fixed.itertuples()
    }


def replay_comparison(df: pd.DataFrame) -> pd.DataFrame:
    """One row per replayed stream: measured energy, the binned estimate of the same requests
    and the estimate's error; bins without a feasible measurement are named, never zero."""
    tagged = df[df["experiments"].str.contains("trace_replay")]
    if "stream_bins" not in tagged:
        raise ValueError("no measured trace_replay stream in the measurements")
    streams = tagged[tagged["stream_bins"].notna() & tagged["feasible"].astype(bool)]
    if streams.empty:
        raise ValueError("no measured trace_replay stream in the measurements")
    out: list[dict[str, Any]] = []
    for _, s in streams.iterrows():
        same = tagged
        for k in KEYS:
            same = same[same[k] == s[k]]
        energy = _bin_energy(same)
        b = int(s["batch_size"])
        fractional = whole = 0.0
        missing, used = [], []
        counts = json.loads(s["stream_bins"])
        for label, n in counts.items():
            i, o = (int(x) for x in label.split("x"))
            if (i, o) not in energy:
                missing.append(f"{label} ({n} requests)")
                continue
            e, pid = energy[(i, o)]
            fractional += n / b * e
            whole += math.ceil(n / b) * e
            used.append(pid)
        complete = not missing
        out.append(
            {
                **{k: s[k] for k in KEYS},
                "trace": s["trace"],
                "requests": int(s["requests"]),
                "bins": len(counts),
                "measured_j": float(s["energy_j"]),
                "measured_std_j": float(s["energy_std_j"]),
                "estimated_j": fractional if complete else math.nan,
                "estimated_whole_batches_j": whole if complete else math.nan,
                "estimate_error": fractional / s["energy_j"] - 1 if complete else math.nan,
                "whole_batches_error": whole / s["energy_j"] - 1 if complete else math.nan,
                "missing_bins": "; ".join(missing),
                "replay_point_id": s["point_id"],
                "bin_point_ids": " ".join(used),
                "energy_source": s["energy_source"],
                "gpu_name": s["gpu_name"],
                "backend_version": s["backend_version"],
                "weights": s["weights"],
                "git_commit": s["git_commit"],
            }
        )
    return pd.DataFrame(out)
