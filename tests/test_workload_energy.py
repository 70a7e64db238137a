"""The offline workload energy model: largest feasible batches, N/B arithmetic, missing bins,
dropped requests, the ideal baselines, the trace and architecture summaries it reads, Table 4,
Fig 1, the command line and the planning."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest

from llm_energy.analysis.flops import Architecture
from llm_energy.analysis.ideal import (
    flops_baseline_j,
    gpu,
    kv_bytes,
    roofline_baseline_j,
    weight_bytes,
)
from llm_energy.analysis.summaries import (
    architecture_summary,
    read_architecture_summary,
    read_trace_summary,
    summarise_trace,
    write_architecture_summary,
    write_trace_summary,
)
from llm_energy.analysis.workload_estimate import (
    LADDER_CAP,
    OUT_OF_MEMORY_ABOVE,
    estimate_workloads,
    ideal_gpu_key,
    largest_batches,
    memory_fit_batch,
    trace_ideal_totals,
    workload_totals,
)
from llm_energy.cli import main
from llm_energy.config import validate
from llm_energy.errors import ConfigError, InputError
from llm_energy.figures.style import save
from llm_energy.figures.workload_estimate import fig1_workload_energy, table4_energy_over_ideal
from llm_energy.inputs.traces import bin_requests
from llm_energy.measure.plan import plan_study

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = ROOT / "resources" / "models" / "tiny-llama" / "config.json"
TINY = Architecture.from_config(json.loads(TINY_CONFIG.read_text()))
H100 = gpu("h100-sxm")
INPUT_BINS, OUTPUT_BINS = (32, 128), (8, 16)
OOM = "out of memory: CUDA out of memory. Tried to allocate 7.00 GiB."


def _row(engine: str, batch: int, inp: int, out: int, energy_j: float | None, **kw) -> dict:
    """A measurement row in the pipeline's schema (the columns the estimate reads, and more)."""
    feasible = energy_j is not None
    row = {
        "experiments": "workload_estimates",
        "group": f"tiny__{engine}",
        "hardware": "h100",
        "model": "tiny",
        "weights": "random",
        "engine": engine,
        "backend": "vllm" if engine == "vllm" else "transformers",
        "decoding": "greedy",
        "batch_size": batch,
        "input_tokens": inp,
        "output_tokens": out,
        "meter": "nvml",
        "energy_source": "measured",
        "gpu_name": "NVIDIA H100 80GB HBM3",
        "git_commit": f"commit-{engine}",
        "point_id": f"{engine}_b{batch}_i{inp}_o{out}",
        "feasible": feasible,
        "error": "" if feasible else OOM,
        "energy_j": energy_j if feasible else math.nan,
    }
    row.update(kw)
    return row


def _pytorch_rows() -> list[dict]:
    not_attempted = {"error": "not attempted: batch 2 was already out of memory"}
    return [
        # 32 in / 8 out: every rung fits, so B = 4 is the ladder's cap.
        _row("pytorch", 1, 32, 8, 2.0),
        _row("pytorch", 2, 32, 8, 3.0),
        _row("pytorch", 4, 32, 8, 5.0),
        # 128 in / 8 out: batch 2 runs out of memory, batch 4 is not attempted; B = 1.
        _row("pytorch", 1, 128, 8, 4.0),
        _row("pytorch", 2, 128, 8, None),
        _row("pytorch", 4, 128, 8, None, **not_attempted),
        # 128 in / 16 out: batch 4 runs out of memory; B = 2.
        _row("pytorch", 1, 128, 16, 6.0),
        _row("pytorch", 2, 128, 16, 8.0),
        _row("pytorch", 4, 128, 16, None),
        # A beam-search row at a larger batch is not the greedy batch of the bin.
        _row("pytorch", 64, 32, 8, 1.0, decoding="beam"),
    ]


def _measurements(tmp_path: Path, rows: list[dict]) -> pd.DataFrame:
    """Through Parquet, as the aggregated table is read."""
    path = tmp_path / "measurements.parquet"
    pd.DataFrame(rows).to_parquet(path, index=False)
    return pd.read_parquet(path)


def _trace() -> pd.DataFrame:
    """5 requests in bin (32, 8), 3 in (128, 8), 10 in (128, 16); 4 dropped above the bins."""
    lengths = (
        [(10, 5), (32, 8), (1, 1), (20, 7), (31, 2)]  # -> (32, 8)
        + [(33, 8), (128, 1), (100, 3)]  # -> (128, 8)
        + [(100, 9)] * 4
        + [(128, 16)] * 6  # -> (128, 16)
        + [(200, 3), (129, 4), (20, 20), (129, 17)]  # dropped: input, input, output, both
    )
    return pd.DataFrame(lengths, columns=["input_tokens", "output_tokens"])


def _estimate(tmp_path: Path, rows: list[dict], **kw) -> pd.DataFrame:
    return estimate_workloads(
        {"azure_code": bin_requests(_trace(), INPUT_BINS, OUTPUT_BINS)},
        _measurements(tmp_path, rows),
        {"tiny": TINY},
        H100,
        **kw,
    )


# --- the largest feasible batch ------------------------------------------------------------------


def test_largest_feasible_batch_per_bin_and_what_bounds_it(tmp_path):
    chosen = largest_batches(_measurements(tmp_path, _pytorch_rows()))
    by_shape = chosen.set_index(["input_tokens", "output_tokens"])
    assert by_shape.loc[(32, 8), "batch_size"] == 4
    assert by_shape.loc[(32, 8), "batch_limit"] == LADDER_CAP
    assert math.isnan(by_shape.loc[(32, 8), "oom_batch_size"])
    assert by_shape.loc[(128, 8), "batch_size"] == 1
    assert by_shape.loc[(128, 8), "batch_limit"] == OUT_OF_MEMORY_ABOVE
    assert by_shape.loc[(128, 8), "oom_batch_size"] == 2
    assert by_shape.loc[(128, 16), "batch_size"] == 2
    assert by_shape.loc[(128, 16), "oom_batch_size"] == 4
    assert by_shape.loc[(128, 16), "energy_per_batch_j"] == 8.0
    assert by_shape.loc[(128, 16), "point_id"] == "pytorch_b2_i128_o16"
    assert by_shape.loc[(128, 16), "energy_source"] == "measured"


