"""Decoding strategies against batch size: greedy, beam search, temperature and top-p sampling
(the study's Fig 3, with the speculative pairs of ``speculative_decoding``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from llm_energy.errors import ConfigError
from llm_energy.families.base import Family, Rows, figure, shape_points, table
from llm_energy.measure.job import DecodingSpec, PointSpec

NAME = "decoding_strategies"
# Fig 3 draws the speculative pairs beside the strategies.
ROWS = Rows((NAME, "speculative_decoding"), ("decoding", "speculative"))
CATEGORY = "Decoding strategies"


class DecodingStrategies(Family):
    name = NAME
    description = "Greedy, beam search and sampling against batch size (Fig 3)."
    schema = """
strategies:
  $ref: "#/definitions/name_list"
  description: Keys of `decoding`.
  default: [greedy]
input_tokens: {type: integer, minimum: 1, description: Input length., default: 512}
output_tokens: {type: integer, minimum: 1, description: Output length., default: 64}
"""
    tags = ("decoding",)
    outputs = (
        figure(
            "fig3",
            "fig3_decoding_strategies",
            "Fig 3: decoding strategies against batch size",
            CATEGORY,
            ROWS,
            "llm_energy.figures.decoding_architectures:fig_decoding",
        ),
        table(
            "table_decoding",
            "decoding.csv",
            "Decoding strategies and speculative decoding",
            CATEGORY,
            ROWS,
            "llm_energy.figures.decoding_architectures:table_decoding",
        ),
    )

    def check_engine(self, exp: dict[str, Any], config: dict[str, Any], engine: str) -> None:
        if config["engines"][engine]["backend"] != "vllm":
            return
        for name in exp["strategies"]:
            if config["decoding"][name]["strategy"] == "beam":
                raise ConfigError(
                    f"{self.where('engines')}: '{engine}' is a vLLM engine, and vLLM's beam "
                    "search needs a tokenizer, which random-weight models run without; measure "
                    f"decoding '{name}' on a transformers engine"
                )

    def points(self, exp: dict[str, Any], config: dict[str, Any]) -> Iterator[PointSpec]:
        for name in exp["strategies"]:
            yield from shape_points(
                "decoding", exp, DecodingSpec(name=name, **config["decoding"][name])
            )
