"""Served streams, our own logic: arrival times, the steady-state window, percentiles, energy
over a window, the client's timing of a streamed response (against a fake SSE server), how
trials combine, planning, and the server process's life (a stand-in server of a few lines)."""

from __future__ import annotations

import asyncio
import io
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llm_energy.config import validate
from llm_energy.errors import ConfigError, InputError
from llm_energy.measure.job import JobPlan, PointSpec, ServedSpec, StreamSpec
from llm_energy.measure.plan import plan_study
from llm_energy.measure.point_ids import point_ids
from llm_energy.measure.serving import (
    EnergyTimeline,
    MeterSampler,
    RequestRecord,
    arrival_times,
    latency_columns,
    measure_served_point,
    percentile,
    served_columns,
    steady_state,
    window_shares,
)
from llm_energy.measure.trials import combine, needs_trial, window_met
from llm_energy.meters.base import EnergyMeter, Measurement, WindowHealth

ROOT = Path(__file__).resolve().parents[1]


def _record(i, sent, first, last, tokens, error="", expected=None):
    r = RequestRecord(i, sent, expected if expected is not None else tokens, sent_s=sent)
    r.first_token_s, r.last_token_s, r.done_s, r.output_tokens = first, last, last, tokens
    r.error = error
    return r


# --- arrivals ----------------------------------------------------------------------------------


def test_poisson_arrivals_are_seeded_and_at_the_rate():
    spec = ServedSpec("poisson", 4)
    times = arrival_times(spec, 4000, seed=0)
    assert times[0] == 0 and np.all(np.diff(times) >= 0)
    assert np.array_equal(times, arrival_times(spec, 4000, seed=0))
    assert not np.array_equal(times, arrival_times(spec, 4000, seed=1))
    # Exponential gaps of mean 1/rate; the mean of 3999 of them is within a few percent.
    assert np.diff(times).mean() == pytest.approx(0.25, rel=0.05)
    assert np.diff(times).std() == pytest.approx(0.25, rel=0.1)


def test_trace_arrivals_keep_the_traces_gaps_scaled_to_the_rate():
    trace = np.array([0.0, 1.0, 1.5, 4.5, 5.0, 9.0, 9.1, 9.2])
    times = arrival_times(ServedSpec("trace", 2), 4, seed=0, trace_arrivals_s=trace)
    gaps = np.diff(times)
    assert gaps.mean() == pytest.approx(0.5)  # 2 requests per second
    # The gaps of 4 consecutive requests of the trace, in proportion.
    windows = [np.diff(trace[s : s + 4]) for s in range(len(trace) - 3)]
    assert any(np.allclose(gaps, w / w.mean() * 0.5) for w in windows)
    assert np.array_equal(times, arrival_times(ServedSpec("trace", 2), 4, 0, trace))


def test_trace_arrivals_need_enough_distinct_times():
    with pytest.raises(InputError, match="fewer than the 5 requests"):
        arrival_times(ServedSpec("trace", 1), 5, 0, np.arange(4.0))
    with pytest.raises(InputError, match="share one time"):
        arrival_times(ServedSpec("trace", 1), 3, 0, np.zeros(3))
    with pytest.raises(InputError, match="no arrival times"):
        arrival_times(ServedSpec("trace", 1), 3, 0, None)


def test_a_served_spec_holds_its_rate_as_a_float():
    assert ServedSpec("trace", 4) == ServedSpec("trace", 4.0)
    assert ServedSpec("trace", 4).label == "trace-r4"
    assert ServedSpec("poisson", 0.5).label == "poisson-r0.5"


# --- the steady state --------------------------------------------------------------------------


def test_the_window_opens_at_the_median_load_and_closes_at_the_last_arrival():
    # One request a second, each 2.9 s long: 1, then 2, then 3 in flight for 0.9 s of every
    # second (2 for the other 0.1 s) until the last arrival.
    records = [_record(i, float(i), i + 0.5, i + 2.9, 10) for i in range(10)]
    window = steady_state(records)
    assert window.in_flight == 3
    assert window.open_s == 2.0  # the third request arrives, and 3 are in flight
    assert window.close_s == 9.0  # the last request is sent
    assert window.run_s == pytest.approx(11.9) and window.duration_s == 7.0
    assert window.fraction == pytest.approx(7.0 / 11.9)
    # Requests 2.5 s long hold 2 and 3 for as long each: the median is the lower, 2.
    half = steady_state([_record(i, float(i), i + 0.5, i + 2.5, 10) for i in range(10)])
    assert (half.in_flight, half.open_s) == (2, 1.0)


def test_a_run_that_never_overlaps_holds_one_request():
    records = [_record(i, 2.0 * i, 2 * i + 0.1, 2 * i + 1, 5) for i in range(4)]
    window = steady_state(records)
    assert window.in_flight == 1
    assert (window.open_s, window.close_s) == (0.0, 6.0)


def test_a_single_request_has_no_steady_state():
    window = steady_state([_record(0, 0.0, 0.1, 1.0, 5)])
    assert window.duration_s == 0 and window.fraction == 0