def test_of_two_rows_of_one_batch_and_shape_the_estimates_own_then_the_latest_is_used(tmp_path):
    later = {"timestamp": "2026-11-28T00:00:00+00:00"}
    sweep = _row("pytorch", 4, 32, 8, 6.5, point_id="sweep", experiments="output_sweep", **later)
    again = _row("pytorch", 4, 32, 8, 5.5, point_id="again", **later)
    chosen = largest_batches(_measurements(tmp_path, [*_pytorch_rows(), sweep]))
    by_shape = chosen.set_index(["input_tokens", "output_tokens"])
    assert by_shape.loc[(32, 8), "point_id"] == "pytorch_b4_i32_o8"  # the estimate's own row
    chosen = largest_batches(_measurements(tmp_path, [*_pytorch_rows(), sweep, again]))
    by_shape = chosen.set_index(["input_tokens", "output_tokens"])
    assert by_shape.loc[(32, 8), "point_id"] == "again"  # its own, and the latest
    assert by_shape.loc[(32, 8), "energy_per_batch_j"] == 5.5


def test_a_shape_only_other_families_measured_below_any_out_of_memory_is_not_measured(tmp_path):
    """The estimate takes a bin's largest feasible batch: a shape where only another family
    measured, at a batch it chose, with no larger batch out of memory, was never searched; its
    bin is not measured, and says which batch the other family measured. An out-of-memory row
    above bounds it, whichever family measured it."""
    sweep = {"experiments": "controlled_sweeps"}
    rows = [
        _row("pytorch", 1, 32, 8, 2.0, **sweep),
        _row("pytorch", 4, 32, 8, 3.0, **{**sweep, "experiments": "controlled_sweeps+grid"}),
        _row("pytorch", 1, 128, 8, 4.0, **sweep),
        _row("pytorch", 2, 128, 8, None, **sweep),
    ]
    chosen = largest_batches(_measurements(tmp_path, rows)).set_index(
        ["input_tokens", "output_tokens"]
    )
    assert math.isnan(chosen.loc[(32, 8), "batch_size"])
    assert chosen.loc[(32, 8), "batch_limit"] == (
        "not searched: batch 4 measured for controlled_sweeps, grid, no larger batch tried"
    )
    assert chosen.loc[(128, 8), "batch_size"] == 1
    assert chosen.loc[(128, 8), "batch_limit"] == "out of memory above"
    bins = _estimate(tmp_path, rows, missing="incomplete").set_index(["input_bin", "output_bin"])
    assert not bins.loc[(32, 8), "measured"] and bins.loc[(128, 8), "measured"]
    with pytest.raises(InputError, match=r"not searched: batch 4 measured for controlled_sweeps"):
        _estimate(tmp_path, rows)
    # Where the estimate's own rows elsewhere go no higher than batch 4 (its ladder's top), a
    # batch of 4 is the largest it would have tried: the sweep's row stands for the bin.
    own = _row("pytorch", 4, 128, 16, 7.0)
    chosen = largest_batches(_measurements(tmp_path, [*rows, own])).set_index(
        ["input_tokens", "output_tokens"]
    )
    assert chosen.loc[(32, 8), "batch_size"] == 4
    assert chosen.loc[(32, 8), "batch_limit"] == LADDER_CAP


def test_a_throttled_measurement_is_used_only_where_no_healthy_one_is_and_is_counted(tmp_path):
    """A row whose GPU throttled loses to a healthy row of the same batch and shape, whichever
    is later; where it is the only one, the bin uses it, the totals count it, and claim 8's
    comparison is inconclusive."""
    from llm_energy.analysis.claims import workload_claims

    later = {"timestamp": "2026-11-28T00:00:00+00:00", "gpu_health": "throttled_thermal"}
    hot = _row("pytorch", 4, 32, 8, 9.0, point_id="hot", **later)
    rows = [*_pytorch_rows(), hot]
    chosen = largest_batches(_measurements(tmp_path, rows)).set_index(
        ["input_tokens", "output_tokens"]
    )
    assert chosen.loc[(32, 8), "point_id"] == "pytorch_b4_i32_o8"
    assert chosen.loc[(32, 8), "gpu_health"] == ""  # measured before the health columns
    only_hot = [r for r in rows if r["point_id"] != "pytorch_b4_i32_o8"]
    chosen = largest_batches(_measurements(tmp_path, only_hot))
    chosen = chosen.set_index(["input_tokens", "output_tokens"])
    assert chosen.loc[(32, 8), "point_id"] == "hot"
    vllm = [_row("vllm", b, i, o, 0.5 * e) for b, i, o, e in ((4, 32, 8, 5.0), (1, 128, 8, 4.0))]
    vllm.append(_row("vllm", 2, 128, 16, 4.0))
    bins = _estimate(tmp_path, [*only_hot, *vllm])
    totals = workload_totals(bins).set_index("engine")
    assert totals.loc["pytorch", "bins_gpu_health_flagged"] == 1
    assert totals.loc["vllm", "bins_gpu_health_flagged"] == 0
    claim = workload_claims(bins).iloc[0]
    assert claim["verdict"] == "inconclusive: GPU health flagged in the rows of 1 bin"
    healthy = _estimate(tmp_path, [*rows, *vllm])
    assert workload_claims(healthy).iloc[0]["verdict"].startswith("inconclusive: no interval")


# --- N / B arithmetic, provenance, dropped requests ----------------------------------------------


def test_energy_is_requests_over_batch_times_energy_per_batch(tmp_path):
    bins = _estimate(tmp_path, _pytorch_rows())
    by_bin = bins.set_index(["input_bin", "output_bin"])
    assert by_bin["requests"].to_dict() == {(32, 8): 5, (128, 8): 3, (128, 16): 10}
    assert by_bin.loc[(32, 8), "batches"] == pytest.approx(5 / 4)
    assert by_bin.loc[(32, 8), "batches_ceil"] == 2
    assert by_bin.loc[(32, 8), "energy_j"] == pytest.approx(5 / 4 * 5.0)
    assert by_bin.loc[(32, 8), "energy_ceil_j"] == pytest.approx(2 * 5.0)
    assert by_bin.loc[(128, 8), "energy_j"] == pytest.approx(3 / 1 * 4.0)
    assert by_bin.loc[(128, 16), "energy_j"] == pytest.approx(10 / 2 * 8.0)
    totals = workload_totals(bins)
    assert len(totals) == 1
    total = totals.iloc[0]
    assert total["energy_j"] == pytest.approx(6.25 + 12.0 + 40.0)
    assert total["energy_ceil_j"] == pytest.approx(10.0 + 12.0 + 40.0)
    assert total["batches"] == pytest.approx(1.25 + 3 + 5)
    assert bool(total["complete"]) and total["requests_covered_fraction"] == 1.0
    assert total["bins_at_ladder_cap"] == 1
    # 128 in / 8 out fits 1 of at most 1; 128 in / 16 out 2 of at most 3.
    assert total["bins_under_half_largest_fit"] == 0 and total["largest_fit_over_batch_max"] == 1.5
    assert total["point_ids"] == "pytorch_b1_i128_o8;pytorch_b2_i128_o16;pytorch_b4_i32_o8"
    assert total["git_commits"] == "commit-pytorch"
    assert (total["energy_source"], total["weights"]) == ("measured", "random")
    assert total["gpu_name"] == "NVIDIA H100 80GB HBM3"


