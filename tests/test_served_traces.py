"""Served streams through a real ``vllm serve`` (vLLM's CPU build, in its own environment): the
workflow measures and draws config/smoke_serving.yaml, and the job owns its server: stopped
when the job ends, fails, is terminated or killed, and when the server does not become
healthy."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _pipeline import copy_pipeline, measure_command, run_snakemake
from conftest import MIRROR, require_mirror

from llm_energy.backends.vllm_server.process import group_pids
from llm_energy.measure.stop import EXIT_STOPPED

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "config/smoke_serving.yaml"
TEST_CONFIG = "config/test_serving.yaml"
OUTPUTS = ("fig_serving_rate", "fig_serving_pareto", "table_served_traces")

pytestmark = pytest.mark.integration


def _config(vllm_python: str) -> dict:
    """config/smoke_serving.yaml measuring time only (energy NaN: no meter)."""
    config = yaml.safe_load((ROOT / CONFIG).read_text())
    config["interpreters"]["vllm"] = vllm_python
    config["mirror"] = {"data": str(MIRROR)}
    config["meter"] = {"primary": "none"}
    return config


def _pgids(log: str) -> list[int]:
    """The process groups of the servers a job log says it started."""
    return [int(g) for g in re.findall(r"healthy after .*process group (\d+)\)", log)]


@pytest.fixture(scope="module")
def served_workflow(tmp_path_factory, vllm_python) -> tuple[Path, subprocess.CompletedProcess]:
    """The workflow of config/smoke_serving.yaml, its server's first port taken."""
    require_mirror("traces")
    work = copy_pipeline(tmp_path_factory.mktemp("serving-pipeline"))
    config = _config(vllm_python)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config["experiments"]["served_traces"]["port"] = taken.getsockname()[1]
        (work / TEST_CONFIG).write_text(yaml.safe_dump(config))
        result = run_snakemake(
            work,
            *OUTPUTS,
            *("--cores", "2", "--configfile", TEST_CONFIG),
            timeout=1500,
            env=dict(os.environ, HF_HUB_OFFLINE="1"),
        )
    return work, result


def _logs(work: Path) -> str:
    return "\n".join(
        f"--- {p}\n{p.read_text()[-3000:]}" for p in sorted(work.rglob("logs/**/*.log"))
    )


def test_the_workflow_serves_the_requests_and_draws_them(served_workflow):
    work, result = served_workflow
    assert result.returncode == 0, result.stderr[-3000:] + _logs(work)
    table = pd.read_parquet(work / "results/aggregate/cpu/measurements.parquet")
    assert table["backend"].eq("vllm_server").all()
    assert table["backend_version"].eq("vllm 0.32.0 (server)").all()
    served = table[table["serving"] == "served"]
    assert sorted(zip(served["arrival"], served["request_rate"], strict=True)) == [
        ("poisson", 2.0),
        ("poisson", 8.0),
        ("trace", 2.0),
        ("trace", 8.0),
    ]
    offline = table[table["serving"] == "offline"]
    assert len(offline) == 1 and offline["batch_size"].eq(4).all()
    # Every request served, none failed.
    assert served["requests"].eq(12).all() and served["requests_failed"].eq(0).all()
    assert (served["repetitions"] == 1).all() and served["feasible"].all()
    # Latency: percentiles in order, first token before the last. A request whose tokens all
    # reached the client in one chunk (a loaded CPU server streams several steps at once) has
    # no time between its first and last token: its time per output token is 0, not missing.
    for name in ("ttft", "tpot", "e2e"):
        assert (served[f"{name}_p50_s"] >= (0 if name == "tpot" else 1e-9)).all(), name
        assert (served[f"{name}_p50_s"] <= served[f"{name}_p99_s"]).all()
    assert (served["tpot_p99_s"] > 0).any()
    # Its end-to-end time is its time to first token.
    assert (served["ttft_p50_s"] <= served["e2e_p50_s"]).all()
    assert (served["ttft_p50_s"] < served["e2e_p50_s"]).any()
    # The steady state lies inside the run and keeps part of it.
    assert (served["steady_state_s"] > 0).all()
    assert (served["steady_state_s"] <= served["run_s"]).all()
    assert served["steady_state_fraction"].between(0, 1, inclusive="right").all()
    assert (served["steady_state_requests"] <= 12).all()
    assert (served["duration_s"] == served["steady_state_s"]).all()
    # No meter: every energy column is NaN, never zero.
    for col in ("energy_j", "energy_per_request_j", "energy_per_output_token_j"):
        assert table[col].isna().all(), col
    assert table["energy_source"].eq("none").all()
    config = served["server_config"].iloc[0]
    assert '"enforce_eager":true' in config and '"max_num_seqs":4' in config
    assert '"enable_prefix_caching":false' in config and '"load_format":"dummy"' in config
    drawn = pd.read_csv(work / "results/tables/cpu/served_traces.csv")
    assert len(drawn) == 4 and drawn["offline_energy_per_request_j"].isna().all()
    for name in ("fig_serving_energy_per_request", "fig_serving_pareto"):
        assert (work / f"results/figures/cpu/{name}.png").stat().st_size > 10_000


