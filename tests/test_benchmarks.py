"""The benchmarks' own logic (benchmarks/*.py are scripts, loaded here from their files)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from test_estimate import TRUE, _rows

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_fit_benchmark_reports_each_engines_error_in_and_out_of_sample():
    """time_model_fit.py: rows the model times exactly give no error, in sample or with each
    row left out; rows with noise give their error in both."""
    bench = _load("time_model_fit")
    rows = _rows(TRUE)
    (exact,) = bench.fit_errors(rows).itertuples()
    assert exact.rows == len(rows)
    assert exact.max_error_in_sample == pytest.approx(0, abs=1e-9)
    assert exact.max_error_left_out == pytest.approx(0, abs=1e-9)
    noisy = rows.assign(duration_s=rows["duration_s"] * np.where(rows.index % 2, 1.1, 0.9))
    (line,) = bench.fit_errors(noisy).itertuples()
    assert 0.01 < line.median_error_in_sample < line.max_error_left_out
    assert "| GPU X | tiny | pytorch | 27 |" in bench.markdown(bench.fit_errors(noisy))


def test_the_fit_benchmark_times_a_new_table_by_the_models_fitted_before_it():
    """time_model_fit.py --held-out: a new row at a shape the fitted rows hold is timed
    exactly; one past their most generated tokens of one batch, slower than the model says,
    is flagged, and the sums say both."""
    bench = _load("time_model_fit")
    rows = _rows(TRUE)
    new = rows.iloc[[0]].copy()
    past = rows.iloc[[0]].assign(batch_size=1024, output_tokens=256)
    past["duration_s"] = 2 * TRUE.full_s(1024, int(past["input_tokens"].iloc[0]), 256)
    table = bench.held_out(rows, pd.concat([new, past], ignore_index=True))
    assert table["measured_over_predicted"].tolist() == [1.0, 2.0]
    assert table["past_fitted_rows"].tolist() == [False, True]
    text = bench.held_out_markdown(table)
    assert "1 of 2 rows past the fitted rows, 2.00 of it in sum" in text


def test_the_fit_benchmark_times_task_rows_by_their_requests_lengths(tmp_path):
    """time_model_fit.py --task-lengths: a task row is timed by the static batches of the
    requests its job drew, with the model fitted to the batch rows; a model that times every
    batch exactly gives the measured time, and the line beside it says the caps' time."""
    from llm_energy.inputs.prompts import TraceLengths
    from llm_energy.measure.job import PointSpec, StreamSpec

    bench = _load("time_model_fit")
    pd.DataFrame({"input_tokens": [100, 300, 50], "output_tokens": [64, 10, 200]}).to_parquet(
        tmp_path / "generation.parquet"
    )
    lengths = TraceLengths(tmp_path, tmp_path)
    point = PointSpec(2, 4096, 1024, stream=StreamSpec("generation", 8, "offline", True))
    drawn = lengths.lengths(point, 0)
    exact = sum(
        TRUE.full_s(2, max(drawn[k][0], drawn[k + 1][0]), max(drawn[k][1], drawn[k + 1][1]))
        for k in range(0, 8, 2)
    )
    rows = _rows(TRUE)
    task = {
        **rows.iloc[0].to_dict(),
        "backend": "transformers",
        "serving": "offline",
        "trace": "generation",
        "requests": 8,
        "batch_size": 2,
        "input_tokens": 4096,
        "output_tokens": 1024,
        "duration_s": exact,
    }
    table = bench.stream_lengths_timed(rows, pd.DataFrame([task]), lengths)
    (line,) = table.itertuples(index=False)
    assert line.measured_over_predicted == 1.0
    assert line.at_caps_s == pytest.approx(4 * TRUE.full_s(2, 4096, 1024), abs=1e-3)
    text = bench.stream_lengths_markdown(table)
    assert "pytorch, offline: 1 rows, measured over predicted 1.00 to 1.00" in text
    assert "no request-stream row" in bench.stream_lengths_markdown(table.iloc[:0])
    # On vLLM each request at its own lengths: less than the padded batches.
    vllm = pd.DataFrame([{**task, "backend": "vllm"}])
    (line,) = bench.stream_lengths_timed(rows, vllm, lengths).itertuples(index=False)
    assert line.measured_over_predicted > 1.0
    # Online, by continuous batching: no more decoding steps than its static batches take.
    online = pd.DataFrame([{**task, "backend": "vllm", "serving": "online"}])
    (served,) = bench.stream_lengths_timed(rows, online, lengths).itertuples(index=False)
    assert served.serving == "online"
    assert served.predicted_s < line.predicted_s


