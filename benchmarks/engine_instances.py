"""How large is the engine-instance variance? The same points measured after several fresh
engine starts, for PyTorch eager (transformers), vLLM eager (``enforce_eager``) and vLLM with
CUDA graphs, plus the cost of starting each engine.

    python benchmarks/engine_instances.py --model-dir DIR --out OUT [--rounds 3]
        [--engines pytorch,vllm-eager,vllm] [--batches 1,64] [--input 512 --output 64]
        [--windows 2] [--bare start|end] [--budget-s 500 --hard-s 560] [--call 1]
        [--device cuda --dtype bfloat16 --meter nvml --hardware h200]

Each engine instance is a fresh process of the package's own job command,
``python -m llm_energy measure --plan P --out T --journal J``, with a fresh journal, so nothing
is resumed. A round starts one instance of every engine, in the order given, so that drift
spreads over all of them. Every plan holds each batch ``--windows`` times, as points that differ
only in their protocol's seed (other random prompts, the same lengths), so that one instance
gives independent windows of the same point: the within-instance spread.

With ``--bare start`` (or ``end``), each vLLM variant is also started bare before (after) the
rounds, each in a fresh process: ``LLM(model=DIR, load_format="dummy",
skip_tokenizer_init=True, enforce_eager=..., enable_prefix_caching=False, dtype="bfloat16")``,
with the import of vLLM timed apart.

Under OUT: ``rows.parquet`` (every instance's rows, with ``engine_instance`` 1..N, ``window``
and ``engine_label``), ``engine_start.csv`` (one line per started process) and ``log.txt``
(every child's output, timestamped). Both tables are rewritten after every process, and hold
every process of this machine so far (the work folder keeps them between calls), so a stop at
any point loses only the process in flight. A process is started only if the time it took the
last time still fits in ``--budget-s``; one still running at ``--hard-s`` is stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ENGINES: dict[str, tuple[str, dict[str, Any]]] = {
    "pytorch": ("PyTorch eager", {"backend": "transformers"}),
    "vllm-eager": ("vLLM eager", {"backend": "vllm", "cuda_graphs": False}),
    "vllm": ("vLLM CUDA graphs", {"backend": "vllm", "cuda_graphs": True}),
}
BARE = {"vllm-eager": True, "vllm": False}  # engine -> enforce_eager
# Seconds a process is expected to take before any has run (later: the last one's time).
PRIOR_S = {"pytorch": 80, "vllm-eager": 90, "vllm": 150, "bare-vllm-eager": 60, "bare-vllm": 120}
COMPILE_CACHE = Path.home() / ".cache" / "vllm" / "torch_compile_cache"

# Lines of the children's logs that time parts of the start.
PATTERNS = {
    "first_line_s": re.compile(r"rerun by hand: "),
    "loaded_s": re.compile(r"^loaded .* on \S+ in ([\d.]+) s"),
    "vllm_model_load_s": re.compile(
        r"Model loading took [\d.]+ GiB(?: memory)? and ([\d.]+) seconds"
    ),
    "vllm_init_engine_s": re.compile(
        r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) s"
    ),
    "vllm_compile_s": re.compile(r"\(compilation: ([\d.]+) s"),
    "vllm_graph_capture_s": re.compile(r"Graph capturing finished in ([\d.]+) secs"),
    "compile_cache_hit": re.compile(r"Directly load the compiled graph"),
    "bare_result": re.compile(r"^BARE_RESULT (\{.*\})$"),
}


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# ------------------------------------------------------------------ bare vLLM start (child)


def bare_child(model_dir: str, enforce_eager: bool) -> None:
    """Runs in a fresh process: time the import of vLLM, then ``LLM(...)``."""
    t0 = time.perf_counter()
    from vllm import LLM

    t1 = time.perf_counter()
    llm = LLM(
        model=model_dir,
        load_format="dummy",
        skip_tokenizer_init=True,
        enforce_eager=enforce_eager,
        enable_prefix_caching=False,
        dtype="bfloat16",
    )
    t2 = time.perf_counter()
    cfg = llm.llm_engine.vllm_config
    result = {
        "import_s": t1 - t0,
        "llm_init_s": t2 - t1,
        "max_num_seqs": int(cfg.scheduler_config.max_num_seqs),
        "max_model_len": int(cfg.model_config.max_model_len),
        "enforce_eager": bool(cfg.model_config.enforce_eager),
        "cudagraph_sizes": len(
            getattr(cfg.compilation_config, "cudagraph_capture_sizes", None) or []
        ),
    }
    print("BARE_RESULT " + json.dumps(result), flush=True)
    shutdown = getattr(llm.llm_engine, "shutdown", None)
    if callable(shutdown):
        shutdown()


# ------------------------------------------------------------------ plans


def build_plan(engine: str, args: argparse.Namespace) -> Any:
    from llm_energy.measure.job import (
        DecodingSpec,
        EngineSpec,
        JobPlan,
        MeterSpec,
        ModelSpec,
        PointSpec,
        ProtocolSpec,
    )

    _label, options = ENGINES[engine]
    # One trial per point: a point's windows are points of their own (``window``), so that
    # each engine start gives several independent windows of the same shape.
    base = ProtocolSpec(
        min_duration_s=2.0,
        min_repetitions=3,
        measure_prefill=False,
        idle_duration_s=args.idle_s,
        min_trials=1,
        max_trials=1,
    )
    points = tuple(
        PointSpec(
            batch_size=b,
            input_tokens=args.input,
            output_tokens=args.output,
            decoding=DecodingSpec(),
            experiments=("engine_instances",),
            protocol=dataclasses.replace(base, seed=w),
        )
        for b in args.batches
        for w in range(args.windows)
    )
    return JobPlan(
        group=f"llama-3.1-8b__{engine}",
        hardware=args.hardware,
        device=args.device,
        dtype=args.dtype,
        model=ModelSpec(
            name="llama-3.1-8b",
            hub_id="meta-llama/Llama-3.1-8B",
            weights="random",
            config=str(Path(args.model_dir).resolve()),
        ),
        engine=EngineSpec(name=engine, **options),
        meter=MeterSpec(primary=args.meter),
        protocol=base,
        points=points,
        mirror={"models": None},
    )


# ------------------------------------------------------------------ processes


def gpu_state() -> dict[str, Any]:
    """Temperature, power, memory in use and compute processes, from nvidia-smi (NaN without)."""
    state: dict[str, Any] = {
        "gpu_temp_c": float("nan"),
        "gpu_power_w": float("nan"),
        "gpu_mem_used_mib": float("nan"),
        "gpu_procs": -1,
    }
    try:
        q = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=temperature.gpu,power.draw,memory.used",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=10,
        )
        t, p, m = (v.strip() for v in q.stdout.splitlines()[0].split(","))
        state.update(gpu_temp_c=float(t), gpu_power_w=float(p), gpu_mem_used_mib=float(m))
        a = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        state["gpu_procs"] = len([x for x in a.stdout.split() if x.strip()])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        pass
    return state


def wait_gpu_free(log: Any, timeout_s: float = 20.0) -> dict[str, Any]:
    """Wait until no compute process holds the GPU (the last engine's workers gone)."""
    t0 = time.monotonic()
    state = gpu_state()
    while state["gpu_procs"] > 0 and time.monotonic() - t0 < timeout_s:
        time.sleep(1.0)
        state = gpu_state()
    if state["gpu_procs"] > 0:
        log(f"warning: {state['gpu_procs']} compute process(es) still on the GPU")
    return state


def kill_tree(proc: subprocess.Popen) -> None:
    try:
        import psutil

        parent = psutil.Process(proc.pid)
        for child in parent.children(recursive=True):
            child.kill()
        parent.kill()
    except Exception:
        proc.kill()


def run_child(cmd: list[str], tag: str, logf: Any, env: dict[str, str], deadline: float) -> dict:
    """Run ``cmd``, copy its output to the log with times since its start, and note when the
    lines of PATTERNS appeared (seconds since start) and what they said."""
    found: dict[str, Any] = {}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1
    )

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            t = time.perf_counter() - t0
            line = line.rstrip("\n")
            logf.write(f"[{tag} +{t:7.2f}s] {line}\n")
            for key, pat in PATTERNS.items():
                m = pat.search(line)
                if m and key not in found:
                    found[key] = (t, m.group(1) if m.groups() else None)
        logf.flush()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=max(deadline - time.monotonic(), 1.0))
    except subprocess.TimeoutExpired:
        logf.write(f"[{tag}] stopped at the hard limit\n")
        kill_tree(proc)
        proc.wait()
    reader.join(timeout=10)
    return {"found": found, "process_s": time.perf_counter() - t0, "exit_code": proc.returncode}


