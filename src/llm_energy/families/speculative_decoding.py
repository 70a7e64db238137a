"""Speculative decoding against batch size on vLLM (drawn in the study's Fig 3 beside the
decoding strategies): each pair's target alone, with its draft as measured, and with the
draft forced to agree (the full-acceptance bound, random weights only)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from llm_energy.errors import ConfigError
from llm_energy.families.base import Family, shape_points
from llm_energy.measure.job import PointSpec

NAME = "speculative_decoding"


def speculative_engine(engine: str, draft: str, tokens: int, forced: bool = False) -> str:
    return f"{engine}-spec-{draft}-k{tokens}" + ("-forced" if forced else "")


class SpeculativeDecoding(Family):
    name = NAME
    description = "Speculative decoding with a draft model against batch size (Fig 3)."
    schema = """
pairs:
  type: array
  description: Target and draft model pairs.
  default: []
  items:
    type: object
    additionalProperties: false
    required: [target, draft]
    properties:
      target: {type: string, description: Key of `models` (the verified model).}
      draft: {type: string, description: Key of `models` (the draft model).}
      speculative_tokens:
        type: integer
        minimum: 1
        description: Look-ahead (tokens proposed per step).
        default: 4
      pad_draft_vocabulary:
        type: boolean
        description: >-
          Random weights only: give the draft the target's vocabulary size when it
          is smaller (vLLM verifies draft tokens by id). For DeepSeek-R1-Distill-Qwen
          32B (152,064) and 1.5B (151,936), whose tokenizer is the same, the draft's
          embedding and output layer gain 128 rows (0.08 %); rows record both sizes.
        default: false
acceptance:
  type: array
  minItems: 1
  uniqueItems: true
  items: {type: string, enum: [measured, forced]}
  description: >
    Speculative engines per pair. measured: the weights as they are; a random-weight
    draft is almost never accepted, the lower bound. forced (random weights only):
    every row of both models' output embedding set to the same values, so that both
    pick the same token and the target accepts every draft token, the upper bound;
    shapes and operation counts are unchanged.
  default: [measured]
input_tokens: {type: integer, minimum: 1, description: Input length., default: 512}
output_tokens: {type: integer, minimum: 1, description: Output length., default: 64}
"""
    tags = ("speculative",)

    def jobs(self, exp: dict[str, Any], config: dict[str, Any]) -> list[tuple[str, str]]:
        """(target, engine) of each pair on each engine, with and without its draft; registers
        the speculative engines under config['engines']."""
        jobs = []
        for pair in exp["pairs"]:
            for engine in exp["engines"]:
                base = config["engines"][engine]
                if base["backend"] != "vllm":
                    raise ConfigError(
                        f"{self.where('engines')}: '{engine}' is not a vLLM engine; "
                        "transformers' assisted generation serves batch 1 only, so the study's "
                        "batch sweep runs on vLLM"
                    )
                k = pair["speculative_tokens"]
                if pair.get("pad_draft_vocabulary"):
                    self._check_random_weights(config, pair, "pad_draft_vocabulary", "draft")
                jobs.append((pair["target"], engine))
                for acceptance in exp["acceptance"]:
                    forced = acceptance == "forced"
                    if forced:
                        self._check_random_weights(
                            config, pair, "acceptance: 'forced'", "target", "draft"
                        )
                    name = speculative_engine(engine, pair["draft"], k, forced)
                    config["engines"][name] = {
                        **base,
                        "draft": pair["draft"],
                        "speculative_tokens": k,
                        "forced_acceptance": forced,
                        "pad_draft_vocabulary": bool(pair.get("pad_draft_vocabulary")),
                    }
                    jobs.append((pair["target"], name))
        return jobs

    def _check_random_weights(
        self, config: dict[str, Any], pair: dict[str, Any], option: str, *roles: str
    ) -> None:
        """Forcing acceptance overwrites output weights and padding the draft's vocabulary adds
        rows to them: only random weights may be changed so."""
        for role in roles:
            model = pair[role]
            if config["models"][model]["weights"] != "random":
                raise ConfigError(
                    f"config: experiments.{NAME}: {option} changes the {role}'s weights, and "
                    f"the {role} '{model}' has pretrained weights; measure it with acceptance: "
                    "[measured] and a draft of the target's vocabulary"
                )

    def points(self, exp: dict[str, Any], config: dict[str, Any]) -> Iterator[PointSpec]:
        yield from shape_points("speculative", exp)
