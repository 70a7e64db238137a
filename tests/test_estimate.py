"""GPU-time estimate: the fit recovers a known time model; the protocol arithmetic per point;
a server's jobs timed by their replays."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from llm_energy.analysis.gpu_hours import (
    MODEL_LOAD_S,
    SERVER_START_S,
    MeasuredShapes,
    MemoryModel,
    ServedTimeModel,
    TimeModel,
    batched_stream_s,
    counted_points,
    describe,
    estimate,
    job_gpu_hours,
    longest_trial,
    memory_limits,
    nonnegative_lstsq,
    point_seconds,
    stream_request_seconds,
    stream_timing,
)
from llm_energy.config import validate
from llm_energy.measure.job import (
    DecodingSpec,
    EngineSpec,
    PointSpec,
    ProtocolSpec,
    ServedSpec,
    StreamSpec,
)
from llm_energy.measure.plan import plan_study
from llm_energy.measure.trials import TRIALS_AT_MOST_ENV

TRUE = TimeModel(prefill=(0.02, 1e-5), step=(0.025, 1e-4, 2e-8), points=0)
# The classical task's block of a tiny configuration: generation at batch 1, four examples.
GENERATION_AT_BATCH_1 = {
    "enabled": True,
    "models": ["tiny"],
    "engines": ["pytorch"],
    "batch_sizes": [1],
    "tasks": ["generation"],
    "samples": 4,
}


def _rows(model: TimeModel) -> pd.DataFrame:
    rows = []
    for b in (1, 8, 64):
        for i in (128, 512, 2048):
            for o in (8, 64, 256):
                rows.append(
                    {
                        "model": "tiny",
                        "engine": "pytorch",
                        "gpu_name": "GPU X",
                        "feasible": True,
                        "batch_size": b,
                        "input_tokens": i,
                        "output_tokens": o,
                        "prefill_duration_s": model.prefill_s(b, i),
                        "duration_s": model.full_s(b, i, o),
                    }
                )
    return pd.DataFrame(rows)


def test_fit_recovers_the_time_model():
    fitted = TimeModel.fit(_rows(TRUE))
    assert fitted.prefill == pytest.approx(TRUE.prefill, rel=1e-6)
    assert fitted.step == pytest.approx(TRUE.step, rel=1e-6)
    assert fitted.full_s(16, 1024, 128) == pytest.approx(TRUE.full_s(16, 1024, 128))


def test_the_longest_batches_do_not_set_the_shortest_ones_time():
    """A window's jitter grows with its length: with the longest batches 10 % off the line by
    turns, the fit still times batch 1's shapes to within a few percent, where an unweighted
    fit, led by the longest batches' seconds, misses the shortest by far more."""
    rows = _rows(TRUE)
    longest = rows["duration_s"].rank(ascending=False) <= 6
    rows.loc[longest, "duration_s"] *= np.where(np.arange(longest.sum()) % 2, 1.1, 0.9)
    rows.loc[longest, "prefill_duration_s"] = np.nan
    fitted = TimeModel.fit(rows)
    small = rows[rows["batch_size"] == 1]
    error = [
        fitted.full_s(1, i, o) / TRUE.full_s(1, i, o) - 1
        for i, o in zip(small["input_tokens"], small["output_tokens"], strict=True)
    ]
    assert max(map(abs, error)) < 0.03, error


def test_the_fit_finds_prefills_quadratic_term_where_the_rows_span_the_inputs():
    """Attention makes a long input's prefill grow faster than the input: with three or more
    input lengths the fit recovers a term in b * i^2; with fewer, or where it would come out
    negative, it leaves the term out rather than bend the line the wrong way."""
    quadratic = dataclasses.replace(TRUE, prefill_quadratic=1e-9)
    rows = _rows(quadratic)
    fitted = TimeModel.fit(rows)
    assert fitted.prefill_quadratic == pytest.approx(1e-9, rel=1e-6)
    assert fitted.prefill_s(64, 32768) == pytest.approx(quadratic.prefill_s(64, 32768))
    assert fitted.prefill_s(64, 32768) > TRUE.prefill_s(64, 32768) * 1.5
    two_lengths = rows[rows["input_tokens"] != 2048]
    assert TimeModel.fit(two_lengths).prefill_quadratic == 0.0
    concave = _rows(dataclasses.replace(TRUE, prefill_quadratic=-1e-10))
    assert TimeModel.fit(concave).prefill_quadratic == 0.0


def test_no_term_of_the_fit_comes_out_negative():
    """A host-bound engine's steps (eager PyTorch: the same time at every batch, with noise)
    whose unconstrained fit makes a cache term negative: that term is 0 and the rest refitted,
    so a long context never makes a step faster; a fit that is all positive stays as it is."""
    rng = np.random.default_rng(0)
    rows = _rows(dataclasses.replace(TRUE, step=(0.025, 0.0, 0.0)))
    rows["duration_s"] *= 1 + 0.05 * rng.standard_normal(len(rows))
    rows["duration_s"] -= (
        1e-5 * rows["batch_size"] * rows["input_tokens"] * rows["output_tokens"] / 64
    )
    fitted = TimeModel.fit(rows)
    assert min(fitted.step) >= 0 and min(fitted.prefill) >= 0
    assert fitted.step[2] == 0.0
    assert fitted.full_s(64, 32768, 64) >= fitted.full_s(64, 512, 64)
    design = rng.random((20, 3))
    assert nonnegative_lstsq(design, design @ [1.0, 2.0, 3.0]) == pytest.approx([1.0, 2.0, 3.0])
    clipped = nonnegative_lstsq(design, design @ [1.0, -2.0, 3.0])
    assert clipped[1] == 0.0 and (clipped >= 0).all()


def test_beam_search_rows_fit_as_batches_of_their_sequences():
    """A beam search row of batch b and k beams is a batch of b * k sequences to the fit, as it
    is to the estimate of its point."""
    rows = _rows(TRUE)
    beams = rows[rows["batch_size"] == 8].assign(batch_size=2, num_beams=4)
    fitted = TimeModel.fit(pd.concat([rows.assign(num_beams=1), beams], ignore_index=True))
    assert fitted.step == pytest.approx(TRUE.step, rel=1e-6)


def test_rows_without_prefill_windows_fit_through_their_full_durations():
    rows = _rows(TRUE)
    rows["prefill_duration_s"] = float("nan")  # measured with measure_prefill: false
    fitted = TimeModel.fit(rows)
    for shape in ((16, 1024, 128), (1, 64, 8), (256, 512, 64)):
        assert fitted.full_s(*shape) == pytest.approx(TRUE.full_s(*shape), rel=1e-6)


def test_point_seconds_follows_the_protocol():
    proto = ProtocolSpec(min_duration_s=2.0, min_repetitions=3, warmup_repetitions=1)
    point = PointSpec(8, 512, 64)
    full, prefill = TRUE.full_s(8, 512, 64), TRUE.prefill_s(8, 512)
    expected = full + max(3, math.ceil(2.0 / full)) * full
    expected += prefill + max(3, math.ceil(2.0 / prefill)) * prefill
    assert point_seconds(TRUE, point, proto) == pytest.approx(expected)
    beam = PointSpec(8, 512, 64, DecodingSpec("beam", "beam", num_beams=4))
    assert point_seconds(TRUE, beam, proto) == pytest.approx(
        point_seconds(TRUE, PointSpec(32, 512, 64), proto)
    )


def test_estimate_covers_measured_engines_and_says_which_are_not(tiny_config):
    plans = plan_study(validate(tiny_config))
    table = estimate(plans, _rows(TRUE))
    row = table.set_index("group").loc["tiny__pytorch"]
    plan = plans["tiny__pytorch"]
    assert row["estimated_gpu_hours"] == pytest.approx(job_gpu_hours(TRUE, plan), rel=1e-3)
    assert row["estimated_gpu_hours"] > MODEL_LOAD_S / 3600
    assert "GPU X" in row["basis"]
    other = estimate(plans, _rows(TRUE).assign(engine="vllm"))
    assert math.isnan(other["estimated_gpu_hours"].iloc[0])
    assert "no measurements" in other["basis"].iloc[0]


def test_the_plan_names_a_jobs_longest_trial_where_it_is_long(tiny_config):
    """A trial is what the journal keeps: the estimate gives each job's longest trial, and the
    plan names it where it passes LONG_TRIAL_MIN, so that an allocation can be sized to it."""
    plans = plan_study(validate(tiny_config))
    plan = plans["tiny__pytorch"]
    table = estimate(plans, _rows(TRUE))
    row = table.set_index("group").loc["tiny__pytorch"]
    seconds, point = longest_trial(TRUE, plan)
    assert row["longest_trial_min"] == pytest.approx(seconds / 60, rel=1e-3)
    assert seconds == max(point_seconds(TRUE, p, p.protocol or plan.protocol) for p in plan.points)
    assert row["longest_trial"].startswith(f"batch {point.batch_size}, {point.input_tokens} in")
    assert "longest trial" not in describe(table)  # seconds, not minutes
    slow = _rows(dataclasses.replace(TRUE, step=(60.0, 0.0, 0.0)))
    text = describe(estimate(plans, slow))
    assert f"; its longest trial ({row['longest_trial']}) takes ~" in text
    assert "a job stopped inside a trial measures it again from its start" in text


def test_the_basis_says_when_its_rows_cannot_tell_prefill_from_decoding(tiny_config):
    sweeps = tiny_config["experiments"]["controlled_sweeps"]
    sweeps["input_sweep"]["input_tokens"] = [8, 512]
    sweeps["output_sweep"]["input_tokens"] = [512]
    plans = plan_study(validate(tiny_config))
    rows = _rows(TRUE)
    assert "prefill" not in estimate(plans, rows)["basis"].iloc[0]
    # One input length and no prefill window: the fit splits the time between prefill and
    # decoding as it may, and the plan's other input lengths are said to be at risk.
    one = rows[rows["input_tokens"] == 512].assign(prefill_duration_s=float("nan"))
    basis = estimate(plans, one)["basis"].iloc[0]
    assert basis.endswith(
        "; its rows, all 512 tokens in and without prefill windows, cannot tell prefill from "
        "decoding, so other input lengths' prefill may be under- or overestimated"
    )
    only_512 = {
        group: dataclasses.replace(
            plan, points=tuple(p for p in plan.points if p.input_tokens == 512)
        )
        for group, plan in plans.items()
    }
    assert all(plan.points for plan in only_512.values())
    assert "prefill" not in estimate(only_512, one)["basis"].iloc[0]


def test_a_compiled_engine_without_rows_is_timed_by_the_same_backend_without_compile(tiny_config):
    tiny_config["engines"]["pytorch-compile"] = {"backend": "transformers", "torch_compile": True}
    tiny_config["engines"]["vllm"] = {"backend": "vllm"}
    tiny_config["experiments"]["controlled_sweeps"]["engines"] = ["pytorch", "pytorch-compile"]
    plans = plan_study(validate(tiny_config))
    rows = _rows(TRUE).assign(backend="transformers", torch_compile=False, tensor_parallel_size=1)
    vllm_rows = rows.assign(engine="vllm", backend="vllm", duration_s=100.0)
    table = estimate(plans, pd.concat([rows, vllm_rows], ignore_index=True)).set_index("group")
    eager, compiled = table.loc["tiny__pytorch"], table.loc["tiny__pytorch-compile"]
    assert compiled["estimated_gpu_hours"] == pytest.approx(eager["estimated_gpu_hours"])
    assert compiled["basis"] == (
        eager["basis"] + ", of pytorch (none of pytorch-compile: the same backend without "
        "torch.compile; the compile time is not in it)"
    )
    # Once the compiled engine has rows of its own, they are its basis.
    own = rows.assign(engine="pytorch-compile", torch_compile=True)
    table = estimate(plans, pd.concat([rows, own], ignore_index=True)).set_index("group")
    assert table.loc["tiny__pytorch-compile", "basis"] == "fitted to 27 points measured on GPU X"


def _a_bigger_model(tiny_config, tmp_path, wider: int):
    """The tiny model twice as deep and ``wider`` times as wide in its feed-forward blocks,
    as model 'big' of the configuration, with its config.json in ``tmp_path``; the two
    architectures."""
    import json

    from conftest import TINY_MODEL

    from llm_energy.analysis.flops import Architecture
    from llm_energy.inputs.model_configs import load_config_dict

    small = load_config_dict(TINY_MODEL.parent)
    big = {**small, "num_hidden_layers": 2 * small["num_hidden_layers"]}
    big["intermediate_size"] = wider * small["intermediate_size"]
    (tmp_path / "big").mkdir()
    (tmp_path / "big/config.json").write_text(json.dumps(big))
    tiny_config["models"]["big"] = {"hub_id": "local/big", "config": str(tmp_path / "big")}
    tiny_config["experiments"]["controlled_sweeps"]["models"] = ["tiny", "big"]
    return Architecture.from_config(small), Architecture.from_config(big)