def test_the_workflow_leaves_no_server_behind(served_workflow):
    work, result = served_workflow
    assert result.returncode == 0
    log = (work / "logs/measure/cpu/tiny-llama__vllm-eager-served-s4.log").read_text()
    assert "vllm serve| " in log  # the server's own output, in the job's log
    taken = yaml.safe_load((work / TEST_CONFIG).read_text())["experiments"]["served_traces"]
    assert f"port {taken['port']} is in use; the server takes port" in log
    pgids = _pgids(log)
    assert pgids and all(group_pids(g) == [] for g in pgids)
    assert "vllm serve: stopping" in log


# --- the job owns its server -------------------------------------------------------------------


def _job(tmp_path: Path, vllm_python: str, **changes) -> tuple[list[str], dict[str, str]]:
    """``llm-energy measure`` of the smoke configuration's served job, in the vLLM
    environment, with the prepared trace from the mirror."""
    from llm_energy.config import validate
    from llm_energy.measure.plan import plan_study

    require_mirror("traces")
    config = _config(vllm_python)
    block = config["experiments"]["served_traces"]
    block.update(changes.pop("block", {}))
    config["engines"]["vllm-eager"].update(changes.pop("engine", {}))
    config["models"]["tiny-llama"]["config"] = str(ROOT / "resources/models/tiny-llama")
    job = next(iter(plan_study(validate(config)).values()))
    plan = tmp_path / "plan.json"
    plan.write_text(job.to_json())
    traces = tmp_path / "traces"
    cmd, env = measure_command(plan, tmp_path / "out.parquet", tmp_path / "journal")
    prepared = traces / f"{block['trace']}.parquet"
    prepare = ["prepare-trace", block["trace"], "--out", str(prepared), "--mirror", str(MIRROR)]
    subprocess.run(
        [cmd[0], "-m", "llm_energy", *prepare],
        check=True,
        env=env,
        capture_output=True,
    )
    cmd[0] = vllm_python
    cmd += ["--traces", str(changes.pop("traces", traces))]
    return cmd, dict(env, HF_HUB_OFFLINE="1")


def test_a_job_terminated_mid_run_stops_its_server(tmp_path, vllm_python):
    """SIGTERM, as scancel and Snakemake send it: the job stops the server's process group,
    then stops as every measurement job does (exit 75, its journal kept for a rerun)."""
    cmd, env = _job(tmp_path, vllm_python, block={"requests": 200, "request_rates": [1]})
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    lines, pgids = [], []
    for line in proc.stdout:
        lines.append(line)
        pgids = _pgids(line)
        if pgids:
            break
    assert pgids, "".join(lines[-40:])
    time.sleep(3)  # mid-run: the warm-up or the first replay
    assert group_pids(pgids[0])
    proc.send_signal(signal.SIGTERM)
    rest = proc.stdout.read()
    assert proc.wait(timeout=120) == EXIT_STOPPED
    assert "the job received SIGTERM" in rest and "stopping (process group" in rest
    assert group_pids(pgids[0]) == []