def test_tokens_and_requests_inside_the_window_are_counted_by_share():
    window = steady_state([_record(0, 0.0, 0.0, 1.0, 1), _record(1, 10.0, 10.0, 11.0, 1)])
    assert (window.open_s, window.close_s) == (0.0, 10.0)
    # 11 tokens from t=5 to t=15: 6 of them (5..10) inside [0, 10].
    records = [_record(2, 4.0, 5.0, 15.0, 11)]
    requests, tokens = window_shares(records, window)
    assert tokens == 6 and requests == pytest.approx(6 / 11)
    failed = [_record(3, 1.0, 1.5, 2.0, 4, error="HTTP 500")]
    assert window_shares(failed, window) == (0.0, 0)


# --- latency -----------------------------------------------------------------------------------


def test_percentiles_interpolate_linearly_and_skip_nan():
    values = [1.0, 2.0, 3.0, 4.0, math.nan]
    assert percentile(values, 50) == 2.5
    assert percentile(values, 99) == pytest.approx(3.97)
    assert math.isnan(percentile([math.nan], 50))


def test_latency_columns_come_from_successful_requests_and_are_ordered():
    records = [_record(i, float(i), i + 0.1 * (i + 1), i + 1 + 0.1 * i, 11) for i in range(20)]
    records.append(_record(20, 20.0, 99.0, 120.0, 3, error="HTTP 500"))
    cols = latency_columns(records)
    assert cols["ttft_p50_s"] == pytest.approx(
        np.percentile([0.1 * (i + 1) for i in range(20)], 50)
    )
    assert cols["ttft_p50_s"] <= cols["ttft_p99_s"]
    assert cols["tpot_p50_s"] <= cols["tpot_p99_s"]
    assert cols["e2e_p50_s"] <= cols["e2e_p99_s"]
    # TPOT: (last - first) / (tokens - 1) = 0.9 / 10 for every request.
    assert cols["tpot_p99_s"] == pytest.approx(0.09)
    one = _record(0, 0.0, 0.2, 0.2, 1)
    assert math.isnan(one.tpot_s)


# --- energy over the window --------------------------------------------------------------------


def test_energy_between_interpolates_the_cumulative_counter():
    timeline = EnergyTimeline()
    for t, lap in ((0.0, 0.0), (1.0, 100.0), (2.0, 300.0), (3.0, 300.0)):
        timeline.add(t, lap)
    assert timeline.energy_j == [0.0, 100.0, 400.0, 700.0]
    assert timeline.energy_between(0.5, 2.5) == pytest.approx(550.0 - 50.0)
    assert math.isnan(timeline.energy_between(-1.0, 2.0))  # before the first sample
    nothing = EnergyTimeline()
    nothing.add(0.0, 0.0)
    nothing.add(1.0, math.nan)
    assert math.isnan(nothing.energy_between(0.2, 0.8))


class _FakeMeter(EnergyMeter):
    """A constant 200 W, or no energy at all."""

    name = "fake"
    energy_source = "measured"

    def __init__(self, power_w: float = 200.0) -> None:
        self.power_w = power_w
        self._t = time.perf_counter()

    def start(self) -> None:
        self._t = time.perf_counter()

    def lap(self) -> Measurement:
        now = time.perf_counter()
        m = Measurement(now - self._t, self.power_w * (now - self._t))
        self._t = now
        return m


def test_the_sampler_reads_the_meter_while_the_replay_runs():
    sampler = MeterSampler(_FakeMeter(200.0), interval_s=0.02)
    sampler.start()
    t0 = time.perf_counter()
    time.sleep(0.3)
    t1 = time.perf_counter()
    timeline = sampler.stop()
    assert len(timeline.times_s) >= 5
    assert timeline.energy_between(t0, t1) == pytest.approx(200.0 * (t1 - t0), rel=0.05)


def _run(n=10, error_every=0):
    return [
        _record(
            i,
            float(i),
            i + 0.5,
            i + 2.5,
            10,
            error="HTTP 500" if error_every and i % error_every == 0 else "",
        )
        for i in range(n)
    ]


def _timeline(power_w: float) -> EnergyTimeline:
    timeline = EnergyTimeline()
    timeline.add(-1.0, 0.0)
    timeline.add(20.0, power_w * 21.0)
    return timeline


def test_a_served_trial_row_is_energy_over_the_steady_state():
    row = served_columns(_run(), _timeline(100.0), idle_power_w=40.0)
    window = steady_state(_run())
    requests, tokens = window_shares(_run(), window)
    assert row["energy_j"] == pytest.approx(100.0 * window.duration_s)
    assert row["energy_per_request_j"] == pytest.approx(row["energy_j"] / requests)
    assert row["energy_per_output_token_j"] == pytest.approx(row["energy_j"] / tokens)
    assert row["steady_state_s"] == row["duration_s"] == window.duration_s
    assert row["energy_above_idle_j"] == pytest.approx(60.0 * window.duration_s)
    assert row["requests_failed"] == 0 and row["request_error"] == ""
    assert row["repetitions"] == 1 and not row["error"]