def test_a_model_without_rows_is_timed_by_another_models_rows_scaled_to_its_architecture(
    tiny_config, tmp_path
):
    source, target = _a_bigger_model(tiny_config, tmp_path, wider=2)
    plans = plan_study(validate(tiny_config))
    rows = _rows(TRUE).assign(hub_id="local/tiny")
    table = estimate(plans, rows).set_index("group")
    expected = job_gpu_hours(TRUE.scaled(source, target), plans["big__pytorch"])
    assert table.loc["big__pytorch", "estimated_gpu_hours"] == pytest.approx(expected, rel=1e-3)
    assert expected > table.loc["tiny__pytorch", "estimated_gpu_hours"]
    flops = target.linear_flops_per_token() / source.linear_flops_per_token()
    assert table.loc["big__pytorch", "basis"] == (
        "fitted to 27 points of tiny measured on GPU X, scaled to big (none of its own: "
        f"layers x2.00, FLOPs per token x{flops:.2f}, an eager step by layers)"
    )
    # Each term scales by its own ratio; a decoding step's constant term by the layers where
    # the host launches every layer's kernels (eager), by the FLOPs per token where a graph
    # replays them and reading the weights bounds it.
    scaled = TRUE.scaled(source, target)
    assert scaled.step[0] == pytest.approx(2 * TRUE.step[0])
    graphed = TRUE.scaled(source, target, graphed=True)
    assert graphed.step[0] == pytest.approx(flops * TRUE.step[0])
    assert graphed.step[1:] == scaled.step[1:] and graphed.prefill == scaled.prefill
    assert scaled.prefill[1] == pytest.approx(flops * TRUE.prefill[1])
    assert scaled.step[2] == pytest.approx(2 * TRUE.step[2])  # twice the layers' attention
    # Without a readable config.json of the model on this machine, there is no estimate (the
    # job itself says what is wrong with it).
    (tmp_path / "big/config.json").write_text('{"model_type": "llama", ')
    table = estimate(plans, rows).set_index("group")
    assert math.isnan(table.loc["big__pytorch", "estimated_gpu_hours"])
    tiny_config["models"]["big"] = {"hub_id": "nowhere/big"}
    plans = plan_study(validate(tiny_config))
    table = estimate(plans, rows).set_index("group")
    assert math.isnan(table.loc["big__pytorch", "estimated_gpu_hours"])


def test_a_graphed_engine_scales_its_step_by_the_flops_of_the_model_without_rows(
    tiny_config, tmp_path
):
    source, target = _a_bigger_model(tiny_config, tmp_path, wider=4)
    tiny_config["engines"]["vllm"] = {"backend": "vllm", "cuda_graphs": True}
    tiny_config["experiments"]["controlled_sweeps"]["engines"] = ["vllm"]
    plans = plan_study(validate(tiny_config))
    rows = _rows(TRUE).assign(hub_id="local/tiny", engine="vllm", backend="vllm")
    table = estimate(plans, rows).set_index("group")
    expected = job_gpu_hours(TRUE.scaled(source, target, graphed=True), plans["big__vllm"])
    assert table.loc["big__vllm", "estimated_gpu_hours"] == pytest.approx(expected, rel=1e-3)
    assert table.loc["big__vllm", "basis"].endswith(", a graphed step by FLOPs)")
    eager = job_gpu_hours(TRUE.scaled(source, target), plans["big__vllm"])
    assert expected > eager


def _job(tiny_config, proto, points):
    """A job of ``points`` under ``proto``, and each point's seconds per trial."""
    plan = dataclasses.replace(
        plan_study(validate(tiny_config))["tiny__pytorch"], protocol=proto, points=points
    )
    return plan, [point_seconds(TRUE, p, proto) for p in points]


def test_a_job_costs_its_trials_and_its_control_point(tiny_config):
    """The control point is measured twice more: at its point's own window where
    control_min_duration_s is no longer, else in a window of that length."""
    proto = ProtocolSpec(min_trials=3, control_point=True, control_min_duration_s=0.0)
    points = (PointSpec(8, 512, 64), PointSpec(1, 128, 8))
    plan, each = _job(tiny_config, proto, points)
    expected = MODEL_LOAD_S + proto.idle_duration_s + 3 * sum(each) + 2 * each[1]
    assert job_gpu_hours(TRUE, plan) * 3600 == pytest.approx(expected)
    proto = dataclasses.replace(proto, control_min_duration_s=10.0)
    plan, each = _job(tiny_config, proto, points)
    window = dataclasses.replace(proto, min_duration_s=10.0, measure_prefill=False)
    control = point_seconds(TRUE, dataclasses.replace(points[1], protocol=window), window)
    assert control > 10.0 > each[1]
    expected = MODEL_LOAD_S + proto.idle_duration_s + 3 * sum(each) + 2 * control
    assert job_gpu_hours(TRUE, plan) * 3600 == pytest.approx(expected)
    # A job of request streams alone measures a plain batch of one of its own, twice.
    streams = (PointSpec(8, 1024, 128, stream=StreamSpec("t", 64, "offline")),)
    plan, each = _job(tiny_config, proto, streams)
    control = point_seconds(TRUE, PointSpec(1, 512, 64, protocol=window), window)
    expected = MODEL_LOAD_S + proto.idle_duration_s + 3 * each[0] + 2 * control
    assert job_gpu_hours(TRUE, plan) * 3600 == pytest.approx(expected)


def test_each_further_engine_start_costs_its_start_and_its_control_point(tiny_config):
    """With trials_per_engine_start, a job of three trials a point starts its engine once per
    batch of trials: each start after the first adds the engine's start, the idle-power
    window and the control point's two measurements."""
    from llm_energy.analysis.gpu_hours import engine_starts

    points = (PointSpec(8, 512, 64), PointSpec(1, 128, 8))
    proto = ProtocolSpec(min_trials=3, control_point=True, control_min_duration_s=0.0)
    plan, each = _job(tiny_config, proto, points)
    once = job_gpu_hours(TRUE, plan) * 3600
    restart = MODEL_LOAD_S + proto.idle_duration_s + 2 * each[1]
    for per_start, starts in ((1, 3), (2, 2), (3, 1), (None, 1)):
        spread = dataclasses.replace(proto, trials_per_engine_start=per_start)
        plan, _ = _job(tiny_config, spread, points)
        assert engine_starts(plan, [3, 3]) == starts
        assert job_gpu_hours(TRUE, plan) * 3600 == pytest.approx(once + (starts - 1) * restart)
    # A run that the journal leaves one trial a point starts once.
    left = {p.key: 1 for p in points}
    assert engine_starts(plan, [1.0, 1.0]) == 1
    one = dataclasses.replace(proto, trials_per_engine_start=1)
    plan, _ = _job(tiny_config, one, points)
    assert job_gpu_hours(TRUE, plan, left) * 3600 == pytest.approx(
        MODEL_LOAD_S + proto.idle_duration_s + sum(each) + 2 * each[1]
    )


