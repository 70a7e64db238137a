"""Prompt sources. Cost of fixed-length generation depends on lengths, not on content, so the
controlled sweeps can use seeded random token ids; text datasets plug in here too."""

from __future__ import annotations

import numpy as np


def random_prompts(
    vocab_size: int, batch_size: int, input_tokens: int, seed: int, reserved: int = 16
) -> list[list[int]]:
    """``batch_size`` prompts of ``input_tokens`` ids drawn from [reserved, vocab_size).

    The lowest ids are left out because tokenizers put special tokens there.
    """
    low = min(reserved, max(vocab_size - 1, 0))
    rng = np.random.default_rng(seed)
    ids = rng.integers(low, vocab_size, size=(batch_size, input_tokens), dtype=np.int64)
    return ids.tolist()
