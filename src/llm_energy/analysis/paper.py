"""The paper's own numbers that the pipeline sets ours beside (Fernandez et al., 2025), as the
paper prints them."""

from __future__ import annotations

# Tables 1 and 2: (mean, std, median, p99) of each trace's input and output lengths in tokens.
TRACE_LENGTHS: dict[str, dict[str, tuple[float, float, float, float]]] = {
    "burstgpt": {"input": (256.80, 242.27, 215, 1038), "output": (35.10, 108.59, 7, 478)},
    "azure_conversation": {
        "input": (1631.58, 1529.64, 928, 6683),
        "output": (105.51, 158.25, 41, 694),
    },
    "azure_code": {"input": (2511.28, 2133.54, 1930, 7685), "output": (22.69, 74.78, 8, 271)},
}
# Which traces each of the paper's two tables holds.
TRACE_TABLES = {"table1": ("burstgpt",), "table2": ("azure_conversation", "azure_code")}
# What the paper's traces were, for the tables' notes.
TRACE_SOURCES = {
    "burstgpt": "BurstGPT (the paper's release)",
    "azure_conversation": "Azure LLM inference trace 2024 (week-long)",
    "azure_code": "Azure LLM inference trace 2024 (week-long)",
}

# The models a figure of the paper draws, where a configuration's rows may hold fewer.
FIGURE_MODELS = {"fig6": ("llama-3.1-8b", "r1-distill-qwen-32b")}
# Table 4: the binned estimate's energy over the ideal (the sparse-peak FLOPs baseline),
# E_total / E_ideal - 1 as a fraction, per trace and backend (RTX A6000).
TABLE4_OVER_IDEAL: dict[tuple[str, str], float] = {
    ("burstgpt", "transformers"): 5.0652,
    ("burstgpt", "vllm"): 0.6375,
    ("azure_code", "transformers"): 1.0279,
    ("azure_code", "vllm"): 0.2659,
    ("azure_conversation", "transformers"): 4.9023,
    ("azure_conversation", "vllm"): 0.6422,
}

# Table 3: (mean, std, max) of each classical task's input length in Llama 3 tokens, by the
# dataset it samples.
PAPER_TABLE3: dict[str, tuple[float, float, int]] = {
    "wmt14": (49.96, 39.39, 550),
    "wikitext": (136.89, 93.13, 547),
    "imdb": (292.48, 239.94, 3112),
    "cnn_dailymail": (838.49, 400.70, 2386),
}

NAN = float("nan")
# The eight claims' comparisons: (the paper's value as a relative change, or NaN where it
# gives none; the direction it claims: +1 more, -1 less, 0 no more than the reference; what
# is compared; the reference the change is measured from). Relative changes are fractions.
CLAIMS: dict[str, dict[str, tuple[float, int, str, float]]] = {
    "1": {"decode_share": (NAN, 1, "decode's share of the energy (claimed above one half)", 0.5)},
    "2": {
        "small_batches": (-0.2914, -1, "energy with the draft against the target alone", 0.0),
        "batch_128": (0.2565, 1, "energy with the draft against the target alone", 0.0),
    },
    "3": {
        "over_olmo_1b": (0.5424, 1, "OLMoE-1B-7B's energy against OLMo-1B's", 0.0),
        "under_olmo_7b": (NAN, -1, "OLMoE-1B-7B's energy against OLMo-7B's", 0.0),
    },
    "4": {"vllm_energy": (NAN, -1, "vLLM (CUDA graphs) against PyTorch eager", 0.0)},
    "5": {
        "compile_energy": (NAN, 0, "energy with torch.compile against eager PyTorch", 0.0),
        "graphs_energy": (NAN, 0, "energy with CUDA graphs against eager vLLM", 0.0),
        "compile_time": (NAN, -1, "time with torch.compile against eager PyTorch", 0.0),
        "graphs_time": (NAN, -1, "time with CUDA graphs against eager vLLM", 0.0),
    },
    "6": {
        "online_large": (-0.05, -1, "continuous against static batching, batch >= 64", 0.0),
        "online_small": (NAN, 1, "continuous against static batching, batch < 64", 0.0),
    },
    "7": {
        "tp2_time": (-0.4016, -1, "time per batch on 2 GPUs against 1, batch 1", 0.0),
        "tp4_time": (-0.6134, -1, "time per batch on 4 GPUs against 1, batch 1", 0.0),
        "tp2_energy": (0.293, 1, "energy on 2 GPUs against 1, batch 1", 0.0),
        "tp4_energy": (0.5523, 1, "energy on 4 GPUs against 1, batch 1", 0.0),
    },
    "8": {
        "fall_burstgpt": (-0.73, -1, "BurstGPT's energy on vLLM against PyTorch", 0.0),
        "fall_azure_code": (-0.3758, -1, "Azure code's energy on vLLM against PyTorch", 0.0),
        "fall_azure_conversation": (
            -0.7218,
            -1,
            "Azure conversation's energy on vLLM against PyTorch",
            0.0,
        ),
    },
}

# The paper's other numbers that the docs quote beside ours; no comparison of the claims table
# checks them (relative changes, as fractions).
# Claim 5: the throughput that torch.compile and CUDA graphs gain, per GPU of the paper.
THROUGHPUT_GAINS: dict[tuple[str, str], float] = {
    ("torch_compile", "a100"): 0.2990,
    ("torch_compile", "rtx_6000_ada"): 0.1328,
    ("torch_compile", "a6000"): 0.0196,
    ("cuda_graphs", "a100"): 0.2547,
    ("cuda_graphs", "a6000"): 0.0297,
}
# Claim 3: the fused expert kernel's time over the dense GEMM's, by batch size.
EXPERT_KERNEL_SLOWDOWN: dict[int, float] = {1: 0.1970, 8: 0.63}
# Claim 8's "within 26.6 % of the ideal on Azure code": Table 4's vLLM gap, as the claim rounds it.
WITHIN_IDEAL_AZURE_CODE = 0.266


def relative_changes() -> list[float]:
    """Every relative change of the paper recorded here: the claims' and the others above."""
    claimed = [v[0] for by_key in CLAIMS.values() for v in by_key.values()]
    others = [
        *THROUGHPUT_GAINS.values(),
        *EXPERT_KERNEL_SLOWDOWN.values(),
        *TABLE4_OVER_IDEAL.values(),
        WITHIN_IDEAL_AZURE_CODE,
    ]
    return [v for v in claimed + others if v == v]  # NaN: the paper gives no number
