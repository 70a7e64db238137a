"""GPU-time estimate: the fit recovers a known time model; the protocol arithmetic per point."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest

from llm_energy.analysis.gpu_hours import (
    MODEL_LOAD_S,
    TimeModel,
    estimate,
    job_gpu_hours,
    point_seconds,
)
from llm_energy.config import validate
from llm_energy.measure.job import DecodingSpec, PointSpec, ProtocolSpec
from llm_energy.measure.plan import plan_study

TRUE = TimeModel(prefill=(0.02, 1e-5), step=(0.025, 1e-4, 2e-8), points=0)


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


def test_a_job_costs_its_trials_and_its_control_point(tiny_config):
    proto = ProtocolSpec(min_trials=3, control_point=True)
    points = (PointSpec(8, 512, 64), PointSpec(1, 128, 8))
    plan = dataclasses.replace(
        plan_study(validate(tiny_config))["tiny__pytorch"], protocol=proto, points=points
    )
    each = [point_seconds(TRUE, p, proto) for p in points]
    expected = MODEL_LOAD_S + proto.idle_duration_s + 3 * sum(each) + 2 * each[1]
    assert job_gpu_hours(TRUE, plan) * 3600 == pytest.approx(expected)


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
    assert "c: 1.0 GPU-minutes (no estimate)" in text
    assert "the 2 with an estimate took 24.0 against 18.0 estimated" in text


def test_a_request_stream_costs_a_batch_for_every_batch_of_its_requests_and_one_to_warm_up():
    from llm_energy.measure.job import StreamSpec

    proto = ProtocolSpec(min_duration_s=0.0, min_repetitions=1, warmup_repetitions=1)
    stream = StreamSpec("azure_conversation", 256, "online")
    point = PointSpec(8, 512, 256, stream=stream, experiments=("online_serving",))
    one_batch = TRUE.full_s(8, 512, 256)
    assert point_seconds(TRUE, point, proto) == pytest.approx((1 + 32) * one_batch)