def test_a_bin_measured_under_half_the_largest_batch_that_may_fit_is_counted(tmp_path):
    """Without batch 2 on its ladder, 128 in / 16 out fits batch 1 and runs out of memory at
    batch 4: the largest that fits may be 3, so the total says one bin may be short, unless
    the out-of-memory row knows the largest that fits (a search between, or vLLM's KV cache)."""
    rows = [r for r in _pytorch_rows() if (r["batch_size"], r["output_tokens"]) != (2, 16)]
    total = workload_totals(_estimate(tmp_path, rows)).iloc[0]
    assert total["bins_under_half_largest_fit"] == 1 and total["largest_fit_over_batch_max"] == 3
    for r in rows:
        if (r["batch_size"], r["output_tokens"]) == (4, 16):
            r["largest_feasible_batch"] = 1
    total = workload_totals(_estimate(tmp_path, rows)).iloc[0]
    assert total["bins_under_half_largest_fit"] == 0 and total["largest_fit_over_batch_max"] == 1


def test_every_row_counts_the_requests_dropped_above_the_largest_bins(tmp_path):
    bins = _estimate(tmp_path, _pytorch_rows())
    assert (bins["requests_in_trace"] == 22).all()
    assert (bins["dropped_input"] == 3).all()  # 200, 129 and 129 input tokens
    assert (bins["dropped_output"] == 2).all()  # 20 and 17 output tokens
    assert (bins["dropped_total"] == 4).all()  # (129, 17) counted once
    total = workload_totals(bins).iloc[0]
    assert total["requests_binned"] + total["dropped_total"] == total["requests_in_trace"]


# --- missing bins -------------------------------------------------------------------------------


def _with_partial_vllm() -> list[dict]:
    # vLLM measured only the (32, 8) bin; at (128, 16) even batch 1 ran out of memory.
    return [
        *_pytorch_rows(),
        _row("vllm", 8, 32, 8, 4.0),
        _row("vllm", 1, 128, 16, None),
    ]


def test_a_bin_without_a_feasible_measurement_is_an_error_naming_it(tmp_path):
    with pytest.raises(InputError) as exc:
        _estimate(tmp_path, _with_partial_vllm())
    msg = str(exc.value)
    assert "engine 'vllm'" in msg and "azure_code" in msg
    assert "128x8 (3 requests; not measured)" in msg
    assert "128x16 (10 requests; out of memory at every batch measured)" in msg
    assert "pytorch" not in msg
    assert "missing_bins: incomplete" in msg


def test_incomplete_totals_list_the_missing_bins_and_the_requests_covered(tmp_path):
    bins = _estimate(tmp_path, _with_partial_vllm(), missing="incomplete")
    totals = workload_totals(bins).set_index("engine")
    vllm = totals.loc["vllm"]
    assert not bool(vllm["complete"])
    assert vllm["missing_bins"] == "128x8;128x16"
    assert vllm["requests_covered_fraction"] == pytest.approx(5 / 18)
    assert vllm["energy_j"] == pytest.approx(5 / 8 * 4.0)  # never a zero for the gaps
    covered = bins[(bins["engine"] == "vllm") & bins["measured"]]
    assert vllm["ideal_flops_dense_j"] == pytest.approx(covered["ideal_flops_dense_j"].sum())
    assert bool(totals.loc["pytorch", "complete"])
    missing = bins[(bins["engine"] == "vllm") & ~bins["measured"]]
    assert missing["energy_j"].isna().all()


def test_a_feasible_row_without_energy_is_missing_not_zero(tmp_path):
    rows = [
        _row("pytorch", 1, i, o, math.nan, meter="none") for i in INPUT_BINS for o in OUTPUT_BINS
    ]
    with pytest.raises(InputError, match="no energy recorded"):
        _estimate(tmp_path, rows)


def test_an_engine_without_rows_is_left_out(tmp_path):
    bins = _estimate(tmp_path, _pytorch_rows(), engines=["pytorch", "vllm"])
    assert set(bins["engine"]) == {"pytorch"}


# --- ideal baselines ----------------------------------------------------------------------------


def test_ideal_baselines_per_bin_are_those_of_ideal_py(tmp_path):
    bins = _estimate(tmp_path, _pytorch_rows()).set_index(["input_bin", "output_bin"])
    for (i, o), n in ((32, 8), 5), ((128, 8), 3), ((128, 16), 10):
        row = bins.loc[(i, o)]
        dense = flops_baseline_j(TINY, H100, n, i, o, "dense")
        assert row["ideal_flops_dense_j"] == pytest.approx(dense)
        assert row["ideal_flops_dense_j"] == pytest.approx(
            n * flops_baseline_j(TINY, H100, 1, i, o)
        )
        assert row["ideal_flops_sparse_j"] == pytest.approx(
            flops_baseline_j(TINY, H100, n, i, o, "sparse")
        )
        # The tiny model fits any of these batches, so the roofline runs each bin in one batch.
        assert row["ideal_roofline_batch_size"] == n
        assert row["ideal_roofline_j"] == pytest.approx(roofline_baseline_j(TINY, H100, n, i, o))
        assert row["ideal_gpu"] == "h100-sxm"
    ideal = trace_ideal_totals(bins.reset_index())
    assert ideal["requests"].iloc[0] == 18