def test_adaptive_trials_are_expected_at_the_trials_per_point_the_engines_rows_took(tiny_config):
    """Beside the least a job takes (min_trials a point), the estimate gives the job at the
    mean number of trials its engine's rows took, within min_trials and max_trials; a point
    its journal holds costs the rest of them; rows without trials add nothing."""
    from llm_energy.analysis.gpu_hours import describe, trials_per_point

    proto = ProtocolSpec(min_trials=3, max_trials=6, control_point=True, control_min_duration_s=0.0)
    points = (PointSpec(8, 512, 64), PointSpec(1, 128, 8))
    plan, each = _job(tiny_config, proto, points)
    rows = _rows(TRUE).assign(model=plan.model.name)
    assert math.isnan(trials_per_point(rows))
    rows["trials"] = [3, 6] * (len(rows) // 2) + [3] * (len(rows) % 2)
    assert trials_per_point(rows) == pytest.approx(rows["trials"].mean())
    start = MODEL_LOAD_S + proto.idle_duration_s
    assert job_gpu_hours(TRUE, plan, trials=4.0) * 3600 == pytest.approx(
        start + 4 * sum(each) + 2 * each[1]
    )
    # Within the protocol's bounds.
    assert job_gpu_hours(TRUE, plan, trials=9.0) == pytest.approx(
        job_gpu_hours(TRUE, plan, trials=6)
    )
    assert job_gpu_hours(TRUE, plan, trials=2.0) == pytest.approx(job_gpu_hours(TRUE, plan))
    # A point with two trials left of three is expected to take one more beyond them.
    left = {points[0].key: 2, points[1].key: 0}
    assert job_gpu_hours(TRUE, plan, left, trials=4.0) * 3600 == pytest.approx(
        start + 3 * each[0] + 2 * each[1]
    )
    row = estimate({"j": plan}, rows).iloc[0]
    assert row["trials_per_point"] == pytest.approx(rows["trials"].mean())
    assert row["expected_gpu_hours"] > row["estimated_gpu_hours"]
    said = f", ~{row['expected_gpu_hours'] * 60:.1f} with as many trials as its rows took in "
    said += f"windows as long ({row['trials_per_point']:.1f} a point on average), "
    said += f"{row['share_in_windows']:.0%} of it inside windows ("
    assert said in describe(estimate({"j": plan}, rows))
    plain = estimate({"j": plan}, rows.drop(columns="trials")).iloc[0]
    assert plain["expected_gpu_hours"] == plain["estimated_gpu_hours"]


def test_trials_at_most_caps_the_trials_each_point_is_expected_to_cost(tiny_config):
    """With --trials-at-most (LLM_ENERGY_TRIALS_AT_MOST), as the run gives no point more
    trials, the estimate costs no point more: the adaptive trials its engine's rows took are
    cut to the cap, a cap under min_trials cuts those too, and a point its journal holds costs
    what the cap leaves of it."""
    from llm_energy.analysis.gpu_hours import point_costs

    proto = ProtocolSpec(min_trials=3, max_trials=6, control_point=False)
    points = (PointSpec(8, 512, 64), PointSpec(1, 128, 8))
    plan, each = _job(tiny_config, proto, points)
    start = MODEL_LOAD_S + proto.idle_duration_s
    assert job_gpu_hours(TRUE, plan, trials=5.0, trials_at_most=3) * 3600 == pytest.approx(
        start + 3 * sum(each)
    )
    assert job_gpu_hours(TRUE, plan, trials=5.0, trials_at_most=4) * 3600 == pytest.approx(
        start + 4 * sum(each)
    )
    assert job_gpu_hours(TRUE, plan, trials_at_most=2) * 3600 == pytest.approx(
        start + 2 * sum(each)
    )
    # One trial of three measured: at most two more under a cap of 3, one under a cap of 2.
    left = {points[0].key: 2, points[1].key: 3}
    assert job_gpu_hours(TRUE, plan, left, 5.0, trials_at_most=3) * 3600 == pytest.approx(
        start + 2 * each[0] + 3 * each[1]
    )
    assert job_gpu_hours(TRUE, plan, left, 5.0, trials_at_most=2) * 3600 == pytest.approx(
        start + each[0] + 2 * each[1]
    )
    # A cap of 1 with one trial measured: nothing left, as the run would measure nothing.
    assert job_gpu_hours(TRUE, plan, {points[0].key: 2, points[1].key: 2}, trials_at_most=1) == 0
    rows = _rows(TRUE).assign(model=plan.model.name, trials=6)
    capped = estimate({"j": plan}, rows, trials_at_most=3).iloc[0]
    assert capped["expected_gpu_hours"] == pytest.approx(capped["estimated_gpu_hours"])
    assert estimate({"j": plan}, rows).iloc[0]["expected_gpu_hours"] > capped["expected_gpu_hours"]
    assert set(point_costs(plan, rows, trials_at_most=3)["trials"]) == {3.0}


def test_a_job_that_warms_each_point_up_once_costs_one_warm_up_per_point(tiny_config):
    proto = ProtocolSpec(
        min_trials=3, control_point=True, warmup_every_trial=False, control_min_duration_s=0.0
    )
    points = (PointSpec(8, 512, 64), PointSpec(1, 128, 8))
    plan, warm = _job(tiny_config, proto, points)
    cold = [point_seconds(TRUE, p, proto, warm_up=False) for p in points]
    # A warm-up is one full generation and one prefill.
    for p, w, c in zip(points, warm, cold, strict=True):
        assert w - c == pytest.approx(
            TRUE.full_s(p.batch_size, p.input_tokens, p.output_tokens)
            + TRUE.prefill_s(p.batch_size, p.input_tokens)
        )
    # The control point warms up at the run's start; its trials and its end do not.
    expected = MODEL_LOAD_S + proto.idle_duration_s + warm[0] + 2 * cold[0] + warm[1] + 4 * cold[1]
    assert job_gpu_hours(TRUE, plan) * 3600 == pytest.approx(expected)
    every = dataclasses.replace(plan, protocol=dataclasses.replace(proto, warmup_every_trial=True))
    assert job_gpu_hours(TRUE, every) > job_gpu_hours(TRUE, plan)
    # Taking turns, a later trial costs half a warm-up: between the two.
    turns = dataclasses.replace(
        plan, protocol=dataclasses.replace(proto, warmup_every_trial="alternate")
    )
    assert job_gpu_hours(TRUE, turns) == pytest.approx(
        (job_gpu_hours(TRUE, every) + job_gpu_hours(TRUE, plan)) / 2
    )


def test_a_job_with_too_few_points_to_fit_is_timed_by_its_own_measured_shapes(tiny_config):
    proto = ProtocolSpec(
        min_trials=3, control_point=True, measure_prefill=False, control_min_duration_s=0.0
    )
    points = (PointSpec(1, 512, 64), PointSpec(8, 512, 64), PointSpec(64, 512, 64))
    plan, each = _job(tiny_config, proto, points)
    rows = _rows(TRUE)
    three = rows[(rows["input_tokens"] == 512) & (rows["output_tokens"] == 64)]
    # Each shape twice (two sessions): its median; no prefill window: a token's share.
    doubled = pd.concat([three, three.assign(duration_s=three["duration_s"] * 3)])
    shapes = MeasuredShapes.of(doubled.assign(prefill_duration_s=float("nan")))
    assert shapes.points == 3 and shapes.covers(plan)
    assert shapes.full_s(8, 512, 64) == pytest.approx(2 * TRUE.full_s(8, 512, 64))
    assert shapes.prefill_s(8, 512) == pytest.approx(2 * TRUE.full_s(8, 512, 64) / 64)
    table = estimate({"tiny__pytorch": plan}, three).set_index("group")
    row = table.loc["tiny__pytorch"]
    expected = MODEL_LOAD_S + proto.idle_duration_s + 3 * sum(each) + 2 * each[0]
    assert row["estimated_gpu_hours"] * 3600 == pytest.approx(expected)
    assert row["basis"] == "timed by its 3 points as measured on GPU X"
    # A shape the rows lack (or a request stream): no estimate rather than a guess.
    wider = dataclasses.replace(plan, points=(*points, PointSpec(2, 512, 64)))
    assert not shapes.covers(wider)
    assert math.isnan(estimate({"w": wider}, three)["estimated_gpu_hours"].iloc[0])


def test_a_job_costs_only_the_trials_its_journal_leaves(tiny_config):
    from llm_energy.analysis.gpu_hours import describe

    proto = ProtocolSpec(min_trials=3, control_point=True, control_min_duration_s=0.0)
    points = (PointSpec(1, 128, 8), PointSpec(8, 512, 64))
    plan, each = _job(tiny_config, proto, points)
    start = MODEL_LOAD_S + proto.idle_duration_s
    # The control point (batch 1) is measured twice by any run, its trials done or not.
    left = {points[0].key: 0, points[1].key: 2}
    expected = start + 2 * each[1] + 2 * each[0]
    assert job_gpu_hours(TRUE, plan, left) * 3600 == pytest.approx(expected)
    assert job_gpu_hours(TRUE, plan, {p.key: 0 for p in points}) == 0.0
    table = estimate(
        {"j": plan, "done": plan},
        _rows(TRUE).assign(model=plan.model.name),
        {"j": left, "done": {p.key: 0 for p in points}},
    ).set_index("group")
    assert table.loc["j", "points_left"] == 1
    assert table.loc["done", "estimated_gpu_hours"] == 0.0
    text = describe(table.reset_index())
    assert "j: 1 of 2 points left, ~" in text
    assert "done: 0 of 2 points left, ~0 CPU-minutes (every point already measured)" in text


def test_after_a_run_each_job_is_set_beside_its_estimate():
    from llm_energy.analysis.gpu_hours import against_actual, describe_against_actual

    estimated = pd.DataFrame(
        {
            "group": ["a", "b", "c"],
            "points": [3, 3, 3],
            "gpus": [1, 2, 1],
            "estimated_gpu_hours": [0.1, 0.2, math.nan],
            "basis": ["", "", "no measurements"],
        }
    )
    table = against_actual(estimated, {"a": 720.0, "b": 360.0, "c": 60.0})
    assert table.set_index("group")["actual_gpu_hours"].tolist() == [0.2, 0.2, 60 / 3600]
    assert table.set_index("group").loc["a", "actual_over_estimate"] == pytest.approx(2.0)
    text = describe_against_actual(table)
    assert "a: 12.0 GPU-minutes (estimated ~6.0, actual/estimated 2.00)" in text
    # Beside the estimate at adaptive trials, where the rows gave one.
    adaptive = estimated.assign(expected_gpu_hours=[0.15, 0.2, math.nan], trials_per_point=4.5)
    text_adaptive = describe_against_actual(against_actual(adaptive, {"a": 720.0}))
    assert "(estimated ~6.0, actual/estimated 2.00; ~9.0 with adaptive trials, " in text_adaptive
    assert "actual/expected 1.33)" in text_adaptive
    assert "c: 1.0 GPU-minutes (no estimate)" in text
    assert "the 2 with an estimate took 24.0 against 18.0 estimated" in text
    # Jobs that ran on the CPU (a smoke run) count CPU-minutes.
    on_cpu = describe_against_actual(table.assign(device="cpu"))
    assert "c: 1.0 CPU-minutes (no estimate)" in on_cpu and "GPU" not in on_cpu


def test_a_request_stream_costs_a_batch_for_every_batch_of_its_requests_and_one_to_warm_up():
    from llm_energy.measure.job import StreamSpec

    proto = ProtocolSpec(min_duration_s=0.0, min_repetitions=1, warmup_repetitions=1)
    stream = StreamSpec("azure_conversation", 256, "online")
    point = PointSpec(8, 512, 256, stream=stream, experiments=("online_serving",))
    one_batch = TRUE.full_s(8, 512, 256)
    assert point_seconds(TRUE, point, proto) == pytest.approx((1 + 32) * one_batch)


def test_a_measured_stream_is_timed_per_request_at_its_batch_or_the_nearest_smaller_one():
    from llm_energy.measure.job import StreamSpec

    def stream_row(trace, batch, requests, seconds, **extra):
        return {
            "serving": "offline",
            "trace": trace,
            "batch_size": batch,
            "requests": requests,
            "input_tokens": 4096,
            "output_tokens": 1024,
            "duration_s": seconds,
            "feasible": True,
            **extra,
        }

    rows = pd.DataFrame(
        [
            stream_row("translation", 1, 32, 32.0),  # 1.0 s a request
            stream_row("translation", 1, 32, 48.0),  # median of the two: 1.25 s
            stream_row("translation", 32, 32, 1.6),  # 0.05 s
            stream_row("translation", 8, 32, 9.9, feasible=False),
            stream_row("translation", 8, 32, 9.9, stream_bins='{"512x64": 32}'),
            {**stream_row("translation", 8, 32, 0.3), "serving": "batch"},
        ]
    )
    times = stream_request_seconds(rows)
    assert times == {("translation", "offline", 4096, 1024): {1: 1.25, 32: 0.05}}
    proto = ProtocolSpec(min_duration_s=2.0, min_repetitions=1, warmup_repetitions=1)
    model = dataclasses.replace(TRUE, streams=times)

    def task(batch, trace="translation"):
        stream = StreamSpec(trace, 1024, "offline", vary_input=True)
        return PointSpec(batch, 4096, 1024, stream=stream, experiments=("classical_tasks",))

    # 1,024 requests at 1.25 s each, and a warm-up of one batch (one request).
    assert point_seconds(model, task(1), proto) == pytest.approx(1024 * 1.25 + 1.25)
    # Batch 128 takes batch 32's time per request; its warm-up is one batch of 128.
    assert point_seconds(model, task(128), proto) == pytest.approx(1024 * 0.05 + 128 * 0.05)
    # Batch 8 is timed at batch 1's (the nearest smaller measured batch).
    assert point_seconds(model, task(8), proto) == pytest.approx(1024 * 1.25 + 8 * 1.25)
    # A stream never measured falls back to batches at its caps.
    caps = TRUE.full_s(8, 4096, 1024)
    assert point_seconds(model, task(8, "summarization"), proto) == pytest.approx(129 * caps)


def _task_lengths(folder, task: str, lengths: list[tuple[int, int]]):
    """A task_lengths table of ``lengths`` (input, output) in ``folder``."""
    from llm_energy.inputs.prompts import TraceLengths

    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(lengths, columns=["input_tokens", "output_tokens"]).to_parquet(
        folder / f"{task}.parquet"
    )
    return TraceLengths(folder / "traces", folder)


def test_a_stream_never_measured_is_timed_by_the_batches_its_requests_make(tmp_path):
    """With the prepared lengths, a stream no row measured costs the static batches the job
    serves: the same draw of requests, each batch at its longest prompt and output. A stream
    whose lengths are not prepared still takes its caps; a measured one its time per request."""
    from llm_energy.inputs.prompts import static_batches

    lengths = _task_lengths(tmp_path, "generation", [(100, 64), (300, 10), (50, 200)])
    model = dataclasses.replace(TRUE, stream_lengths=lengths)
    stream = StreamSpec("generation", 6, "offline", vary_input=True)
    point = PointSpec(4, 4096, 128, stream=stream, experiments=("classical_tasks",))
    drawn = lengths.lengths(point, 0)
    batches = static_batches(drawn, point)
    assert [len(b) for b in batches] == [4, 2]
    expected = sum(
        TRUE.full_s(len(b), max(drawn[k][0] for k in b), max(drawn[k][1] for k in b))
        for b in batches
    )
    assert max(o for _, o in drawn) <= 128  # the caps clip the draw, as the job's
    assert batched_stream_s(model, point, 0) == pytest.approx(expected)
    proto = ProtocolSpec(min_duration_s=0.0, min_repetitions=1, warmup_repetitions=0)
    assert point_seconds(model, point, proto) == pytest.approx(expected)
    # A batch of one: every request alone.
    one = dataclasses.replace(point, batch_size=1)
    alone = sum(TRUE.full_s(1, i, o) for i, o in lengths.lengths(one, 0))
    assert point_seconds(model, one, proto) == pytest.approx(alone)
    # Lengths not prepared (another task), or none given: the caps.
    other = dataclasses.replace(point, stream=dataclasses.replace(stream, trace="translation"))
    caps = 2 * TRUE.full_s(4, 4096, 128)
    assert math.isnan(batched_stream_s(model, other, 0))
    assert point_seconds(model, other, proto) == pytest.approx(caps)
    assert point_seconds(TRUE, point, proto) == pytest.approx(caps)
    # A measured time per request comes first.
    measured = dataclasses.replace(model, streams={("generation", "offline", 4096, 128): {4: 0.5}})
    assert point_seconds(measured, point, proto) == pytest.approx(6 * 0.5)
    assert stream_timing(measured, point, 0) == (pytest.approx(3.0), "measured")
    # One at a smaller batch is an upper bound: the lengths come before it, and it before the
    # caps.
    smaller = dataclasses.replace(model, streams={("generation", "offline", 4096, 128): {1: 2.0}})
    assert stream_timing(smaller, point, 0) == (pytest.approx(expected), "lengths")
    smaller = dataclasses.replace(smaller, stream_lengths=None)
    assert stream_timing(smaller, point, 0) == (pytest.approx(12.0), "smaller batch")
    assert stream_timing(TRUE, point, 0) == (pytest.approx(caps), "caps")


def test_an_engine_that_serves_each_request_at_its_own_lengths_is_timed_so(tmp_path):
    """vLLM pads no batch: a request stream's batch costs prefill over its prompts' own tokens
    and decoding steps whose sequence terms count a request only while it runs. Requests of
    one length cost what a padded batch of them does; a batch of one short request beside one
    long costs less, by exactly the short one's padding."""
    lengths = _task_lengths(tmp_path, "generation", [(100, 64), (300, 10), (50, 200)])
    padded = dataclasses.replace(TRUE, stream_lengths=lengths)
    own = dataclasses.replace(padded, padded_batches=False)
    assert own.static_batch_s([(512, 64)] * 8) == pytest.approx(TRUE.full_s(8, 512, 64))
    (a0, a1), (c0, c1, c2) = TRUE.prefill, TRUE.step
    requests = [(100, 64), (300, 10)]
    expected = (
        a0
        + a1 * 400
        + TRUE.prefill_quadratic * (100**2 + 300**2)
        + 63 * c0
        + 63 * (c1 + c2 * (100 + 32))
        + 9 * (c1 + c2 * (300 + 5))
    )
    assert own.static_batch_s(requests) == pytest.approx(expected)
    assert padded.static_batch_s(requests) == pytest.approx(TRUE.full_s(2, 300, 64))
    assert own.static_batch_s(requests) < padded.static_batch_s(requests)
    stream = StreamSpec("generation", 6, "offline", vary_input=True)
    point = PointSpec(4, 4096, 256, stream=stream, experiments=("classical_tasks",))
    assert batched_stream_s(own, point, 0) < batched_stream_s(padded, point, 0)
    one = dataclasses.replace(point, batch_size=1)
    assert batched_stream_s(own, one, 0) == pytest.approx(batched_stream_s(padded, one, 0))


def test_continuous_batching_gives_a_finished_requests_place_to_the_next_at_once(tmp_path):
    """Online, an engine that pads no batch runs its decoding steps until the last request
    ends, each request taking the place that frees first: three requests of 10, 2 and 4
    output tokens at two in flight decode for 9 steps (the third follows the second), where
    static batches of two take 9 + 3 steps; the sequence terms are the requests' own, and
    both admit two batches' prefill, so the two differ by the constant term of those 3 steps."""
    lengths = _task_lengths(tmp_path, "generation", [(100, 10), (300, 2), (50, 4)])
    own = dataclasses.replace(TRUE, stream_lengths=lengths, padded_batches=False)
    requests = [(100, 10), (300, 2), (50, 4)]
    c0 = TRUE.step[0]
    static = own.static_batch_s(requests[:2]) + own.static_batch_s(requests[2:])
    continuous = own.continuous_s(requests, 2)
    assert static - continuous == pytest.approx(3 * c0)
    # One request at a time, continuous batching is static batches of one.
    alone = sum(own.static_batch_s([r]) for r in requests)
    assert own.continuous_s(requests, 1) == pytest.approx(alone)
    # The plan serves an online stream so, and an offline one in static batches; a padding
    # engine has no continuous batching.
    stream = StreamSpec("generation", 3, "online", vary_input=True)
    online = PointSpec(2, 4096, 256, stream=stream, experiments=("classical_tasks",))
    drawn = lengths.lengths(online, 0)
    assert batched_stream_s(own, online, 0) == pytest.approx(own.continuous_s(drawn, 2))
    offline = dataclasses.replace(online, stream=dataclasses.replace(stream, serving="offline"))
    assert batched_stream_s(own, offline, 0) == pytest.approx(
        own.static_batch_s(drawn[:2]) + own.static_batch_s(drawn[2:])
    )
    padded = dataclasses.replace(own, padded_batches=True)
    assert batched_stream_s(padded, online, 0) == pytest.approx(
        batched_stream_s(padded, offline, 0)
    )


def test_the_plan_times_a_vllm_stream_by_its_requests_own_lengths(
    tiny_config, tmp_path, monkeypatch
):
    """The plan asks the job's backend how it serves a batch: with the same rows and lengths,
    vLLM's stream costs less than the padded batches would, and transformers' is padded."""
    import llm_energy.analysis.gpu_hours as gpu_hours

    config = dict(tiny_config)
    config["engines"] = {**tiny_config["engines"], "vllm": {"backend": "vllm"}}
    config["experiments"] = {
        **tiny_config["experiments"],
        "classical_tasks": {
            "enabled": True,
            "models": ["tiny"],
            "engines": ["pytorch", "vllm"],
            "batch_sizes": [4],
            "tasks": ["generation"],
            "samples": 6,
        },
    }
    plans = {
        g: p for g, p in plan_study(validate(config)).items() if any(q.stream for q in p.points)
    }
    assert {p.engine.backend for p in plans.values()} == {"transformers", "vllm"}
    lengths = _task_lengths(tmp_path, "generation", [(100, 64), (300, 10), (50, 200)])
    rows = pd.concat(
        _rows(TRUE).assign(engine=p.engine.name, model=p.model.name) for p in plans.values()
    )

    def hours() -> dict[str, float]:
        table = estimate(plans, rows, lengths=lengths).set_index("group")
        return {p.engine.backend: table.loc[g, "estimated_gpu_hours"] for g, p in plans.items()}

    own = hours()
    monkeypatch.setattr(gpu_hours, "pads_batches", lambda backend: True)
    padded = hours()
    assert own["vllm"] < padded["vllm"]
    assert own["transformers"] == padded["transformers"]


def _task_plans(tiny_config: dict, tasks: list[str]) -> dict:
    """The plans of the tiny model's classical ``tasks`` at batch 1 on PyTorch, 4 examples each."""
    config = dict(tiny_config)
    config["experiments"] = {
        **tiny_config["experiments"],
        "classical_tasks": {
            "enabled": True,
            "models": ["tiny"],
            "engines": ["pytorch"],
            "batch_sizes": [1],
            "tasks": tasks,
            "samples": 4,
        },
    }
    plans = plan_study(validate(config))
    plans = {g: p for g, p in plans.items() if any(q.stream for q in p.points)}
    assert plans
    return plans


def test_the_plan_says_which_streams_it_timed_by_their_lengths_and_which_at_their_caps(
    tiny_config, tmp_path
):
    """The basis counts the streams timed by their requests' lengths and those left at their
    caps, an upper bound, so that a reader of the plan knows which of its minutes are which."""
    plans = _task_plans(tiny_config, ["classification", "generation"])
    rows = _rows(TRUE).assign(engine=next(iter(plans.values())).engine.name)
    rows["model"] = next(iter(plans.values())).model.name
    lengths = _task_lengths(tmp_path, "generation", [(100, 64), (300, 10)])
    without = estimate(plans, rows)
    with_lengths = estimate(plans, rows, lengths=lengths)
    basis = " ".join(with_lengths["basis"])
    assert "1 request stream by its requests' own lengths" in basis
    assert "1 request stream as batches at its length caps, an upper bound" in basis
    assert "2 request streams as batches at their length caps" in " ".join(without["basis"])
    assert (with_lengths["estimated_gpu_hours"] < without["estimated_gpu_hours"]).all()


def test_streams_timed_by_their_lengths_are_scaled_by_what_the_engines_measured_streams_took(
    tiny_config, tmp_path
):
    """Where the engine's rows hold three or more measured streams whose lengths are prepared,
    a stream timed by its requests' lengths is scaled by the median of what they took over
    such a time, and the basis says by how much and over what range; with fewer it is not."""
    from llm_energy.analysis.gpu_hours import lengths_ratios, stream_point

    plans = _task_plans(tiny_config, ["generation"])
    plan = next(iter(plans.values()))
    lengths = _task_lengths(tmp_path, "generation", [(100, 64), (300, 10), (50, 200)])
    model = dataclasses.replace(TRUE, stream_lengths=lengths)
    # Streams of other batch sizes and caps than the plan's, measured at 1.2, 2.0 and 1.5
    # times their time by their lengths.
    streams = []
    for batch, factor in ((2, 1.2), (3, 2.0), (4, 1.5)):
        row = {"trace": "generation", "requests": 6, "serving": "offline", "batch_size": batch}
        row |= {"input_tokens": 2048, "output_tokens": 256, "feasible": True}
        point = stream_point(pd.Series(row))
        streams.append(row | {"duration_s": factor * batched_stream_s(model, point, 0)})
    streams = pd.DataFrame(streams).assign(model="tiny", engine="pytorch", gpu_name="GPU X")
    assert sorted(lengths_ratios(model, streams, 0)) == pytest.approx([1.2, 1.5, 2.0])

    def estimated(rows: pd.DataFrame) -> pd.Series:
        rows = rows.assign(engine=plan.engine.name, model=plan.model.name)
        return estimate(plans, rows, lengths=lengths).iloc[0]

    unscaled = estimated(_rows(TRUE))
    two = estimated(pd.concat([_rows(TRUE), streams.iloc[:2]], ignore_index=True))
    scaled = estimated(pd.concat([_rows(TRUE), streams], ignore_index=True))
    assert "scaled" not in unscaled["basis"] and "scaled" not in two["basis"]
    assert (
        "1 request stream by its requests' own lengths, scaled by 1.50, the median of what its "
        "3 measured streams took over such a time (1.20 to 2.00)"
    ) in scaled["basis"]
    assert scaled["estimated_gpu_hours"] > unscaled["estimated_gpu_hours"]
    assert "left out" not in scaled["basis"]
    # A measured stream of a task whose lengths are not prepared here is left out, and said.
    other = streams.iloc[:1].assign(trace="translation")
    with_other = estimated(pd.concat([_rows(TRUE), streams, other], ignore_index=True))
    assert (
        "3 measured streams took over such a time (1.20 to 2.00) (1 more measured stream left "
        "out: their requests' lengths are not prepared here)"
    ) in with_other["basis"]
    assert with_other["estimated_gpu_hours"] == scaled["estimated_gpu_hours"]


def _served_rows(engine: str = "srv-served-s4") -> pd.DataFrame:
    """Three served runs of 10 requests whose tails (run less (10 - 1) / rate) are 1.0, 1.5
    and 3.0 s, the last with its run only as steady state over fraction (2.4 s / 0.5), and an
    offline estimate at 2.0 s a repetition (0.2 s a request)."""
    nan = float("nan")
    base = {"model": "tiny", "engine": engine, "gpu_name": "GPU X", "feasible": True}
    runs = [(2.0, 5.5, nan, nan), (2.0, 6.0, nan, nan), (5.0, nan, 2.4, 0.5)]
    rows = [
        {
            **base,
            "serving": "served",
            "requests": 10,
            "request_rate": rate,
            "run_s": run_s,
            "steady_state_s": steady_s,
            "steady_state_fraction": fraction,
            "duration_s": 1.0,
        }
        for rate, run_s, steady_s, fraction in runs
    ]
    rows.append({**base, "serving": "offline", "requests": 10, "duration_s": 2.0})
    return pd.DataFrame(rows)


def _served_plan(tiny_config, engine: str, gpus: int):
    trials = ProtocolSpec(min_duration_s=2.0, min_repetitions=3, min_trials=2)
    served = StreamSpec("azure_conversation", 20, "served", vary_input=True)
    offline = StreamSpec("azure_conversation", 20, "offline", vary_input=True)
    points = (
        PointSpec(4, 64, 16, stream=served, protocol=trials, served=ServedSpec("trace", 4)),
        PointSpec(4, 64, 16, stream=served, protocol=trials, served=ServedSpec("poisson", 10)),
        PointSpec(4, 64, 16, stream=offline, protocol=trials),
    )
    return dataclasses.replace(
        plan_study(validate(tiny_config))["tiny__pytorch"],
        engine=EngineSpec(engine, "vllm_server", cuda_graphs=True, tensor_parallel_size=gpus),
        protocol=ProtocolSpec(
            idle_duration_s=5.0, min_trials=3, control_point=True, control_min_duration_s=0.0
        ),
        points=points,
    )


def test_a_served_job_costs_its_server_start_and_its_replays(tiny_config):
    fitted = ServedTimeModel.fit(_served_rows())
    assert fitted.tail_s == pytest.approx(1.5)  # the median of 1.0, 1.5 and 3.0
    assert fitted.offline_request_s == pytest.approx(0.2)
    # Each trial warms up on 4 requests at once (0.8 s); a replay of 20 requests at 4/s sends
    # them over 19 / 4 s, at 10/s over 1.9 s, then drains 1.5 s; the offline estimate's
    # window is 3 repetitions of 20 * 0.2 s. Two trials each (the points' protocol), no
    # control point (no plain point), the server started once.
    per_trial_s = (0.8 + 4.75 + 1.5) + (0.8 + 1.9 + 1.5) + (0.8 + 3 * 4.0)
    job_s = SERVER_START_S[True] + 5.0 + 2 * per_trial_s
    plans = {"exact": _served_plan(tiny_config, "srv-served-s4", 1)}
    plans["other_tp"] = _served_plan(tiny_config, "srv-served-s4-tp2", 2)
    table = estimate(plans, _served_rows()).set_index("group")
    assert table.loc["exact", "estimated_gpu_hours"] * 3600 == pytest.approx(job_s)
    assert table.loc["exact", "basis"] == (
        "fitted to 3 served runs and 1 offline run measured on GPU X"
    )
    assert table.loc["other_tp", "estimated_gpu_hours"] * 3600 == pytest.approx(2 * job_s)
    assert "of srv-served-s4 (none of srv-served-s4-tp2" in table.loc["other_tp", "basis"]
    # Without an offline row a batch at once costs a run's tail per batch of max_num_seqs.
    no_offline = ServedTimeModel.fit(_served_rows().iloc[:3])
    assert math.isnan(no_offline.offline_request_s)
    assert no_offline.batch_s(20, 4) == pytest.approx(5 * 1.5)
    # Another max_num_seqs of the same engine: that server's rows, said so; another engine's
    # server has none.
    plans = {"other_seqs": _served_plan(tiny_config, "srv-served-s8", 1)}
    plans["other_engine"] = _served_plan(tiny_config, "srv2-served-s4", 1)
    table = estimate(plans, _served_rows()).set_index("group")
    assert table.loc["other_seqs", "estimated_gpu_hours"] * 3600 == pytest.approx(job_s)
    assert table.loc["other_seqs", "basis"].endswith(
        "of srv-served-s4 (none of srv-served-s8: the same engine's server at another max_num_seqs)"
    )
    assert math.isnan(table.loc["other_engine", "estimated_gpu_hours"])


def test_served_rows_and_batch_rows_stay_out_of_each_others_fits(tiny_config):
    plans = plan_study(validate(tiny_config))
    plans["served"] = _served_plan(tiny_config, "srv-served-s4", 1)
    alone = estimate(plans, pd.concat([_rows(TRUE), _served_rows()], ignore_index=True))
    # Served rows under the offline engine's name, batch rows under the server's.
    mixed = pd.concat(
        [
            _rows(TRUE),
            _served_rows(),
            _served_rows(engine="pytorch"),
            _rows(TRUE).assign(engine="srv-served-s4", duration_s=100.0),
        ],
        ignore_index=True,
    )
    table = estimate(plans, mixed)
    pd.testing.assert_frame_equal(table, alone)
    assert table.set_index("group").loc["tiny__pytorch", "basis"].startswith("fitted to 27 points")


def test_the_command_prints_each_jobs_minutes_beside_its_gpu_hours(tiny_config, tmp_path):
    import yaml

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config))
    rows = tmp_path / "rows.parquet"
    _rows(TRUE).to_parquet(rows)
    command = ["estimate-gpu-hours", str(config), "--measurements", str(rows)]
    done = subprocess.run(
        [sys.executable, "-m", "llm_energy", *command],
        capture_output=True,
        text=True,
        check=True,
    )
    plans = plan_study(validate(tiny_config))
    hours = job_gpu_hours(TRUE, plans["tiny__pytorch"])
    header, line = [
        ln.split() for ln in done.stdout.splitlines() if "estimated_job_min" in ln or "tiny__" in ln
    ][:2]
    assert header[:5] == ["group", "points", "gpus", "estimated_gpu_hours", "estimated_job_min"]
    assert line[0] == "tiny__pytorch"
    assert float(line[3]) == pytest.approx(hours, abs=0.005)
    assert float(line[4]) == pytest.approx(60 * hours, abs=0.005)


