"""The backend interface: load one model once, then generate fixed-length batches."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from llm_energy.errors import ConfigError
from llm_energy.measure.job import DecodingSpec, EngineSpec, ModelSpec

if TYPE_CHECKING:
    from llm_energy.measure.serving import RequestRecord

# CUDA errors that CUDA keeps ("sticky"): after one, every call in the process fails.
STICKY_DEVICE_ERRORS = (
    "illegal memory access",
    "device-side assert",
    "unspecified launch failure",
    "illegal instruction",
    "misaligned address",
    "invalid program counter",
    "hardware stack error",
    "uncorrectable ecc",
    "launch timed out",
)
# What the errors of CUDA and its libraries say, in torch's and the libraries' words.
DEVICE_ERRORS = (
    "cuda error",
    "cuda driver error",
    "cuda_error_",
    "cublas_status_",
    "cudnn_status_",
    "nccl error",
    *STICKY_DEVICE_ERRORS,
)


def library_versions(backend_version: str) -> dict[str, str]:
    """:meth:`Backend.versions` of an engine running in this process: its own version, and the
    torch, transformers and CUDA it runs on."""
    import torch
    import transformers

    return {
        "backend_version": backend_version,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "cuda_version": str(torch.version.cuda) if torch.version.cuda else "none",
    }


class Backend(ABC):
    """An inference engine holding one loaded model.

    ``prepare`` turns token ids into the engine's own input objects outside the measurement
    window; ``generate`` runs one batch to exactly ``output_tokens`` new tokens per sequence and
    returns only when the device has finished.
    """

    name: ClassVar[str]

    def __init__(self, model: ModelSpec, engine: EngineSpec, device: str, dtype: str) -> None:
        self.model_spec = model
        self.engine = engine
        self.device = device
        self.dtype = dtype
        self.draft_dir: str | None = None  # config.json folder of the speculative draft
        # The job's largest batch and longest sequence (``configure``), for engines that size
        # themselves up front; engines that allocate as they go ignore them.
        self.max_batch_size: int | None = None
        self.max_sequence_tokens: int | None = None
        # The job's log, for engines whose processes write their own (a server's output).
        self.log: Callable[[str], None] = print
        # How the job runs an engine that is a server (JobPlan.server_options).
        self.server_options: dict[str, Any] = {}

    def configure(self, max_batch_size: int, max_sequence_tokens: int) -> None:
        """Size the engine for the job's largest batch and longest sequence (before ``load``)."""
        self.max_batch_size = max_batch_size
        self.max_sequence_tokens = max_sequence_tokens

    @abstractmethod
    def load(self, config_dir: str, seed: int) -> None:
        """Build or load the model. ``config_dir`` holds the architecture's config.json."""

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Vocabulary size of the loaded model (prompts are drawn below it)."""

    @abstractmethod
    def prepare(self, token_ids: list[list[int]]) -> Any:
        """Engine-specific inputs for one batch of equal-length prompts, or for a request
        stream (``serve``) of prompts of any lengths."""

    @abstractmethod
    def generate(self, prepared: Any, output_tokens: int, decoding: DecodingSpec) -> int:
        """Generate exactly ``output_tokens`` per sequence; return the number of new tokens."""

    def serve(
        self,
        prepared: Any,
        output_tokens: Sequence[int],
        concurrency: int,
        *,
        continuous: bool,
    ) -> int:
        """Serve a stream of requests (``prepared`` from prompts of any lengths), request i to
        exactly ``output_tokens[i]`` new tokens, with at most ``concurrency`` in flight: in
        static batches, or with continuous batching (a finished request's slot is refilled at
        once). Returns the number of tokens the requests asked for."""
        mode = "continuous" if continuous else "static"
        raise ConfigError(f"backend '{self.name}' cannot serve request streams in {mode} batches")

    def replay(
        self, prepared: Any, output_tokens: Sequence[int], send_times_s: Sequence[float]
    ) -> list[RequestRecord]:
        """Send request i at ``send_times_s[i]`` (seconds from the first) to exactly
        ``output_tokens[i]`` new tokens, however many are in flight, and return each request's
        timing (:class:`~llm_energy.measure.serving.RequestRecord`), failed ones included.
        Engines behind a server do; in-process engines serve streams through ``serve``."""
        raise ConfigError(f"backend '{self.name}' cannot replay requests at their arrival times")

    def synchronize(self) -> None:  # noqa: B027 - engines that block need nothing here
        """Wait until the device has finished all queued work."""

    def is_out_of_memory(self, exc: BaseException) -> bool:
        # CUDA says "out of memory"; PyTorch's CPU allocator "can't allocate memory".
        text = str(exc).lower()
        return "out of memory" in text or "can't allocate memory" in text

    def is_device_error(self, exc: BaseException) -> bool:
        """Whether ``exc`` is an error of the device (CUDA and its libraries) other than
        running out of memory."""
        text = str(exc).lower()
        return not self.is_out_of_memory(exc) and any(s in text for s in DEVICE_ERRORS)

    def is_unusable(self, exc: BaseException) -> bool:
        """Whether, after the device error ``exc``, the device takes no more work in this
        process."""
        text = str(exc).lower()
        return any(s in text for s in STICKY_DEVICE_ERRORS)

    def largest_batch(self, input_tokens: int, output_tokens: int) -> int | None:
        """The largest batch of one shape the engine holds, where it knows without trying
        (None: it must be tried)."""
        return None

    def recover(self) -> None:  # noqa: B027 - optional hook
        """Free what a failed point left behind so that the sweep can go on (raises when the
        device cannot)."""

    def reset_peak_memory(self) -> None:  # noqa: B027 - optional hook
        """Start a new peak-memory window."""

    def peak_memory_gib(self) -> float:
        """Peak device memory since ``reset_peak_memory`` (NaN when the engine cannot tell)."""
        return float("nan")

    def feed_forward_time_share(self, run: Callable[[], None]) -> dict[str, Any]:
        """Call ``run`` (one generation) once with timers around the model's feed-forward
        blocks and return ``ffn_time_share`` (their share of the run's time) and ``ffn_block``
        (their class); empty when the engine cannot time its layers."""
        return {}

    def counters(self) -> dict[str, float]:
        """Running totals the engine keeps (vLLM: speculative draft and accepted tokens), read
        before and after each point's full window."""
        return {}

    def counter_columns(
        self, before: dict[str, float], after: dict[str, float], repetitions: int
    ) -> dict[str, float]:
        """Row columns from the counters' change over a full window: per repetition."""
        return {k: (after[k] - before[k]) / repetitions for k in before}

    def details(self) -> dict[str, Any]:
        """Job-level columns describing how the engine was set up (empty by default)."""
        return {}

    def device_uuids(self) -> list[str]:
        """UUIDs of the GPUs this engine uses (empty on the CPU)."""
        return []

    @abstractmethod
    def versions(self) -> dict[str, str]:
        """Versions of the libraries that produced the numbers."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model and the device."""