def test_roofline_batches_are_the_largest_that_fit_memory():
    llama = Architecture(4096, 32, 32, 8, 128, 14336, 128256)
    free = H100.memory_gib * 2**30 - weight_bytes(llama)
    assert memory_fit_batch(llama, H100, 4096, 512) == int(free // kv_bytes(llama, 4608))
    # (80 GiB - 15,009,316,864 bytes of weights) / (128 KiB x 4,608 tokens) = 117.4
    assert memory_fit_batch(llama, H100, 4096, 512) == 117
    tiny_gpu = dataclasses.replace(H100, memory_gib=1)
    assert memory_fit_batch(llama, tiny_gpu, 32, 8) == 0


def test_ideal_gpu_is_the_hardware_label_or_the_configured_key(tiny_config):
    tiny_config["hardware"] = "h100-sxm"
    assert ideal_gpu_key(validate(tiny_config)) == "h100-sxm"
    tiny_config["experiments"]["workload_estimates"] = {"ideal_gpu": "rtx-a6000"}
    assert ideal_gpu_key(validate(tiny_config)) == "rtx-a6000"
    tiny_config["experiments"]["workload_estimates"] = {"ideal_gpu": "tpu-v5"}
    with pytest.raises(ConfigError, match=r"workload_estimates\.ideal_gpu is 'tpu-v5'"):
        ideal_gpu_key(validate(tiny_config))


# --- Table 4 and Fig 1 --------------------------------------------------------------------------


def test_table4_is_energy_over_ideal_in_percent(tmp_path):
    bins = _estimate(tmp_path, _pytorch_rows())
    table = table4_energy_over_ideal(workload_totals(bins))
    row = table.iloc[0]
    for name in ("flops_sparse", "flops_dense", "roofline"):
        ideal = bins[f"ideal_{name}_j"].sum()
        assert row[f"over_ideal_{name}_pct"] == pytest.approx((58.25 / ideal - 1) * 100)
    assert row["over_ideal_flops_sparse_pct"] > row["over_ideal_flops_dense_pct"]
    assert (row["trace"], row["engine"], row["gpu_name"]) == (
        "azure_code",
        "pytorch",
        "NVIDIA H100 80GB HBM3",
    )


def test_fig1_marks_an_unmeasured_engine_and_an_incomplete_one(tmp_path):
    bins = _estimate(tmp_path, _with_partial_vllm(), missing="incomplete")
    fig = fig1_workload_energy(bins, ["pytorch", "vllm", "vllm-eager"])
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "not measured" in texts
    assert any(t.startswith("28% of req.") for t in "\n".join(texts).split("\n"))
    assert "Hatched: incomplete" in " ".join(t.get_text() for t in fig.texts)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[:3] == ["pytorch", "vllm", "vllm-eager"]
    out = tmp_path / "fig1.png"
    save(fig, out)
    assert out.stat().st_size > 10_000


def test_fig1_sets_table4_of_the_paper_beside_ours_and_names_the_rows_sessions(tmp_path):
    bins = _estimate(tmp_path, _pytorch_rows())
    fig = fig1_workload_energy(bins, ["pytorch"])
    texts = [t.get_text() for t in fig.axes[0].texts]
    # The paper's Azure-code excess of PyTorch over the ideal (its Table 4), and ours.
    assert "paper +103%" in texts
    over = workload_totals(bins).iloc[0]
    ours = over["energy_j"] / over["ideal_flops_sparse_j"] - 1
    assert any(t.endswith(f"{ours:+.0%}") for t in texts)
    footer = " ".join(t.get_text() for t in fig.texts)
    assert "GPUs: NVIDIA H100 80GB HBM3 (UUIDs not recorded)" in footer
    assert "1 session: git commit- (" in footer


# --- command line -------------------------------------------------------------------------------


def _cli_inputs(tmp_path: Path, rows: list[dict]) -> list[str]:
    measurements = tmp_path / "measurements.parquet"
    pd.DataFrame(rows).to_parquet(measurements, index=False)
    trace = tmp_path / "azure_code.parquet"
    _trace().to_parquet(trace, index=False)
    return [
        "workload-energy",
        "--measurements",
        str(measurements),
        "--traces",
        str(trace),
        "--input-bins",
        *map(str, INPUT_BINS),
        "--output-bins",
        *map(str, OUTPUT_BINS),
        "--engines",
        "pytorch",
        "vllm",
        "--model",
        "tiny=local/tiny",
        "--model-config",
        f"tiny={TINY_CONFIG}",
        "--gpu",
        "h100-sxm",
        "--bins-out",
        str(tmp_path / "bins.csv"),
        "--totals-out",
        str(tmp_path / "totals.csv"),
    ]


def test_cli_writes_the_estimate_table4_and_fig1(tmp_path, capsys):
    assert main(_cli_inputs(tmp_path, _pytorch_rows())) == 0
    assert "engine vllm, model tiny: no measurements" in capsys.readouterr().out
    totals = pd.read_csv(tmp_path / "totals.csv")
    assert totals["energy_j"].tolist() == pytest.approx([58.25])
    table4 = tmp_path / "table4.csv"
    assert (
        main(["workload-table", "--totals", str(tmp_path / "totals.csv"), "--out", str(table4)])
        == 0
    )
    assert len(pd.read_csv(table4)) == 1
    fig = tmp_path / "fig1.png"
    args = ["workload-figure", "--bins", str(tmp_path / "bins.csv"), "--out", str(fig)]
    assert main([*args, "--engines", "pytorch", "vllm"]) == 0
    assert fig.stat().st_size > 10_000


def test_cli_from_summaries_writes_what_it_writes_from_the_trace_and_config(tmp_path):
    raw = _cli_inputs(tmp_path, _pytorch_rows())
    assert main(raw) == 0
    from_raw = {name: (tmp_path / name).read_text() for name in ("bins.csv", "totals.csv")}
    trace, arch = tmp_path / "azure_code.json", tmp_path / "tiny.json"
    bins = ["--input-bins", *map(str, INPUT_BINS), "--output-bins", *map(str, OUTPUT_BINS)]
    prepared = raw[raw.index("--traces") + 1]
    assert main(["trace-summary", prepared, "--out", str(trace), *bins]) == 0
    model = ["tiny", "--hub-id", "local/tiny", "--config", str(TINY_CONFIG)]
    assert main(["model-summary", *model, "--out", str(arch)]) == 0
    # The same command with the summaries in place of the trace and of --model/--model-config.
    swap = {prepared: str(trace), "--model": "--architecture", "tiny=local/tiny": f"tiny={arch}"}
    summarised = [swap.get(a, a) for a in raw]
    at = summarised.index("--model-config")
    del summarised[at : at + 2]
    assert main(summarised) == 0
    assert {name: (tmp_path / name).read_text() for name in from_raw} == from_raw


def test_cli_reports_missing_bins_as_one_error(tmp_path, capsys):
    assert main(_cli_inputs(tmp_path, _with_partial_vllm())) == 2
    err = capsys.readouterr().err
    assert "engine 'vllm'" in err and "Traceback" not in err
    assert not (tmp_path / "totals.csv").exists()


# --- summaries ----------------------------------------------------------------------------------


def test_the_estimate_from_a_trace_summary_equals_the_one_from_the_trace(tmp_path):
    path = tmp_path / "azure_code.json"
    write_trace_summary(summarise_trace("azure_code", _trace(), INPUT_BINS, OUTPUT_BINS), path)
    held = read_trace_summary(path).binning(INPUT_BINS, OUTPUT_BINS)
    rows = _measurements(tmp_path, _with_partial_vllm())
    for missing in ("error", "incomplete"):
        kw = {"missing": missing, "engines": ["pytorch"] if missing == "error" else None}
        from_summary = estimate_workloads({"azure_code": held}, rows, {"tiny": TINY}, H100, **kw)
        pd.testing.assert_frame_equal(from_summary, _estimate(tmp_path, _with_partial_vllm(), **kw))


def test_an_architecture_summary_holds_the_architecture_of_its_config(tmp_path):
    import hashlib

    path = tmp_path / "tiny.json"
    summary = architecture_summary("tiny", "local/tiny", TINY_CONFIG, {"git_commit": "abc"})
    write_architecture_summary(summary, path)
    back = read_architecture_summary(path)
    assert back.architecture == TINY and (back.model, back.hub_id) == ("tiny", "local/tiny")
    assert back.provenance["config_sha256"] == hashlib.sha256(TINY_CONFIG.read_bytes()).hexdigest()
    assert back.provenance["git_commit"] == "abc"
    data = json.loads(path.read_text())
    del data["architecture"]["vocab"]
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="vocab"):
        read_architecture_summary(path)