def test_a_streams_left_out_scale_is_the_others_median_overall_or_at_its_batch_size():
    """Each stream is scaled by the others' ratios, never its own: their median, or by batch
    size the median of those at its batch where three or more are, else of all of them."""
    bench = _load("time_model_fit")
    ratios = np.array([1.1, 1.2, 1.3, 1.4, 0.8, 0.9])
    batches = np.array([1, 1, 1, 1, 128, 128])
    assert bench.left_out_scales(ratios).tolist() == pytest.approx([1.2, 1.1, 1.1, 1.1, 1.2, 1.2])
    by_batch = bench.left_out_scales(ratios, batches)
    # Batch 1: three others at batch 1; batch 128: one other there, so all five others.
    assert by_batch.tolist() == pytest.approx([1.3, 1.3, 1.2, 1.2, 1.2, 1.2])
    table = pd.DataFrame(
        {
            "engine": "vllm",
            "serving": "offline",
            "stream": "generation",
            "requests": 1024,
            "batch_size": batches,
            "measured_over_predicted": ratios,
            "predicted_s": 100.0,
            "measured_s": ratios * 100,
            "at_caps_s": 1000.0,
        }
    )
    text = bench.stream_lengths_markdown(table)
    assert "Scaled by batch size instead" in text
    assert text.count("vllm: 6 rows, measured over scaled predicted") == 2


def test_the_fit_benchmark_times_a_new_request_stream_as_the_plan_does():
    """time_model_fit.py --held-out: a classical task's row is timed by the time per request
    of the same stream measured at the nearest smaller batch, as the plan times it; a stream
    no earlier row measured is left out, and a table of streams alone still reports."""
    bench = _load("time_model_fit")

    def stream(task, batch, duration_s, engine="pytorch"):
        return {
            "gpu_name": "GPU X",
            "model": "tiny",
            "engine": engine,
            "feasible": True,
            "serving": "offline",
            "trace": task,
            "input_tokens": 4096,
            "output_tokens": 1024,
            "batch_size": batch,
            "requests": 32 if batch < 128 else 1024,
            "duration_s": duration_s,
        }

    rows = pd.DataFrame([stream("generation", 8, 16.0), stream("generation", 32, 8.0)])
    new = pd.DataFrame(
        [
            stream("generation", 128, 128.0),
            stream("translation", 128, 50.0),
            stream("generation", 128, 30.0, engine="vllm"),
        ]
    )
    (line,) = bench.held_out_streams(rows, new).itertuples(index=False)
    assert (line.stream, line.timed_at_batch) == ("generation", 32)
    assert line.predicted_s == 256.0 and line.measured_over_predicted == 0.5
    text = bench.held_out_markdown(bench.held_out(rows, new), bench.held_out_streams(rows, new))
    assert "request streams: 0.50 of the predicted time per repetition in sum" in text
    assert "no row of the held-out table" in bench.held_out_markdown(pd.DataFrame())
    # The same trace and batch served online with another number of requests is a stream of
    # its own, each line with its own requests.
    online = {**stream("generation", 128, 64.0), "serving": "online", "requests": 256}
    rows = pd.concat([rows, pd.DataFrame([{**online, "batch_size": 32, "duration_s": 4.0}])])
    lines = bench.held_out_streams(rows, pd.DataFrame([stream("generation", 128, 128.0), online]))
    assert sorted(lines["requests"]) == [256, 1024]
    assert lines.set_index("requests").loc[256, "predicted_s"] == 4.0


def _trial_rows(trials: dict[tuple[int, int], list[float]], window_s: float) -> pd.DataFrame:
    from llm_energy.measure.trials import ci95_half_width

    return pd.DataFrame(
        [
            {
                "batch_size": 1,
                "input_tokens": i,
                "output_tokens": o,
                "trials": len(energy),
                "repetitions": 10,
                "duration_s": window_s / 10,
                "energy_j": float(np.mean(energy)),
                "energy_j_ci95": ci95_half_width(energy),
                "trial_energy_j": json.dumps(energy),
                "trial_duration_s": json.dumps([window_s / 10] * len(energy)),
            }
            for (i, o), energy in trials.items()
        ]
    )


def test_the_window_comparison_sets_each_shape_beside_itself():
    """trial_spread.py --against: shape by shape, whatever order the tables hold them in,
    each side's window, trials, spread and seconds in windows, and the energy ratio."""
    bench = _load("trial_spread")
    shorter = _trial_rows({(8, 8): [10.0, 10.6, 9.4, 10.3, 9.7, 10.0], (64, 8): [20.0] * 3}, 2.0)
    longer = _trial_rows({(64, 8): [20.2, 20.2, 20.2], (8, 8): [10.1, 9.9, 10.0]}, 6.0)
    table = bench.side_by_side(longer, shorter).set_index("input_tokens")
    assert table.loc[8, "trials_shorter"] == 6 and table.loc[8, "trials_longer"] == 3
    assert table.loc[8, "window_seconds_shorter"] == pytest.approx(12.0)
    assert table.loc[8, "window_seconds_longer"] == pytest.approx(18.0)
    assert table.loc[8, "energy_cv_longer"] < table.loc[8, "energy_cv_shorter"]
    assert table.loc[8, "energy_ratio"] == pytest.approx(1.0)
    assert table.loc[64, "energy_ratio"] == pytest.approx(1.01)
    # Named sides, for two tables of the same shapes from two machines.
    named = bench.side_by_side(longer, shorter, ("b", "a")).set_index("input_tokens")
    assert named.loc[8, "trials_a"] == 6 and named.loc[8, "trials_b"] == 3
    assert named["energy_ratio"].tolist() == table["energy_ratio"].tolist()
    assert "prefill_ratio" not in table  # neither side measured a prefill window