def test_a_job_that_fails_after_its_server_started_stops_it(tmp_path, vllm_python):
    """The prepared trace is missing: the first served point fails once the server serves."""
    cmd, env = _job(tmp_path, vllm_python, traces=tmp_path / "no-traces")
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-3000:]
    assert "prepared lengths not found" in result.stderr
    pgids = _pgids(result.stdout)
    assert pgids and group_pids(pgids[0]) == []
    assert "vllm serve: stopping" in result.stdout


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"engine": {"options": {"bogus_option": 1}}}, r"exited with status \d+ before it was"),
        ({"block": {"health_timeout_s": 2}}, r"was not healthy after 2 s"),
    ],
    ids=["bogus-option", "health-timeout"],
)
def test_a_server_that_does_not_become_healthy_fails_the_job_with_its_last_lines(
    tmp_path, vllm_python, changes, message
):
    cmd, env = _job(tmp_path, vllm_python, **changes)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-3000:]
    error = result.stderr
    assert re.search(r"llm-energy: error: vllm serve " + message, error), error
    assert "its last lines:" in error
    if "bogus_option" in str(changes):
        assert "--bogus-option" in error  # vLLM's own complaint, from the server's output
    group = re.search(r"stopping \(process group (\d+)\)", result.stdout)
    started = re.search(r"starting on [\d.]+:(\d+)", result.stdout)
    assert started
    if group:
        assert group_pids(int(group.group(1))) == []
    assert not (tmp_path / "out.parquet").exists()


def _slurm_up() -> bool:
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10
        )
    except (subprocess.TimeoutExpired, OSError):
        return False
    return out.returncode == 0 and bool(re.search(r"idle|mixed|allocated", out.stdout))


# As tests/test_slurm.py: a 2-core node with fake GPUs, no accounting database.
SLURM_SITE = (
    *("--slurm-status-command", "squeue"),
    *("--slurm-init-seconds-before-status-checks", "5"),
    *("--latency-wait", "5"),
    "--set-resources",
    *("measure:slurm_partition=gpu", "measure:gpu=1", "measure:mem_mb=6000"),
    *("measure:cpus_per_task=2", "measure:runtime=20"),
    "--default-resources",
    *("mem_mb=1000", "runtime=10", "cpus_per_task=1", "slurm_partition=cpu"),
)


def test_scancel_of_a_served_job_leaves_no_server(tmp_path, vllm_python):
    """The workflow through the Slurm profile; the measurement job is cancelled once its
    server serves: Slurm's SIGTERM reaches the job, which stops the server's process group."""
    if not _slurm_up():
        if os.environ.get("LLM_ENERGY_REQUIRE_SLURM") == "1":
            pytest.fail("Slurm is required (LLM_ENERGY_REQUIRE_SLURM=1) but sinfo finds no node")
        pytest.skip("no Slurm controller answers (start one with tests/slurm/start-slurm.sh)")
    require_mirror("traces")
    work = copy_pipeline(tmp_path)
    config = _config(vllm_python)
    config["experiments"]["served_traces"].update(requests=200, request_rates=[1])
    (work / TEST_CONFIG).write_text(yaml.safe_dump(config))
    log = work / "logs/measure/cpu/tiny-llama__vllm-eager-served-s4.log"
    # No retries: the profile's would submit the cancelled job again.
    args = ("--profile", "profiles/slurm", *SLURM_SITE, "--retries", "0")
    args += ("--configfile", TEST_CONFIG)
    proc = subprocess.Popen(
        [sys.executable, "-m", "snakemake", *args, "--", "table_served_traces"],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 600
        pgids: list[int] = []
        while not pgids and time.monotonic() < deadline:
            assert proc.poll() is None, "".join(lines[-60:])
            pgids = _pgids(log.read_text()) if log.is_file() else []
            time.sleep(1)
        assert pgids, "the job's server did not become healthy within 600 s"
        # Only this workflow's measurement job: others may share the controller.
        ids = re.findall(r"submitted with SLURM jobid (\d+)", "".join(lines))
        assert ids, "".join(lines[-60:])
        subprocess.run(["scancel", ids[-1]], check=True, timeout=10)
        assert proc.wait(timeout=300) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 60
    while group_pids(pgids[0]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert group_pids(pgids[0]) == []
    assert "stopping (process group" in log.read_text()