# --- planning -----------------------------------------------------------------------------------


def _estimates_config(tiny_config: dict, **settings) -> dict:
    tiny_config["experiments"]["workload_traces"] = {
        "traces": ["azure_code"],
        "input_bins": [32, 128],
        "output_bins": [8, 16, 32],
    }
    tiny_config["experiments"]["workload_estimates"] = {
        "enabled": True,
        "models": ["tiny"],
        "engines": ["pytorch"],
        "batch_sizes": [1, 4, 16],
        **settings,
    }
    return tiny_config


def test_plan_has_one_point_per_bin_and_ladder_rung(tiny_config):
    tiny_config["experiments"]["controlled_sweeps"]["enabled"] = False
    job = plan_study(validate(_estimates_config(tiny_config)))["tiny__pytorch"]
    shapes = {(p.batch_size, p.input_tokens, p.output_tokens) for p in job.points}
    assert shapes == {(b, i, o) for b in (1, 4, 16) for i in (32, 128) for o in (8, 16, 32)}
    assert len(job.points) == 18
    assert {p.experiments for p in job.points} == {("workload_estimates",)}
    assert {p.decoding.name for p in job.points} == {"greedy"}


def test_plan_shares_points_with_other_families(tiny_config):
    sweeps = tiny_config["experiments"]["controlled_sweeps"]
    sweeps["input_sweep"] = {"input_tokens": [32], "output_tokens": [8]}
    sweeps["batch_sizes"] = [1, 2]
    job = plan_study(validate(_estimates_config(tiny_config)))["tiny__pytorch"]
    by_shape = {(p.batch_size, p.input_tokens, p.output_tokens): p for p in job.points}
    assert by_shape[(1, 32, 8)].experiments == ("input_sweep", "workload_estimates")
    assert by_shape[(4, 32, 8)].experiments == ("workload_estimates",)


def test_bins_plans_only_the_chosen_bins_with_the_ids_of_the_whole_plan(tiny_config):
    """A part of the bins at a time: the chosen bins' points, in the whole plan's order and
    with the ids the whole plan gives them, so that parts measured in several runs join."""
    from llm_energy.measure.point_ids import point_ids

    tiny_config["experiments"]["controlled_sweeps"]["enabled"] = False
    whole = plan_study(validate(_estimates_config(tiny_config)))["tiny__pytorch"]
    part = plan_study(validate(_estimates_config(tiny_config, bins=[[128, 8], [32, 32]])))
    part = part["tiny__pytorch"]
    chosen = [p for p in whole.points if (p.input_tokens, p.output_tokens) in {(128, 8), (32, 32)}]
    assert [p.key for p in part.points] == [p.key for p in chosen] and len(chosen) == 6
    whole_ids, part_ids = point_ids(whole), point_ids(part)
    assert all(part_ids[p.key] == whole_ids[p.key] for p in part.points)


def test_bins_outside_the_traces_bins_is_one_error_naming_them(tiny_config):
    config = validate(_estimates_config(tiny_config, bins=[[32, 8], [64, 8], [128, 512]]))
    with pytest.raises(ConfigError) as error:
        plan_study(config)
    assert str(error.value) == (
        "config: experiments.workload_estimates.bins: [64, 8], [128, 512] not among the bins "
        "of experiments.workload_traces (input_bins 32 128, output_bins 8 16 32)"
    )
    tiny_config["experiments"]["workload_estimates"]["bins"] = [[32]]
    with pytest.raises(ConfigError, match=r"workload_estimates\.bins"):
        validate(tiny_config)


