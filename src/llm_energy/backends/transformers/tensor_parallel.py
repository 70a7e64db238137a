"""Tensor parallelism for the transformers backend: one process per GPU, started by torchrun.

``llm-energy measure`` on a job whose transformers engine spans N GPUs starts itself again
under ``torch.distributed.run`` with N processes (:func:`relaunch`). Rank 0 runs the job as
always (journal, meter, protocol); its backend is a :class:`TensorParallelDriver`, which sends
every call that touches the model to the other ranks over a gloo group and then makes it
itself, so that all ranks run the same forward passes in step. The other ranks run
:func:`follow`, which repeats those calls on their shard of the model until rank 0 closes.
Each call ends with every rank's outcome gathered on every rank, so an out-of-memory error on
any rank makes the point infeasible on all of them. Rank 0's meter sums the energy of every
rank's GPU (:meth:`TensorParallelDriver.device_uuids`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llm_energy.backends.base import Backend
from llm_energy.backends.transformers.backend import TransformersBackend
from llm_energy.backends.transformers.ranks import local_device, rank, world_size
from llm_energy.errors import BackendError
from llm_energy.job_environment import JOB_PID_ENV
from llm_energy.measure import stop
from llm_energy.measure.job import DecodingSpec, JobPlan

# Prepared batches each rank keeps (a stream point prepares one per bin).
_KEEP_PREPARED = 512
# This process's gloo group for the calls, and whether rank 0 has closed the other ranks.
_STATE: dict[str, Any] = {"group": None, "closed": False}


def _control_group(device: str) -> Any:
    """Join the job's process group (NCCL on GPUs, gloo on the CPU) once, and open a gloo
    group beside it for the calls."""
    import torch
    import torch.distributed as dist

    if _STATE["group"] is None:
        if not dist.is_initialized():
            if device.startswith("cuda"):
                torch.cuda.set_device(torch.device(local_device(device)))
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        _STATE["group"] = dist.new_group(backend="gloo")
    return _STATE["group"]


def relaunch(argv: Sequence[str], processes: int) -> int:
    """Run ``llm-energy <argv>`` again with ``processes`` ranks under torchrun; its exit code."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        "-m",
        "llm_energy",
        *argv,
    ]
    env = {**os.environ, JOB_PID_ENV: str(os.getpid())}
    print(f"tensor parallel over {processes} processes: {' '.join(cmd)}", flush=True)
    child = subprocess.Popen(cmd, env=env)
    # A SIGTERM sent to this process alone reaches the ranks through torchrun, which gives
    # them time to stop and then kills what is left.
    with stop.forwarded_to(child):
        return child.wait()


class RankError(BackendError):
    """A call failed on another rank; ``out_of_memory`` says whether it ran out of memory."""

    def __init__(self, message: str, out_of_memory: bool) -> None:
        super().__init__(message)
        self.out_of_memory = out_of_memory


@dataclass(frozen=True)
class Prepared:
    """Rank 0's handle on a batch that every rank has prepared."""

    key: int


class _Ranks:
    """One rank's side of the calls: the local backend, its prepared batches, the gloo group."""

    def __init__(self, backend: TransformersBackend) -> None:
        import torch.distributed as dist

        self.dist = dist
        self.group = _control_group(backend.device)
        self.backend = backend
        self.prepared: OrderedDict[int, Any] = OrderedDict()

    def receive(self) -> tuple[str, tuple]:
        box: list[Any] = [None]
        self.dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def send(self, op: str, args: tuple) -> None:
        self.dist.broadcast_object_list([(op, args)], src=0, group=self.group)

    def run(self, op: str, args: tuple) -> list[Any]:
        """Make one call here and return every rank's result; raise if any rank failed."""
        error: BaseException | None = None
        try:
            outcome: tuple = ("ok", self._do(op, args))
        except Exception as exc:  # reported to every rank below
            error = exc
            oom = self.backend.is_out_of_memory(exc)
            outcome = ("error", oom, f"rank {rank()}: {type(exc).__name__}: {exc}")
        outcomes: list[Any] = [None] * world_size()
        self.dist.all_gather_object(outcomes, outcome, group=self.group)
        if error is not None:
            raise error
        failed = [o for o in outcomes if o[0] == "error"]
        if failed:
            raise RankError("; ".join(f[2] for f in failed), any(f[1] for f in failed))
        return [o[1] for o in outcomes]

    def _do(self, op: str, args: tuple) -> Any:
        b = self.backend
        if op == "prepare":
            key, token_ids = args
            self.prepared[key] = b.prepare(token_ids)
            while len(self.prepared) > _KEEP_PREPARED:
                self.prepared.popitem(last=False)
            return None
        if op == "generate":
            key, output_tokens, decoding = args
            return b.generate(self.prepared[key], output_tokens, decoding)
        if op == "serve":
            key, output_tokens, concurrency, continuous = args
            return b.serve(self.prepared[key], output_tokens, concurrency, continuous=continuous)
        if op == "close":
            self.prepared.clear()
            if getattr(b, "_torch", None) is not None:
                b.close()
            return None
        return getattr(b, op)(*args)