def test_without_energy_the_energy_columns_are_nan_never_zero():
    row = served_columns(_run(), _timeline(math.nan), idle_power_w=math.nan)
    for col in ("energy_j", "energy_per_request_j", "energy_per_output_token_j", "mean_power_w"):
        assert math.isnan(row[col]), col
    assert row["ttft_p50_s"] > 0 and row["steady_state_s"] > 0


def test_failed_requests_are_counted_and_too_many_make_the_trial_unused():
    few = served_columns(_run(200, error_every=100), _timeline(100.0), 0.0, 0.01)
    assert few["requests_failed"] == 2 and few["repetitions"] == 1
    assert json.loads(few["request_error"]) == {"HTTP 500": 2}
    many = served_columns(_run(20, error_every=5), _timeline(100.0), 0.0, 0.01)
    assert many["requests_failed"] == 4 and many["repetitions"] == 0
    assert many["error"].startswith("4 of 20 requests failed (20.0 %, more than 1 %): HTTP 500")
    assert math.isnan(many["energy_per_request_j"]) and math.isnan(many["ttft_p99_s"])


# --- trials ------------------------------------------------------------------------------------


def _trial(energy_per_request: float, failed: int = 0, steady_s: float = 5.0) -> dict:
    row = served_columns(_run(), _timeline(100.0), 0.0)
    row.update(
        serving="served",
        energy_per_request_j=energy_per_request,
        requests_failed=failed,
        steady_state_s=steady_s,
        ttft_p99_s=energy_per_request / 100,
    )
    return row


def test_served_trials_combine_with_intervals_of_energy_per_request():
    from llm_energy.measure.job import ProtocolSpec

    proto = ProtocolSpec(min_trials=3, min_duration_s=2.0)
    trials = [_trial(10.0, 1), _trial(11.0), _trial(12.0, 2)]
    row = combine(trials, proto)
    assert row["energy_per_request_j"] == pytest.approx(11.0)
    assert row["energy_per_request_j_ci95"] == pytest.approx(4.303 * 1.0 / math.sqrt(3))
    assert row["ttft_p99_s"] == pytest.approx(0.11)  # latency: the mean over trials
    assert row["requests_failed"] == 3 and json.loads(row["trial_requests_failed"]) == [1, 0, 2]
    assert row["protocol_met"] and row["trials"] == 3
    # Judged by energy per request: an interval of ±16 % asks for another trial.
    assert needs_trial(trials, proto)
    assert not window_met(_trial(10.0, steady_s=1.0), proto)
    assert window_met(_trial(10.0, steady_s=2.0), proto)


# --- planning ----------------------------------------------------------------------------------


def _served_config(tiny_config: dict, **block) -> dict:
    tiny_config["engines"] = {
        "vllm-eager": {"backend": "vllm"},
        "vllm": {"backend": "vllm", "cuda_graphs": True},
        "pytorch": {"backend": "transformers"},
    }
    tiny_config["experiments"] = {
        "controlled_sweeps": {"enabled": False},
        "served_traces": {
            "enabled": True,
            "models": ["tiny"],
            "engines": ["vllm-eager", "vllm"],
            "batch_sizes": [4, 8],
            "request_rates": [1, 4],
            "requests": 16,
            **block,
        },
    }
    return tiny_config


def test_one_server_job_per_engine_and_max_num_seqs_with_its_own_points(tiny_config):
    jobs = plan_study(validate(_served_config(tiny_config, tensor_parallel_sizes=[1, 2])))
    assert sorted(jobs) == sorted(
        f"tiny__{e}-served-s{n}{tp}"
        for e in ("vllm", "vllm-eager")
        for n in (4, 8)
        for tp in ("", "-tp2")
    )
    job = jobs["tiny__vllm-served-s8-tp2"]
    assert job.engine.backend == "vllm_server"
    assert job.engine.cuda_graphs and job.engine.tensor_parallel_size == 2
    assert job.engine.options == {"max_num_seqs": 8}
    assert job.server_options["max_failed_fraction"] == 0.01
    served = [p for p in job.points if p.served is not None]
    offline = [p for p in job.points if p.served is None]
    assert {p.batch_size for p in job.points} == {8}
    assert {(p.served.arrival, p.served.request_rate) for p in served} == {
        (a, r) for a in ("trace", "poisson") for r in (1.0, 4.0)
    }
    # The offline estimate serves the same draw of requests (same trace, count and caps).
    assert len(offline) == 1 and offline[0].stream.serving == "offline"
    assert {p.stream.label.split("-", 1)[1] for p in job.points} == {"azure_conversation-n16-vi"}
    assert JobPlan.from_json(job.to_json()) == job


def test_server_options_change_no_point_id(tiny_config):
    a = plan_study(validate(_served_config(tiny_config)))["tiny__vllm-served-s4"]
    b = plan_study(validate(_served_config(tiny_config, health_timeout_s=5, port=8123)))[
        "tiny__vllm-served-s4"
    ]
    assert a.server_options != b.server_options
    assert point_ids(a) == point_ids(b)


