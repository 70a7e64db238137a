"""Where a number came from: host, job, code version and configuration."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
import subprocess
from pathlib import Path

from llm_energy import __version__


def git_commit(start: Path | None = None) -> str:
    """Commit of the checkout (with '-dirty' when it has changes), or LLM_ENERGY_GIT_COMMIT."""
    env = os.environ.get("LLM_ENERGY_GIT_COMMIT")
    if env:
        return env
    cwd = str(start or Path.cwd())
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        )
        suffix = "-dirty" if dirty.stdout.strip() else ""
        return commit.stdout.strip() + suffix
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_session() -> str:
    """The host and its boot: rows that share it were measured on one machine without a restart
    between them, the unit within which the study's comparisons are made."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        boot = "unknown"
    return f"{socket.gethostname()}:{boot}"


# Environment variables that change how an engine runs (vLLM's switches, PyTorch's and CUDA's
# allocator and device settings, NCCL's transport): each row records those set for its job.
ENGINE_ENVIRONMENT_PREFIXES = ("VLLM_", "PYTORCH_", "TORCH", "CUDA_", "NCCL_")


def engine_environment() -> str:
    """The job's engine-affecting environment variables, ``NAME=value`` comma-joined in name
    order (empty where none is set)."""
    names = sorted(n for n in os.environ if n.startswith(ENGINE_ENVIRONMENT_PREFIXES))
    return ",".join(f"{n}={os.environ[n]}" for n in names)


def host_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, str | int]:
    """The host's CPU model and how many of its logical cores the job may run on. Eager
    PyTorch, and vLLM between the steps of small batches, wait on the host, so two machines with
    the same GPU can take different times for the same point; these say which host it was."""
    model = ""
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                model = value.strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 0
    return {"host_cpu_model": model or platform.processor() or "unknown", "host_cpu_cores": cores}


def job_provenance() -> dict[str, str | int]:
    """Facts about the run that every row carries."""
    return {
        "host": socket.gethostname(),
        **host_cpu(),
        "machine_session": machine_session(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID", ""),
        "git_commit": git_commit(),
        "package_version": __version__,
        "python_version": platform.python_version(),
        "engine_environment": engine_environment(),
    }


def utc_now(timespec: str = "seconds") -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec=timespec)
