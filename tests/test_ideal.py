"""Idealised baselines: the hardware table, the study's FLOPs baseline and the roofline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import require_mirror

from llm_energy.analysis.flops import Architecture, generation_flops
from llm_energy.analysis.ideal import (
    flops_baseline_j,
    gpu,
    kv_bytes,
    load_hardware,
    roofline_baseline_j,
    weight_bytes,
)
from llm_energy.errors import ConfigError

LLAMA = {
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "num_hidden_layers": 32,
    "vocab_size": 128256,
    "rope_theta": 500000.0,
}


def test_hardware_table_holds_the_studys_and_the_reproductions_gpus():
    table = load_hardware()
    assert {"rtx-a6000", "rtx-6000-ada", "a100-80gb-pcie", "h100-sxm", "h200-sxm"} <= set(table)
    for hw in table.values():
        assert hw.bf16_sparse_tflops == pytest.approx(2 * hw.bf16_dense_tflops, rel=0.01)
    # The study's A6000 figure (309.7 TFLOPS) is the sparse peak.
    assert table["rtx-a6000"].bf16_sparse_tflops == pytest.approx(309.7)
    with pytest.raises(ConfigError, match="unknown GPU 'tpu'"):
        gpu("tpu")


def test_flops_baseline_is_tdp_over_peak_times_flops_and_sparse_halves_it():
    arch, a6000 = Architecture.from_config(LLAMA), gpu("rtx-a6000")
    flops = generation_flops(arch, 8, 512, 64)
    dense = flops_baseline_j(arch, a6000, 8, 512, 64, peak="dense")
    assert dense == pytest.approx(300 / 154.8e12 * flops)
    sparse = flops_baseline_j(arch, a6000, 8, 512, 64, peak="sparse")
    assert sparse == pytest.approx(dense * 154.8 / 309.7)


def test_weight_and_cache_bytes_of_llama_3_1_8b():
    arch = Architecture.from_config(LLAMA)
    # 8.03 B parameters less those read by no matrix product (the input embedding and the 65
    # RMSNorm weight vectors), in bf16.
    matmul_params = 8_030_261_248 - 4096 * 128256 - (2 * 32 + 1) * 4096
    assert weight_bytes(arch) == 2 * matmul_params
    assert kv_bytes(arch, 1) == 2 * 2 * 32 * 8 * 128  # 128 KiB per token


def test_roofline_is_memory_bound_for_small_batches_and_never_below_the_flops_bound():
    arch, h100 = Architecture.from_config(LLAMA), gpu("h100-sxm")
    small = roofline_baseline_j(arch, h100, 1, 512, 64)
    weights_time = weight_bytes(arch) / (h100.memory_bandwidth_gb_s * 1e9)
    assert small >= h100.tdp_w * 63 * weights_time  # 63 decode steps each read all weights
    assert small > 10 * flops_baseline_j(arch, h100, 1, 512, 64)
    for batch in (1, 64, 1024):
        assert roofline_baseline_j(arch, h100, batch, 512, 64) >= flops_baseline_j(
            arch, h100, batch, 512, 64
        ) * (1 - 1e-9)


def test_real_configs_of_the_study_load(root: Path):
    mirror = require_mirror("models") / "models"
    for folder in mirror.iterdir():
        if (folder / "config.json").is_file():
            arch = Architecture.from_config(json.loads((folder / "config.json").read_text()))
            assert flops_baseline_j(arch, gpu("a100-80gb-pcie"), 1, 128, 8) > 0
