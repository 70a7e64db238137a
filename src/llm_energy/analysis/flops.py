"""Analytic floating-point operations of fixed-length generation, for the ideal baselines.

Counted like PyTorch's FLOP counter (``torch.utils.flop_counter``), which counts matrix
products only: 2 FLOPs per multiply-add. Norms, activations and softmax are left out; the small
rotary-embedding product, which the counter sees, is in. Generating ``o`` tokens for a batch of
``b`` prompts of ``i`` tokens is one prefill forward over the ``i`` prompt tokens (logits for
the last position only, as ``generate`` does) and ``o - 1`` decode forwards of one token each.

Attention follows the kernels as PyTorch counts them: a prefill of ``i`` tokens scores an
``i x i`` matrix (the causal half is computed, then masked), and a decode step scores its one
query against every cached key. Grouped-query attention shares key/value heads, which shrinks
the key/value projections but not the attention products. A mixture-of-experts layer runs its
router for every token and ``num_experts_per_tok`` experts of ``intermediate_size`` each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Architecture:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    experts: int = 0  # 0 for a dense feed-forward layer
    experts_per_token: int = 0
    rotary: bool = True  # rotary position embeddings: one small product per forward

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Architecture:
        heads = config["num_attention_heads"]
        hidden = config["hidden_size"]
        return cls(
            hidden=hidden,
            layers=config["num_hidden_layers"],
            heads=heads,
            kv_heads=config.get("num_key_value_heads") or heads,
            head_dim=config.get("head_dim") or hidden // heads,
            intermediate=config["intermediate_size"],
            vocab=config["vocab_size"],
            experts=config.get("num_experts") or config.get("num_local_experts") or 0,
            experts_per_token=config.get("num_experts_per_tok") or 0,
            rotary="rope_theta" in config or "rope_parameters" in config,
        )

    def linear_flops_per_token(self) -> int:
        """Projections and feed-forward of every layer for one token (no attention, no head)."""
        q_and_o = 2 * 2 * self.hidden * self.heads * self.head_dim
        k_and_v = 2 * 2 * self.hidden * self.kv_heads * self.head_dim
        mlp = 2 * 3 * self.hidden * self.intermediate  # gate, up and down (SwiGLU)
        if self.experts:
            mlp = self.experts_per_token * mlp + 2 * self.hidden * self.experts  # + router
        return self.layers * (q_and_o + k_and_v + mlp)

    def attention_flops(self, queries: int, keys: int) -> int:
        """Scores and weighted values of every layer: ``queries`` against ``keys``."""
        return self.layers * 2 * 2 * self.heads * self.head_dim * queries * keys

    def head_flops(self) -> int:
        return 2 * self.hidden * self.vocab

    def rotary_flops(self, tokens: int) -> int:
        """Frequencies times positions, computed once per forward (negligible, but counted)."""
        return 2 * (self.head_dim // 2) * tokens if self.rotary else 0


def prefill_flops(arch: Architecture, batch: int, input_tokens: int) -> int:
    per_sequence = (
        input_tokens * arch.linear_flops_per_token()
        + arch.attention_flops(input_tokens, input_tokens)
        + arch.head_flops()
        + arch.rotary_flops(input_tokens)
    )
    return batch * per_sequence


def generation_flops(arch: Architecture, batch: int, input_tokens: int, output_tokens: int) -> int:
    """FLOPs of generating ``output_tokens`` per sequence after prompts of ``input_tokens``."""
    total = prefill_flops(arch, batch, input_tokens)
    step = arch.linear_flops_per_token() + arch.head_flops() + arch.rotary_flops(1)
    for t in range(1, output_tokens):
        total += batch * (step + arch.attention_flops(1, input_tokens + t))
    return total