def test_a_rate_of_4_and_of_4_0_is_one_point():
    stream = StreamSpec("azure_code", 8, "served", vary_input=True)
    p = PointSpec(4, 64, 32, stream=stream, served=ServedSpec("trace", 4))
    q = PointSpec(4, 64, 32, stream=stream, served=ServedSpec("trace", 4.0))
    assert p.key == q.key


def test_a_served_family_needs_a_one_gpu_vllm_engine(tiny_config):
    config = _served_config(tiny_config)
    config["experiments"]["served_traces"]["engines"] = ["pytorch"]
    with pytest.raises(ConfigError, match="'pytorch' is not a vLLM engine"):
        plan_study(validate(config))
    config = _served_config(tiny_config)
    config["engines"]["vllm"]["tensor_parallel_size"] = 2
    with pytest.raises(ConfigError, match="already spans 2 GPUs"):
        plan_study(validate(config))


# --- the client against a fake SSE server ------------------------------------------------------


def _events(tokens: int, per_chunk: int = 1) -> list[str]:
    out, done = [], 0
    while done < tokens:
        done = min(done + per_chunk, tokens)
        finish = "length" if done == tokens else None
        choice = {"index": 0, "text": "", "finish_reason": finish}
        out.append(json.dumps({"choices": [choice], "usage": {"completion_tokens": done}}))
    out.append(json.dumps({"choices": [], "usage": {"completion_tokens": tokens}}))
    out.append("[DONE]")
    return [f"data: {e}\n\n" for e in out]


def test_the_stream_timer_reads_events_split_anywhere():
    from llm_energy.backends.vllm_server.client import StreamTimer

    record = RequestRecord(0, 0.0, 5, sent_s=0.0)
    timer = StreamTimer(record)
    stream = "".join(_events(5, per_chunk=2))
    # Bytes as the network hands them over: cut mid-event.
    for k, start in enumerate(range(0, len(stream), 37)):
        timer.feed(stream[start : start + 37].encode(), now=1.0 + k)
    timer.close(now=100.0)
    assert record.ok, record.error
    assert record.output_tokens == 5
    assert 1.0 <= record.first_token_s < record.last_token_s
    assert record.done_s == 100.0


@pytest.mark.parametrize(
    ("events", "error"),
    [
        (_events(5)[:3], "stream ended after 3 tokens without finishing"),
        (_events(3), "generated 3 tokens instead of 5"),
        (['data: {"error": {"message": "boom"}}\n\n'], "server error in stream: boom"),
    ],
)
def test_a_request_that_does_not_finish_with_all_its_tokens_fails(events, error):
    from llm_energy.backends.vllm_server.client import StreamTimer

    record = RequestRecord(0, 0.0, 5, sent_s=0.0)
    timer = StreamTimer(record)
    for k, event in enumerate(events):
        timer.feed(event, now=float(k))
    timer.close(now=9.0)
    assert record.error == error


def test_the_client_times_each_request_against_a_streaming_server():
    """The real aiohttp client against a small SSE server: a token every 20 ms after a 100 ms
    prefill, one request answered with HTTP 500; requests are sent on schedule."""
    aiohttp = pytest.importorskip("aiohttp")
    from aiohttp import web

    from llm_energy.backends.vllm_server.client import replay_async

    seen = []

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append(body)
        if body["prompt"][0] == 666:
            return web.Response(status=500, text="nope")
        assert body["min_tokens"] == body["max_tokens"] and body["ignore_eos"]
        assert body["stream"] and body["stream_options"]["include_usage"]
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await asyncio.sleep(0.1)
        for event in _events(body["max_tokens"]):
            await resp.write(event.encode())
            await asyncio.sleep(0.02)
        return resp

    async def main():
        app = web.Application()
        app.router.add_post("/v1/completions", completions)
        runner = web.AppRunner(app)
        await runner.setup()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        try:
            return await replay_async(
                f"http://127.0.0.1:{port}",
                "m",
                [[1, 2, 3], [4, 5], [666]],
                [6, 3, 4],
                [0.0, 0.15, 0.3],
                log=progress.append,
                progress_every_s=0.1,
            )
        finally:
            await runner.cleanup()

    progress: list[str] = []
    records = asyncio.run(main())
    ok, bad = records[:2], records[2]
    # Progress lines while the replay runs.
    assert progress and progress[0].startswith("replay: ")
    assert re.fullmatch(
        r"replay: \d/3 requests sent, \d in flight, \d done \(\d failed\) after .*", progress[0]
    )
    for r, tokens in zip(ok, (6, 3), strict=True):
        assert r.ok, r.error
        assert r.output_tokens == tokens
        assert r.ttft_s == pytest.approx(0.1, abs=0.08)
        assert r.tpot_s == pytest.approx(0.02, abs=0.015)
    assert bad.error == "HTTP 500: nope" and bad.output_tokens == 0
    sent = [r.sent_s - records[0].sent_s for r in records]
    assert sent == pytest.approx([0.0, 0.15, 0.3], abs=0.05)
    assert [b["prompt"] for b in seen] == [[1, 2, 3], [4, 5], [666]]
    assert aiohttp  # imported for the test's requirement