def test_a_job_pays_the_engine_start_its_rows_measured_once_per_run(tiny_config):
    """Rows that record engine_load_s replace the round allowance: the median over the runs
    (each run's value once, whatever its number of rows)."""
    plans = plan_study(validate(tiny_config))
    plan = plans["tiny__pytorch"]
    rows = _rows(TRUE)
    without = job_gpu_hours(TimeModel.fit(rows), plan)
    # Three runs: 10 s (most rows), 20 s and 90 s; the median run started in 20 s.
    rows["engine_load_s"] = [10.0] * (len(rows) - 2) + [20.0, 90.0]
    fitted = TimeModel.fit(rows)
    assert fitted.load_s == 20.0
    assert (without - job_gpu_hours(fitted, plan)) * 3600 == pytest.approx(MODEL_LOAD_S - 20.0)


def test_a_job_pays_the_first_start_of_a_machine_session_where_rows_name_theirs():
    """Rows of several machine sessions: each session's first start (its earliest row's run)
    counts once, not the faster later starts that found the caches warm."""
    from llm_energy.analysis.gpu_hours.time_models import measured_load_s

    rows = pd.DataFrame(
        {
            "machine_session": ["vm:a", "vm:a", "vm:a", "vm:b", "vm:b", "vm:c"],
            "timestamp": [
                "2026-12-03T10:00:00+00:00",
                "2026-12-03T10:05:00+00:00",
                "2026-12-03T10:20:00+00:00",
                "2026-12-03T12:00:00+00:00",
                "2026-12-03T12:30:00+00:00",
                "2026-12-03T14:00:00+00:00",
            ],
            "engine_load_s": [160.0, 160.0, 45.0, 95.0, 30.0, 110.0],
        }
    )
    assert measured_load_s(rows) == 110.0
    # Without sessions: the median over the runs' values, each once.
    assert measured_load_s(rows.drop(columns="machine_session")) == 95.0
    assert math.isnan(measured_load_s(rows.assign(engine_load_s=np.nan)))


