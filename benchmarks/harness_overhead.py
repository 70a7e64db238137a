"""Overhead of the measurement harness over a bare ``generate`` loop, and the meter's read cost.

    python benchmarks/harness_overhead.py --model-dir DIR [--device cuda --dtype bfloat16]
        [--batch 8 --input 512 --output 64 --reps 5 --blocks 3 --meter nvml] [--json OUT]

Bare and measured blocks alternate so that drift (clocks, temperature) hits both alike. The
overhead is the difference of the median per-repetition times, over the bare median. This is a
benchmark that reports numbers, not a test with a threshold.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from llm_energy.backends import make_backend
from llm_energy.meters import make_meter
from llm_energy.protocol import measure_window
from llm_energy.spec import DecodingSpec, EngineSpec, ModelSpec, ProtocolSpec
from llm_energy.workloads import random_prompts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model-dir", required=True, help="folder with the architecture's config.json")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--input", type=int, default=512)
    ap.add_argument("--output", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5, help="repetitions per block")
    ap.add_argument("--blocks", type=int, default=3, help="bare/measured block pairs")
    ap.add_argument("--meter", default="nvml")
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args()

    model = ModelSpec(name=Path(args.model_dir).name, hub_id="local", weights="random")
    backend = make_backend(
        model, EngineSpec(name="pytorch", backend="transformers"), args.device, args.dtype
    )
    backend.load(args.model_dir, seed=0)
    prepared = backend.prepare(random_prompts(backend.vocab_size, args.batch, args.input, 0))
    greedy = DecodingSpec()

    def run_once() -> None:
        backend.generate(prepared, args.output, greedy)
        backend.synchronize()

    meter = make_meter(args.meter, args.device, backend.device_uuids() or None)
    protocol = ProtocolSpec(
        min_duration_s=0.0, min_repetitions=args.reps, max_repetitions=args.reps
    )
    run_once()
    run_once()
    bare, measured = [], []
    for _ in range(args.blocks):
        t0 = time.perf_counter()
        for _ in range(args.reps):
            run_once()
        bare.append((time.perf_counter() - t0) / args.reps)
        t0 = time.perf_counter()
        window = measure_window(run_once, meter, protocol)
        measured.append((time.perf_counter() - t0) / args.reps)
    # Cost of one meter read (a lap) with nothing running.
    meter.start()
    n_reads = 200
    t0 = time.perf_counter()
    for _ in range(n_reads):
        meter.lap()
    read_s = (time.perf_counter() - t0) / n_reads

    bare_s, measured_s = statistics.median(bare), statistics.median(measured)
    result = {
        "device": args.device,
        "gpu_name": meter.info().get("gpu_name", "none"),
        "shape": {"batch": args.batch, "input": args.input, "output": args.output},
        "meter": meter.name,
        "bare_s_per_rep": bare,
        "measured_s_per_rep": measured,
        "bare_median_s": bare_s,
        "measured_median_s": measured_s,
        "overhead_pct": 100.0 * (measured_s - bare_s) / bare_s,
        "meter_read_ms": 1000.0 * read_s,
        "last_window_energy_j_per_rep": window.energy_j,
        **backend.versions(),
    }
    print(
        f"harness overhead on {result['gpu_name']} ({args.device}), batch {args.batch}, "
        f"{args.input} in / {args.output} out, meter {meter.name}:"
    )
    print(f"  bare     {bare_s:.4f} s/rep  (blocks: {', '.join(f'{b:.4f}' for b in bare)})")
    print(f"  measured {measured_s:.4f} s/rep  (blocks: {', '.join(f'{m:.4f}' for m in measured)})")
    overhead, read_ms = result["overhead_pct"], result["meter_read_ms"]
    print(f"  overhead {overhead:+.2f} %   one meter read {read_ms:.3f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    meter.close()
    backend.close()


if __name__ == "__main__":
    main()
