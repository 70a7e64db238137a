"""PyTorch with and without torch.compile against vLLM with and without CUDA graphs, over
batch sizes up to the largest that fits (the study's Fig 5)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from llm_energy.families.base import Family, Rows, figure, shape_points, table
from llm_energy.measure.job import PointSpec

NAME = "engine_optimisations"
ROWS = Rows((NAME,), (NAME,))
CATEGORY = "Engines"


class EngineOptimisations(Family):
    name = NAME
    description = "torch.compile and CUDA graphs on and off against batch size (Fig 5)."
    schema = """
input_tokens: {type: integer, minimum: 1, description: Input length., default: 512}
output_tokens: {type: integer, minimum: 1, description: Output length., default: 64}
samples:
  type: integer
  minimum: 1
  description: Requests the figure normalises to (1,024 in the study).
  default: 1024
"""
    tags = (NAME,)
    outputs = (
        figure(
            "fig5",
            "fig5_engine_optimisations",
            "Fig 5: engine optimisations against batch size",
            CATEGORY,
            ROWS,
            "llm_energy.figures.engines:fig_engine_optimisations",
        ),
        table(
            "table_engine_optimisations",
            "engine_optimisations.csv",
            "Engines against batch size",
            CATEGORY,
            ROWS,
            "llm_energy.figures.engines:table_engine_optimisations",
        ),
    )

    def points(self, exp: dict[str, Any], config: dict[str, Any]) -> Iterator[PointSpec]:
        yield from shape_points(NAME, exp)
