"""Dense and mixture-of-experts models against batch size (the study's Fig 4), with the share
of time the feed-forward blocks take (experts against dense MLPs)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from llm_energy.families.base import Family, Rows, figure, shape_points, table
from llm_energy.measure.job import PointSpec

NAME = "architectures"
ROWS = Rows((NAME,), (NAME,))
CATEGORY = "Architectures"


class Architectures(Family):
    name = NAME
    description = "Dense and mixture-of-experts models against batch size (Fig 4)."
    schema = """
input_tokens: {type: integer, minimum: 1, description: Input length., default: 512}
output_tokens: {type: integer, minimum: 1, description: Output length., default: 64}
ffn_time_share:
  type: boolean
  description: >-
    After each point, one more generation outside the energy windows with timers
    around every feed-forward block (the dense MLP, or the mixture-of-experts block
    with its router and experts); rows get ffn_time_share, the blocks' share of the
    generation's time. transformers engines only: vLLM runs its layers inside
    compiled graphs, and its rows leave the column empty.
  default: false
"""
    tags = (NAME,)
    outputs = (
        figure(
            "fig4",
            "fig4_architectures",
            "Fig 4: OLMo-1B, OLMo-7B and OLMoE-1B-7B",
            CATEGORY,
            ROWS,
            "llm_energy.figures.decoding_architectures:fig_architectures",
        ),
        table(
            "table_architectures",
            "architectures.csv",
            "Dense and mixture-of-experts models",
            CATEGORY,
            ROWS,
            "llm_energy.figures.decoding_architectures:table_architectures",
        ),
    )

    def points(self, exp: dict[str, Any], config: dict[str, Any]) -> Iterator[PointSpec]:
        yield from shape_points(NAME, exp)

    def job_options(self, exp: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
        return {"ffn_time_share": (NAME,)} if exp["ffn_time_share"] else {}
