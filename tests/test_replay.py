"""The binned estimate against a direct replay of the same requests (trace_replay)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from llm_energy.analysis.replay import replay_comparison
from llm_energy.config import validate
from llm_energy.inputs.prompts import TraceLengths, bin_groups
from llm_energy.measure.job import JobPlan
from llm_energy.measure.plan import plan_study, trace_inputs
from llm_energy.measure.runner import run_job


def test_bin_groups_use_the_smallest_bin_at_or_above_each_length():
    lengths = [(100, 5), (512, 16), (513, 17), (30, 64)]
    groups = bin_groups(lengths, (512, 2048), (16, 64))
    assert groups == {(512, 16): [0, 1], (512, 64): [3], (2048, 64): [2]}


def _row(**kw) -> dict:
    base = {
        "experiments": "trace_replay",
        "hardware": "h",
        "model": "m",
        "engine": "e",
        "batch_size": 4,
        "serving": "batch",
        "feasible": True,
        "trace": "",
        "requests": 4,
        "energy_std_j": 1.0,
        "energy_source": "measured",
        "gpu_name": "gpu",
        "backend_version": "b",
        "weights": "random",
        "git_commit": "abc",
        "stream_bins": None,
    }
    base.update(kw)
    return base


def _replay_row() -> dict:
    """The replayed stream: 11 requests, 6 in bin 512x16 and 5 in bin 2048x64, 100 J."""
    return _row(
        input_tokens=2048,
        output_tokens=64,
        serving="offline",
        trace="azure_code",
        requests=11,
        energy_j=100.0,
        point_id="replay",
        stream_bins=json.dumps({"512x16": 6, "2048x64": 5}),
    )


def test_estimate_is_n_over_b_batches_of_each_bins_measured_energy():
    rows = [
        _row(input_tokens=512, output_tokens=16, energy_j=10.0, point_id="p1"),
        _row(input_tokens=512, output_tokens=64, energy_j=30.0, point_id="p2"),
        _row(input_tokens=2048, output_tokens=64, energy_j=80.0, point_id="p3"),
        _replay_row(),
    ]
    table = replay_comparison(pd.DataFrame(rows))
    assert len(table) == 1
    r = table.iloc[0]
    assert r["estimated_j"] == pytest.approx(6 / 4 * 10 + 5 / 4 * 80)  # 115
    assert r["estimated_whole_batches_j"] == pytest.approx(2 * 10 + 2 * 80)  # 180
    assert r["estimate_error"] == pytest.approx(115 / 100 - 1)
    assert r["bin_point_ids"] == "p1 p3" and r["missing_bins"] == ""


def test_a_bin_without_a_feasible_measurement_is_named_not_counted_as_zero():
    rows = [
        _row(input_tokens=512, output_tokens=16, energy_j=10.0, point_id="p1"),
        _row(input_tokens=2048, output_tokens=64, energy_j=math.nan, feasible=False, point_id="p3"),
        _replay_row(),
    ]
    r = replay_comparison(pd.DataFrame(rows)).iloc[0]
    assert math.isnan(r["estimated_j"]) and math.isnan(r["estimate_error"])
    assert r["missing_bins"] == "2048x64 (5 requests)"


def _replay_config(tiny_config: dict) -> dict:
    tiny_config["experiments"] = {
        "workload_traces": {"enabled": False, "input_bins": [16, 64], "output_bins": [4, 8]},
        "trace_replay": {
            "enabled": True,
            "models": ["tiny"],
            "engines": ["pytorch"],
            "batch_sizes": [2],
            "requests": 6,
            "trace": "azure_code",
        },
    }
    return tiny_config


def test_trace_replay_plans_the_stream_and_every_bin_shape(tiny_config):
    job = plan_study(validate(_replay_config(tiny_config)))["tiny__pytorch"]
    assert trace_inputs(job) == ["azure_code"]
    streams = [p for p in job.points if p.stream is not None]
    assert len(streams) == 1 and streams[0].stream.binned
    assert streams[0].stream.input_bins == (16, 64) and streams[0].stream.vary_input
    shapes = {(p.input_tokens, p.output_tokens) for p in job.points if p.stream is None}
    assert shapes == {(16, 4), (16, 8), (64, 4), (64, 8)}
    assert JobPlan.from_json(job.to_json()) == job


def test_replay_measures_the_same_requests_the_estimate_counts(tiny_config, tmp_path):
    traces = tmp_path / "traces"
    traces.mkdir()
    # Three requests fall outside the bins (input > 64 or output > 8) and are never drawn.
    pd.DataFrame(
        {
            "input_tokens": [10, 12, 40, 60, 15, 50, 300, 20, 70],
            "output_tokens": [3, 8, 2, 7, 4, 8, 2, 90, 1],
        }
    ).to_parquet(traces / "azure_code.parquet")
    job = plan_study(validate(_replay_config(tiny_config)))["tiny__pytorch"]
    table = run_job(job, tmp_path / "out.parquet", tmp_path / "journal", traces_dir=traces)
    stream = table[table["serving"] == "offline"].iloc[0]
    counts = json.loads(stream["stream_bins"])
    assert sum(counts.values()) == 6
    assert set(counts) <= {"16x4", "16x8", "64x4", "64x8"}
    drawn = TraceLengths(traces).lengths(next(p for p in job.points if p.stream), 0)
    assert all(i <= 64 and o <= 8 for i, o in drawn)
    assert stream["generated_tokens"] == sum(o for _, o in drawn)
    comparison = replay_comparison(table)
    assert comparison["missing_bins"].iloc[0] == ""
    # Meter 'none' measures time only: energies are NaN, and every bin was measured.
    assert math.isnan(comparison["measured_j"].iloc[0])


def test_sampled_bins_only_plans_the_bins_the_measured_sample_falls_in(tiny_config, tmp_path):
    from llm_energy.inputs.traces import TRACES, load_trace

    mirror = tmp_path / "mirror"
    csv = mirror / TRACES["azure_code"].mirror_path
    csv.parent.mkdir(parents=True)
    pd.DataFrame(
        {
            "TIMESTAMP": [f"2023-11-16 18:15:{s:02d}.0000000" for s in range(9)],
            "ContextTokens": [10, 12, 40, 60, 15, 50, 300, 20, 70],
            "GeneratedTokens": [3, 8, 2, 7, 4, 8, 2, 90, 0],
        }
    ).to_csv(csv, index=False)
    config = _replay_config(tiny_config)
    config["mirror"] = {"data": str(mirror)}
    config["experiments"]["trace_replay"].update(requests=3, sampled_bins_only=True)
    job = plan_study(validate(config))["tiny__pytorch"]
    # Planning lists every bin shape; the job keeps those its sample falls in.
    listed = {(p.input_tokens, p.output_tokens) for p in job.points if p.stream is None}
    assert listed == {(16, 4), (16, 8), (64, 4), (64, 8)}

    traces = tmp_path / "traces"
    traces.mkdir()
    load_trace("azure_code", csv).to_parquet(traces / "azure_code.parquet")
    table = run_job(job, tmp_path / "out.parquet", tmp_path / "journal", traces_dir=traces)
    stream = table[table["serving"] == "offline"].iloc[0]
    sampled = {tuple(int(x) for x in k.split("x")) for k in json.loads(stream["stream_bins"])}
    measured = {
        (int(r.input_tokens), int(r.output_tokens))
        for r in table[table["point_id"] != stream["point_id"]].itertuples()
    }
    assert sampled < listed
    assert measured == sampled
    assert replay_comparison(table)["missing_bins"].iloc[0] == ""


def test_a_plan_that_measures_nothing_reads_no_trace(tiny_config, tmp_path):
    config = _replay_config(tiny_config)
    config["mirror"] = {"data": str(tmp_path / "no-mirror")}
    config["experiments"]["trace_replay"]["sampled_bins_only"] = True
    job = plan_study(validate(config))["tiny__pytorch"]
    shapes = {(p.input_tokens, p.output_tokens) for p in job.points if p.stream is None}
    assert shapes == {(16, 4), (16, 8), (64, 4), (64, 8)}


def test_prepared_lengths_that_cannot_be_read_are_one_message_naming_the_rule(tmp_path):
    """A prepared lengths file that is corrupt, or lacks the length columns, stops with one
    message that says how to build it again, not a reader's traceback."""
    from llm_energy.errors import InputError
    from llm_energy.measure.job import PointSpec, StreamSpec

    (tmp_path / "generation.parquet").write_text("not parquet")
    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "azure_code.parquet")
    lengths = TraceLengths(tmp_path, tmp_path)
    task = PointSpec(1, 64, 8, stream=StreamSpec("generation", 4, "offline", True))
    with pytest.raises(InputError, match=r"generation\.parquet: cannot read .*task_lengths rule"):
        lengths.lengths(task, 0)
    trace = PointSpec(1, 64, 8, stream=StreamSpec("azure_code", 4, "offline"))
    with pytest.raises(InputError, match=r"azure_code\.parquet: cannot read .*prepare_trace rule"):
        lengths.lengths(trace, 0)
