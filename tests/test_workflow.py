"""The Snakemake workflow end to end on the embedded CPU default (config/smoke.yaml)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _pipeline import copy_pipeline, run_snakemake
from conftest import MIRROR, require_mirror

from llm_energy.analysis.aggregate import REQUIRED_COLUMNS

pytestmark = pytest.mark.integration


def snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return run_snakemake(workdir, *args, timeout=timeout)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    work = copy_pipeline(tmp_path_factory.mktemp("pipeline"))
    result = snakemake(work, "--cores", "2")
    return work, result


def test_smoke_run_writes_measurements_with_provenance(smoke_run):
    work, result = smoke_run
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_parquet(work / "results/aggregate/cpu/measurements.parquet")
    for col in REQUIRED_COLUMNS:
        assert col in table.columns, col
    assert len(table) == 15 and table["feasible"].all()
    assert (table["energy_source"] == "estimate").all()
    assert (table["meter"] == "codecarbon").all()
    assert table["energy_j"].gt(0).all()
    assert table["meter_detail"].str.contains("estimated").all()
    for col in ("git_commit", "config_hash", "host", "timestamp", "architecture_hash"):
        assert table[col].astype(str).str.len().gt(0).all(), col
    csv = pd.read_csv(work / "results/aggregate/cpu/measurements.csv")
    assert len(csv) == len(table)
    # Each measurement job's wall time is kept, and printed after the run beside its estimate.
    group = table["group"].iloc[0]
    benchmark = pd.read_csv(work / f"results/benchmarks/measure/cpu/{group}.tsv", sep="\t")
    assert benchmark["s"].iloc[-1] > 0
    assert f"  {group}: " in result.stderr and "CPU-minutes" in result.stderr


def test_smoke_run_draws_the_figure_and_the_table(smoke_run):
    work, _ = smoke_run
    figure = work / "results/figures/cpu/fig10_controlled_sweeps_pytorch.png"
    assert figure.stat().st_size > 20_000
    table = pd.read_csv(work / "results/tables/cpu/controlled_sweeps.csv")
    assert set(table["batch_size"]) == {1, 4, 16}
    assert table["energy_per_output_token_j"].gt(0).all()


def test_a_figure_rebuilds_by_name_without_measuring_again(smoke_run):
    work, _ = smoke_run
    figure = work / "results/figures/cpu/fig10_controlled_sweeps_pytorch.png"
    figure.unlink()
    result = snakemake(work, "--cores", "1", "fig10")
    assert result.returncode == 0, result.stderr[-3000:]
    assert figure.is_file()
    log = result.stdout + result.stderr
    assert "rule fig10" in log or "(Rule: fig10)" in log
    assert "measure" not in log.split("Job stats:")[-1].split("total")[0]


def test_a_job_with_a_deadline_goes_by_the_hardwares_shipped_tables_for_first_trials(smoke_run):
    """Where the hardware ships job tables, the measure rule has each job fit the plan's
    estimate of every point's first trial to them, for its deadline and its trials' lines."""
    work, _ = smoke_run
    group = "tiny-llama__pytorch"
    shipped = work / "resources/measurements/cpu"
    shipped.mkdir(parents=True)
    (work / f"results/measurements/cpu/{group}.parquet").rename(shipped / f"{group}.parquet")
    try:
        result = run_snakemake(
            work,
            "--cores", "1", f"results/measurements/cpu/{group}.parquet",
            env={**os.environ, "LLM_ENERGY_STOP_BY": "+900"},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        log = (work / f"logs/measure/cpu/{group}.log").read_text()
        said = "the plan's estimate of each point's first trial, for the job's deadline and each "
        assert said + "trial's line: " in log
        assert "fitted to 15 points measured on" in log
        assert "already in the journal" in log  # the journal holds every trial: none measured
    finally:
        (shipped / f"{group}.parquet").unlink()
        shipped.rmdir()


def test_misspelled_config_key_fails_fast_and_names_the_key(smoke_run, tmp_path):
    work, _ = smoke_run
    bad = (work / "config/smoke.yaml").read_text().replace("batch_sizes:", "batchsizes:")
    (work / "config/bad.yaml").write_text(bad)
    t0 = time.monotonic()
    result = snakemake(work, "-n", "--configfile", "config/bad.yaml", timeout=120)
    elapsed = time.monotonic() - t0
    assert result.returncode != 0
    assert "experiments.controlled_sweeps.batchsizes" in result.stdout + result.stderr
    assert elapsed < 60


def test_paper_configuration_plans_every_job(smoke_run):
    work, _ = smoke_run
    result = snakemake(work, "-n", "--configfile", "config/config.yaml", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    stats = result.stdout.split("Job stats:")[-1]
    assert "measure" in stats and "figure" in stats
    assert "results/figures/a100-80gb/fig10_controlled_sweeps_pytorch.png" in result.stdout
    # The paper matrix does not inherit the smoke default's tiny model.
    assert "tiny-llama" not in result.stdout


def _smoke_with_family(work: Path, name: str, family: str, settings: dict) -> str:
    """The smoke config reading the data mirror, with one more experiment family enabled."""
    require_mirror()
    config = yaml.safe_load((work / "config/smoke.yaml").read_text())
    config["mirror"] = {"data": str(MIRROR)}
    config["experiments"][family] = {"enabled": True, **settings}
    (work / "config" / name).write_text(yaml.safe_dump(config))
    return f"config/{name}"


def test_trace_tables_and_fig7_from_the_mirror(smoke_run):
    work, _ = smoke_run
    _smoke_with_family(
        work, "traces.yaml", "workload_traces", {"traces": ["azure_conversation", "azure_code"]}
    )
    mirror = MIRROR
    result = snakemake(
        work, "trace_tables", "fig7", "--cores", "1", "--configfile", "config/traces.yaml"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lengths = pd.read_csv(work / "results/tables/traces/trace_lengths.csv")
    raw = pd.read_csv(mirror / "traces/azure_2023/AzureLLMInferenceTrace_conv.csv")
    conv_in = lengths[(lengths["trace"] == "azure_conversation") & (lengths["side"] == "input")]
    assert conv_in["mean"].iloc[0] == pytest.approx(raw["ContextTokens"].mean(), rel=1e-6)
    assert conv_in["p99"].iloc[0] == pytest.approx(raw["ContextTokens"].quantile(0.99), rel=1e-6)
    assert conv_in["count"].iloc[0] == len(raw)
    bins = pd.read_csv(work / "results/tables/traces/trace_bins.csv")
    assert set(bins["bins"]) == {"configured", "paper_printed", "paper_formula"}
    assert (bins["kept"] + bins["dropped_total"] == bins["requests"]).all()
    assert (work / "results/figures/traces/fig7_azure_conversation_cdf.png").stat().st_size > 20_000


def test_table3_from_the_mirror(smoke_run):
    work, _ = smoke_run
    tasks = {"tasks": ["classification", "translation"], "samples": 64}
    _smoke_with_family(work, "tasks.yaml", "classical_tasks", tasks)
    result = snakemake(work, "table3", "--cores", "1", "--configfile", "config/tasks.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(work / "results/tables/tasks/table3_token_stats.csv")
    assert list(table["role"]) == ["classification", "translation"]
    assert (table["count"] == 64).all()
    assert (
        table.set_index("role").loc["classification", "mean"]
        > table.set_index("role").loc["translation", "mean"]
    )
