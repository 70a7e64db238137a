"""Controlled sweeps: prefill energy against input length at fixed output lengths, and decode
energy against output length at fixed input lengths (the study's Figs 2, 10 and 11)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from llm_energy.families.base import GREEDY, Family, Rows, figure, table
from llm_energy.measure.job import PointSpec

NAME = "controlled_sweeps"
TAGS = ("input_sweep", "output_sweep")
CATEGORY = "Controlled sweeps"
DRAW = "llm_energy.figures.controlled:fig_controlled_sweeps"


class ControlledSweeps(Family):
    name = NAME
    description = (
        "Prefill energy vs input length and decode energy vs output length (Figs 2, 10, 11)."
    )
    schema = """
input_sweep:
  type: object
  additionalProperties: false
  description: Input lengths swept at each fixed output length.
  default: {}
  properties:
    input_tokens:
      $ref: "#/definitions/positive_int_list"
      description: Swept input lengths.
      default: [128, 256, 512, 1024, 2048, 4096]
    output_tokens:
      $ref: "#/definitions/positive_int_list"
      description: Fixed output lengths.
      default: [8]
output_sweep:
  type: object
  additionalProperties: false
  description: Output lengths swept at each fixed input length.
  default: {}
  properties:
    output_tokens:
      $ref: "#/definitions/positive_int_list"
      description: Swept output lengths.
      default: [8, 16, 32, 64, 128, 256, 512]
    input_tokens:
      $ref: "#/definitions/positive_int_list"
      description: Fixed input lengths.
      default: [512]
prompts:
  type: string
  enum: [random, pg19]
  description: >-
    Token ids of the prompts: seeded random ids, or PG-19 text (the mirror's books
    first) tokenised with the Llama 3 tokenizer and cut to each input length, each row
    of a batch from its own place in the text. For a model whose vocabulary is smaller
    than the tokenizer's, ids are taken modulo the vocabulary size and the rows say so
    (prompt_id_modulo).
  default: random
"""
    tags = TAGS
    outputs = (
        figure(
            "fig2",
            "fig2_controlled_sweeps_vllm",
            "Fig 2: controlled sweeps on vLLM",
            CATEGORY,
            Rows((NAME,), TAGS, "vllm"),
            DRAW,
            backend="vllm",
            title="Controlled sweeps, vLLM (Fig 2)",
            main_only=True,
        ),
        figure(
            "fig10",
            "fig10_controlled_sweeps_pytorch",
            "Fig 10: controlled sweeps on PyTorch + transformers",
            CATEGORY,
            Rows((NAME,), TAGS, "transformers"),
            DRAW,
            backend="transformers",
            title="Controlled sweeps, PyTorch + transformers (Fig 10)",
        ),
        figure(
            "fig11",
            "fig11_controlled_sweeps_vllm_all_lengths",
            "Fig 11: vLLM sweeps at every fixed length of the other dimension",
            CATEGORY,
            Rows((NAME,), TAGS, "vllm"),
            DRAW,
            backend="vllm",
            title="Controlled sweeps, vLLM, every fixed length (Fig 11)",
        ),
        table(
            "table_controlled_sweeps",
            "controlled_sweeps.csv",
            "Controlled sweeps: every point, energy per token included",
            CATEGORY,
            Rows((NAME,), TAGS),
            "llm_energy.figures.controlled:table_controlled_sweeps",
        ),
    )

    def points(self, exp: dict[str, Any], config: dict[str, Any]) -> Iterator[PointSpec]:
        for tag, sweep, varied, fixed in (
            ("input_sweep", exp["input_sweep"], "input_tokens", "output_tokens"),
            ("output_sweep", exp["output_sweep"], "output_tokens", "input_tokens"),
        ):
            for b in exp["batch_sizes"]:
                for f in sweep[fixed]:
                    for v in sweep[varied]:
                        shape = {varied: v, fixed: f}
                        yield PointSpec(
                            b,
                            shape["input_tokens"],
                            shape["output_tokens"],
                            GREEDY,
                            (tag,),
                            prompts=exp["prompts"],
                        )
