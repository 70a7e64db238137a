"""The Table 4 and Fig 1 rules of the workflow, on the embedded CPU default with the tiny model."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _pipeline import copy_pipeline, run_snakemake
from conftest import MIRROR, require_mirror

pytestmark = pytest.mark.integration


def snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return run_snakemake(workdir, *args, timeout=timeout)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Path:
    return copy_pipeline(tmp_path_factory.mktemp("pipeline"))


def _config(work: Path, name: str, **estimates) -> str:
    """The smoke config with only the workload estimate enabled, over four small bins."""
    config = yaml.safe_load((work / "config/smoke.yaml").read_text())
    config["mirror"] = {"data": str(MIRROR)}
    config["protocol"] = {
        "min_duration_s": 0.0,
        "min_repetitions": 1,
        "warmup_repetitions": 1,
        "idle_duration_s": 0.0,
    }
    config["experiments"] = {
        "workload_traces": {
            "traces": ["azure_code"],
            "input_bins": [64, 256],
            "output_bins": [8, 32],
        },
        "workload_estimates": {
            "enabled": True,
            "models": ["tiny-llama"],
            "engines": ["pytorch"],
            "batch_sizes": [1, 4],
            "ideal_gpu": "h100-sxm",
            **estimates,
        },
    }
    (work / "config" / name).write_text(yaml.safe_dump(config))
    return f"config/{name}"


def _job_counts(stdout: str) -> dict[str, int]:
    stats = stdout.split("Job stats:")[-1].split("total")[0]
    counts = {}
    for line in stats.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def test_dry_run_of_table4_and_fig1_plans_measurement_and_estimate(pipeline):
    config = _config(pipeline, "estimates.yaml")
    result = snakemake(pipeline, "-n", "table4", "fig1", "--configfile", config, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _job_counts(result.stdout) == {
        "plan_job": 1,
        "prepare_trace": 1,
        "trace_summary": 1,
        "model_summary": 1,
        "measure": 1,
        "aggregate": 1,
        "workload_energy": 1,
        "workload_table": 1,
        "workload_figure": 1,
        "fig1": 1,
        "table4": 1,
    }
    # The default target asks for them too once the family is enabled.
    everything = snakemake(pipeline, "-n", "--configfile", config, timeout=120)
    assert everything.returncode == 0, everything.stderr[-3000:]
    assert {"workload_table", "workload_figure"} <= set(_job_counts(everything.stdout))


def test_an_unknown_ideal_gpu_fails_before_any_job(pipeline):
    config = _config(pipeline, "bad_gpu.yaml", ideal_gpu="tpu-v5")
    result = snakemake(pipeline, "-n", "table4", "--configfile", config, timeout=120)
    assert result.returncode != 0
    assert "workload_estimates.ideal_gpu is 'tpu-v5'" in result.stdout + result.stderr


def test_table4_and_fig1_from_measured_bins(pipeline):
    require_mirror()
    config = _config(pipeline, "estimates.yaml")
    result = snakemake(pipeline, "table4", "fig1", "--cores", "2", "--configfile", config)
    assert result.returncode == 0, result.stderr[-3000:]
    measured = pd.read_parquet(pipeline / "results/aggregate/cpu/measurements.parquet")
    assert set(measured["experiments"]) == {"workload_estimates"}
    assert len(measured) == 2 * 2 * 2  # bins x ladder
    bins = pd.read_csv(pipeline / "results/tables/cpu/workload_energy_bins.csv")
    assert bins["measured"].all() and (bins["batch_size"] == 4).all()
    assert set(bins["point_id"]) <= set(measured["point_id"])
    ratio = bins["energy_j"] / (bins["requests"] / 4 * bins["energy_per_batch_j"])
    assert ratio.to_numpy() == pytest.approx(1.0)
    table = pd.read_csv(pipeline / "results/tables/cpu/table4_energy_over_ideal.csv")
    assert list(table["trace"]) == ["azure_code"] and table["complete"].all()
    assert (table["energy_source"] == "estimate").all()  # CodeCarbon on a CPU
    assert table["over_ideal_flops_sparse_pct"].gt(0).all()
    assert (pipeline / "results/figures/cpu/fig1_workload_energy.png").stat().st_size > 20_000