# --- the server process ------------------------------------------------------------------------

# A stand-in for vllm serve: a child of its own (as vLLM's engine process), /health after
# DELAY seconds, or an exit with a message.
FAKE_SERVER = textwrap.dedent(
    """
    import http.server, signal, subprocess, sys, time
    port, delay, mode = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    print("fake server starting", flush=True)
    if mode == "exit":
        print("ValueError: unknown option --bogus", flush=True)
        sys.exit(2)
    engine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print(f"engine pid {engine.pid}", flush=True)

    def shutdown(*args):  # as vLLM's server stops its engine on SIGTERM
        engine.terminate()
        if mode == "linger":  # as uvicorn then waits for a client's open connections
            print("INFO:     Waiting for connections to close. (CTRL+C to force quit)", flush=True)
            return
        sys.exit(0)

    signal.signal(signal.SIGTERM, shutdown)
    time.sleep(delay)

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if mode in ("ok", "linger") else 503)
            self.end_headers()
        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
    """
)


def _fake(tmp_path: Path, delay: float = 0.3, mode: str = "ok", **kwargs):
    from llm_energy.backends.vllm_server.process import ServerProcess

    script = tmp_path / "fake_server.py"
    script.write_text(FAKE_SERVER)
    lines: list[str] = []
    server = ServerProcess(
        lambda port: [sys.executable, str(script), str(port), str(delay), mode],
        lambda port: f"http://127.0.0.1:{port}/health",
        log=lines.append,
        **{"stop_grace_s": 5, **kwargs},
    )
    return server, lines


def test_the_server_is_healthy_then_stopped_with_its_process_group(tmp_path):
    from llm_energy.backends.vllm_server.process import group_pids

    server, lines = _fake(tmp_path)
    with server:
        pgid = server.pgid
        assert len(group_pids(pgid)) == 2  # the server and its engine
        assert any("healthy after" in line for line in lines)
        assert any("fake server starting" in line for line in lines)
    assert group_pids(pgid) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the job's handler is back


def test_a_server_that_waits_for_open_connections_is_killed_once_it_says_so(tmp_path):
    """vLLM's HTTP server, stopped while the job's client holds requests open, waits for them
    after its engine has gone; the job does not wait out the grace period for it."""
    from llm_energy.backends.vllm_server.process import WAITING_FOR_CONNECTIONS_S, group_pids

    server, lines = _fake(tmp_path, mode="linger", stop_grace_s=60)
    server.start()
    pgid = server.pgid
    t0 = time.monotonic()
    server.stop()
    assert time.monotonic() - t0 < WAITING_FOR_CONNECTIONS_S + 5
    assert group_pids(pgid) == []
    assert any("still waits for open connections" in line for line in lines)
    assert not any("still running after" in line for line in lines)


def test_a_server_that_exits_fails_with_its_last_lines(tmp_path):
    server, _ = _fake(tmp_path, mode="exit")
    with pytest.raises(Exception, match=r"exited with status 2 before it was healthy") as err:
        server.start()
    assert "unknown option --bogus" in str(err.value)


def test_a_server_that_is_not_healthy_in_time_is_stopped(tmp_path):
    from llm_energy.backends.vllm_server.process import ServerError, group_pids

    server, _ = _fake(tmp_path, mode="unhealthy", health_timeout_s=1.5)
    with pytest.raises(ServerError, match=r"not healthy after 1.5 s") as err:
        server.start()
    assert "engine pid" in str(err.value)
    assert server.pgid is None and server.proc is not None
    assert group_pids(server.proc.pid) == []