def test_occupied_bins_only_plans_every_bin_and_the_job_measures_the_occupied(
    tiny_config, tmp_path
):
    from llm_energy.inputs.traces import load_trace
    from llm_energy.measure.runner import run_job

    mirror = tmp_path / "mirror"
    trace = mirror / "traces" / "azure_2023" / "AzureLLMInferenceTrace_code.csv"
    trace.parent.mkdir(parents=True)
    # Bins (32, 8), (128, 32) and (32, 16); one request above the largest input bin.
    trace.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\nt,10,3\nt,32,8\nt,100,20\nt,20,9\nt,500,3\n"
    )
    tiny_config["experiments"]["controlled_sweeps"]["enabled"] = False
    # Planning reads no trace: the mirror is not even given to it.
    config = validate(_estimates_config(tiny_config, occupied_bins_only=True))
    job = plan_study(config)["tiny__pytorch"]
    est = config["experiments"]["workload_traces"]
    assert len(job.points) == len(est["input_bins"]) * len(est["output_bins"]) * 3
    assert job.selections["workload_estimates"]["traces"] == est["traces"]

    traces = tmp_path / "traces"
    traces.mkdir()
    load_trace("azure_code", trace).to_parquet(traces / "azure_code.parquet")
    selection = dict(job.selections["workload_estimates"], traces=["azure_code"])
    job = dataclasses.replace(job, selections={"workload_estimates": selection})
    table = run_job(job, tmp_path / "out.parquet", tmp_path / "journal", traces_dir=traces)
    shapes = set(zip(table["input_tokens"], table["output_tokens"], strict=True))
    assert shapes == {(32, 8), (32, 16), (128, 32)}


def test_schema_defaults_of_the_family(tiny_config):
    est = validate(tiny_config)["experiments"]["workload_estimates"]
    assert est["enabled"] is False
    assert est["batch_sizes"] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
    assert est["missing_bins"] == "error"
    assert est["occupied_bins_only"] is False
    assert est["ideal_gpu"] is None
    tiny_config["experiments"]["workload_estimates"] = {"missing_bins": "zero"}
    with pytest.raises(ConfigError, match=r"workload_estimates\.missing_bins"):
        validate(tiny_config)


def test_claim_8_compares_only_totals_of_every_bin(tmp_path):
    """Totals of the bins measured so far cover different requests on each engine: claim 8
    makes no comparison of them and says how much of the trace each covers."""
    from llm_energy.analysis.claims import workload_claims

    bins = _estimate(tmp_path, _with_partial_vllm(), missing="incomplete")
    (claim,) = workload_claims(bins).itertuples()
    assert math.isnan(claim.measured_value)
    assert math.isnan(claim.ci95_low) and math.isnan(claim.ci95_high)
    assert (
        claim.verdict
        == "not measured: bins missing (vllm 28 %, pytorch 100 % of the requests measured)"
    )


# --- intervals and machine sessions --------------------------------------------------------------


def _two_bin_trace() -> pd.DataFrame:
    """8 requests in bin (32, 8) and 4 in (128, 16)."""
    return pd.DataFrame([(32, 8)] * 8 + [(128, 16)] * 4, columns=["input_tokens", "output_tokens"])


def _rows_in_trials(vllm_session_of_128x16: str = "vm:bbbb") -> list[dict]:
    """Both engines at both bins in 3 trials each: bin (32, 8) in session vm:aaaa, bin
    (128, 16) in vm:bbbb (its vLLM row in the session given)."""

    def tried(engine, batch, inp, out, energy_j, ci95_j, session):
        return _row(
            engine, batch, inp, out, energy_j, energy_j_ci95=ci95_j, trials=3,
            protocol_met=True, machine_session=session, host=session.split(":")[0],
        )  # fmt: skip

    return [
        # PyTorch: 8 requests / batch 4 = 2 batches of 5 +- 0.15 J; 4 / 2 = 2 of 8 +- 0.2 J.
        tried("pytorch", 4, 32, 8, 5.0, 0.15, "vm:aaaa"),
        tried("pytorch", 2, 128, 16, 8.0, 0.2, "vm:bbbb"),
        _row("pytorch", 4, 128, 16, None, machine_session="vm:bbbb"),
        # vLLM: one batch of 4 +- 0.2 J and one of 6 +- 0.15 J.
        tried("vllm", 8, 32, 8, 4.0, 0.2, "vm:aaaa"),
        tried("vllm", 4, 128, 16, 6.0, 0.15, vllm_session_of_128x16),
    ]


def _estimate_two_bins(tmp_path: Path, rows: list[dict], **kw) -> pd.DataFrame:
    return estimate_workloads(
        {"azure_code": bin_requests(_two_bin_trace(), INPUT_BINS, OUTPUT_BINS)},
        _measurements(tmp_path, rows),
        {"tiny": TINY},
        H100,
        **kw,
    )


def test_each_bin_carries_its_rows_interval_and_session_and_the_total_their_root_sum_square(
    tmp_path,
):
    bins = _estimate_two_bins(tmp_path, _rows_in_trials())
    by_bin = bins.set_index(["engine", "input_bin", "output_bin"])
    pytorch = by_bin.loc["pytorch"]
    assert pytorch.loc[(32, 8), "energy_per_batch_ci95_j"] == 0.15
    assert pytorch.loc[(32, 8), "energy_ci95_j"] == pytest.approx(2 * 0.15)
    assert pytorch.loc[(128, 16), "energy_per_batch_ci95_j"] == 0.2
    assert pytorch.loc[(128, 16), "energy_ci95_j"] == pytest.approx(2 * 0.2)
    assert pytorch["machine_session"].to_dict() == {(32, 8): "vm:aaaa", (128, 16): "vm:bbbb"}
    assert by_bin.loc[("vllm", 128, 16), "energy_ci95_j"] == pytest.approx(0.15)
    totals = workload_totals(bins).set_index("engine")
    # PyTorch: 2 x 5 + 2 x 8 = 26 J, +- sqrt(0.3^2 + 0.4^2) = 0.5 J.
    assert totals.loc["pytorch", "energy_j"] == pytest.approx(26.0)
    assert totals.loc["pytorch", "energy_ci95_j"] == pytest.approx(0.5)
    # vLLM: 4 + 6 = 10 J, +- sqrt(0.2^2 + 0.15^2) = 0.25 J.
    assert totals.loc["vllm", "energy_j"] == pytest.approx(10.0)
    assert totals.loc["vllm", "energy_ci95_j"] == pytest.approx(0.25)
    assert totals.loc["pytorch", "machine_sessions"] == "vm:aaaa;vm:bbbb"
    assert totals.loc["pytorch", "sessions"] == 2