def compile_cache_entries() -> int:
    return sum(1 for _ in COMPILE_CACHE.rglob("*")) if COMPILE_CACHE.is_dir() else 0


# ------------------------------------------------------------------ driver


class Driver:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out)
        self.work = Path(args.work)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        self.t_start = time.monotonic()
        self.logf = open(self.out / "log.txt", "a", buffering=1)  # noqa: SIM115
        self.state_path = self.work / "state.json"
        self.state = (
            json.loads(self.state_path.read_text())
            if self.state_path.is_file()
            else {"next_instance": {}, "order": 0, "last_s": {}}
        )
        self.env = dict(os.environ)
        self.env.update(
            PYTHONUNBUFFERED="1",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            VLLM_USE_FLASHINFER_SAMPLER=args.flashinfer_sampler,
        )

    def log(self, msg: str) -> None:
        line = f"[driver {self.elapsed():6.1f}s] {msg}"
        print(line, flush=True)
        self.logf.write(line + "\n")

    def elapsed(self) -> float:
        return time.monotonic() - self.t_start

    def fits(self, kind: str) -> bool:
        expected = self.state["last_s"].get(kind, PRIOR_S[kind])
        ok = self.elapsed() + expected <= self.args.budget_s
        if not ok:
            self.log(f"not starting {kind}: it took {expected:.0f} s, {self.elapsed():.0f} s used")
        return ok

    def save_state(self) -> None:
        self.state_path.write_text(json.dumps(self.state, indent=1))

    def record_start(self, row: dict[str, Any]) -> None:
        import pandas as pd

        path = self.work / "engine_start.csv"
        table = pd.read_csv(path) if path.is_file() else pd.DataFrame()
        table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
        table.to_csv(path, index=False)
        table.to_csv(self.out / "engine_start.csv", index=False)

    def record_rows(self, rows: Any) -> None:
        import pandas as pd

        path = self.work / "rows.parquet"
        table = pd.read_parquet(path) if path.is_file() else pd.DataFrame()
        table = pd.concat([table, rows], ignore_index=True)
        table.to_parquet(path, index=False)
        table.to_parquet(self.out / "rows.parquet", index=False)

    def common(self, engine: str, kind: str, before: dict[str, Any]) -> dict[str, Any]:
        self.state["order"] += 1
        return {
            "kind": kind,
            "engine": engine,
            "engine_label": ENGINES[engine][0],
            "call": self.args.call,
            "order": self.state["order"],
            "started_utc": utc_now(),
            "compile_cache_entries_before": compile_cache_entries(),
            **{f"{k}_before": v for k, v in before.items()},
        }

    def timings(self, res: dict) -> dict[str, Any]:
        f = res["found"]
        row: dict[str, Any] = {"process_s": res["process_s"], "exit_code": res["exit_code"]}
        for key in ("vllm_model_load_s", "vllm_init_engine_s", "vllm_compile_s"):
            row[key] = float(f[key][1]) if key in f else float("nan")
        row["vllm_graph_capture_s"] = (
            float(f["vllm_graph_capture_s"][1]) if "vllm_graph_capture_s" in f else float("nan")
        )
        row["compile_cache_hit"] = "compile_cache_hit" in f
        return row

    def bare(self, engine: str) -> None:
        kind = f"bare-{engine}"
        if not self.fits(kind):
            return
        before = wait_gpu_free(self.log)
        row = self.common(engine, "bare", before)
        row["engine_instance"] = 0
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--bare-child",
            "eager" if BARE[engine] else "graphs",
            "--model-dir",
            self.args.model_dir,
        ]
        self.log(f"bare start of {engine}")
        res = run_child(cmd, f"bare {engine}", self.logf, self.env, self.hard_deadline())
        result = json.loads(res["found"]["bare_result"][1]) if "bare_result" in res["found"] else {}
        row.update(self.timings(res))
        row["to_loaded_s"] = res["found"]["bare_result"][0] if result else float("nan")
        row["import_s"] = result.get("import_s", float("nan"))
        row["llm_init_s"] = result.get("llm_init_s", float("nan"))
        row["python_start_s"] = row["to_loaded_s"] - row["import_s"] - row["llm_init_s"]
        row["engine_detail"] = json.dumps(
            {k: result[k] for k in result if k not in ("import_s", "llm_init_s")}
        )
        self.state["last_s"][kind] = res["process_s"]
        self.record_start(row)
        self.save_state()
        self.log(
            f"bare {engine}: import {row['import_s']:.1f} s, LLM() {row['llm_init_s']:.1f} s, "
            f"process start to engine ready {row['to_loaded_s']:.1f} s, exit {res['exit_code']}"
        )

    def instance(self, engine: str) -> None:
        import pandas as pd

        from llm_energy.measure.point_ids import point_ids
        from llm_energy.measure.store import Journal

        if not self.fits(engine):
            return
        n = self.state["next_instance"].get(engine, 1)
        self.state["next_instance"][engine] = n + 1
        plan = build_plan(engine, self.args)
        stem = self.work / f"{engine}_i{n}"
        plan_path = stem.with_suffix(".plan.json")
        plan_path.write_text(plan.to_json())
        before = wait_gpu_free(self.log)
        row = self.common(engine, "job", before)
        row["engine_instance"] = n
        cmd = [
            sys.executable,
            "-m",
            "llm_energy",
            "measure",
            "--plan",
            str(plan_path),
            "--out",
            str(stem.with_suffix(".parquet")),
            "--journal",
            str(stem.with_suffix(".journal")),
        ]
        self.log(f"instance {n} of {engine}")
        res = run_child(cmd, f"{engine} i{n}", self.logf, self.env, self.hard_deadline())
        f = res["found"]
        row.update(self.timings(res))
        row["first_line_s"] = f["first_line_s"][0] if "first_line_s" in f else float("nan")
        row["to_loaded_s"] = f["loaded_s"][0] if "loaded_s" in f else float("nan")
        row["job_load_s"] = float(f["loaded_s"][1]) if "loaded_s" in f else float("nan")
        self.state["last_s"][engine] = res["process_s"]
        # The points finished, from the journal (the whole table if the job ended).
        journal = Journal(stem.with_suffix(".journal"))
        keys = point_ids(plan, journal.version)
        ids = {keys[p.key]: p for p in plan.points}
        rows = pd.DataFrame([journal.trials(pid)[0] for pid in ids if journal.has(pid)])
        row["points_measured"] = len(rows)
        self.record_start(row)
        self.save_state()
        if len(rows):
            rows["window"] = rows["point_id"].map(lambda p: ids[p].protocol.seed)
            rows["engine_instance"] = n
            rows["engine_label"] = ENGINES[engine][0]
            rows["call"] = self.args.call
            rows["instance_order"] = row["order"]
            rows["instance_started_utc"] = row["started_utc"]
            rows["instance_to_loaded_s"] = row["to_loaded_s"]
            self.record_rows(rows)
        shown = (
            pd.DataFrame(rows)[["batch_size", "window", "duration_s", "energy_j"]]
            if len(rows)
            else "no rows"
        )
        self.log(
            f"{engine} i{n}: loaded {row['to_loaded_s']:.1f} s after process start "
            f"(job's own load {row['job_load_s']:.1f} s), process {res['process_s']:.1f} s, "
            f"exit {res['exit_code']}, {len(rows)} points\n{shown}"
        )

    def hard_deadline(self) -> float:
        return self.t_start + self.args.hard_s

    def run(self) -> None:
        a = self.args
        self.log(f"call {a.call}: {' '.join(sys.argv)}")
        self.log(
            "VLLM_USE_FLASHINFER_SAMPLER="
            f"{self.env['VLLM_USE_FLASHINFER_SAMPLER']}, work folder {self.work}, "
            f"state {json.dumps(self.state)}"
        )
        try:
            smi = subprocess.run(
                [
                    "nvidia-smi",
                    "--query-gpu=name,driver_version,power.limit,clocks.max.sm,temperature.gpu",
                    "--format=csv",
                ],
                capture_output=True,
                text=True,
                timeout=20,
            )
            self.log(smi.stdout.strip())
        except (OSError, subprocess.SubprocessError) as exc:
            self.log(f"no nvidia-smi: {exc}")
        bare = [e for e in a.engines if e in BARE] if a.bare != "none" else []
        if a.bare == "start":
            for engine in bare:
                self.bare(engine)
        for _ in range(a.rounds):
            if not self.fits(a.engines[0]):
                break
            for engine in a.engines:
                self.instance(engine)
        if a.bare == "end":
            for engine in bare:
                self.bare(engine)
        self.log("done")
        try:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            import engine_instances_summary as summary

            rows = self.work / "rows.parquet"
            starts = self.work / "engine_start.csv"
            if rows.is_file():
                print(summary.markdown(str(rows), str(starts)), flush=True)
        except Exception as exc:  # the tables are written; the summary is a convenience
            self.log(f"no summary: {exc!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model-dir", required=True, help="folder with the architecture's config.json")
    ap.add_argument("--out", default=os.environ.get("OUT", "engine_instances_out"))
    ap.add_argument("--work", default="/tmp/engine_instances", help="scratch, kept between calls")
    ap.add_argument("--engines", default="pytorch,vllm-eager,vllm")
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--input", type=int, default=512)
    ap.add_argument("--output", type=int, default=64)
    ap.add_argument("--windows", type=int, default=2, help="windows of each point per instance")
    ap.add_argument("--rounds", type=int, default=3, help="at most this many instances per engine")
    ap.add_argument("--idle-s", type=float, default=2.0, help="idle-power window of each job")
    ap.add_argument(
        "--bare",
        choices=("none", "start", "end"),
        default="none",
        help="also time bare vLLM starts, before or after the rounds",
    )
    ap.add_argument("--budget-s", type=float, default=500.0)
    ap.add_argument("--hard-s", type=float, default=560.0)
    ap.add_argument("--call", type=int, default=1, help="label of this device call")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--meter", default="nvml")
    ap.add_argument("--hardware", default="h200")
    ap.add_argument("--flashinfer-sampler", default="0", help="VLLM_USE_FLASHINFER_SAMPLER")
    ap.add_argument("--bare-child", choices=("eager", "graphs"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare_child:
        bare_child(args.model_dir, args.bare_child == "eager")
        return
    args.engines = [e for e in args.engines.split(",") if e]
    unknown = set(args.engines) - set(ENGINES)
    if unknown:
        ap.error(f"unknown engines {sorted(unknown)}")
    args.batches = [int(b) for b in args.batches.split(",")]
    Driver(args).run()


if __name__ == "__main__":
    main()
