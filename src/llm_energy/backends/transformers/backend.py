"""Hugging Face transformers on PyTorch: the study's unoptimised baseline, with and without
``torch.compile`` (static KV cache, as transformers compiles it)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from typing import Any

from llm_energy.backends.base import Backend, library_versions
from llm_energy.backends.transformers.ranks import world_size
from llm_energy.errors import BackendError, ConfigError
from llm_energy.measure import stop
from llm_energy.measure.job import DecodingSpec


class TransformersBackend(Backend):
    name = "transformers"

    def load(self, config_dir: str, seed: int) -> None:
        import torch
        import transformers

        self._torch = torch
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(
                f"this job runs on device '{self.device}' but PyTorch sees no CUDA GPU"
            )
        dtype = getattr(torch, self.dtype)
        attn = self.engine.attn_implementation
        kwargs: dict[str, Any] = {"dtype": dtype}
        if attn:
            kwargs["attn_implementation"] = attn
        torch.manual_seed(seed)
        if self.engine.tensor_parallel_size > 1:
            model = self._load_sharded(config_dir, kwargs)
        elif self.model_spec.weights == "random":
            config = transformers.AutoConfig.from_pretrained(config_dir)
            with torch.device(self.device):
                model = transformers.AutoModelForCausalLM.from_config(config, **kwargs)
        else:
            model = transformers.AutoModelForCausalLM.from_pretrained(
                config_dir, device_map=self.device, **kwargs
            )
        model.eval()
        self._model = model
        gen = model.generation_config
        # Lengths are forced, so the end-of-sequence token must never stop a sequence early.
        gen.eos_token_id = None
        gen.pad_token_id = 0 if gen.pad_token_id is None else gen.pad_token_id
        if self.engine.torch_compile:
            gen.cache_implementation = "static"
            # transformers compiles static-cache generation by itself on CUDA; elsewhere it
            # must be told to.
            compile_config = transformers.CompileConfig(fullgraph=False)
            compile_config._compile_all_devices = not self.device.startswith("cuda")
            gen.compile_config = compile_config
        else:
            gen.disable_compile = True

    def _load_sharded(self, config_dir: str, kwargs: dict[str, Any]) -> Any:
        """This rank's shard of a model split over ``tensor_parallel_size`` processes with
        transformers' tensor-parallel plan (one process per GPU, started by torchrun)."""
        import transformers
        from transformers.distributed import DistributedConfig

        from llm_energy.backends.transformers import ranks

        size = self.engine.tensor_parallel_size
        if not ranks.launched() or ranks.world_size() != size:
            raise ConfigError(
                f"engine '{self.engine.name}' spans {size} GPUs: transformers runs it as {size} "
                "processes under torchrun, which `llm-energy measure` starts by itself"
            )
        self.device = ranks.local_device(self.device)
        distributed = DistributedConfig(tp_size=size, tp_plan="auto")
        if self.model_spec.weights != "random":
            return transformers.AutoModelForCausalLM.from_pretrained(
                config_dir, distributed_config=distributed, **kwargs
            )
        # Random weights: every rank builds the whole model from the same seed, then keeps its
        # own shard (the same split that loading a checkpoint makes).
        auto = transformers.AutoModelForCausalLM
        distributed, device_map, mesh = transformers.PreTrainedModel.prepare_distribute_model(
            distributed
        )
        with self._torch.device(device_map):
            model = auto.from_config(transformers.AutoConfig.from_pretrained(config_dir), **kwargs)
        model = type(model).maybe_distribute_model(model, distributed, mesh)
        self.recover()  # the unsharded weights
        return model

    def feed_forward_time_share(self, run: Callable[[], None]) -> dict[str, Any]:
        """Times every decoder layer's feed-forward block (``mlp``: a dense MLP, or the
        mixture-of-experts block with its router and experts) over one ``run``: on a GPU with
        CUDA events on the block's stream, so that each interval spans the block's kernels and
        any wait for their launch; on the CPU with the wall clock. Compiled models fuse across
        the blocks and are not timed, nor are a tensor-parallel job's shards
        (:func:`llm_energy.backends.transformers.times_feed_forward`)."""
        from llm_energy.backends.transformers import times_feed_forward

        if not times_feed_forward(self.engine):
            return {}
        blocks = [
            m.mlp
            for m in self._model.modules()
            if isinstance(getattr(m, "mlp", None), self._torch.nn.Module)
        ]
        if not blocks:
            return {}
        on_gpu = self.device.startswith("cuda")
        marks: list[Any] = []

        def stamp() -> Any:
            if not on_gpu:
                return time.perf_counter()
            event = self._torch.cuda.Event(enable_timing=True)
            event.record()
            return event

        hooks = [b.register_forward_pre_hook(lambda *_: marks.append(stamp())) for b in blocks]
        hooks += [b.register_forward_hook(lambda *_: marks.append(stamp())) for b in blocks]
        try:
            begin = stamp()
            run()
            end = stamp()
        finally:
            for hook in hooks:
                hook.remove()
        if on_gpu:
            self._torch.cuda.synchronize()

        def seconds(a: Any, b: Any) -> float:
            return a.elapsed_time(b) / 1000.0 if on_gpu else b - a

        inside = sum(seconds(a, b) for a, b in zip(marks[::2], marks[1::2], strict=True))
        return {
            "ffn_time_share": inside / seconds(begin, end),
            "ffn_block": type(blocks[0]).__name__,
        }

    @property
    def vocab_size(self) -> int:
        return int(self._model.config.get_text_config().vocab_size)

    def prepare(self, token_ids: list[list[int]]) -> dict[str, Any]:
        if len({len(t) for t in token_ids}) > 1:  # a request stream: batched by ``serve``
            return {"prompts": token_ids}
        torch = self._torch
        ids = torch.tensor(token_ids, dtype=torch.long, device=self.device)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def generate(self, prepared: dict[str, Any], output_tokens: int, decoding: DecodingSpec) -> int:
        kwargs: dict[str, Any] = {
            "max_new_tokens": output_tokens,
            "min_new_tokens": output_tokens,
            "num_beams": decoding.num_beams,
            "do_sample": decoding.strategy == "sample",
        }
        if decoding.strategy == "beam":
            kwargs["early_stopping"] = False
            kwargs["num_return_sequences"] = 1
        if decoding.strategy == "sample":
            kwargs["temperature"] = decoding.temperature if decoding.temperature else 1.0
            kwargs["top_p"] = decoding.top_p if decoding.top_p is not None else 1.0
            kwargs["top_k"] = decoding.top_k if decoding.top_k is not None else 0
        with self._torch.inference_mode():
            out = self._model.generate(**prepared, **kwargs)
        new_tokens = out.shape[1] - prepared["input_ids"].shape[1]
        if new_tokens != output_tokens:
            raise BackendError(f"generated {new_tokens} tokens instead of {output_tokens}")
        return int(out.shape[0] * new_tokens)

    def serve(
        self,
        prepared: dict[str, Any],
        output_tokens: Sequence[int],
        concurrency: int,
        *,
        continuous: bool,
    ) -> int:
        """Static batches only, as transformers serves them: each batch is left-padded to its
        longest prompt and runs until its longest request has finished."""
        if continuous:
            raise ConfigError(
                f"engine '{self.engine.name}': transformers has no continuous batching; "
                "serve request streams online with a vLLM engine"
            )
        prompts: list[list[int]] = prepared.get("prompts") or prepared["input_ids"].tolist()
        generated = 0
        for start in range(0, len(prompts), concurrency):
            if start and world_size() == 1:
                # Between two batches is a safe place to abandon the window: a stream of a
                # thousand requests is one repetition of minutes, longer than Slurm waits
                # between SIGTERM and SIGKILL. Tensor-parallel ranks each run this loop in
                # step, so they stop at the repetition's end, as rank 0 alone decides.
                stop.check()
            batch = prompts[start : start + concurrency]
            wanted = output_tokens[start : start + concurrency]
            width = max(len(p) for p in batch)
            pad = self._model.generation_config.pad_token_id
            ids = [[pad] * (width - len(p)) + p for p in batch]
            mask = [[0] * (width - len(p)) + [1] * len(p) for p in batch]
            inputs = {
                "input_ids": self._torch.tensor(ids, dtype=self._torch.long, device=self.device),
                "attention_mask": self._torch.tensor(mask, device=self.device),
            }
            self.generate(inputs, max(wanted), DecodingSpec())
            generated += sum(wanted)
        return generated

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            self._torch.cuda.synchronize()

    def is_out_of_memory(self, exc: BaseException) -> bool:
        return isinstance(exc, self._torch.OutOfMemoryError) or super().is_out_of_memory(exc)

    def recover(self) -> None:
        gc.collect()
        # A job that never reached the GPU (none there, or its load failed) has nothing to free.
        if self.device.startswith("cuda") and self._torch.cuda.is_initialized():
            # Waits for what the failed call queued; raises if the device is gone.
            self._torch.cuda.synchronize()
            self._torch.cuda.empty_cache()

    def reset_peak_memory(self) -> None:
        if self.device.startswith("cuda"):
            self._torch.cuda.reset_peak_memory_stats()

    def peak_memory_gib(self) -> float:
        if self.device.startswith("cuda"):
            return self._torch.cuda.max_memory_allocated() / 2**30
        return float("nan")

    def details(self) -> dict[str, Any]:
        cache = "static cache + torch.compile" if self.engine.torch_compile else "dynamic cache"
        attn = self.engine.attn_implementation or "default attention"
        return {"engine_detail": f"transformers generate, {cache}, {attn}"}

    def device_uuids(self) -> list[str]:
        if not self.device.startswith("cuda"):
            return []
        index = self._torch.device(self.device).index or 0
        return [str(self._torch.cuda.get_device_properties(index).uuid)]

    def versions(self) -> dict[str, str]:
        import transformers

        return library_versions(f"transformers {transformers.__version__}")

    def close(self) -> None:
        self._model = None
        self.recover()