def test_the_window_comparison_sets_the_prefill_windows_beside_each_other():
    """trial_spread.py --against, where both sides measured prefill windows: the time of one
    prefill on each side and the prefill energy's ratio with its interval."""
    bench = _load("trial_spread")
    one = _trial_rows({(128, 64): [156.0, 157.0, 156.5]}, 2.0)
    other = _trial_rows({(128, 64): [158.0, 158.5, 157.5]}, 2.0)
    one = one.assign(prefill_energy_j=4.8, prefill_energy_j_ci95=0.048, prefill_duration_s=0.009)
    other = other.assign(prefill_energy_j=7.7, prefill_energy_j_ci95=0.77, prefill_duration_s=0.029)
    row = bench.side_by_side(one, other, ("sweeps", "grid")).iloc[0]
    assert row["prefill_s_sweeps"] == 0.009 and row["prefill_s_grid"] == 0.029
    assert row["prefill_ratio"] == pytest.approx(4.8 / 7.7)
    # Two relative intervals of 1 % and 10 % give the ratio's about 10 %.
    assert 0.095 < row["prefill_ratio_ci95"] / row["prefill_ratio"] < 0.11


def test_a_request_streams_warm_up_counts_one_batch_of_each_group():
    """gpu_time_share.py: a static point's warm-up is one more repetition (and one prefill);
    a request stream's is one batch of each group, at that batch's share of its requests."""
    bench = _load("gpu_time_share")
    static = pd.Series(
        {"duration_s": 0.5, "prefill_repetitions": 10, "prefill_duration_s": 0.05, "trace": ""}
    )
    assert bench.warmup_seconds(static) == pytest.approx(0.55)
    stream = {"duration_s": 8.0, "requests": 256, "batch_size": 64, "trace": "azure_conversation"}
    assert bench.warmup_seconds(pd.Series(stream)) == pytest.approx(2.0)
    binned = {**stream, "batch_size": 16, "stream_bins": json.dumps({"0x0": 200, "1x0": 8})}
    assert bench.warmup_seconds(pd.Series(binned)) == pytest.approx(8.0 * (16 + 8) / 256)


def test_points_passed_over_and_trials_set_aside_count_apart(tmp_path):
    """gpu_time_share.py: a point with no trial measured (passed over beside a larger batch
    that fits) is no measured point, and another session's trials, set aside by a resumed
    run, are counted but add no window."""
    bench = _load("gpu_time_share")
    journal = tmp_path / "job"
    (journal / "other_sessions" / "vm_a").mkdir(parents=True)

    def trial(path, point, repetitions):
        row = {"point_id": point, "feasible": True, "repetitions": repetitions}
        row |= {"duration_s": 2.0, "prefill_repetitions": 0, "trace": "", "warmed_up": True}
        pd.DataFrame([row]).to_parquet(path)

    for n in (1, 2, 3):
        trial(journal / f"big.t{n}.parquet", "big", 1)
    trial(journal / "small.t1.parquet", "small", 0)
    trial(journal / "other_sessions" / "vm_a" / "big.t1.parquet", "big", 1)
    runs = pd.DataFrame(
        {"started_utc": ["2026-12-02T12:00:00"], "ended_utc": ["2026-12-02T12:01:00"]}
    )
    share = bench.job_share(journal, runs)
    assert (share["points"], share["points_not_measured"]) == (1, 1)
    assert (share["trials"], share["trials_set_aside"], share["trials_if_3_each"]) == (3, 1, 3)
    assert share["windows_s"] == 6.0 and share["warmups_s"] == 6.0
    assert share["share_in_windows"] == 0.1
    assert math.isnan(share["warmup_over_repetition_median"])  # warm-ups not timed

    trial(journal / "big.t4.parquet", "big", 1)
    timed = pd.read_parquet(journal / "big.t4.parquet").assign(warmup_s=5.0)
    timed.to_parquet(journal / "big.t4.parquet")
    share = bench.job_share(journal, runs)
    assert share["warmup_over_repetition_max"] == 2.5 and share["warmups_s"] == 11.0
    # Journals written before trials' wall times were recorded: the harness's part is unknown.
    assert share["trials_timed"] == 0 and math.isnan(share["harness_over_windows"])
    # A trial of 7.1 s with a 5 s warm-up and a 2 s window: 0.1 s of harness, 5 % of it.
    timed.assign(trial_s=7.1).to_parquet(journal / "big.t4.parquet")
    share = bench.job_share(journal, runs)
    assert share["trials_timed"] == 1 and share["harness_in_trials_s"] == pytest.approx(0.1)
    assert share["harness_over_windows"] == pytest.approx(0.05)