def test_a_job_longer_than_its_allocation_takes_more_runs_each_starting_again():
    """Each run past the first pays the engine start again and loses, on average, half the
    job's longest trial (the one its time limit stops); a trial that cannot fit one run after
    the start never finishes."""
    from llm_energy.analysis.gpu_hours import allocations

    assert allocations(500.0, 70.0, 60.0, 555.0) == (1.0, 500.0)
    # 730 s of trials, 455 s of them per run (555 s less the 70 s start and 30 s lost): two.
    runs, seconds = allocations(800.0, 70.0, 60.0, 555.0)
    assert runs == 2.0 and seconds == pytest.approx(730.0 + 2 * 70.0 + 30.0)
    # 2,930 s of trials: six runs hold 6 * 485 - 5 * 30 = 2,760 s of them, seven 3,215 s.
    runs, seconds = allocations(3000.0, 70.0, 60.0, 555.0)
    assert runs == 7.0 and seconds == pytest.approx(2930.0 + 7 * 70.0 + 6 * 30.0)
    assert allocations(3000.0, 70.0, 500.0, 555.0) == (math.inf, math.inf)


def test_the_command_says_the_runs_each_job_takes_within_an_allocation(tiny_config, tmp_path):
    import yaml

    from llm_energy.analysis.gpu_hours import longest_trial, start_seconds

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config))
    rows = tmp_path / "rows.parquet"
    _rows(TRUE).to_parquet(rows)
    plan = plan_study(validate(tiny_config))["tiny__pytorch"]
    job_s = 3600 * job_gpu_hours(TRUE, plan)
    start_s, longest_s = start_seconds(TRUE, plan), longest_trial(TRUE, plan)[0]
    assert job_s - start_s > 3 * longest_s  # room for a run that stops inside a trial
    minutes = job_s / 60
    shorter = (start_s + longest_s + 0.5 * (job_s - start_s)) / 60
    base = ["estimate-gpu-hours", str(config), "--measurements", str(rows)]
    for limit, runs in ((2 * minutes, 1), (shorter, 2)):
        done = subprocess.run(
            [sys.executable, "-m", "llm_energy", *base, "--allocation-min", f"{limit}"],
            capture_output=True,
            text=True,
            check=True,
        )
        lines = [ln.split() for ln in done.stdout.splitlines() if "tiny__" in ln or "group" in ln]
        header, line = lines[0], next(ln for ln in lines if ln[0] == "tiny__pytorch")
        assert float(line[header.index("allocations")]) == runs
        allocated = float(line[header.index("allocated_job_min")])
        assert (allocated > minutes) if runs > 1 else allocated == pytest.approx(minutes, abs=0.01)
    refused = subprocess.run(
        [sys.executable, "-m", "llm_energy", *base, "--allocation-min", "0"],
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0
    assert "--allocation-min 0: give a time limit above 0 min" in refused.stderr
    # --trials-at-most, else the environment's, as measure reads it: a bad value is refused.
    for flag, env, said in (
        (["--trials-at-most", "0"], {}, "--trials-at-most 0: expected 1 or more"),
        ([], {TRIALS_AT_MOST_ENV: "none"}, f"{TRIALS_AT_MOST_ENV}=none: expected a whole"),
    ):
        refused = subprocess.run(
            [sys.executable, "-m", "llm_energy", *base, *flag],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
        )
        assert refused.returncode != 0 and said in refused.stderr


def test_the_estimate_reads_a_config_json_only_where_it_already_lies(tmp_path):
    from llm_energy.inputs.model_configs import local_config_path
    from llm_energy.measure.job import ModelSpec

    mirror = tmp_path / "mirror"
    (mirror / "org__m").mkdir(parents=True)
    spec = ModelSpec("m", "org/m")
    assert local_config_path(spec, str(mirror)) is None  # a folder without it: no download
    (mirror / "org__m/config.json").write_text("{}")
    assert local_config_path(spec, str(mirror)) == mirror / "org__m/config.json"
    own = ModelSpec("m", "org/m", config=str(tmp_path / "nowhere"))
    assert local_config_path(own, str(mirror)) is None  # its own config first, and only it


def _memory_rows(model: str, peaks: dict[int, float], out_of_memory: tuple[int, ...] = ()):
    """Rows of ``model`` at 512 in, 64 out: each batch's measured peak memory, and batches
    that ran out of memory."""
    rows = _rows(TRUE)
    rows = rows[(rows["input_tokens"] == 512) & (rows["output_tokens"] == 64)].iloc[:1]
    ran = [rows.assign(batch_size=b, peak_memory_gib=p) for b, p in peaks.items()]
    failed = [
        rows.assign(batch_size=b, feasible=False, error="out of memory: CUDA out of memory")
        for b in out_of_memory
    ]
    return pd.concat([*ran, *failed], ignore_index=True).assign(model=model)


def test_the_plan_leaves_out_the_batches_the_rows_say_do_not_fit():
    """vLLM: a batch fits where its tokens fit the KV cache the rows report. Other engines: a
    line through the measured peaks, up to what the least batch that ran out of memory would
    have taken on it; a model that never ran out takes that limit from another model's rows on
    the same GPU, and without any, every batch fits."""
    vllm = MemoryModel.of(_rows(TRUE).assign(kv_cache_tokens=576 * 100))
    assert vllm.fits(PointSpec(100, 512, 64)) and not vllm.fits(PointSpec(101, 512, 64))
    beams = DecodingSpec("beam", "beam", num_beams=4)
    assert not vllm.fits(PointSpec(26, 512, 64, beams))
    # Each sequence takes whole KV-cache blocks: 570 tokens take 36 blocks of 16 (576 tokens),
    # 580 take 37 (592), so 100 such sequences no longer fit; the rows' engine detail names the
    # block where they have it: 560 tokens take 35 blocks of 16 but 18 of 32 (576 tokens).
    assert vllm.kv_block_tokens == 16 and vllm.fits(PointSpec(100, 506, 64))
    assert not vllm.fits(PointSpec(100, 516, 64))
    rows = _rows(TRUE).assign(kv_cache_tokens=560 * 100)
    assert MemoryModel.of(rows).fits(PointSpec(100, 496, 64))
    detailed = rows.assign(engine_detail="vLLM max_num_seqs=8 kv_block_tokens=32")
    assert not MemoryModel.of(detailed).fits(PointSpec(100, 496, 64))
    # 10 GiB of weights and 1 MiB per token: batch 1,024 (576 Ki tokens) would take 586 GiB.
    gib = 1 / 1024
    small = _memory_rows("small", {b: 10 + gib * 576 * b for b in (1, 64, 256)}, (1024,))
    line = MemoryModel.of(small)
    assert line.base_gib == pytest.approx(10) and line.gib_per_token == pytest.approx(gib)
    assert line.limit_gib == pytest.approx(10 + 576)
    assert line.fits(PointSpec(512, 512, 64)) and not line.fits(PointSpec(1024, 512, 64))
    assert not line.fits(PointSpec(64, 16384, 64))
    # A larger model that never ran out of memory, on the same GPU: 100 GiB of weights.
    large = _memory_rows("large", {b: 100 + gib * 576 * b for b in (1, 8)})
    assert MemoryModel.of(large).fits(PointSpec(1024, 32768, 64))  # nothing says otherwise
    limits = memory_limits(pd.concat([small, large], ignore_index=True))
    assert limits == {"GPU X": pytest.approx(586)}
    bounded = MemoryModel.of(large, limits["GPU X"])
    assert bounded.fits(PointSpec(512, 512, 64)) and not bounded.fits(PointSpec(1024, 512, 64))
    assert MemoryModel.of(large, limits["GPU X"]).limit_gib == pytest.approx(586)
    assert bounded.fits(PointSpec(4, 0, 0, stream=StreamSpec("t", "offline", 64)))


def test_a_padded_stream_fits_where_its_largest_padded_batch_is_below_the_line(
    tmp_path, tiny_config
):
    """With the prepared lengths, a PyTorch request stream weighs its largest static batch,
    padded to that batch's longest prompt and output (the job's draw of its requests), on the
    line through the peaks. vLLM, which pads nothing, and a stream whose lengths are not
    prepared count as fitting."""
    from llm_energy.analysis.gpu_hours.memory import engine_memory_model
    from llm_energy.inputs.prompts import static_batches

    lengths = _task_lengths(tmp_path, "generation", [(100, 64), (300, 10), (50, 200)])
    stream = StreamSpec("generation", 3, "offline", vary_input=True)
    point = PointSpec(2, 4096, 1024, stream=stream, experiments=("classical_tasks",))
    plan, _ = _job(tiny_config, ProtocolSpec(seed=0), (point,))
    gib = 1 / 1024
    # 10 GiB of weights and 1 MiB per token; batch 1,024 of 576 tokens ran out of memory.
    rows = _memory_rows("m", {b: 10 + gib * 576 * b for b in (1, 64, 256)}, (1024,))
    padded = dataclasses.replace(TRUE, stream_lengths=lengths)
    fits = engine_memory_model(rows, {}, padded, plan)
    drawn = lengths.lengths(point, 0)
    largest = max(
        len(b) * (max(drawn[k][0] for k in b) + max(drawn[k][1] for k in b))
        for b in static_batches(drawn, point)
    )
    assert fits.stream_tokens(point) == largest
    assert fits.fits(point)
    tight = dataclasses.replace(fits, limit_gib=10 + gib * (largest - 1))
    assert not tight.fits(point)
    # vLLM's scheduler, no lengths, or no plan: the stream counts as fitting.
    own = dataclasses.replace(padded, padded_batches=False)
    for model in (own, TRUE):
        bounded = engine_memory_model(rows, {}, model, plan)
        assert dataclasses.replace(bounded, limit_gib=10 + gib * (largest - 1)).fits(point)
    other = dataclasses.replace(point, stream=dataclasses.replace(stream, trace="translation"))
    assert tight.stream_tokens(other) is None and tight.fits(other)


def test_a_searched_shape_costs_its_largest_feasible_batch_alone(tiny_config):
    """A shape searched for its largest feasible batch (the workload bins) costs the largest
    batch that fits and the probes between it and the batch above, out of memory; a plain
    shape costs every batch that fits; one above the fit, nothing."""
    from llm_energy.measure.bounds import BOUND_SEARCH_STEPS

    proto = ProtocolSpec(min_trials=3, control_point=False, measure_prefill=False)
    bins = tuple(PointSpec(b, 512, 64, experiments=("workload_estimates",)) for b in (16, 64, 256))
    sweep = tuple(PointSpec(b, 1024, 64, experiments=("input_sweep",)) for b in (16, 64, 256))
    plan, _ = _job(tiny_config, proto, bins + sweep)
    plan = dataclasses.replace(plan, largest_feasible_only=("workload_estimates",))
    assert counted_points(plan) == [bins[2], *sweep]
    fits = MemoryModel(kv_cache_tokens=100 * 576)
    assert counted_points(plan, fits) == [bins[1], sweep[0]]
    assert job_gpu_hours(TRUE, plan, fits=fits) * 3600 == pytest.approx(
        MODEL_LOAD_S
        + proto.idle_duration_s
        + 3 * sum(point_seconds(TRUE, p, proto) for p in (bins[1], sweep[0]))
        + BOUND_SEARCH_STEPS * TRUE.full_s(160, 512, 64)
    )
    table = estimate({"tiny__pytorch": plan}, _rows(TRUE).assign(kv_cache_tokens=100 * 576))
    assert (
        table["basis"]
        .iloc[0]
        .endswith("; 3 points left out as out of memory by vLLM's KV-cache capacity")
    )


def test_adaptive_trials_are_expected_by_the_length_of_each_points_window(tiny_config):
    """Short windows spread more between trials: the expected job gives each point the mean
    trials of the engine's rows whose windows were as long as its own; rows of a job stopped
    before its least number of trials say nothing and are left out."""
    from llm_energy.analysis.gpu_hours import TrialsByWindow, trials_per_point, window_seconds

    rows = _rows(TRUE).assign(repetitions=1, protocol_met=True)
    window = rows["duration_s"]
    rows["trials"] = np.where(window < 2.5, 6, 3)
    stopped = rows.iloc[:4].assign(trials=1, protocol_met=False)
    with_stopped = pd.concat([rows, stopped], ignore_index=True)
    assert trials_per_point(with_stopped) == pytest.approx(rows["trials"].mean())
    by_window = TrialsByWindow.of(with_stopped)
    assert by_window.at(1.0) == 6 and by_window.at(30.0) == 3
    proto = ProtocolSpec(min_trials=3, max_trials=6, control_point=False, measure_prefill=False)
    short, long = PointSpec(1, 128, 8), PointSpec(64, 2048, 256)
    assert window_seconds(TRUE, short, proto) < 2.5 < 5 < window_seconds(TRUE, long, proto)
    plan, each = _job(tiny_config, proto, (short, long))
    start = MODEL_LOAD_S + proto.idle_duration_s
    assert job_gpu_hours(TRUE, plan, trials=by_window) * 3600 == pytest.approx(
        start + 6 * each[0] + 3 * each[1]
    )


def test_the_points_of_a_job_add_up_to_its_expected_time(tiny_config):
    """point_costs lists a job's points, each with one trial's minutes, the trials expected in
    a window as long as its own and their minutes; with the engine's start (and no control
    point) they add up to the expected job. A batch that does not fit costs nothing."""
    from llm_energy.analysis.gpu_hours import TrialsByWindow, point_costs

    proto = ProtocolSpec(min_trials=3, max_trials=6, control_point=False, measure_prefill=False)
    points = (PointSpec(1, 128, 8), PointSpec(64, 2048, 256), PointSpec(512, 2048, 256))
    plan, each = _job(tiny_config, proto, points)
    rows = _rows(TRUE).assign(
        model=plan.model.name, repetitions=1, protocol_met=True, kv_cache_tokens=64 * 2304
    )
    rows["trials"] = np.where(rows["duration_s"] < 2.5, 6, 3)
    table = point_costs(plan, rows)
    assert list(table["fits"]) == [True, True, False]
    assert list(table["counted"]) == [True, True, False]
    assert list(table["trials"][:2]) == [6.0, 3.0]
    assert table["trial_min"].iloc[0] == pytest.approx(each[0] / 60)
    assert table["minutes"].iloc[2] == 0.0
    expected = job_gpu_hours(
        TRUE, plan, trials=TrialsByWindow.of(rows), fits=MemoryModel(kv_cache_tokens=64 * 2304)
    )
    start = MODEL_LOAD_S + proto.idle_duration_s
    assert (start / 60 + table["minutes"].sum()) / 60 == pytest.approx(expected, rel=0.02)


def test_the_points_a_journal_leaves_add_up_to_the_jobs_estimate_of_the_rest(tiny_config):
    """With the trials a journal leaves, point_costs says how many each point still needs and
    costs only those: a point with none left costs nothing and is not counted, one left with
    one trial costs that trial beyond the adaptive ones, and the points with the engine's
    start add up to job_gpu_hours given the same trials left."""
    from llm_energy.analysis.gpu_hours import TrialsByWindow, point_costs

    proto = ProtocolSpec(min_trials=3, max_trials=6, control_point=False, measure_prefill=False)
    points = (PointSpec(1, 128, 8), PointSpec(64, 2048, 256), PointSpec(8, 128, 8))
    plan, _ = _job(tiny_config, proto, points)
    rows = _rows(TRUE).assign(model=plan.model.name, repetitions=1, protocol_met=True)
    rows["trials"] = np.where(rows["duration_s"] < 2.5, 6, 3)
    short, long, done = plan.points
    left = {short.key: 1, long.key: 3, done.key: 0}
    table = point_costs(plan, rows, left=left)
    assert list(table["trials_left"]) == [1, 3, 0]
    assert list(table["counted"]) == [True, True, False]
    assert list(table["trials"]) == [4.0, 3.0, 0.0]
    assert table["minutes"].iloc[2] == 0.0
    expected = job_gpu_hours(TRUE, plan, left, TrialsByWindow.of(rows))
    start = MODEL_LOAD_S + proto.idle_duration_s
    assert (start / 60 + table["minutes"].sum()) / 60 == pytest.approx(expected, rel=0.02)
    assert "trials_left" not in point_costs(plan, rows).columns


def test_a_points_first_trial_for_the_deadline_is_the_one_the_plan_lists(tiny_config):
    """first_trial_seconds, which a measurement job with a deadline goes by for a point's first
    trial, gives each point the first trial that point_costs lists for it."""
    from llm_energy.analysis.gpu_hours import first_trial_seconds, point_costs

    proto = ProtocolSpec(min_trials=3, max_trials=6, control_point=False, measure_prefill=False)
    points = (PointSpec(1, 128, 8), PointSpec(64, 2048, 256))
    plan, _ = _job(tiny_config, proto, points)
    rows = _rows(TRUE).assign(model=plan.model.name, repetitions=1, protocol_met=True)
    seconds, basis = first_trial_seconds(plan, rows)
    assert basis.startswith("fitted to")
    listed = point_costs(plan, rows)["trial_min"] * 60
    assert [seconds[p.key] for p in plan.points] == pytest.approx(list(listed))
    none, why = first_trial_seconds(plan, rows.iloc[:0])
    assert none == {} and why


def test_the_command_lists_one_jobs_points_or_names_the_jobs(tiny_config, tmp_path, capsys):
    import yaml

    from llm_energy.cli import main

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    table = tmp_path / "rows.parquet"
    _rows(TRUE).assign(model="tiny").to_parquet(table)
    args = ["estimate-gpu-hours", str(path), "--measurements", str(table), "--points"]
    assert main([*args, "nope"]) != 0
    assert "--points nope: no such job (the jobs: tiny__pytorch)" in capsys.readouterr().err
    assert main([*args, "tiny__pytorch"]) == 0
    printed = capsys.readouterr()
    assert "tiny__pytorch, point by point:" in printed.out + printed.err
    assert "batch 1, 8 in, 8 out, greedy" in printed.out + printed.err


def test_a_jobs_share_inside_windows_is_its_trials_windows_over_its_expected_time(tiny_config):
    """The share the plan gives is the trials' windows over everything the job is expected to
    spend: its start, warm-ups and control point are outside; a window-only job would be 1."""
    proto = {"min_duration_s": 0.0, "min_repetitions": 3, "warmup_repetitions": 1}
    tiny_config["protocol"].update(proto, min_trials=3, control_point=True)
    plan = plan_study(validate(tiny_config))["tiny__pytorch"]
    windows = job_gpu_hours(TRUE, plan, windows_only=True)
    # Each trial: a full window and a prefill window of three repetitions each; three trials.
    each = [
        3 * (TRUE.full_s(p.batch_size, p.input_tokens, p.output_tokens))
        + 3 * TRUE.prefill_s(p.batch_size, p.input_tokens)
        for p in plan.points
    ]
    assert windows * 3600 == pytest.approx(3 * sum(each))
    row = estimate({"tiny__pytorch": plan}, _rows(TRUE).assign(model="tiny")).iloc[0]
    assert 0 < row["share_in_windows"] < 1
    assert row["share_in_windows"] == pytest.approx(windows / row["expected_gpu_hours"])


def test_the_command_times_task_streams_by_the_lengths_it_is_given(tiny_config, tmp_path, capsys):
    """estimate-gpu-hours --task-lengths: a task stream that no row measured is timed by the
    batches of its requests; without prepared lengths, at its caps, as the basis says."""
    import yaml

    from llm_energy.cli import main

    tiny_config["experiments"]["classical_tasks"] = dict(GENERATION_AT_BATCH_1)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    table = tmp_path / "rows.parquet"
    _rows(TRUE).assign(model="tiny").to_parquet(table)
    _task_lengths(tmp_path / "tasks", "generation", [(100, 64), (300, 10)])
    args = ["estimate-gpu-hours", str(path), "--measurements", str(table), "--task-lengths"]
    assert main([*args, str(tmp_path / "tasks")]) == 0
    printed = capsys.readouterr()
    assert "1 request stream by its requests' own lengths" in printed.out
    assert main([*args, str(tmp_path / "none")]) == 0
    assert "1 request stream as batches at its length caps" in capsys.readouterr().out


def _minutes_by_bin() -> tuple[pd.DataFrame, dict[str, float]]:
    """Two jobs' minutes over four bins, and each job's engine start."""
    by_bin = pd.DataFrame(
        [
            ("a__pytorch", 32, 8, 2.0),
            ("a__vllm", 32, 8, 1.0),
            ("a__pytorch", 32, 16, 1.0),
            ("a__vllm", 32, 16, 1.0),
            ("a__pytorch", 128, 8, 9.0),
            ("a__vllm", 128, 8, 4.0),
            ("a__pytorch", 128, 16, 0.5),
        ],
        columns=["group", "input_bin", "output_bin", "minutes"],
    )
    return by_bin, {"a__pytorch": 1.0, "a__vllm": 2.0}


def test_workload_bins_go_into_parts_that_fit_with_every_jobs_start():
    """Bins in the traces' order, each part at most its minutes with every job's engine start
    counted once; a bin that alone outlasts a part gets one of its own."""
    from llm_energy.analysis.gpu_hours.parts import workload_parts

    by_bin, starts = _minutes_by_bin()
    parts = workload_parts(by_bin, starts, part_min=10.0)
    assert [p.bins for p in parts] == [[(32, 8), (32, 16)], [(128, 8)], [(128, 16)]]
    assert parts[0].minutes == {"a__pytorch": 3.0, "a__vllm": 2.0}
    assert parts[2].minutes == {"a__pytorch": 0.5, "a__vllm": 0.0}
    with pytest.raises(ValueError, match="a part of 0 min holds nothing"):
        workload_parts(by_bin, starts, part_min=0)


def test_measured_parts_keep_their_bins_and_come_first_when_the_others_are_split_again(
    tmp_path, monkeypatch
):
    """Split again after part 1 was measured: part 1 keeps its bins (the layer its shipped
    tables were measured with names the same points), marked measured; the other bins are
    split anew after it. A part with a bin not complete on every job is split again."""
    from llm_energy.analysis.gpu_hours import parts as module
    from llm_energy.measure import resume

    by_bin, starts = _minutes_by_bin()
    # Earlier parts, as written: part 1 holds (32, 8) alone, part 2 the rest.
    folder = tmp_path / "parts"
    folder.mkdir()
    earlier = module.workload_parts(by_bin, starts, part_min=6.0)
    assert earlier[0].bins == [(32, 8)]
    for n, part in enumerate(earlier, start=1):
        text = module.part_layer(part, n, len(earlier), ["c.yaml"], starts)
        (folder / f"part{n}.yaml").write_text(text)
    (folder / "notes.yaml").write_text("not a part\n")
    assert module.read_parts(folder) == [p.bins for p in earlier]

    # (32, 8) is complete on both jobs, (32, 16) on one only.
    done = {(32, 8)}
    kept = module.measured_parts(module.read_parts(folder), done)
    assert kept == [[(32, 8)]]
    parts = module.workload_parts(by_bin, starts, part_min=100.0, keep=kept)
    assert [(p.bins, p.measured) for p in parts] == [
        ([(32, 8)], True),
        ([(32, 16), (128, 8), (128, 16)], False),
    ]
    assert parts[0].minutes == {"a__pytorch": 2.0, "a__vllm": 1.0}
    assert "(measured: kept as it was)" in module.describe_parts(parts, starts, 100.0)
    assert "measured (its bins kept" in module.part_layer(parts[0], 1, 2, ["c.yaml"], starts)
    # Their points, 15.5 min, and one start of each job, 3 min.
    assert module.total_minutes(parts[1:], starts) == pytest.approx(15.5 + 3.0)

    # measured_bins: a bin is done where every job's points of it need no more trials.
    class Point:
        def __init__(self, key, i, o, experiments=("workload_estimates",), batch_size=1):
            self.key, self.input_tokens, self.output_tokens = key, i, o
            self.experiments, self.batch_size = experiments, batch_size

    class Plan:
        largest_feasible_only = ()

        def __init__(self, *points):
            self.points = points

    plans = {
        "a__pytorch": Plan(Point("p1", 32, 8), Point("p2", 32, 16), Point("p3", 8, 8, ())),
        "a__vllm": Plan(Point("v1", 32, 8), Point("v2", 32, 16)),
        "b__other": Plan(Point("o1", 8, 8, ())),
    }
    left = {"p1": 0, "p2": 0, "p3": 3, "v1": 0, "v2": 1, "o1": 3}
    monkeypatch.setattr(
        resume, "trials_left", lambda plan, *a: {p.key: left[p.key] for p in plan.points}
    )
    assert module.measured_bins(plans, []) == {(32, 8)}

    # A job that searches each bin's largest feasible batch measured a bin once its ladder
    # came down to a batch that fits: the rungs a finer ladder adds between two complete
    # points may stay open, the ones below every complete point may not.
    def ladder(key, i, o, batches):
        return [Point(f"{key}{b}", i, o, batch_size=b) for b in batches]

    searched = Plan(
        *ladder("a", 32, 8, (1024, 512, 256)),
        *ladder("b", 4096, 8, (1024, 512, 256, 128, 64, 32, 16)),
        *ladder("c", 8192, 8, (1024, 256, 64, 16)),
    )
    searched.largest_feasible_only = ("workload_estimates",)
    left = {
        **{"a1024": 0, "a512": 3, "a256": 3},
        **{"b1024": 0, "b512": 3, "b256": 0, "b128": 3, "b64": 0, "b32": 3, "b16": 0},
        **{"c1024": 0, "c256": 0, "c64": 3, "c16": 3},
    }
    assert module.measured_bins({"s__vllm": searched}, []) == {(4096, 8)}
    # The same points of a job that measures every batch: no bin has them all.
    searched.largest_feasible_only = ()
    assert module.measured_bins({"s__vllm": searched}, []) == set()


def test_given_the_traces_requests_bins_go_into_parts_by_their_share_per_minute():
    """With each trace's requests per bin, a bin's share is the mean over traces and jobs of
    its requests times its time per request over the trace's sum; the bins not kept go into
    parts by share over minutes, the largest first, and each part says what it holds."""
    from llm_energy.analysis.gpu_hours.parts import (
        bin_shares,
        describe_parts,
        part_layer,
        workload_parts,
    )

    by_bin, starts = _minutes_by_bin()
    # Seconds per request at each job's largest batch; vLLM measures no batch of (128, 16).
    by_bin["request_s"] = [1.0, 0.5, 2.0, 1.0, 4.0, 2.0, 8.0]
    requests = {"t1": {(32, 8): 10, (128, 8): 5, (128, 16): 0}, "t2": {(32, 16): 4}}
    shares = bin_shares(by_bin, requests)
    # t1 on PyTorch: 10 x 1, 5 x 4 of 30 s; on vLLM: 10 x 0.5, 5 x 2 of 15 s. t2: (32, 16) alone.
    assert shares[(32, 8)] == pytest.approx((10 / 30 + 5 / 15) / 4)
    assert shares[(128, 8)] == pytest.approx((20 / 30 + 10 / 15) / 4)
    assert shares[(32, 16)] == pytest.approx(2 / 4)
    assert shares[(128, 16)] == 0.0
    assert shares.sum() == pytest.approx(1.0)
    # Most requests in (128, 8): by share per minute it comes first, where the traces' order
    # puts it after the two short bins.
    shares = bin_shares(by_bin, {"t1": {(32, 8): 1, (32, 16): 1, (128, 8): 50}})
    assert shares[(128, 8)] == pytest.approx((200 / 203 + 100 / 101.5) / 2)
    parts = workload_parts(by_bin, starts, part_min=20.0, shares=shares)
    assert [p.bins for p in parts] == [[(128, 8), (32, 16)], [(32, 8), (128, 16)]]
    assert parts[0].share == pytest.approx(shares[(128, 8)] + shares[(32, 16)])
    plain = workload_parts(by_bin, starts, part_min=20.0)
    assert [p.bins for p in plain] == [[(32, 8), (32, 16)], [(128, 8), (128, 16)]]
    assert "share_pct" not in describe_parts(plain, starts, 20.0)
    # Kept parts come first whatever their share; each part says what it holds.
    shares = bin_shares(by_bin, requests)
    parts = workload_parts(by_bin, starts, part_min=8.0, keep=[[(128, 16)]], shares=shares)
    assert [p.bins for p in parts] == [[(128, 16)], [(32, 16), (32, 8)], [(128, 8)]]
    assert [round(p.share, 4) for p in parts] == [0.0, 0.6667, 0.3333]
    table = describe_parts(parts, starts, 8.0)
    assert "share_so_far_pct" in table
    last = table.splitlines()[-1].split()
    assert last[last.index("(over") - 2 :][:2] == ["33.3", "100.0"]  # its share, and so far
    layer = part_layer(parts[1], 2, 3, ["c.yaml"], starts)
    assert "its bins hold about 66.7 % of the traces' estimated time" in " ".join(
        line.lstrip("# ") for line in layer.splitlines()
    )


def test_the_command_writes_each_part_as_a_layer_that_plans_its_bins_alone(
    tiny_config, tmp_path, capsys
):
    """estimate-gpu-hours --workload-parts: every bin in exactly one part, each part's layer
    over the configuration plans that part's bins of the estimate and no other family's
    points, with the ids the whole plan gives them."""
    import yaml

    from llm_energy.cli import main
    from llm_energy.config import load_config
    from llm_energy.measure.point_ids import point_ids

    tiny_config["experiments"]["workload_traces"] = {
        "traces": ["azure_code"],
        "input_bins": [128, 512, 2048],
        "output_bins": [8, 64, 256],
    }
    tiny_config["experiments"]["workload_estimates"] = {
        "enabled": True,
        "models": ["tiny"],
        "engines": ["pytorch"],
        "batch_sizes": [1, 8, 64],
        "missing_bins": "incomplete",
    }
    base = tmp_path / "tiny.yaml"
    base.write_text(yaml.safe_dump(tiny_config))
    table = tmp_path / "rows.parquet"
    _rows(TRUE).assign(model="tiny").to_parquet(table)
    folder = tmp_path / "parts"
    args = ["estimate-gpu-hours", str(base), "--measurements", str(table), "--workload-parts"]
    assert main([*args, "0"]) != 0
    assert "--workload-parts 0: give minutes above 0" in capsys.readouterr().err
    assert main([*args, "2", "--workload-parts-dir", str(folder)]) == 0
    printed = capsys.readouterr()
    assert "the workload bins in parts of at most 2 min (ESTIMATE):" in printed.out + printed.err

    whole = plan_study(load_config(str(base)))["tiny__pytorch"]
    whole_ids = point_ids(whole)
    layers = sorted(folder.glob("part*.yaml"), key=lambda p: int(p.stem[4:]))
    assert len(layers) > 1
    seen = []
    for layer in layers:
        bins = [
            tuple(b)
            for b in yaml.safe_load(layer.read_text())["experiments"]["workload_estimates"]["bins"]
        ]
        seen += bins
        part = plan_study(load_config(str(base), str(layer)))
        assert list(part) == ["tiny__pytorch"]
        points = part["tiny__pytorch"].points
        assert {(p.input_tokens, p.output_tokens) for p in points} == set(bins)
        assert {p.experiments for p in points} == {("workload_estimates",)}
        ids = point_ids(part["tiny__pytorch"])
        assert all(ids[p.key] == whole_ids[p.key] for p in points)
    assert seen == [(i, o) for i in (128, 512, 2048) for o in (8, 64, 256)]

    # Given the trace's summary, the bins go by share: a summary for other bins says so.
    from llm_energy.analysis.summaries import summarise_trace, write_trace_summary

    summaries = tmp_path / "summaries"
    order = [*args, "2", "--trace-summaries", str(summaries)]
    assert main(order) != 0
    assert "no summary of trace 'azure_code'" in capsys.readouterr().err
    trace = pd.DataFrame({"input_tokens": [2000] * 30 + [100] * 3, "output_tokens": [200] * 33})
    summary = summarise_trace("azure_code", trace, [128, 512, 2048], [8, 64, 256])
    write_trace_summary(summary, summaries / "azure_code.json")
    assert main(order) == 0
    printed = capsys.readouterr()
    table = (printed.out + printed.err).split("(ESTIMATE):")[-1]
    assert "share_pct" in table
    first = table.splitlines()[2].split()
    assert first[2:6] == ["2048", "in,", "256", "out"]  # the bin that holds most of the trace


def test_the_basis_says_how_many_points_it_times_by_extrapolation(tiny_config):
    """Rows of at most 64 sequences of 2048 prompt and 256 generated tokens: a point with more
    prompt or generated tokens in one batch is timed past them, and the basis counts it."""
    plans = plan_study(validate(tiny_config))
    rows = _rows(TRUE)
    assert "extrapolation" not in estimate(plans, rows)["basis"].iloc[0]
    group, plan = next(iter(plans.items()))
    point = plan.points[0]
    past = (
        dataclasses.replace(point, batch_size=128, input_tokens=8, output_tokens=256),
        dataclasses.replace(point, batch_size=1024, input_tokens=1024, output_tokens=8),
        dataclasses.replace(point, batch_size=64, input_tokens=2048, output_tokens=256),
    )
    wider = {group: dataclasses.replace(plan, points=(*plan.points, *past))}
    basis = estimate(wider, rows)["basis"].iloc[0]
    assert (
        "; 2 of its points go past the most tokens of one batch its rows hold "
        "(131,072 prompt, 16,384 generated), timed by extrapolation"
    ) in basis


def test_a_search_largest_first_is_planned_with_its_probes_below_the_first_batch_out_of_memory(
    tiny_config,
):
    """The probes after a searched shape's largest batch that fits, where the plan's next
    batch up does not: BOUND_SEARCH_STEPS generations at the batch midway; none where the next
    batch fits too, nothing says what fits, or the engine knows its largest batch (vLLM)."""
    from llm_energy.analysis.gpu_hours import bound_probe_seconds
    from llm_energy.measure.bounds import BOUND_SEARCH_STEPS

    tiny_config["experiments"]["controlled_sweeps"]["batch_sizes"] = [1, 2, 16]
    plan = plan_study(validate(tiny_config))["tiny__pytorch"]
    tags = tuple(sorted({t for p in plan.points for t in p.experiments}))
    searched = dataclasses.replace(plan, largest_feasible_only=tags)

    class Fits:
        def __init__(self, largest):
            self.largest = largest

        def fits(self, point):
            return point.batch_size <= self.largest

    class Seconds:  # a batch of B takes B seconds
        def full_s(self, batch, input_tokens, output_tokens):
            return float(batch)

    two = next(p for p in searched.points if p.batch_size == 2)
    assert bound_probe_seconds(Seconds(), searched, two, Fits(2)) == BOUND_SEARCH_STEPS * 9.0
    assert bound_probe_seconds(Seconds(), searched, two, Fits(16)) == 0.0
    assert bound_probe_seconds(Seconds(), searched, two, None) == 0.0
    assert bound_probe_seconds(Seconds(), plan, two, Fits(2)) == 0.0  # not a searched shape
    vllm = dataclasses.replace(
        searched, engine=dataclasses.replace(searched.engine, backend="vllm")
    )
    assert bound_probe_seconds(Seconds(), vllm, two, Fits(2)) == 0.0


def test_the_attempts_that_run_out_of_memory_cost_what_the_engines_rows_measured(tiny_config):
    """A search largest first tries every batch above the largest that fits, an ascending
    ladder only the first that does not; each attempt costs the mean ``out_of_memory_s`` of
    the engine's rows, nothing where no row measured one, and none its journal holds."""
    from llm_energy.analysis.gpu_hours import out_of_memory_seconds
    from llm_energy.analysis.gpu_hours.memory import out_of_memory_attempts
    from llm_energy.analysis.gpu_hours.time_models import measured_out_of_memory_s
    from llm_energy.measure.bounds import shape_key

    tiny_config["experiments"]["controlled_sweeps"]["batch_sizes"] = [1, 2, 16, 32]
    plan = plan_study(validate(tiny_config))["tiny__pytorch"]
    tags = tuple(sorted({t for p in plan.points for t in p.experiments}))
    searched = dataclasses.replace(plan, largest_feasible_only=tags)
    shapes = len({shape_key(p) for p in plan.points})

    class Fits:
        def fits(self, point):
            return point.batch_size <= 2

    assert {p.batch_size for p in out_of_memory_attempts(plan, Fits())} == {16}
    assert len(out_of_memory_attempts(plan, Fits())) == shapes
    assert sorted(p.batch_size for p in out_of_memory_attempts(searched, Fits())) == sorted(
        [16, 32] * shapes
    )
    assert out_of_memory_attempts(searched, None) == []

    rows = pd.DataFrame({"out_of_memory_s": [1.0, 9.0, 2.0, None]})
    assert measured_out_of_memory_s(rows) == 4.0
    assert math.isnan(measured_out_of_memory_s(rows.drop(columns="out_of_memory_s")))

    class Timed:
        out_of_memory_s = 3.0

    assert out_of_memory_seconds(Timed(), searched, Fits()) == 3.0 * 2 * shapes
    assert out_of_memory_seconds(Timed(), plan, Fits()) == 3.0 * shapes
    assert out_of_memory_seconds(object(), searched, Fits()) == 0.0  # no row measured one
    done = {p.key: 0 for p in out_of_memory_attempts(searched, Fits())}
    assert out_of_memory_seconds(Timed(), searched, Fits(), done) == 0.0


def test_a_points_first_warm_up_costs_what_the_engines_rows_measured(tiny_config):
    """The first warm-up at a shape takes the engine's measured ratio to one repetition (the
    first timed warm-ups of its batch rows over their time per repetition, weighted by time;
    request streams, shapes out of memory and rows without timed warm-ups left out); the
    later trials' warm-ups one repetition each; one repetition where no row timed one."""
    from llm_energy.analysis.gpu_hours.time_models import measured_first_warmup_ratio

    rows = pd.DataFrame(
        {
            "feasible": [True, True, True, False, True],
            "trace": ["", "", "azure_code", "", ""],
            "duration_s": [2.0, 8.0, 5.0, float("nan"), 4.0],
            "trial_warmup_s": ["[3.0, 2.0]", "[12.0, 8.0, 8.1]", "[50.0]", "[]", "[]"],
        }
    )
    assert measured_first_warmup_ratio(rows) == pytest.approx((3.0 + 12.0) / (2.0 + 8.0))
    assert math.isnan(measured_first_warmup_ratio(rows.drop(columns="trial_warmup_s")))

    proto = ProtocolSpec(min_duration_s=0.0, min_repetitions=1, warmup_repetitions=1)
    point = PointSpec(8, 512, 64)
    slow = dataclasses.replace(TRUE, first_warmup_ratio=1.5)
    one = point_seconds(TRUE, point, proto)
    full = TRUE.full_s(8, 512, 64)
    assert point_seconds(slow, point, proto, first=True) == pytest.approx(one + 0.5 * full)
    assert point_seconds(slow, point, proto) == pytest.approx(one)
    assert point_seconds(TRUE, point, proto, first=True) == pytest.approx(one)
    assert point_seconds(slow, point, proto, warm_up=False, first=True) == pytest.approx(
        one - full - TRUE.prefill_s(8, 512)
    )

    plan = plan_study(validate(tiny_config))["tiny__pytorch"]
    every = dataclasses.replace(plan.protocol, warmup_every_trial=True, control_point=False)
    plan = dataclasses.replace(plan, protocol=every)
    extra_s = sum(
        0.5
        * TRUE.full_s(p.batch_size * max(p.decoding.num_beams, 1), p.input_tokens, p.output_tokens)
        for p in counted_points(plan, None)
        if (p.protocol or plan.protocol).warmup_repetitions
    )
    gained = job_gpu_hours(slow, plan) - job_gpu_hours(TRUE, plan)
    assert extra_s > 0 and gained * 3600 == pytest.approx(extra_s)
    assert "a point's first warm-up 1.50 times a repetition" in slow.caveat(plan)
    assert "first warm-up" not in TRUE.caveat(plan)


def test_with_resume_from_shipped_the_estimate_leaves_out_what_the_tables_complete(
    tiny_config, tmp_path, capsys
):
    """As the workflow seeds a job's journal with resume_from_shipped, the command counts as
    done each point that a row of the given tables completes, and times only the rest."""
    import yaml

    from llm_energy.cli import main
    from llm_energy.config import validate
    from llm_energy.measure.plan import plan_study
    from llm_energy.measure.point_ids import CURRENT_VERSION, point_ids

    plan = plan_study(validate(tiny_config))["tiny__pytorch"]
    ids = point_ids(plan, CURRENT_VERSION)
    done = [p for p in plan.points if p.batch_size == 1]
    assert 0 < len(done) < len(plan.points)
    fit = _rows(TRUE)
    seeds = fit.iloc[: len(done)].assign(
        batch_size=[p.batch_size for p in done],
        input_tokens=[p.input_tokens for p in done],
        output_tokens=[p.output_tokens for p in done],
        point_id=[ids[p.key] for p in done],
        point_id_version=CURRENT_VERSION,
        repetitions=2,
        trials=1,
        protocol_met=True,
        error="",
    )
    # One of them is wider than the target (max_trials 6 by default): kept, unless the
    # configuration asks for such rows to be measured again.
    seeds["energy_j"] = 100.0
    seeds["energy_j_ci95"] = [50.0] + [1.0] * (len(seeds) - 1)
    table = tmp_path / "rows.parquet"
    pd.concat([fit, seeds], ignore_index=True).to_parquet(table)
    base = tmp_path / "tiny.yaml"
    base.write_text(yaml.safe_dump(tiny_config))
    resume = tmp_path / "resume.yaml"
    resume.write_text("resume_from_shipped: true\n")

    def printed(*configs) -> tuple[list[str], list[str], str]:
        assert main(["estimate-gpu-hours", *map(str, configs), "--measurements", str(table)]) == 0
        out = capsys.readouterr()
        lines = [ln.split() for ln in (out.out + out.err).splitlines()]
        header = next(ln for ln in lines if ln and ln[0] == "group")
        job = next(ln for ln in lines if ln and ln[0] == "tiny__pytorch")
        return header, job, out.out + out.err

    header, whole, said = printed(base)
    assert "points_left" not in header
    assert f"{len(plan.points)} points;" in said
    whole_min = float(whole[header.index("estimated_job_min")])
    header, rest, said = printed(base, resume)
    left = len(plan.points) - len(done)
    assert int(rest[header.index("points_left")]) == left
    assert f"{len(plan.points)} points, {left} of them left to measure;" in said
    assert 0 < float(rest[header.index("estimated_job_min")]) < whole_min
    wide = tmp_path / "wide.yaml"
    wide.write_text("resume_wide_rows: measure_again\n")
    header, again, said = printed(base, resume, wide)
    assert int(again[header.index("points_left")]) == left + 1


def test_a_jobs_time_limit_is_its_expected_time_with_a_margin_and_grows_with_each_attempt():
    """Slurm's ``runtime`` of a measurement job: the expected wall time (GPU-hours over its
    GPUs) x1.5 + 15 min in 15-min steps, at least the longest trial so treated, twice as much at
    the second attempt, 12 h with nothing to fit, and never beyond a day."""
    from llm_energy.analysis.gpu_hours import runtime_minutes

    assert runtime_minutes(1.0, 1) == 105  # 60 x 1.5 + 15
    assert runtime_minutes(1.0, 2) == 60  # 30 x 1.5 + 15 = 60
    assert runtime_minutes(1.0, 1, attempt=2) == 210
    assert runtime_minutes(0.01, 1) == 30  # 15.9 min asks for the least, 30
    assert runtime_minutes(0.01, 1, longest_trial_min=40.0) == 75  # 40 x 1.5 + 15
    assert runtime_minutes(math.nan, 1) == 720
    assert runtime_minutes(100.0, 1) == 1440


def test_each_measurement_job_asks_slurm_for_the_time_its_estimate_gives(tmp_path):
    """Through the Slurm profile, the measure rule's ``runtime`` is the job's estimate before
    the run (fitted to the hardware's shipped rows) made a time limit."""
    from _pipeline import copy_pipeline, run_snakemake

    from llm_energy.analysis.gpu_hours import plan_estimate, runtime_minutes
    from llm_energy.config import load_config
    from llm_energy.measure.plan import plan_study

    work = copy_pipeline(tmp_path)
    group = "llama-3.1-8b__vllm-eager"
    target = f"results/measurements/h200/{group}.parquet"
    result = run_snakemake(
        work, "-n", target, "--profile", "profiles/slurm", "--configfile", "config/h200.yaml",
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    plans = plan_study(load_config(work / "config/h200.yaml"))
    shipped = {
        "h200": sorted(str(p) for p in (work / "resources/measurements/h200").glob("*.parquet"))
    }
    job = plan_estimate(plans, shipped, "h200").set_index("group").loc[group]
    minutes = runtime_minutes(job.expected_gpu_hours, job.gpus, 1, job.longest_trial_min)
    measure = result.stdout.split("rule measure:")[1].split("Shell command")[0]
    assert f"runtime={minutes}," in measure, measure
    assert minutes != 720  # fitted, not the limit for a job with nothing to fit
