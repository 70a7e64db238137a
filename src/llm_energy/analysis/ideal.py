"""Idealised energy baselines: what a request would cost on a perfectly used GPU.

* The study's baseline: board power over peak FLOP rate, times the work,
  ``E = TDP / FLOPS_peak * FLOPs``, with the dense or the 2:4-sparse bf16 peak (the study used
  the A6000's sparse 309.7 TFLOPS; dense is half of it).
* A roofline baseline: each phase takes the longer of its compute time (FLOPs over the dense
  peak) and its memory time (bytes over bandwidth: the weights once per forward, plus the key/value
  cache read by each decode step), at board power.

These are lower bounds for comparison, labelled as estimates wherever they appear.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from llm_energy.analysis.flops import Architecture, generation_flops, prefill_flops
from llm_energy.errors import ConfigError

HARDWARE_FILE = Path(__file__).resolve().parent / "hardware.yaml"


@dataclass(frozen=True)
class Gpu:
    key: str
    name: str
    tdp_w: float
    bf16_dense_tflops: float
    bf16_sparse_tflops: float
    memory_bandwidth_gb_s: float
    memory_gib: float

    def peak_flops(self, peak: Literal["dense", "sparse"]) -> float:
        tflops = self.bf16_dense_tflops if peak == "dense" else self.bf16_sparse_tflops
        return tflops * 1e12


def load_hardware(path: Path | None = None) -> dict[str, Gpu]:
    data: dict[str, dict[str, Any]] = yaml.safe_load(Path(path or HARDWARE_FILE).read_text())
    return {key: Gpu(key=key, **spec) for key, spec in data.items()}


def gpu(key: str, path: Path | None = None) -> Gpu:
    table = load_hardware(path)
    if key not in table:
        raise ConfigError(f"unknown GPU '{key}' (known: {', '.join(sorted(table))})")
    return table[key]


def flops_baseline_j(
    arch: Architecture,
    hw: Gpu,
    batch: int,
    input_tokens: int,
    output_tokens: int,
    peak: Literal["dense", "sparse"] = "dense",
) -> float:
    """The study's ideal: TDP / peak FLOPS * FLOPs of the batch."""
    flops = generation_flops(arch, batch, input_tokens, output_tokens)
    return hw.tdp_w / hw.peak_flops(peak) * flops


def weight_bytes(arch: Architecture, bytes_per_value: int = 2) -> int:
    """Weights read by one forward: every layer's projections (active experts only) and head."""
    per_layer = arch.linear_flops_per_token() // arch.layers // 2  # multiply-adds = weights
    return bytes_per_value * (arch.layers * per_layer + arch.hidden * arch.vocab)


def kv_bytes(arch: Architecture, tokens: int, bytes_per_value: int = 2) -> int:
    """Key/value cache of ``tokens`` tokens of one sequence."""
    return bytes_per_value * 2 * arch.layers * arch.kv_heads * arch.head_dim * tokens


def roofline_baseline_j(
    arch: Architecture, hw: Gpu, batch: int, input_tokens: int, output_tokens: int
) -> float:
    """Board power times the roofline time of prefill plus every decode step."""
    peak, bandwidth = hw.peak_flops("dense"), hw.memory_bandwidth_gb_s * 1e9
    weights = weight_bytes(arch)
    seconds = max(
        prefill_flops(arch, batch, input_tokens) / peak,
        (weights + batch * kv_bytes(arch, input_tokens)) / bandwidth,
    )
    step_linear = arch.linear_flops_per_token() + arch.head_flops()
    for t in range(1, output_tokens):
        context = input_tokens + t
        flops = batch * (step_linear + arch.attention_flops(1, context))
        bytes_moved = weights + batch * kv_bytes(arch, context)
        seconds += max(flops / peak, bytes_moved / bandwidth)
    return hw.tdp_w * seconds