def test_probes_timed_on_an_out_of_memory_row_count_apart_from_the_rest(tmp_path):
    """gpu_time_share.py: the probes below a batch out of memory, timed on its row, count in
    bound_searches_s, the attempt that ran out of memory in out_of_memory_attempts_s; the rest
    is the job's time outside the engine start, windows, warm-ups, probes and attempts. Rows
    that did not time them leave both unknown."""
    bench = _load("gpu_time_share")
    journal = tmp_path / "job"
    journal.mkdir()
    measured = {"point_id": "fits", "feasible": True, "repetitions": 1, "duration_s": 2.0}
    measured |= {"prefill_repetitions": 0, "trace": "", "warmed_up": True, "warmup_s": 2.0}
    pd.DataFrame([measured]).to_parquet(journal / "fits.t1.parquet")
    oom = {"point_id": "oom", "feasible": False, "repetitions": 0, "bound_search_s": 30.0}
    oom["out_of_memory_s"] = 4.0
    pd.DataFrame([oom]).to_parquet(journal / "oom.t1.parquet")
    runs = pd.DataFrame(
        {
            "started_utc": ["2026-12-03T15:30:00"],
            "ended_utc": ["2026-12-03T15:31:40"],
            "engine_loaded_s": [10.0],
        }
    )
    share = bench.job_share(journal, runs)
    assert share["bound_searches_s"] == 30.0 and share["out_of_memory_attempts_s"] == 4.0
    assert share["rest_s"] == 100.0 - 10.0 - 2.0 - 2.0 - 30.0 - 4.0
    untimed = {**oom, "bound_search_s": None, "out_of_memory_s": None}
    pd.DataFrame([untimed]).to_parquet(journal / "oom.t1.parquet")
    share = bench.job_share(journal, runs)
    assert math.isnan(share["bound_searches_s"]) and share["rest_s"] == 86.0
    assert math.isnan(share["out_of_memory_attempts_s"])


def test_a_timed_warm_up_counts_as_timed():
    """gpu_time_share.py: where a trial timed its warm-up, that time counts, not a repetition."""
    bench = _load("gpu_time_share")
    trial = {"duration_s": 2.0, "warmup_s": 5.0, "prefill_repetitions": 0, "trace": ""}
    assert bench.warmup_seconds(pd.Series(trial)) == 5.0
    stream = {"duration_s": 8.0, "warmup_s": 1.5, "requests": 256, "batch_size": 64}
    assert bench.warmup_seconds(pd.Series({**stream, "trace": "azure_code"})) == 1.5
    assert bench.warmup_seconds(pd.Series({**trial, "warmup_s": float("nan")})) == 2.0


def test_warm_ups_before_a_points_later_trials_in_one_engine_instance_count_apart(tmp_path):
    """gpu_time_share.py: a point's first trial in each run (engine instance) warms a cold
    shape; the warm-ups of its later trials in the same run are what warming up once would
    save."""
    bench = _load("gpu_time_share")
    journal = tmp_path / "job"
    journal.mkdir()

    def trial(n, stamp, warmup_s):
        row = {"point_id": "p", "feasible": True, "repetitions": 1, "duration_s": 2.0}
        row |= {"prefill_repetitions": 0, "trace": "", "warmed_up": True}
        row |= {"warmup_s": warmup_s, "timestamp": stamp}
        pd.DataFrame([row]).to_parquet(journal / f"p.t{n}.parquet")

    # Run 1 holds trials 1 and 2, run 2 (a resumed process, a new engine) trial 3.
    trial(1, "2026-12-03T05:40:00+00:00", 3.0)
    trial(2, "2026-12-03T05:41:00+00:00", 2.1)
    trial(3, "2026-12-03T05:51:00+00:00", 2.6)
    runs = pd.DataFrame(
        {
            "started_utc": ["2026-12-03T05:39:00", "2026-12-03T05:50:00"],
            "ended_utc": ["2026-12-03T05:45:00", "2026-12-03T05:55:00"],
        }
    )
    share = bench.job_share(journal, runs)
    assert share["later_warmups_s"] == 2.1
    # Windows of 2 s in each of three trials, over the 660 s of the two runs less that 2.1 s.
    assert share["share_if_warmed_up_once"] == round(6.0 / (660.0 - 2.1), 3)
    assert share["first_warmup_over_repetition_max"] == 1.5
    assert share["later_warmup_over_repetition_max"] == 1.05
    assert share["warmups_s"] == pytest.approx(7.7)