def test_whole_batches_carry_their_interval_and_table4_and_fig1_the_totals(tmp_path):
    rows = _rows_in_trials()
    # vLLM's bin (32, 8) at batch 16: its 8 requests are half a batch, one whole batch.
    rows[3] = {**rows[3], "batch_size": 16, "point_id": "vllm_b16_i32_o8"}
    bins = _estimate_two_bins(tmp_path, rows)
    vllm = bins[bins["engine"] == "vllm"].set_index(["input_bin", "output_bin"])
    assert vllm.loc[(32, 8), "energy_ci95_j"] == pytest.approx(0.5 * 0.2)
    assert vllm.loc[(32, 8), "energy_ceil_ci95_j"] == pytest.approx(1 * 0.2)
    totals = workload_totals(bins)
    by_engine = totals.set_index("engine")
    assert by_engine.loc["vllm", "energy_ci95_j"] == pytest.approx(math.hypot(0.1, 0.15))
    assert by_engine.loc["vllm", "energy_ceil_ci95_j"] == pytest.approx(math.hypot(0.2, 0.15))
    table = table4_energy_over_ideal(totals).set_index("engine")
    for name in ("flops_sparse", "flops_dense", "roofline"):
        ideal = by_engine.loc["vllm", f"ideal_{name}_j"]
        assert table.loc["vllm", f"over_ideal_{name}_ci95_pct"] == pytest.approx(
            math.hypot(0.1, 0.15) / ideal * 100
        )
    assert table.loc["vllm", "over_ideal_flops_sparse_ceil_ci95_pct"] == pytest.approx(
        math.hypot(0.2, 0.15) / by_engine.loc["vllm", "ideal_flops_sparse_j"] * 100
    )
    # Fig 1 draws the engines' totals with their intervals, the computed ideals without.
    fig = fig1_workload_energy(bins, ["pytorch", "vllm"])
    caps = [line for line in fig.axes[0].lines if line.get_marker() == "_"]
    ends = sorted(y for line in caps for y in line.get_ydata())
    expected = sorted(
        (by_engine.loc[e, "energy_j"] + sign * by_engine.loc[e, "energy_ci95_j"]) / 3.6e6
        for e in ("pytorch", "vllm")
        for sign in (-1, 1)
    )
    assert ends == pytest.approx(expected)
    assert "error bars: 95 % intervals" in " ".join(t.get_text() for t in fig.texts)


def test_table4_of_totals_written_before_their_intervals_has_none(tmp_path):
    totals = workload_totals(_estimate(tmp_path, _pytorch_rows()))
    table = table4_energy_over_ideal(totals.drop(columns=["energy_ceil_ci95_j"]))
    assert table["over_ideal_flops_sparse_ceil_ci95_pct"].isna().all()
    assert table["over_ideal_roofline_ci95_pct"].isna().all()


def test_a_bin_without_an_interval_leaves_the_total_without_one(tmp_path):
    rows = _rows_in_trials()
    rows[3] = {**rows[3], "energy_j_ci95": math.nan, "trials": math.nan}
    bins = _estimate_two_bins(tmp_path, rows)
    vllm = bins[bins["engine"] == "vllm"].set_index(["input_bin", "output_bin"])
    assert math.isnan(vllm.loc[(32, 8), "energy_per_batch_ci95_j"])
    assert math.isnan(vllm.loc[(32, 8), "energy_ci95_j"])
    assert vllm.loc[(128, 16), "energy_ci95_j"] == pytest.approx(0.15)
    totals = workload_totals(bins).set_index("engine")
    assert math.isnan(totals.loc["vllm", "energy_ci95_j"])
    assert totals.loc["pytorch", "energy_ci95_j"] == pytest.approx(0.5)


def test_rows_without_trials_or_sessions_give_bins_without_intervals(tmp_path):
    bins = _estimate(tmp_path, _pytorch_rows())
    assert bins["energy_per_batch_ci95_j"].isna().all()
    assert bins["energy_ci95_j"].isna().all()
    # Without machine_session, the session is told by host and commit, as the claims tell it.
    assert set(bins["machine_session"]) == {"@commit-"}
    total = workload_totals(bins).iloc[0]
    assert math.isnan(total["energy_ci95_j"])
    assert (total["machine_sessions"], total["sessions"]) == ("@commit-", 1)


def test_claim_8_has_an_interval_when_each_bins_two_engines_share_a_session(tmp_path):
    from llm_energy.analysis.claims import workload_claims

    bins = _estimate_two_bins(tmp_path, _rows_in_trials())
    (claim,) = workload_claims(bins).itertuples()
    half = (10 / 26) * math.hypot(0.5 / 26, 0.25 / 10)
    assert claim.measured_value == pytest.approx(10 / 26 - 1)  # -61.5 %
    assert half == pytest.approx(0.01213, abs=1e-5)
    assert claim.ci95_low == pytest.approx(10 / 26 - 1 - half)
    assert claim.ci95_high == pytest.approx(10 / 26 - 1 + half)
    # The paper's -37.58 % lies outside [-62.8 %, -60.3 %]; the direction is the paper's.
    assert claim.verdict == "agrees in direction"
    assert claim.condition == (
        "azure_code, vllm against pytorch, bins from 2 machine sessions, "
        "each bin's two engines from one"
    )
    assert claim.rows == "workload_energy_bins.csv"


def test_claim_8_is_inconclusive_when_a_bins_two_engines_come_from_two_sessions(tmp_path):
    from llm_energy.analysis.claims import workload_claims

    bins = _estimate_two_bins(tmp_path, _rows_in_trials(vllm_session_of_128x16="vm:cccc"))
    (claim,) = workload_claims(bins).itertuples()
    assert claim.verdict == "inconclusive: the rows come from different machine sessions"
    assert claim.measured_value == pytest.approx(10 / 26 - 1)
    assert claim.ci95_high - claim.ci95_low == pytest.approx(2 * 0.012131, abs=1e-5)
    assert claim.condition == (
        "azure_code, vllm against pytorch, bins from 3 machine sessions, "
        "the two engines of 1 of 2 bins from different ones"
    )


