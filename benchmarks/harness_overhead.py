"""Overhead of the measurement harness over a bare ``generate`` loop, and the meter's read cost.

    python benchmarks/harness_overhead.py --model-dir DIR [--device cuda --dtype bfloat16]
        [--batch 8 --input 512 --output 64 --pairs 6 --meter nvml] [--json OUT]

Each pair runs one measured window (the runner's protocol: at least 2 s and 3 repetitions,
energy read per repetition only for repetitions of 1 s or more) and a bare loop of as many
``generate`` calls, in ABBA order so that drift hits both alike. It reports the median of the
per-pair overheads, and the overhead that the harness's own work accounts for (meter reads,
clock reads and the GPU watch's edges over the window's length), which does not depend on
run-to-run noise; and what the watch saw of the GPUs in the last window. This is a
benchmark that reports numbers, not a test with a threshold.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from llm_energy.backends import make_backend
from llm_energy.inputs.prompts import random_prompts
from llm_energy.measure.health import window_columns
from llm_energy.measure.job import DecodingSpec, EngineSpec, ModelSpec, ProtocolSpec
from llm_energy.measure.protocol import measure_window, timed
from llm_energy.meters import make_meter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model-dir", required=True, help="folder with the architecture's config.json")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--input", type=int, default=512)
    ap.add_argument("--output", type=int, default=64)
    ap.add_argument("--pairs", type=int, default=6, help="measured/bare pairs (ABBA order)")
    ap.add_argument("--meter", default="nvml")
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args()

    model = ModelSpec(name=Path(args.model_dir).name, hub_id="local", weights="random")
    engine = EngineSpec(name="pytorch", backend="transformers")
    backend = make_backend(model, engine, args.device, args.dtype)
    backend.load(args.model_dir, seed=0)
    prepared = backend.prepare(random_prompts(backend.vocab_size, args.batch, args.input, 0))
    greedy = DecodingSpec()

    def run_once() -> None:
        backend.generate(prepared, args.output, greedy)
        backend.synchronize()

    meter = make_meter(args.meter, args.device, backend.device_uuids() or None)
    protocol = ProtocolSpec()
    run_once()
    per_rep = timed(run_once) >= protocol.per_repetition_energy_min_s

    windows = []

    def measured() -> tuple[float, int]:
        t0 = time.perf_counter()
        window = measure_window(
            run_once,
            meter,
            protocol,
            per_repetition_energy_min_s=protocol.per_repetition_energy_min_s,
        )
        windows.append(window)
        return time.perf_counter() - t0, window.repetitions

    def bare(reps: int) -> float:
        t0 = time.perf_counter()
        for _ in range(reps):
            run_once()
        return time.perf_counter() - t0

    overheads, bare_per_rep = [], []
    _, reps = measured()  # one more warm-up, which also sizes the bare loops
    for i in range(args.pairs):
        if i % 2 == 0:
            m_s, m_reps = measured()
            b_s = bare(reps)
        else:
            b_s = bare(reps)
            m_s, m_reps = measured()
        bare_rep, measured_rep = b_s / reps, m_s / m_reps
        overheads.append(100.0 * (measured_rep - bare_rep) / bare_rep)
        bare_per_rep.append(bare_rep)

    # What the harness itself adds to one window: meter reads and two clock reads per repetition.
    meter.start()
    n_reads = 200
    t0 = time.perf_counter()
    for _ in range(n_reads):
        meter.lap()
    read_s = (time.perf_counter() - t0) / n_reads
    t0 = time.perf_counter()
    for _ in range(10_000):
        time.perf_counter()
    clock_s = (time.perf_counter() - t0) / 10_000
    # The GPU watch of one window at its edges: a sample at each, the ECC counts, its thread.
    n_watches = 50
    t0 = time.perf_counter()
    for _ in range(n_watches):
        meter.watch().stop()
    watch_s = (time.perf_counter() - t0) / n_watches
    bare_rep_s = statistics.median(bare_per_rep)
    reps = max(protocol.min_repetitions, -(-protocol.min_duration_s // bare_rep_s))
    reads = 1 + (reps if per_rep else 1)
    window_s = reps * bare_rep_s
    accounted_pct = 100.0 * (reads * read_s + 2 * reps * clock_s + watch_s) / window_s
    health = window_columns(windows[-1].health)

    result = {
        "device": args.device,
        "gpu_name": meter.info().get("gpu_name", "none"),
        "shape": {"batch": args.batch, "input": args.input, "output": args.output},
        "meter": meter.name,
        "per_repetition_energy": per_rep,
        "bare_s_per_rep": bare_per_rep,
        "pair_overheads_pct": overheads,
        "overhead_median_pct": statistics.median(overheads),
        "overhead_accounted_pct": accounted_pct,
        "meter_read_ms": 1000.0 * read_s,
        "watch_ms": 1000.0 * watch_s,
        "last_window_health": health,
        **backend.versions(),
    }
    spread = 100.0 * statistics.pstdev(bare_per_rep) / bare_rep_s
    print(
        f"harness overhead on {result['gpu_name']} ({args.device}), batch {args.batch}, "
        f"{args.input} in / {args.output} out, meter {meter.name}:\n"
        f"  bare repetition      {bare_rep_s:.4f} s (spread across pairs {spread:.1f} %)\n"
        f"  measured - bare      {result['overhead_median_pct']:+.2f} % (median of {args.pairs} "
        f"pairs: {', '.join(f'{o:+.1f}' for o in overheads)})\n"
        f"  accounted for        {accounted_pct:.3f} % ({reads:.0f} meter reads of "
        f"{1000 * read_s:.2f} ms and a GPU watch of {1000 * watch_s:.2f} ms in a "
        f"{window_s:.2f} s window)\n"
        f"  last window's GPUs   {health['gpu_health']}: clock events "
        f"{health['clock_event_reasons']!r}, SM clock {health['sm_clock_min_mhz']:.0f} to "
        f"{health['sm_clock_max_mhz']:.0f} MHz, at most {health['gpu_temp_max_c']:.0f} C, "
        f"new ECC errors {health['ecc_errors_new']}, Xid {health['xid_errors']!r}, counter "
        f"backwards {health['energy_counter_backwards']}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    meter.close()
    backend.close()


if __name__ == "__main__":
    main()