def test_a_port_in_use_is_left_for_a_free_one(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        server, lines = _fake(tmp_path, preferred_port=busy)
        with server:
            assert server.port != busy
        assert any(f"port {busy} is in use" in line for line in lines)


JOB = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[2])
    from llm_energy.backends.vllm_server.process import ServerProcess
    script = sys.argv[1]
    server = ServerProcess(
        lambda port: [sys.executable, script, str(port), "0.2", "ok"],
        lambda port: f"http://127.0.0.1:{port}/health",
        stop_grace_s=5,
    )
    server.start()
    print(f"SERVING pgid={server.pgid}", flush=True)
    time.sleep(600)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_job_that_is_terminated_or_killed_leaves_no_server(tmp_path, sig):
    """SIGTERM (scancel, Snakemake stopping a job): the job stops the server, then dies of the
    signal. SIGKILL: the kernel's parent-death signal stops it."""
    from llm_energy.backends.vllm_server.process import group_pids

    (tmp_path / "fake_server.py").write_text(FAKE_SERVER)
    job = tmp_path / "job.py"
    job.write_text(JOB)
    proc = subprocess.Popen(
        [sys.executable, str(job), str(tmp_path / "fake_server.py"), str(ROOT / "src")],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = ""
    while not line.startswith("SERVING"):
        line = proc.stdout.readline()
        assert line, "the job ended before its server served"
    pgid = int(line.split("=")[1])
    assert group_pids(pgid)
    os.kill(proc.pid, sig)
    assert proc.wait(timeout=30) == -sig
    deadline = time.monotonic() + 15
    while group_pids(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    # The server's own child (its "engine") is in the group: the group is empty.
    assert group_pids(pgid) == []


# --- figures and table -------------------------------------------------------------------------


def _rows(offline: bool = True) -> pd.DataFrame:
    base = {
        "experiments": "served_traces",
        "model": "m",
        "trace": "azure_conversation",
        "requests": 64,
        "input_tokens": 1024,
        "output_tokens": 256,
        "tensor_parallel_size": 1,
        "batch_size": 64,
        "feasible": True,
        "weights": "random",
        "dtype": "bfloat16",
        "backend_version": "vllm 0.26.0 (server)",
        "torch_version": "2.11.0",
        "gpu_name": "H200",
        "energy_source": "measured",
        "meter": "nvml",
        "trials": 3,
        "repetitions": 1,
        "protocol_met": True,
        "requests_failed": 0,
        "server_config": "{}",
    }
    rows = []
    for graphs in (True, False):
        engine = "vllm-served-s64" if graphs else "vllm-eager-served-s64"
        for arrival in ("trace", "poisson"):
            for rate, energy, tpot in ((1.0, 300.0, 0.010), (8.0, 120.0, 0.015)):
                energy *= 1.0 if graphs else 1.3
                rows.append(
                    {
                        **base,
                        "engine": engine,
                        "cuda_graphs": graphs,
                        "serving": "served",
                        "arrival": arrival,
                        "request_rate": rate,
                        "energy_per_request_j": energy,
                        "energy_per_request_j_ci95": 0.1 * energy,
                        "energy_per_output_token_j": energy / 100,
                        "tpot_p99_s": tpot * (1.0 if graphs else 1.5),
                        "ttft_p50_s": 0.05,
                    }
                )
        if offline:
            rows.append(
                {
                    **base,
                    "engine": engine,
                    "cuda_graphs": graphs,
                    "serving": "offline",
                    "energy_j": 64 * 100.0,
                    "energy_j_ci95": 64 * 5.0,
                    "energy_per_request_j": 100.0,
                }
            )
    return pd.DataFrame(rows)


def test_the_table_sets_each_served_run_beside_the_offline_estimate():
    from llm_energy.figures.serving import table_served_traces

    table = table_served_traces(_rows())
    assert len(table) == 8
    row = table[
        table["cuda_graphs"] & (table["arrival"] == "trace") & (table["request_rate"] == 1.0)
    ].iloc[0]
    assert row["offline_energy_per_request_j"] == 100.0
    assert row["offline_energy_per_request_j_ci95"] == 5.0
    assert row["served_over_offline"] == pytest.approx(3.0)
    # Relative half-widths of 10 % and 5 %, in quadrature.
    assert row["served_over_offline_ci95"] == pytest.approx(3.0 * math.hypot(0.1, 0.05))
    assert row["setting"] == "CUDA graphs, max_num_seqs 64"
    without = table_served_traces(_rows(offline=False))
    assert without["offline_energy_per_request_j"].isna().all()


def test_the_pareto_front_keeps_the_runs_no_other_beats_on_both():
    from llm_energy.figures.serving import pareto_front

    points = pd.DataFrame({"x": [1.0, 2.0, 3.0, 2.5, 4.0], "y": [5.0, 3.0, 4.0, 1.0, 0.5]})
    assert pareto_front(points, "x", "y")[["x", "y"]].values.tolist() == [
        [1.0, 5.0],
        [2.0, 3.0],
        [2.5, 1.0],
        [4.0, 0.5],
    ]


@pytest.mark.parametrize("offline", [True, False])
def test_the_serving_figures_draw_with_and_without_the_offline_estimate(offline):
    from llm_energy.figures.serving import NO_OFFLINE, fig_serving_pareto, fig_serving_rate

    for draw in (fig_serving_rate, fig_serving_pareto):
        fig = draw(_rows(offline))
        texts = " ".join(t.get_text() for t in fig.texts)
        assert (NO_OFFLINE in texts) is not offline


# --- the shipped configurations ----------------------------------------------------------------


def test_the_serving_configurations_plan_their_servers():
    from llm_energy.config import load_config

    h200 = plan_study(load_config(ROOT / "config" / "h200_serving.yaml"))
    assert sorted(h200) == ["llama-3.1-8b__vllm-eager-served-s64", "llama-3.1-8b__vllm-served-s64"]
    for job in h200.values():
        served = [p for p in job.points if p.served is not None]
        # 3 rates x 2 arrivals, and the offline estimate of the same requests.
        assert len(served) == 6 and len(job.points) == 7
        assert {p.served.request_rate for p in served} == {8.0, 16.0, 32.0}
        assert job.device == "cuda" and job.meter.primary == "nvml"
        assert all(p.protocol.min_trials == 3 for p in job.points)
    assert {j.engine.cuda_graphs for j in h200.values()} == {True, False}
    # The two-GPU layer plans the CUDA-graph server alone, over two GPUs, with the same points.
    layered = load_config(
        ROOT / "config" / "h200_serving.yaml", ROOT / "config" / "h200_serving_tp2.yaml"
    )
    tp2 = plan_study(layered)
    assert list(tp2) == ["llama-3.1-8b__vllm-served-s64-tp2"]
    job = tp2["llama-3.1-8b__vllm-served-s64-tp2"]
    assert job.engine.tensor_parallel_size == 2 and job.engine.cuda_graphs
    assert job.engine.options["disable_custom_all_reduce"] is True
    one_gpu = h200["llama-3.1-8b__vllm-served-s64"]
    assert [p.served for p in job.points] == [p.served for p in one_gpu.points]
    smoke = plan_study(load_config(ROOT / "config" / "smoke_serving.yaml"))
    assert list(smoke) == ["tiny-llama__vllm-eager-served-s4"]
    study = load_config(ROOT / "config" / "config.yaml")
    assert study["experiments"]["served_traces"]["enabled"] is False


def test_a_servers_name_over_any_number_of_gpus_is_one_name():
    from llm_energy.families.served_traces import served_engine, server_over_any_gpus

    names = {served_engine("vllm-eager", 64, size) for size in (1, 2, 4)}
    assert len(names) == 3
    assert {server_over_any_gpus(n) for n in names} == {"vllm-eager-served-s64"}
    assert server_over_any_gpus(served_engine("vllm-tp2x", 16, 1)) == "vllm-tp2x-served-s16"


def test_the_server_backend_names_its_extra_and_runs_in_vllms_environment(monkeypatch):
    import importlib.util

    from llm_energy import backends
    from llm_energy.errors import MissingExtraError

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, package=None: None if name == "aiohttp" else real(name, package),
    )
    monkeypatch.delitem(sys.modules, "aiohttp", raising=False)
    assert "aiohttp" in backends.missing_modules("vllm_server")
    with pytest.raises(MissingExtraError, match=r"pip install 'llm-energy\[vllm\]'"):
        backends.require("vllm_server", engine="vllm-served-s64")
    assert backends.environment("vllm_server") == "vllm"
    assert backends.environment("transformers") == "transformers"


def test_the_server_command_carries_the_engines_options(tmp_path):
    from llm_energy.backends.vllm_server.backend import VllmServerBackend
    from llm_energy.measure.job import EngineSpec, ModelSpec

    engine = EngineSpec(
        "vllm-served-s16-tp2",
        "vllm_server",
        cuda_graphs=False,
        tensor_parallel_size=2,
        options={"max_num_seqs": 16, "disable_custom_all_reduce": True, "cpu_kv_cache_gib": 2},
    )
    backend = VllmServerBackend(ModelSpec("m", "org/m"), engine, "cuda", "bfloat16")
    backend.configure(64, 1280)
    settings = backend.server_settings(str(tmp_path), seed=3)
    command = backend.command(settings, 8123)
    text = " ".join(command)
    for flag in (
        f"--model {tmp_path}",
        "--max-num-seqs 16",
        "--max-model-len 1280",
        "--tensor-parallel-size 2",
        "--enforce-eager",
        "--no-enable-prefix-caching",
        "--load-format dummy",
        "--skip-tokenizer-init",
        "--dtype bfloat16",
        "--seed 3",
        "--disable-custom-all-reduce",
        "--port 8123",
    ):
        assert flag in text, flag
    assert "cpu-kv-cache" not in text
    assert command[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    graphs = VllmServerBackend(
        ModelSpec("m", "org/m", weights="pretrained"),
        EngineSpec("vllm-served-s64", "vllm_server", cuda_graphs=True),
        "cuda",
        "bfloat16",
    )
    settings = graphs.server_settings(str(tmp_path), seed=0)
    assert settings["enforce_eager"] is False and "load_format" not in settings
    assert "--no-enforce-eager" in graphs.command(settings, 1)


class _ThrottledWatch:
    def stop(self) -> WindowHealth:
        return WindowHealth(
            clock_event_reasons=frozenset({"hw_thermal_slowdown"}),
            sm_clock_min_mhz=1200.0,
            sm_clock_max_mhz=1980.0,
            gpu_temp_max_c=87.0,
            ecc_errors_new=0,
            xid_errors=(),
            energy_counter_backwards=False,
        )


class _WatchedMeter(_FakeMeter):
    def watch(self) -> _ThrottledWatch:
        return _ThrottledWatch()


class _Streams:
    def draw(self, point, seed):
        return [(8, 4)] * point.stream.requests, 0

    def arrivals(self, trace):
        return np.arange(100, dtype=float)


class _Server:
    vocab_size = 100

    def prepare(self, token_ids):
        return token_ids

    def replay(self, prepared, output_tokens, send_times_s):
        return [
            _record(i, s, s + 0.01, s + 0.05, o)
            for i, (s, o) in enumerate(zip(send_times_s, output_tokens, strict=True))
        ]


def test_a_served_trial_carries_what_the_devices_went_through(tiny_config):
    job = plan_study(validate(_served_config(tiny_config, request_rates=[200])))[
        "tiny__vllm-served-s4"
    ]
    point = next(p for p in job.points if p.served is not None)
    row = measure_served_point(_Server(), job, point, _WatchedMeter(), 0.0, _Streams(), 0)
    assert row["gpu_health"] == "throttled_thermal"
    assert row["clock_event_reasons"] == "hw_thermal_slowdown"
    assert (row["sm_clock_min_mhz"], row["gpu_temp_max_c"]) == (1200.0, 87.0)


def test_each_served_run_is_compared_with_its_offline_estimate_in_the_claims():
    from llm_energy.analysis.claims import served_comparisons

    rows = _rows()
    rows["point_id"] = [f"p{i}" for i in range(len(rows))]
    rows.loc[(rows["request_rate"] == 8.0) & (rows["arrival"] == "poisson"), "protocol_met"] = False
    found = {
        (c["condition"], c["verdict"]): c
        for c in served_comparisons(rows)
        if "offline batches" in c["quantity"]
    }
    assert len(found) == 8
    low = found[("m, CUDA graphs, max_num_seqs 64, trace arrivals, 1 requests/s", "higher")]
    assert low["measured_value"] == pytest.approx(2.0)
    assert low["ci95_high"] - low["measured_value"] == pytest.approx(3.0 * math.hypot(0.1, 0.05))
    assert low["claim"] == "serving" and len(low["rows"].split()) == 2
    # A run that did not meet the protocol gives no verdict; neither does a change inside
    # its interval.
    verdicts = {v for (condition, v) in found if "poisson arrivals, 8 " in condition}
    assert verdicts == {"inconclusive: a row did not meet the protocol"}
    assert served_comparisons(rows[rows["serving"] == "offline"]) == []


def _served_claims(rows: pd.DataFrame, what: str) -> dict[str, dict]:
    """The served comparisons of the claims whose quantity says ``what``, by condition."""
    from llm_energy.analysis.claims import served_comparisons

    return {c["condition"]: c for c in served_comparisons(rows) if what in c["quantity"]}


def _each_arrival_and_rate(setting: str) -> list[str]:
    return [
        f"m, {setting}, {a} arrivals, {r} requests/s" for a in ("poisson", "trace") for r in (1, 8)
    ]


def test_a_server_over_two_gpus_is_compared_with_the_same_server_on_one_in_the_claims():
    from llm_energy.analysis.claims import served_comparisons

    one = _rows()
    one = one[one["serving"] == "served"].assign(repetitions=1, machine_session="vm:a")
    two = one[one["cuda_graphs"]].assign(
        tensor_parallel_size=2, energy_per_request_j=lambda t: 1.5 * t["energy_per_request_j"]
    )
    rows = pd.concat([one, two], ignore_index=True)
    rows["point_id"] = [f"p{i}" for i in range(len(rows))]
    found = _served_claims(rows, "through vllm serve on 2 GPUs against 1")
    # Only the CUDA-graph server ran over two GPUs: one comparison per arrival and rate.
    assert sorted(found) == _each_arrival_and_rate("CUDA graphs, max_num_seqs 64")
    c = found["m, CUDA graphs, max_num_seqs 64, trace arrivals, 8 requests/s"]
    assert c["measured_value"] == pytest.approx(0.5)
    # Relative half-widths in quadrature: 10 % on one GPU, the same joules on 1.5 times more.
    assert c["ci95_high"] - c["measured_value"] == pytest.approx(1.5 * math.hypot(0.1, 0.1 / 1.5))
    assert c["verdict"] == "higher"
    # Rows of two machine sessions give no verdict.
    rows.loc[rows["tensor_parallel_size"] == 2, "machine_session"] = "vm:b"
    verdicts = {c["verdict"] for c in served_comparisons(rows) if "on 2 GPUs" in c["quantity"]}
    assert verdicts == {"inconclusive: the rows come from different machine sessions"}


def test_a_server_without_cuda_graphs_is_compared_with_the_same_server_with_them():
    rows = _rows()
    rows = rows[rows["serving"] == "served"].assign(machine_session="vm:a")
    rows["point_id"] = [f"p{i}" for i in range(len(rows))]
    found = _served_claims(rows, "without CUDA graphs against with them")
    assert sorted(found) == _each_arrival_and_rate("max_num_seqs 64")
    c = found["m, max_num_seqs 64, trace arrivals, 1 requests/s"]
    # The eager rows spend 1.3 times the joules, each side with a 10 % half-width.
    assert c["measured_value"] == pytest.approx(0.3)
    assert c["ci95_high"] - c["measured_value"] == pytest.approx(1.3 * math.hypot(0.1, 0.1))
    assert c["verdict"] == "higher"


def test_the_serving_figures_draw_runs_without_energy_that_missed_the_protocol():
    from llm_energy.figures.serving import fig_serving_pareto, fig_serving_rate

    rows = _rows().assign(protocol_met=False, energy_per_request_j=math.nan, energy_j=math.nan)
    for draw in (fig_serving_rate, fig_serving_pareto):
        draw(rows).savefig(io.BytesIO(), format="png")
