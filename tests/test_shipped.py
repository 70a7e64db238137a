"""Figures and the report rebuilt from the shipped H100 measurements, with no measurement job."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from _pipeline import copy_pipeline, run_snakemake

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

FIGURES = (
    "fig1_workload_energy",
    "fig2_controlled_sweeps_vllm",
    "fig3_decoding_strategies",
    "fig4_architectures",
    "fig5_engine_optimisations",
    "fig6_tensor_parallel",
    "fig9_online_serving",
    "fig10_controlled_sweeps_pytorch",
    "fig11_controlled_sweeps_vllm_all_lengths",
)


def test_shipped_measurements_rebuild_every_h100_figure_and_the_report(tmp_path):
    if not DATA.is_dir():
        pytest.skip("the data mirror (../shared/data) is not beside the checkout")
    work = copy_pipeline(tmp_path)
    args = ("--cores", "1", "--configfile", "config/h100.yaml")
    # The traces and the model architectures come from the mirror; every measured number from
    # the shipped tables.
    mirror = f"mirror={{data: {DATA}, models: {DATA / 'models'}}}"
    switch = ("--config", "shipped_measurements=true", mirror)
    planned = run_snakemake(work, "-n", *args, *switch)
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert "measure" not in planned.stdout.split()  # no measurement job, so no GPU needed

    result = run_snakemake(work, *args, *switch, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in FIGURES:
        assert (work / f"results/figures/h100/{name}.png").stat().st_size > 20_000, name
    assert not (work / "results/measurements").exists()
    # The data tables and figures come from the mirror's traces and texts.
    assert (work / "results/figures/traces/fig7_azure_conversation_cdf.png").exists()
    for table in ("tasks/table3_token_stats.csv", "traces/trace_lengths.csv"):
        assert len(pd.read_csv(work / "results/tables" / table)) >= 2, table
    table4 = pd.read_csv(work / "results/tables/h100/table4_energy_over_ideal.csv")
    assert set(table4["engine"]) == {"pytorch", "vllm"}
    assert table4["complete"].all() and (table4["requests_covered_fraction"] == 1).all()
    replay = pd.read_csv(work / "results/tables/h100/trace_replay.csv").iloc[0]
    assert replay["requests"] == 256 and pd.isna(replay["missing_bins"])
    assert abs(replay["estimate_error"]) < 0.10  # the binned estimate against the replay
    decoding = pd.read_csv(work / "results/tables/h100/decoding.csv")
    spec = decoding[decoding["decoding"].str.startswith("speculative")]
    assert set(spec.groupby("decoding")["spec_acceptance_rate"].max()) == {0.0, 1.0}
    tp = pd.read_csv(work / "results/tables/h100/tensor_parallel.csv")
    assert sorted(
        tp.loc[tp["engine_label"] == "PyTorch, eager", "tensor_parallel_size"].unique()
    ) == [
        1,
        2,
        4,
    ]
    table = pd.read_parquet(work / "results/aggregate/h100/measurements.parquet")
    # Only the rows of this hardware label: the cross-check run carries its own.
    assert set(table["hardware"]) == {"h100"}
    assert set(table["energy_source"]) == {"measured"}
    assert table["gpu_name"].eq("NVIDIA H100 80GB HBM3").all()
    log = (work / "logs/aggregate/h100.log").read_text()
    assert "left out" in log and "h100-crosscheck" in log

    report = run_snakemake(work, *args, *switch, "--report", "results/report.html")
    assert report.returncode == 0, report.stderr[-3000:]
    assert (work / "results/report.html").stat().st_size > 100_000
