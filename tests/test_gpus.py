"""Local runs on a machine with several GPUs: each job claims free GPUs by lock files."""

from __future__ import annotations

import subprocess
import sys

import pytest

from llm_energy.errors import MeterUnavailableError
from llm_energy.measure import gpu_claims as gpus

PROBE = (
    "import sys; from pathlib import Path; from llm_energy.measure import gpu_claims as gpus; "
    "from llm_energy.errors import MeterUnavailableError\n"
    "try:\n    print(gpus.claim(1, 4, Path(sys.argv[1]), poll_s=0.05, timeout_s=0.3))\n"
    "except MeterUnavailableError as exc:\n    print('busy', exc)"
)


def _claim_elsewhere(lock_dir) -> str:
    """What another process gets when it claims one of the 4 GPUs: '[i]' or 'busy ...'."""
    env = {"PYTHONPATH": str(gpus.__file__).rsplit("/llm_energy/", 1)[0]}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(lock_dir)],
        env=env,
        text=True,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[-1]


def test_jobs_claim_different_gpus_and_a_finished_job_frees_its_own(tmp_path):
    first = gpus.claim(2, 4, tmp_path, log=lambda m: None)
    second = gpus.claim(2, 4, tmp_path, log=lambda m: None)
    assert sorted(first + second) == [0, 1, 2, 3]
    # Another process finds every GPU taken until these locks are released.
    assert _claim_elsewhere(tmp_path).startswith("busy")
    for handle in gpus._HELD[-2:]:
        handle.close()
    del gpus._HELD[-2:]
    assert _claim_elsewhere(tmp_path) in {f"[{i}]" for i in second}
    for handle in gpus._HELD:
        handle.close()
    gpus._HELD.clear()


def test_a_job_larger_than_the_machine_is_refused(tmp_path):
    with pytest.raises(MeterUnavailableError, match="needs 4 GPU"):
        gpus.claim(4, 2, tmp_path)


def test_nothing_is_chosen_where_a_scheduler_chose_or_there_is_no_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert gpus.choose_gpus(1) is None
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(gpus, "gpu_count", lambda: 0)
    assert gpus.choose_gpus(1) is None
    assert "CUDA_VISIBLE_DEVICES" not in __import__("os").environ


def test_a_job_that_needs_every_gpu_waits_for_the_jobs_holding_one(monkeypatch, tmp_path):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv(gpus.LOCK_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(gpus, "gpu_count", lambda: 2)
    held = gpus.claim(1, 2, tmp_path)  # another job's GPU (this process stands in for it)
    with pytest.raises(MeterUnavailableError, match="no 2 free GPU"):
        gpus.claim(2, 2, tmp_path, poll_s=0.01, timeout_s=0.05)
    assert held == [0]
    for handle in gpus._HELD:
        handle.close()
    gpus._HELD.clear()
    assert gpus.choose_gpus(2) == "0,1"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.delenv("CUDA_DEVICE_ORDER")
    for handle in gpus._HELD:
        handle.close()
    gpus._HELD.clear()


def test_free_gpus_are_set_for_the_job(monkeypatch, tmp_path):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv(gpus.LOCK_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(gpus, "gpu_count", lambda: 4)
    messages: list[str] = []
    value = gpus.choose_gpus(2, messages.append)
    import os

    assert value == os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert "GPUs 0,1 of 4 chosen" in messages[-1]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.delenv("CUDA_DEVICE_ORDER")
    for handle in gpus._HELD:
        handle.close()
    gpus._HELD.clear()
