"""Analytic FLOPs against PyTorch's FLOP counter on the real architectures (meta tensors)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers
from conftest import require_mirror
from torch.utils.flop_counter import FlopCounterMode

from llm_energy.analysis.flops import Architecture, generation_flops, prefill_flops

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "resources" / "models" / "tiny-llama"


def counted_generation_flops(model_dir: Path, input_tokens: int, output_tokens: int) -> int:
    """PyTorch's count for one prefill and ``output_tokens - 1`` cached decode steps."""
    config = transformers.AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    ids = torch.zeros((1, input_tokens), dtype=torch.long, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        for t in range(1, output_tokens):
            out = model(
                input_ids=torch.zeros((1, 1), dtype=torch.long, device="meta"),
                past_key_values=out.past_key_values,
                cache_position=torch.tensor([input_tokens + t - 1], device="meta"),
                use_cache=True,
                logits_to_keep=1,
            )
    return counter.get_total_flops()


def _arch(model_dir: Path) -> Architecture:
    return Architecture.from_config(json.loads((model_dir / "config.json").read_text()))


@pytest.mark.integration
def test_llama_3_1_8b_at_512_in_64_out_matches_the_pytorch_counter_within_2_percent():
    model = "models/meta-llama__Llama-3.1-8B"
    model_dir = require_mirror(model) / model
    counted = counted_generation_flops(model_dir, 512, 64)
    analytic = generation_flops(_arch(model_dir), 1, 512, 64)
    assert analytic == pytest.approx(counted, rel=0.02)
    assert analytic == counted  # the count is exact, not just within the 2 %


def test_tiny_model_matches_the_pytorch_counter_exactly():
    assert generation_flops(_arch(TINY), 1, 32, 5) == counted_generation_flops(TINY, 32, 5)


def test_batch_scales_linearly_and_prefill_is_the_one_token_case():
    arch = _arch(TINY)
    assert generation_flops(arch, 8, 64, 16) == 8 * generation_flops(arch, 1, 64, 16)
    assert generation_flops(arch, 4, 64, 1) == prefill_flops(arch, 4, 64)


def test_grouped_query_attention_shrinks_only_the_key_value_projections():
    mha = Architecture(
        hidden=64, layers=2, heads=4, kv_heads=4, head_dim=16, intermediate=128, vocab=100
    )
    gqa = Architecture(
        hidden=64, layers=2, heads=4, kv_heads=1, head_dim=16, intermediate=128, vocab=100
    )
    saved = mha.linear_flops_per_token() - gqa.linear_flops_per_token()
    assert saved == 2 * 2 * 2 * 64 * 3 * 16  # layers x (k and v) x 2 x hidden x 3 heads x dim
    assert mha.attention_flops(10, 10) == gqa.attention_flops(10, 10)


def test_mixture_of_experts_counts_active_experts_and_the_router():
    olmoe = {
        "hidden_size": 2048,
        "intermediate_size": 1024,
        "num_attention_heads": 16,
        "num_key_value_heads": 16,
        "num_hidden_layers": 16,
        "vocab_size": 50304,
        "num_experts": 64,
        "num_experts_per_tok": 8,
    }
    arch = Architecture.from_config(olmoe)
    attention_proj = 4 * 2 * 2048 * 2048
    experts = 8 * 2 * 3 * 2048 * 1024
    router = 2 * 2048 * 64
    assert arch.linear_flops_per_token() == 16 * (attention_proj + experts + router)
    dense = Architecture.from_config({**olmoe, "num_experts": 0, "num_experts_per_tok": 0})
    assert arch.linear_flops_per_token() > dense.linear_flops_per_token()
