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