def test_the_alternating_warm_up_comparison_pairs_each_rows_trials_and_pools_over_rows():
    """warmup_ab.py --alternate: each row's trials without a warm-up over those with one, and
    over the rows the mean change with its interval across rows."""
    bench = _load("warmup_ab")

    def row(batch: int, energy: list[float], warmed: list[bool]) -> dict:
        return {
            "batch_size": batch,
            "input_tokens": 512,
            "output_tokens": 64,
            "trials": len(energy),
            "trial_energy_j": json.dumps(energy),
            "trial_duration_s": json.dumps([1.0] * len(energy)),
            "trial_warmed_up": json.dumps(warmed),
        }

    table = pd.DataFrame(
        [
            row(1, [100.0, 102.0, 100.0, 102.0], [True, False, True, False]),  # +2 %
            row(8, [200.0, 208.0, 200.0], [True, False, True]),  # +4 %
            row(64, [300.0, 300.0, 309.0, 309.0], [True, True, False, False]),  # +3 %
            row(1, [50.0], [True]),  # no trial without: no pair
        ]
    )
    each, summary = bench.paired(table, "energy_j")
    assert each["change"].round(6).tolist() == [0.02, 0.04, 0.03]
    assert summary["rows"] == 3 and summary["change"] == pytest.approx(0.03)
    # Student's t over three rows (sd 0.01): 4.303 * 0.01 / sqrt(3).
    half = 4.302653 * 0.01 / math.sqrt(3)
    assert summary["ci95_high"] - summary["change"] == pytest.approx(half, rel=1e-4)
    assert summary["verdict"] == "higher"
    _, times = bench.paired(table, "duration_s")
    assert times["change"] == 0 and times["verdict"].startswith("inconclusive")
    report = bench.alternate_report(table)
    assert "Over the rows" in report and "+3.00 %" in report
    with pytest.raises(ValueError, match="alternate"):
        bench.alternate_report(table.assign(trial_warmed_up=json.dumps([True] * 4)).iloc[:1])


def test_the_task_rows_set_each_engine_beside_vllm_and_each_row_beside_earlier_sessions():
    """task_rows.py: energy per request, PyTorch's over vLLM's at the same task and batch, and
    against earlier sessions' rows of the same task, engine and examples: the change at the
    same batch, the ratio at another; PyTorch's over an earlier session's vLLM row."""
    bench = _load("task_rows")

    def row(engine: str, batch: int, energy: float, session: str, task="summarization") -> dict:
        return {
            "engine": engine,
            "task": task,
            "batch_size": batch,
            "requests": 100,
            "trials": 3,
            "protocol_met": True,
            "energy_j": energy,
            "energy_per_request_j": energy / 100,
            "energy_j_ci95": energy / 100,
            "duration_s": 10.0,
            "mean_power_w": 500.0,
            "energy_above_idle_j": energy / 2,
            "control_drift_energy": 0.01,
            "control_drift_duration": -0.02,
            "machine_session": session,
        }

    session = pd.DataFrame([row("vllm", 8, 1000.0, "vm:b"), row("pytorch", 8, 3000.0, "vm:b")])
    earlier = pd.DataFrame(
        [
            row("vllm", 8, 1250.0, "vm:a"),
            row("vllm", 128, 500.0, "vm:a"),
            row("vllm", 8, 999.0, "vm:b"),  # the session itself: not earlier
            row("vllm", 8, 2000.0, "vm:a", task="translation"),  # another task
        ]
    )
    lines = bench.task_rows(session, earlier).set_index("engine")
    assert lines["energy_per_request_j"].to_dict() == {"vllm": 10.0, "pytorch": 30.0}
    assert lines["energy_ci95_pct"].tolist() == [1.0, 1.0]
    assert lines.loc["pytorch", "energy_over_vllm"] == 3.0
    assert pd.isna(lines.loc["vllm", "energy_over_vllm"])  # not vLLM over itself
    assert lines.loc["vllm", "energy_vs_vm_a_pct"] == -20.0
    assert lines["energy_above_idle_per_request_j"].to_dict() == {"vllm": 5.0, "pytorch": 15.0}
    assert lines.loc["vllm", "above_idle_vs_vm_a_pct"] == -20.0
    assert lines.loc["vllm", "duration_vs_vm_a_pct"] == 0.0
    assert lines.loc["vllm", "energy_per_request_batch128_vm_a_j"] == 5.0
    assert lines.loc["vllm", "over_batch128_vm_a"] == 2.0
    assert lines[["energy_vs_vm_a_pct", "over_batch128_vm_a"]].loc["pytorch"].isna().all()
    # PyTorch beside the earlier session's vLLM row of its task and batch, not vLLM itself
    assert lines.loc["pytorch", "energy_over_vllm_vm_a"] == 2.4
    assert pd.isna(lines.loc["vllm", "energy_over_vllm_vm_a"])
    assert not any("vm_b" in column for column in lines.columns)