def test_claim_8_is_inconclusive_where_a_bins_row_did_not_meet_the_protocol(tmp_path):
    """A bin's row with fewer trials than the protocol asks (a run cut short) is used where no
    other row of that batch met it, and then no verdict rests on it."""
    from llm_energy.analysis.claims import workload_claims

    rows = _rows_in_trials()
    rows[3] = {**rows[3], "trials": 2, "protocol_met": False}
    bins = _estimate_two_bins(tmp_path, rows)
    met = bins.set_index(["engine", "input_bin", "output_bin"])["protocol_met"]
    assert [met.loc[("vllm", 32, 8)], met.loc[("pytorch", 32, 8)]] == [False, True]
    totals = workload_totals(bins).set_index("engine")
    assert totals["bins_protocol_not_met"].to_dict() == {"pytorch": 0, "vllm": 1}
    (claim,) = workload_claims(bins).itertuples()
    assert claim.verdict == "inconclusive: a row did not meet the protocol"
    assert claim.measured_value == pytest.approx(10 / 26 - 1)
    # A row of the same batch that met the protocol is preferred to one that did not.
    again = {**rows[3], "trials": 3, "protocol_met": True, "point_id": "vllm_again",
             "timestamp": "2020-01-01T00:00:00+00:00", "energy_j": 4.4}  # fmt: skip
    bins = _estimate_two_bins(tmp_path, [*rows, again])
    vllm = bins[bins["engine"] == "vllm"].set_index(["input_bin", "output_bin"])
    assert vllm.loc[(32, 8), "energy_per_batch_j"] == 4.4
    assert workload_claims(bins)["verdict"].tolist() == ["agrees in direction"]


def test_claim_8_while_bins_are_missing_compares_the_bins_both_engines_measured(tmp_path):
    """PyTorch's bin (128, 16) not yet measured: the trace's comparison is not measured, and a
    second row compares the engines over bin (32, 8), which both measured in one session, with
    its interval and the share of the requests it holds, and no paper value (the paper's is
    of the whole trace)."""
    from llm_energy.analysis.claims import workload_claims

    rows = [r for r in _rows_in_trials() if (r["engine"], r["input_tokens"]) != ("pytorch", 128)]
    whole, so_far = workload_claims(
        _estimate_two_bins(tmp_path, rows, missing="incomplete")
    ).itertuples()
    assert whole.verdict.startswith("not measured: bins missing (vllm 100 %, pytorch 67 %")
    assert math.isnan(whole.measured_value)
    # vLLM 1 batch of 4 +- 0.2 J against PyTorch 2 batches of 5 +- 0.15 J.
    half = 0.4 * math.hypot(0.3 / 10, 0.2 / 4)
    assert so_far.measured_value == pytest.approx(4 / 10 - 1)
    assert (so_far.ci95_low, so_far.ci95_high) == pytest.approx((-0.6 - half, -0.6 + half))
    assert math.isnan(so_far.paper_value)
    assert so_far.verdict == "lower"
    assert so_far.condition == (
        "azure_code, vllm against pytorch, 1 bin (66.7 % of the requests), each bin's two "
        "engines from one machine session, 1 session in all"
    )
    assert "over the bins measured so far" in so_far.quantity
    # A bin whose engines come from two sessions, or whose row fell short of the protocol, is
    # left out; with no bin left, there is no second row.
    for change in ({"machine_session": "vm:cccc"}, {"trials": 2, "protocol_met": False}):
        apart = [
            {**r, **change} if (r["engine"], r["input_tokens"]) == ("vllm", 32) else r for r in rows
        ]
        bins = _estimate_two_bins(tmp_path, apart, missing="incomplete")
        assert len(workload_claims(bins)) == 1


def test_claim_8_without_intervals_gives_the_value_alone_as_before(tmp_path):
    """Rows without trials (the H100 rows): the value, no interval, and no session count,
    whichever sessions the bins come from."""
    from llm_energy.analysis.claims import workload_claims

    vllm = [
        _row("vllm", 8, 32, 8, 4.0, host="vm", git_commit="other-commit"),
        _row("vllm", 2, 128, 8, 5.0),
        _row("vllm", 4, 128, 16, 8.0),
    ]
    bins = _estimate(tmp_path, [*_pytorch_rows(), *vllm])
    (claim,) = workload_claims(bins).itertuples()
    # vLLM: 5/8 x 4 + 3/2 x 5 + 10/4 x 8 = 30 J against PyTorch's 58.25 J.
    assert claim.measured_value == pytest.approx(30 / 58.25 - 1)
    assert math.isnan(claim.ci95_low) and math.isnan(claim.ci95_high)
    assert claim.verdict == "inconclusive: no interval (rows without independent trials)"
    assert claim.condition == "azure_code, vllm against pytorch"


def test_incomplete_totals_in_trials_are_not_compared(tmp_path):
    from llm_energy.analysis.claims import workload_claims

    rows = [r for r in _rows_in_trials() if r["point_id"] != "vllm_b4_i128_o16"]
    bins = _estimate_two_bins(tmp_path, rows, missing="incomplete")
    claim, so_far = workload_claims(bins).itertuples()
    assert math.isnan(claim.measured_value) and math.isnan(claim.ci95_low)
    assert claim.condition == "azure_code, vllm against pytorch"
    assert claim.verdict == (
        "not measured: bins missing (vllm 67 %, pytorch 100 % of the requests measured)"
    )
    # The bin both engines measured in one session, compared on its own: 4 J against 10 J.
    assert so_far.measured_value == pytest.approx(4 / 10 - 1)
    assert so_far.condition.startswith("azure_code, vllm against pytorch, 1 bin (66.7 % of")


def test_the_claims_command_reads_claim_8_from_the_bins_file(tmp_path):
    from llm_energy.analysis.claims import workload_claims

    bins = _estimate_two_bins(tmp_path, _rows_in_trials())
    path = tmp_path / "bins.csv"
    bins.to_csv(path, index=False)
    measurements = tmp_path / "measurements.parquet"
    # Rows with the columns the other claims read, none of which they compare.
    pd.DataFrame(_rows_in_trials()).assign(
        repetitions=3,
        decode_energy_j=math.nan,
        speculative_model="",
        speculative_acceptance="",
        serving="batch",
        tensor_parallel_size=1,
        cuda_graphs=False,
    ).to_parquet(measurements, index=False)
    out = tmp_path / "claims.csv"
    args = ["claims", "--measurements", str(measurements), "--workload-bins", str(path)]
    assert (
        main([*args, "--hardware", "h100", "--out", str(out), "--markdown", str(tmp_path / "c.md")])
        == 0
    )
    written = pd.read_csv(out, dtype={"claim": str})
    claim = written[written["claim"] == "8"].iloc[0]
    expected = workload_claims(bins).iloc[0]
    assert claim["verdict"] == expected["verdict"] == "agrees in direction"
    assert claim["condition"] == expected["condition"]
    assert claim["ci95_low"] == pytest.approx(expected["ci95_low"])
