"""One function per paper figure and table; each takes the tidy measurements table."""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt
import pandas as pd

from llm_energy.analysis.replay import replay_comparison
from llm_energy.figures.controlled import fig_controlled_sweeps, table_controlled_sweeps
from llm_energy.figures.decoding_architectures import (
    fig_architectures,
    fig_decoding,
    table_architectures,
    table_decoding,
)
from llm_energy.figures.engines import (
    fig_engine_optimisations,
    fig_online_serving,
    table_engine_optimisations,
    table_online_serving,
)
from llm_energy.figures.parallel import fig_tensor_parallel, table_tensor_parallel
from llm_energy.figures.tasks import (
    fig_classical_tasks,
    fig_classical_tasks_vllm,
    table_classical_tasks,
    table_classical_tasks_vllm,
)


def fig2(df: pd.DataFrame) -> plt.Figure:
    """Fig 2: prefill energy against input length and decode energy against output length on
    vLLM, one line per batch size."""
    return fig_controlled_sweeps(df, "vllm", "Controlled sweeps, vLLM (Fig 2)", main_only=True)


def fig3(df: pd.DataFrame) -> plt.Figure:
    """Fig 3: decoding strategies against batch size."""
    return fig_decoding(df)


def fig4(df: pd.DataFrame) -> plt.Figure:
    """Fig 4: OLMo-1B, OLMo-7B and OLMoE-1B-7B against batch size."""
    return fig_architectures(df)


def fig5(df: pd.DataFrame) -> plt.Figure:
    """Fig 5: PyTorch compile off/on and vLLM CUDA graphs off/on against batch size."""
    return fig_engine_optimisations(df)


def fig6(df: pd.DataFrame) -> plt.Figure:
    """Fig 6: energy, latency and power per GPU against batch size at tensor-parallel sizes
    1, 2 and 4."""
    return fig_tensor_parallel(df)


def fig8(df: pd.DataFrame) -> plt.Figure:
    """Fig 8: energy of the classical tasks' examples, PyTorch against vLLM."""
    return fig_classical_tasks(df)


def fig9(df: pd.DataFrame) -> plt.Figure:
    """Fig 9: energy saved by continuous batching over static batches."""
    return fig_online_serving(df)


def fig10(df: pd.DataFrame) -> plt.Figure:
    """Fig 10: controlled sweeps on the PyTorch (transformers) backend."""
    return fig_controlled_sweeps(
        df, "transformers", "Controlled sweeps, PyTorch + transformers (Fig 10)"
    )


def fig11(df: pd.DataFrame) -> plt.Figure:
    """Fig 11: vLLM sweeps at every fixed length of the other dimension."""
    return fig_controlled_sweeps(df, "vllm", "Controlled sweeps, vLLM, every fixed length (Fig 11)")


def fig12(df: pd.DataFrame) -> plt.Figure:
    """Fig 12: the classical tasks' energy per output token and per request on vLLM."""
    return fig_classical_tasks_vllm(df)


FIGURES: dict[str, Callable[[pd.DataFrame], plt.Figure]] = {
    "fig2": fig2,
    "fig3": fig3,
    "fig4": fig4,
    "fig5": fig5,
    "fig6": fig6,
    "fig8": fig8,
    "fig9": fig9,
    "fig10": fig10,
    "fig11": fig11,
    "fig12": fig12,
}
TABLES: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "trace_replay": replay_comparison,
    "controlled_sweeps": table_controlled_sweeps,
    "decoding": table_decoding,
    "architectures": table_architectures,
    "engine_optimisations": table_engine_optimisations,
    "online_serving": table_online_serving,
    "tensor_parallel": table_tensor_parallel,
    "classical_tasks": table_classical_tasks,
    "classical_tasks_vllm": table_classical_tasks_vllm,
}
