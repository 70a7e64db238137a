"""Continuous batching against static batches on vLLM (the study's Fig 9): the same requests,
output lengths drawn from a trace, served both ways with at most ``batch_size`` in flight."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from llm_energy.errors import ConfigError
from llm_energy.families.base import GREEDY, Family, Rows, figure, table
from llm_energy.measure.job import PointSpec, StreamSpec

NAME = "online_serving"
ROWS = Rows((NAME,), (NAME,))
CATEGORY = "Engines"


class OnlineServing(Family):
    name = NAME
    description = (
        "Continuous batching against static batches (Fig 9). The same requests, with output "
        "lengths drawn from a trace, are served both ways with at most batch_size in flight."
    )
    schema = """
requests:
  type: integer
  minimum: 1
  description: Requests per stream (each point serves all of them).
  default: 1024
trace:
  type: string
  enum: [burstgpt, azure_conversation, azure_code]
  description: Trace whose output lengths the requests draw.
  default: azure_conversation
input_tokens: {type: integer, minimum: 1, description: Input length of every request., default: 512}
max_output_tokens:
  type: integer
  minimum: 1
  description: Output lengths drawn from the trace are clipped to this.
  default: 1024
"""
    tags = (NAME,)
    outputs = (
        figure(
            "fig9",
            "fig9_online_serving",
            "Fig 9: continuous against static batching",
            CATEGORY,
            ROWS,
            "llm_energy.figures.engines:fig_online_serving",
        ),
        table(
            "table_online_serving",
            "online_serving.csv",
            "Online against offline serving",
            CATEGORY,
            ROWS,
            "llm_energy.figures.engines:table_online_serving",
        ),
    )

    def check_engine(self, exp: dict[str, Any], config: dict[str, Any], engine: str) -> None:
        if config["engines"][engine]["backend"] != "vllm":
            raise ConfigError(
                f"{self.where('engines')}: '{engine}' has no continuous batching; online "
                "serving needs a vLLM engine"
            )

    def points(self, exp: dict[str, Any], config: dict[str, Any]) -> Iterator[PointSpec]:
        for b in exp["batch_sizes"]:
            for serving in ("offline", "online"):
                stream = StreamSpec(exp["trace"], exp["requests"], serving)
                yield PointSpec(
                    b, exp["input_tokens"], exp["max_output_tokens"], GREEDY, (NAME,), stream
                )
