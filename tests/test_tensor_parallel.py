"""Tensor parallelism: planning of the family, and the transformers backend split over two and
four processes under torchrun on the CPU (gloo), through the real ``llm-energy measure``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from _pipeline import copy_pipeline, measure_command, run_snakemake

from llm_energy.config import validate
from llm_energy.errors import ConfigError
from llm_energy.measure.plan import plan_study
from llm_energy.measure.store import Journal

ROOT = Path(__file__).resolve().parents[1]


def _tp_config(tiny_config: dict, sizes: list[int]) -> dict:
    config = dict(tiny_config)
    config["experiments"] = {
        "tensor_parallel": {
            "enabled": True,
            "models": ["tiny"],
            "engines": ["pytorch"],
            "sizes": sizes,
            "batch_sizes": [1, 2],
            "input_tokens": 8,
            "output_tokens": 4,
        }
    }
    return validate(config)


def test_each_size_is_a_job_of_its_own_with_as_many_gpus(tiny_config):
    jobs = plan_study(_tp_config(tiny_config, [1, 2, 4]))
    assert sorted(jobs) == ["tiny__pytorch", "tiny__pytorch-tp2", "tiny__pytorch-tp4"]
    assert [jobs[g].engine.tensor_parallel_size for g in sorted(jobs)] == [1, 2, 4]
    for job in jobs.values():
        assert [(p.batch_size, p.experiments) for p in job.points] == [
            (1, ("tensor_parallel",)),
            (2, ("tensor_parallel",)),
        ]


def test_an_engine_that_already_spans_gpus_is_refused(tiny_config):
    config = _tp_config(tiny_config, [2])
    config["engines"]["pytorch"]["tensor_parallel_size"] = 2
    with pytest.raises(ConfigError, match="already spans 2 GPUs"):
        plan_study(config)


def test_a_sharded_engine_outside_torchrun_says_how_it_runs(tiny_config):
    from llm_energy.backends import make_backend

    job = plan_study(_tp_config(tiny_config, [2]))["tiny__pytorch-tp2"]
    backend = make_backend(job.model, job.engine, job.device, job.dtype)
    with pytest.raises(ConfigError, match="2 processes under torchrun"):
        backend.load(str(Path(job.model.config).parent), 0)


def _measure(plan, tmp_path: Path, name: str) -> tuple[pd.DataFrame, str]:
    plan_file = tmp_path / f"{name}.json"
    plan_file.write_text(plan.to_json())
    out = tmp_path / f"{name}.parquet"
    cmd, env = measure_command(plan_file, out, tmp_path / f"{name}.journal")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return pd.read_parquet(out), done.stdout


def test_two_processes_measure_every_point_once_with_one_row_each(tiny_config, tmp_path):
    jobs = plan_study(_tp_config(tiny_config, [1, 2]))
    one, _ = _measure(jobs["tiny__pytorch"], tmp_path, "tp1")
    two, log = _measure(jobs["tiny__pytorch-tp2"], tmp_path, "tp2")
    assert "tensor parallel over 2 processes" in log
    assert len(two) == 2 and two["point_id"].is_unique
    assert two["feasible"].all()
    assert (two["tensor_parallel_size"] == 2).all()
    assert two["engine_detail"].str.contains("tensor parallel over 2 processes").all()
    assert (two["generated_tokens"].to_numpy() == one["generated_tokens"].to_numpy()).all()
    assert (two["duration_s"] > 0).all()
    # Rerunning finds every point in the journal and still releases the other rank.
    _, log = _measure(jobs["tiny__pytorch-tp2"], tmp_path, "tp2")
    assert "2 already in the journal" in log
    # Each command is one run of the job, its ranks part of it, not runs of their own.
    runs = Journal(tmp_path / "tp2.journal").runs()
    assert [(r["outcome"], r["exit_status"]) for r in runs] == [("finished", 0)] * 2
    assert json.loads(jobs["tiny__pytorch-tp2"].to_json())["engine"]["tensor_parallel_size"] == 2


def test_four_processes_split_every_layer_and_agree_with_one(tiny_config, tmp_path):
    """Four ranks, as on a machine with four GPUs: the tiny model with four key-value heads so
    that each rank holds one."""
    model = json.loads((ROOT / "resources/models/tiny-llama/config.json").read_text())
    model["num_key_value_heads"] = 4
    (tmp_path / "tiny4").mkdir()
    (tmp_path / "tiny4/config.json").write_text(json.dumps(model))
    config = dict(tiny_config)
    config["models"] = {"tiny": {**tiny_config["models"]["tiny"]}}
    config["models"]["tiny"]["config"] = str(tmp_path / "tiny4/config.json")
    jobs = plan_study(_tp_config(config, [1, 4]))
    one, _ = _measure(jobs["tiny__pytorch"], tmp_path, "tp1")
    four, log = _measure(jobs["tiny__pytorch-tp4"], tmp_path, "tp4")
    assert "tensor parallel over 4 processes" in log
    assert len(four) == 2 and four["point_id"].is_unique and four["feasible"].all()
    assert (four["tensor_parallel_size"] == 4).all()
    assert (four["generated_tokens"].to_numpy() == one["generated_tokens"].to_numpy()).all()


def test_vllm_options_reach_the_engines_of_several_gpus_only(tiny_config):
    config = _tp_config(tiny_config, [1, 2])
    config["engines"]["vllm"] = {"backend": "vllm", "cuda_graphs": True}
    config["experiments"]["tensor_parallel"]["engines"] = ["pytorch", "vllm"]
    config["experiments"]["tensor_parallel"]["vllm_options"] = {"disable_custom_all_reduce": True}
    jobs = plan_study(validate(config))
    assert jobs["tiny__vllm-tp2"].engine.options == {"disable_custom_all_reduce": True}
    assert jobs["tiny__vllm"].engine.options == {}
    assert jobs["tiny__pytorch-tp2"].engine.options == {}


@pytest.mark.integration
def test_the_workflow_measures_two_process_jobs_and_draws_fig6(tmp_path):
    import yaml

    work = copy_pipeline(tmp_path)
    config = yaml.safe_load((work / "config/smoke.yaml").read_text())
    # CodeCarbon's process mode would count rank 0's process only; the machine mode counts
    # every rank of a job running on the CPU.
    config["meter"]["codecarbon"]["tracking_mode"] = "machine"
    config["experiments"] = {
        "tensor_parallel": {
            "enabled": True,
            "models": ["tiny-llama"],
            "engines": ["pytorch"],
            "sizes": [1, 2],
            "batch_sizes": [1, 4],
            "input_tokens": 32,
            "output_tokens": 8,
        }
    }
    (work / "config/tp.yaml").write_text(yaml.safe_dump(config))
    args = ("--cores", "2", "--configfile", "config/tp.yaml")
    result = run_snakemake(work, *args, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (work / "results/figures/cpu/fig6_tensor_parallel.png").stat().st_size > 20_000
    table = pd.read_csv(work / "results/tables/cpu/tensor_parallel.csv")
    assert sorted(table["tensor_parallel_size"]) == [1, 1, 2, 2]
    two = table[table["tensor_parallel_size"] == 2]
    assert two["energy_change_pct"].notna().all() and two["latency_change_pct"].notna().all()
    log = (work / "logs/measure/cpu/tiny-llama__pytorch-tp2.log").read_text()
    assert "tensor parallel over 2 processes" in log


def test_vllm_cpu_workers_get_cores_of_their_own():
    from llm_energy.backends.vllm.backend import cpu_thread_binding
    from llm_energy.errors import BackendError

    assert cpu_thread_binding(2, [0, 1]) == "0|1"
    assert cpu_thread_binding(2, list(range(8))) == "0-3|4-7"
    assert cpu_thread_binding(2, [0, 2, 4, 6, 7]) == "0,2|4,6"
    with pytest.raises(BackendError, match="needs at least 4 cores"):
        cpu_thread_binding(4, [0, 1])


def _descendants(pid: int) -> set[int]:
    """The processes below ``pid``, from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(text.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_to_a_two_process_job_stops_every_rank_and_keeps_the_journal(tiny_config, tmp_path):
    import signal
    import time

    from llm_energy.measure.stop import EXIT_STOPPED

    config = _tp_config(tiny_config, [2])
    config["experiments"]["tensor_parallel"]["batch_sizes"] = [1, 2, 4, 8]
    config["protocol"]["min_duration_s"] = 0.5
    plan = plan_study(validate(config))["tiny__pytorch-tp2"]
    plan_file, out, journal = tmp_path / "p.json", tmp_path / "o.parquet", tmp_path / "j"
    plan_file.write_text(plan.to_json())
    cmd, env = measure_command(plan_file, out, journal)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not (journal.is_dir() and list(journal.glob("*.parquet"))):
        assert proc.poll() is None and time.monotonic() < deadline, "no point was measured"
        time.sleep(0.1)
    tree = _descendants(proc.pid)
    assert len(tree) >= 3  # torchrun and its two ranks
    proc.send_signal(signal.SIGTERM)  # to the job's first process only, as a user would
    log = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == EXIT_STOPPED, log[-3000:]
    assert "stopped by SIGTERM" in log
    assert not [p for p in tree if _alive(p)], "a rank outlived the job"
    kept = {p.name: p.read_bytes() for p in journal.glob("*.parquet")}
    assert 1 <= len(kept) < len(plan.points)
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    table = pd.read_parquet(out)
    assert len(table) == len(plan.points) and table["point_id"].is_unique
    assert {n: (journal / n).read_bytes() for n in kept} == kept
