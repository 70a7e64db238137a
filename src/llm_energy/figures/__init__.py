"""One function per paper figure and table; each takes the tidy measurements table."""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt
import pandas as pd

from llm_energy.figures.controlled import fig_controlled_sweeps, table_controlled_sweeps


def fig10(df: pd.DataFrame) -> plt.Figure:
    """Fig 10: controlled sweeps on the PyTorch (transformers) backend."""
    return fig_controlled_sweeps(
        df, "transformers", "Controlled sweeps, PyTorch + transformers (Fig 10)"
    )


FIGURES: dict[str, Callable[[pd.DataFrame], plt.Figure]] = {"fig10": fig10}
TABLES: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "controlled_sweeps": table_controlled_sweeps,
}
