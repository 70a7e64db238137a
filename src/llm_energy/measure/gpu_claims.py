"""Which GPUs a measurement job uses when nothing has chosen them for it.

Slurm gives each job its GPUs through CUDA_VISIBLE_DEVICES. A local run of several jobs on a
machine with several GPUs (``snakemake --cores 16 --resources gpu=4``) has no such scheduler:
Snakemake counts GPUs but does not say which. There each job claims free GPUs itself, by taking
an exclusive lock on one file per GPU, held until the job's process ends, and sets
CUDA_VISIBLE_DEVICES (with CUDA_DEVICE_ORDER=PCI_BUS_ID, so that CUDA's indices are NVML's)
before anything touches CUDA. A job that finds no free GPU waits for one, saying so.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from llm_energy.errors import MeterUnavailableError
from llm_energy.measure import stop

LOCK_DIR_ENV = "LLM_ENERGY_GPU_LOCKS"
DEFAULT_LOCK_DIR = Path("/tmp/llm-energy-gpu-locks")
# Held for the life of the process: closing a file releases its lock.
_HELD: list[IO[str]] = []


def gpu_count() -> int:
    """GPUs NVML sees on this machine (0 without NVML or a driver)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no package, no driver: nothing to choose from
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    finally:
        pynvml.nvmlShutdown()


def claim(
    count: int,
    available: int,
    lock_dir: Path,
    log: Callable[[str], None] = print,
    poll_s: float = 5.0,
    timeout_s: float | None = None,
) -> list[int]:
    """Lock ``count`` of the GPUs 0..available-1 for this process and return their indices,
    waiting while fewer are free."""
    if count > available:
        raise MeterUnavailableError(
            f"this job needs {count} GPU(s) but the machine has {available}"
        )
    lock_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    said = False
    while True:
        got: list[tuple[int, IO[str]]] = []
        for index in range(available):
            handle = open(lock_dir / f"gpu{index}.lock", "a")  # noqa: SIM115 - held open
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            got.append((index, handle))
            if len(got) == count:
                _HELD.extend(h for _, h in got)
                return [i for i, _ in got]
        for _, handle in got:
            handle.close()
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise MeterUnavailableError(
                f"no {count} free GPU(s) of {available} within {timeout_s:g} s ({lock_dir})"
            )
        if not said:
            log(f"waiting for {count} free GPU(s) of {available} (locks in {lock_dir})")
            said = True
        stop.check()  # a job asked to stop while it waits stops now
        time.sleep(poll_s)


def lock_dir() -> Path:
    """Where the jobs of this host keep their locks (GPUs and the host itself)."""
    return Path(os.environ.get(LOCK_DIR_ENV, DEFAULT_LOCK_DIR))


def choose_gpus(count: int, log: Callable[[str], None] = print) -> str | None:
    """Set CUDA_VISIBLE_DEVICES to ``count`` free GPUs of this machine when nothing chose them
    (no CUDA_VISIBLE_DEVICES). A job that needs every GPU of the machine claims them too, so
    that it waits for the jobs using any of them. Returns the value set, or None when nothing
    was changed (a scheduler chose, no GPU is seen, or the job needs more than there are)."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return None
    available = gpu_count()
    if not available or available < count:
        return None
    indices = claim(count, available, lock_dir(), log)
    value = ",".join(str(i) for i in indices)
    os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    os.environ["CUDA_VISIBLE_DEVICES"] = value
    log(f"GPUs {value} of {available} chosen for this job (CUDA_VISIBLE_DEVICES)")
    return value