class TensorParallelDriver(Backend):
    """Rank 0's backend: each call goes to every rank, and returns rank 0's result."""

    name = "transformers"

    def __init__(self, inner: TransformersBackend) -> None:
        super().__init__(inner.model_spec, inner.engine, inner.device, inner.dtype)
        self.inner = inner
        self._ranks = _Ranks(inner)
        self._next_key = 0

    def _call(self, op: str, *args: Any) -> list[Any]:
        self._ranks.send(op, args)
        return self._ranks.run(op, args)

    def configure(self, max_batch_size: int, max_sequence_tokens: int) -> None:
        super().configure(max_batch_size, max_sequence_tokens)
        self._call("configure", max_batch_size, max_sequence_tokens)

    def load(self, config_dir: str, seed: int) -> None:
        self._call("load", config_dir, seed)
        self.device = self.inner.device

    @property
    def vocab_size(self) -> int:
        return self.inner.vocab_size

    def prepare(self, token_ids: list[list[int]]) -> Prepared:
        key, self._next_key = self._next_key, self._next_key + 1
        self._call("prepare", key, token_ids)
        return Prepared(key)

    def generate(self, prepared: Prepared, output_tokens: int, decoding: DecodingSpec) -> int:
        return int(self._call("generate", prepared.key, output_tokens, decoding)[0])

    def serve(
        self,
        prepared: Prepared,
        output_tokens: Sequence[int],
        concurrency: int,
        *,
        continuous: bool,
    ) -> int:
        args = (prepared.key, list(output_tokens), concurrency, continuous)
        return int(self._call("serve", *args)[0])

    def synchronize(self) -> None:
        self._call("synchronize")

    def is_out_of_memory(self, exc: BaseException) -> bool:
        if isinstance(exc, RankError):
            return exc.out_of_memory
        return self.inner.is_out_of_memory(exc)

    def recover(self) -> None:
        self._call("recover")

    def reset_peak_memory(self) -> None:
        self._call("reset_peak_memory")

    def peak_memory_gib(self) -> float:
        """The largest peak of any rank's GPU."""
        return float(max(self._call("peak_memory_gib")))

    def details(self) -> dict[str, Any]:
        detail = self.inner.details()
        n = world_size()
        detail["engine_detail"] += f", tensor parallel over {n} processes (torchrun, DTensor)"
        return detail

    def device_uuids(self) -> list[str]:
        return [u for uuids in self._call("device_uuids") for u in uuids]

    def versions(self) -> dict[str, str]:
        return self.inner.versions()

    def close(self) -> None:
        if not _STATE["closed"]:
            _STATE["closed"] = True
            self._call("close")


def follow(plan: JobPlan) -> None:
    """A rank other than 0: repeat rank 0's calls on this rank's shard until it closes."""
    # Rank 0 decides when the job stops and then closes this rank: on SIGTERM this rank goes
    # on following, so that every rank finishes the current call together (torchrun kills a
    # rank that outlives its grace period).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ranks = _Ranks(TransformersBackend(plan.model, plan.engine, plan.device, plan.dtype))
    while True:
        op, args = ranks.receive()
        # Rank 0 gets the same outcome and decides what a failure means for the job.
        with contextlib.suppress(Exception):
            ranks.run(op, args)
        if op == "close":
            _leave()
            return


def release_followers(plan: JobPlan) -> None:
    """Rank 0, when its job ends: close the other ranks if no backend did (when every point
    was already in the journal, say), and leave the process group."""
    if not _STATE["closed"]:
        _STATE["closed"] = True
        ranks = _Ranks(TransformersBackend(plan.model, plan.engine, plan.device, plan.dtype))
        ranks.send("close", ())
        ranks.run("close", ())
    _leave()


def _leave() -> None:
    """Leave the process group; a process that exits without doing so is aborted."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    _STATE["group"] = None