def test_the_rows_short_of_the_interval_target_say_what_sets_them_apart():
    """ci_target.py: among rows of engines with CUDA graphs in two or more trials, those
    wider than the target, widest first, each with its traits; eager rows, rows without trials
    and infeasible rows are left out."""
    bench = _load("ci_target")

    def row(**kw):
        base = {
            "model": "m",
            "engine": "vllm",
            "serving": "batch",
            "batch_size": 8,
            "input_tokens": 512,
            "output_tokens": 64,
            "feasible": True,
            "cuda_graphs": True,
            "cuda_graph_max_batch": 512.0,
            "trials": 6,
            "energy_j": 100.0,
            "energy_j_ci95": 1.0,
            "duration_s": 2.0,
            "trial_energy_j": "[100, 100, 100, 100, 100, 100]",
        }
        return base | kw

    alternating = "[96, 104, 96, 104, 96, 104]"
    rows = pd.DataFrame(
        [
            row(),  # within ±3 %
            row(energy_j_ci95=5.0, duration_s=0.2, trial_energy_j="[130, 94, 94, 94, 94, 94]"),
            row(serving="served", trials=3, energy_j_ci95=20.0, trial_energy_j="[90, 100, 110]"),
            row(batch_size=1024, energy_j_ci95=4.0, trial_energy_j=alternating),
            row(
                cuda_graph_max_batch=None,
                batch_size=1024,
                energy_j_ci95=3.5,
                trial_energy_j=alternating,
            ),
            row(cuda_graphs=False, energy_j_ci95=30.0),  # eager
            row(trials=0, energy_j_ci95=30.0),  # before trials
            row(feasible=False, energy_j_ci95=float("nan")),
        ]
    )
    wide = bench.short_of_target(rows)
    assert wide["energy_ci95_rel"].round(3).tolist() == [0.2, 0.05, 0.04, 0.035]
    assert wide["served"].tolist() == [True, False, False, False]
    assert wide["repetition_under_1s"].tolist() == [False, True, False, False]
    # A batch above the recorded capture size; an unrecorded one is not counted as above it.
    assert wide["above_graph_capture"].tolist() == [False, False, True, False]
    # Without its first trial, the second row's trials agree exactly.
    assert wide.loc[1, "energy_ci95_rel_after_first"] == 0.0
    assert bench.summary(rows, wide) == (
        "5 rows of engines with CUDA graphs in two or more trials; 4 wider than ±3 %: 1 served, "
        "1 above the graph capture, 1 with repetitions under 1 s, 1 with none of these; "
        "1 of them in three trials or fewer; 1 within it without their first trial."
    )


def test_the_shipped_list_of_rows_short_of_the_target_is_current():
    """benchmarks/data/ci_target_h200.md is what ci_target.py writes from the shipped H200
    tables (regenerate it when a table is added: DEVELOPING.md gives the command)."""
    bench = _load("ci_target")
    tables = sorted((ROOT / "resources/measurements/h200").glob("*.parquet"))
    rows = pd.concat([pd.read_parquet(p).assign(table=p.stem) for p in tables], ignore_index=True)
    shipped = (ROOT / "benchmarks/data/ci_target_h200.md").read_text().strip().splitlines()[-1]
    assert shipped == bench.summary(rows, bench.short_of_target(rows))


def test_the_gpu_time_share_reads_each_run_from_the_journal(tmp_path, capsys):
    """gpu_time_share.py without --job-times: each run the journal records, its engine start
    from the first trial it measured; a run killed outright (no end) is left out and said."""
    import json

    bench = _load("gpu_time_share")
    journal = tmp_path / "job"
    journal.mkdir()
    runs = [
        {"started_utc": "2026-12-04T10:00:00.000+00:00"},
        {
            "started_utc": "2026-12-04T11:00:00.000+00:00",
            "ended_utc": "2026-12-04T11:05:00.000+00:00",
            "outcome": "stopped",
            "exit_status": 75,
        },
    ]
    for run in runs:
        name = f"run.{run['started_utc'].replace(':', '')}.json"
        (journal / name).write_text(json.dumps(run) + "\n")
    for n, (stamp, load_s) in enumerate(
        [("2026-12-04T10:01:00+00:00", 50.0), ("2026-12-04T11:02:00+00:00", 40.0)], start=1
    ):
        row = {"point_id": "p", "feasible": True, "repetitions": 1, "duration_s": 2.0}
        row |= {"timestamp": stamp, "engine_load_s": load_s}
        pd.DataFrame([row]).to_parquet(journal / f"p.t{n}.parquet")
    times = bench.recorded_runs(journal)
    assert times.to_dict("records") == [
        {
            "job": "job",
            "started_utc": "2026-12-04T11:00:00.000+00:00",
            "ended_utc": "2026-12-04T11:05:00.000+00:00",
            "engine_loaded_s": 40.0,
            "exit_status": 75,
        }
    ]
    assert "job: the run of 2026-12-04T10:00:00.000+00:00 has no end" in capsys.readouterr().err
    share = bench.job_share(journal, times)
    assert share["job_s"] == 300.0
    assert share["trials_against_plan"] == 0  # no run kept the plan's estimate


def test_the_gpu_time_share_sets_each_trial_against_its_runs_estimate(tmp_path):
    """gpu_time_share.py: a trial's wall time over the estimate of its point's trial that its
    run's record keeps; a trial of a run without an estimate, or of a point it did not time,
    is left out."""
    import json

    bench = _load("gpu_time_share")
    journal = tmp_path / "job"
    journal.mkdir()
    runs = [
        {  # no estimate: --time-model-rows not given
            "started_utc": "2026-12-04T10:00:00.000+00:00",
            "ended_utc": "2026-12-04T10:30:00.000+00:00",
            "exit_status": 0,
        },
        {
            "started_utc": "2026-12-04T11:00:00.000+00:00",
            "ended_utc": "2026-12-04T11:30:00.000+00:00",
            "exit_status": 75,
            "expected_trial_s": {"p": 100.0},
            "expected_basis": "fitted to 3 points",
        },
    ]
    for run in runs:
        name = f"run.{run['started_utc'].replace(':', '')}.json"
        (journal / name).write_text(json.dumps(run) + "\n")
    trials = [
        ("p", "2026-12-04T10:05:00+00:00", 90.0),  # the run without an estimate
        ("p", "2026-12-04T11:05:00+00:00", 110.0),
        ("p", "2026-12-04T11:10:00+00:00", 125.0),
        ("q", "2026-12-04T11:15:00+00:00", 50.0),  # a point the estimate did not time
    ]
    for n, (point, stamp, took) in enumerate(trials, start=1):
        row = {"point_id": point, "feasible": True, "repetitions": 1, "duration_s": 2.0}
        row |= {"timestamp": stamp, "trial_s": took}
        pd.DataFrame([row]).to_parquet(journal / f"{point}.t{n}.parquet")
    share = bench.job_share(journal, bench.recorded_runs(journal))
    assert share["trials_against_plan"] == 2
    assert share["trial_over_plan_min"] == 1.1 and share["trial_over_plan_max"] == 1.25
    assert share["trial_over_plan_median"] == 1.18


