"""Figures and the report rebuilt from the shipped H100 measurements, with no measurement job."""

from __future__ import annotations

import pandas as pd
import pytest
from _pipeline import copy_pipeline, run_snakemake

pytestmark = pytest.mark.integration

FIGURES = (
    "fig2_controlled_sweeps_vllm",
    "fig4_architectures",
    "fig5_engine_optimisations",
    "fig9_online_serving",
    "fig10_controlled_sweeps_pytorch",
    "fig11_controlled_sweeps_vllm_all_lengths",
)


def test_shipped_measurements_rebuild_every_h100_figure_and_the_report(tmp_path):
    work = copy_pipeline(tmp_path)
    args = ("--cores", "1", "--configfile", "config/h100.yaml")
    switch = ("--config", "shipped_measurements=true")
    planned = run_snakemake(work, "-n", *args, *switch)
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert "measure" not in planned.stdout.split()  # no measurement job, so no GPU needed

    result = run_snakemake(work, *args, *switch, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in FIGURES:
        assert (work / f"results/figures/h100/{name}.png").stat().st_size > 20_000, name
    assert not (work / "results/measurements").exists()
    table = pd.read_parquet(work / "results/aggregate/h100/measurements.parquet")
    # Only the rows of this hardware label: the cross-check and decoding runs carry their own.
    assert set(table["hardware"]) == {"h100"}
    assert set(table["energy_source"]) == {"measured"}
    assert table["gpu_name"].eq("NVIDIA H100 80GB HBM3").all()
    log = (work / "logs/aggregate/h100.log").read_text()
    assert "left out" in log and "h100-crosscheck" in log

    report = run_snakemake(work, *args, *switch, "--report", "results/report.html")
    assert report.returncode == 0, report.stderr[-3000:]
    assert (work / "results/report.html").stat().st_size > 100_000