def test_the_gpu_time_share_sets_a_job_against_its_estimate_only_where_it_ran_the_plans_trials():
    """gpu_time_share.py --estimate: each job's planned wall time beside its own, from minutes
    or from GPU-hours over its GPUs; a job stopped short of three trials per point has no
    ratio, since the estimate is of the whole job."""
    bench = _load("gpu_time_share")
    table = pd.DataFrame(
        {
            "job": ["whole", "cut", "two-gpu"],
            "job_s": [1428.5, 999.1, 600.0],
            "trials": [3, 2, 9],
            "trials_if_3_each": [3, 3, 9],
        }
    )
    by_minutes = pd.DataFrame({"group": ["whole", "cut"], "estimated_job_min": [20.84, 21.71]})
    out = bench.with_estimate(table, by_minutes)
    assert out["estimated_job_s"].tolist()[:2] == [1250.0, 1303.0]
    assert out["actual_over_estimated"].iloc[0] == 1.14
    assert math.isnan(out["actual_over_estimated"].iloc[1])
    assert math.isnan(out["estimated_job_s"].iloc[2])  # a job the estimate does not name
    by_hours = pd.DataFrame({"group": ["two-gpu"], "estimated_gpu_hours": [0.5], "gpus": [2]})
    out = bench.with_estimate(table, by_hours)
    assert out["estimated_job_s"].iloc[2] == 900.0
    assert out["actual_over_estimated"].iloc[2] == 0.67
    assert "actual_over_estimated" not in table  # the table given is left as it was


def test_coverage_counts_the_points_rows_complete_or_leave_short_and_the_variants_rows():
    """coverage.py on the grid: the Llama-3.1-8B vLLM grid table completes as many points as
    it has rows, a row with too few trials leaves its point short (measured again), every other
    point has no row; Qwen1.5-32B's rows, measured with config/h200_qwen.yaml's warm-up before
    every trial, count only with that layer as a variant."""
    from llm_energy.measure.resume import read_tables

    bench = _load("coverage")
    grid = [str(ROOT / "config/h200_grid.yaml")]
    tables = ROOT / "resources/measurements/h200"
    llama = pd.read_parquet(tables / "grid__llama-3.1-8b__vllm.parquet")
    short = llama.copy()
    short.loc[short.index[0], ["trials", "protocol_met"]] = [2, False]
    status = bench.coverage(grid, [(tables / "grid.parquet", short)])
    each = status.drop_duplicates(["job", "point"])
    assert each["status"].value_counts().to_dict() == {
        "unmeasured": len(each) - len(llama),
        "complete": len(llama) - 1,
        "short": 1,
    }
    assert set(each.loc[each["status"] != "unmeasured", "job"]) == {"llama-3.1-8b__vllm"}

    qwen = read_tables([tables / "grid__qwen1.5-32b__vllm.parquet"])
    alone = bench.coverage(grid, qwen)
    assert (alone["status"] == "unmeasured").all()
    layered = bench.coverage(grid, qwen, [[str(ROOT / "config/h200_qwen.yaml")]])
    done = layered[layered["status"] == "complete"].drop_duplicates(["job", "point"])
    assert set(done["job"]) == {"qwen1.5-32b__vllm"}
    assert len(done) == len(qwen[0][1])
    text = bench.render(layered, qwen)
    assert f"each once: {len(done)} of {len(each)} points complete, 0 short" in text


def test_coverage_counts_rows_without_the_feed_forward_share_a_job_asks_for_apart():
    """config/h100.yaml asks its PyTorch OLMo jobs for the feed-forward time share: the ninth
    H100 session's rows, measured without it, meet the protocol and leave their points
    ``unshared``; the shipped rows, with it, complete them."""
    from llm_energy.measure.resume import read_tables

    bench = _load("coverage")
    config = [str(ROOT / "config/h100.yaml")]
    measurements = ROOT / "resources/measurements"
    for folder, expected in (("repeats/h100_without_ffn_share", "unshared"), ("h100", "complete")):
        tables = read_tables(sorted((measurements / folder).glob("trials__olmo*__pytorch.parquet")))
        status = bench.coverage(config, tables)
        olmo = status[status["job"].str.match(r"olmoe?-.*__pytorch$")]
        assert len(olmo) == 9 and set(olmo["status"]) == {expected}, folder
        assert set(status.loc[status["status"] != "unmeasured", "job"]) == set(olmo["job"])
    text = bench.render(
        bench.coverage(
            config,
            read_tables(
                sorted((measurements / "repeats/h100_without_ffn_share").glob("*.parquet"))
            ),
        ),
        [],
    )
    assert "- architectures: 0 of 18 points complete, 9 without the feed-forward time share" in text


def test_coverage_estimates_the_time_of_the_points_it_leaves_and_none_for_those_complete():
    """--time-left: the OLMo PyTorch jobs of config/h100.yaml, whose points the ninth H100
    session's rows leave without the feed-forward share, cost each point from its first trial;
    with the shipped rows, which complete them, they cost nothing."""
    from llm_energy.measure.resume import read_tables

    bench = _load("coverage")
    config = [str(ROOT / "config/h100.yaml")]
    measurements = ROOT / "resources/measurements"
    olmo = ["olmo-1b__pytorch", "olmo-7b__pytorch", "olmoe-1b-7b__pytorch"]
    for folder in ("repeats/h100_without_ffn_share", "h100"):
        tables = read_tables(sorted((measurements / folder).glob("trials__olmo*__pytorch.parquet")))
        status = bench.coverage(config, tables)
        left = bench.time_left(config, status, tables).set_index("job").loc[olmo]
        text = bench.render(status, tables, left=left.reset_index())
        if folder == "h100":
            assert (left["points_left"] == 0).all() and (left["gpu_hours_left"] == 0).all()
            assert text.endswith("\nleft to measure: nothing\n")
        else:
            assert (left["points_left"] == 3).all()
            assert (left["gpu_hours_left"] > 0).all()
            # Minutes on the job's GPUs: one GPU each here.
            assert list(left["job_min_left"]) == pytest.approx(list(60 * left["gpu_hours_left"]))
            assert "(ESTIMATE, not a measurement)" in text
            assert "on NVIDIA H100 80GB HBM3," in text
            assert "left to measure: 9 points of 3 jobs" in text


@pytest.mark.parametrize(
    "report", sorted(p.name for p in (ROOT / "benchmarks/data").glob("*_coverage_*.md"))
)
def test_the_shipped_coverage_reports_are_what_their_command_prints_now(
    report, capsys, monkeypatch
):
    """benchmarks/data/*_coverage_*.md begin with the command that wrote them (`make
    docs-coverage`): run again over the shipped tables, it prints the same report, so the
    counts a closing note quotes are those of the rows on main."""
    import shlex

    bench = _load("coverage")
    text = (ROOT / "benchmarks/data" / report).read_text()
    command = shlex.split(text.splitlines()[0].split("`")[1])
    assert command[:2] == ["python", "benchmarks/coverage.py"]
    monkeypatch.chdir(ROOT)
    bench.main(command[2:])
    assert capsys.readouterr().out == text, f"{report} is stale: run make docs-coverage"


def test_the_control_drift_lists_each_sessions_control_once_per_drift_and_sums_up_by_engine(
    tmp_path,
):
    """Rows of one session share its control's drift and give one line; a row of another run
    with another drift gives its own; rows without a drift are left out."""
    bench = _load("control_drift")
    rows = pd.DataFrame(
        {
            "engine": ["vllm", "vllm", "vllm", "vllm", "pytorch"],
            "machine_session": ["vm:a", "vm:a", "vm:a", "vm:b", "vm:c"],
            "control_point_id": "c",
            "control_drift_energy": [-0.05, -0.05, 0.01, np.nan, 0.2],
            "control_drift_duration": [-0.005, -0.005, 0.0, np.nan, 0.3],
        }
    )
    rows.to_parquet(tmp_path / "t.parquet")
    table = bench.control_drifts([tmp_path / "t.parquet"])
    assert table["energy_drift_pct"].tolist() == [20.0, -5.0, 1.0]
    assert table["energy_less_time_pct"].tolist() == [-10.0, -4.5, 1.0]
    summary = bench.summary(table).set_index("engine")
    assert summary.loc["vllm", "lines"] == 2
    assert summary.loc["vllm", "energy_max_pct"] == 5.0
    assert summary.loc["vllm", "lines_time_under_1pct"] == 2
    assert summary.loc["pytorch", "time_median_pct"] == 30.0


def test_coverage_time_left_over_no_tables_stops_with_one_line(tmp_path, capsys):
    """--time-left without a table to fit the time model by: one line, no pandas trace; the
    counts alone still print without the flag."""
    bench = _load("coverage")
    config = str(ROOT / "config/h100.yaml")
    with pytest.raises(SystemExit) as stop:
        bench.main([config, "--tables", str(tmp_path), "--time-left"])
    assert str(stop.value) == (
        "coverage: --time-left fits the time model to the tables' rows, and no table was given"
    )
    bench.main([config, "--tables", str(tmp_path)])
    assert "points complete" in capsys.readouterr().out
