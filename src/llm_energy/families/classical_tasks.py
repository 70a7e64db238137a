"""The classical NLP tasks: IMDB classification, WMT-14 translation, CNN/DailyMail
summarization and WikiText-2 generation, each example served with its own lengths in static
batches (the study's Figs 8 and 12; Table 3)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from llm_energy.errors import ConfigError
from llm_energy.families.base import GREEDY, Family, Rows, figure, table
from llm_energy.measure.job import PointSpec, StreamSpec

NAME = "classical_tasks"
CATEGORY = "Classical tasks"


class ClassicalTasks(Family):
    name = NAME
    description = "IMDB, WMT-14, CNN/DailyMail and WikiText-2 (Figs 8, 12; Table 3)."
    schema = """
tasks:
  type: array
  items: {type: string, enum: [classification, translation, summarization, generation]}
  description: Tasks to run.
  default: [classification, translation, summarization, generation]
samples: {type: integer, minimum: 1, description: Examples per task., default: 1024}
batch_sizes:
  $ref: "#/definitions/positive_int_list"
  description: >-
    Batch sizes (static batches of examples; PyTorch pads each batch to its longest example).
  default: [1, 8, 128]
requests:
  type: [integer, "null"]
  minimum: 1
  description: >-
    Examples served per point, drawn from the task's sample (without replacement
    when it holds that many); null means all `samples`.
  default: null
max_input_tokens:
  type: integer
  minimum: 1
  description: >-
    Input cap of the task points; longer prompts are clipped to it (the rows count
    them in clipped_requests). The study's longest prompt is 3,112 tokens (IMDB).
  default: 4096
max_output_tokens:
  type: integer
  minimum: 1
  description: Output cap of the task points; longer references are clipped to it.
  default: 1024
fallback_output_tokens:
  type: [integer, "null"]
  minimum: 1
  description: >-
    Output length of a translation or summarization example whose reference target
    the data source lacks (the mirror's CNN/DailyMail articles come without their
    highlights); null makes that an error.
  default: null
"""
    default_batch_sizes = (1, 8, 128)
    tags = (NAME,)
    outputs = (
        figure(
            "fig8",
            "fig8_classical_tasks",
            "Fig 8: the classical tasks, PyTorch against vLLM",
            CATEGORY,
            Rows((NAME,), (NAME,)),
            "llm_energy.figures.tasks:fig_classical_tasks",
        ),
        table(
            "table_classical_tasks",
            "classical_tasks.csv",
            "The classical tasks' energy",
            CATEGORY,
            Rows((NAME,), (NAME,)),
            "llm_energy.figures.tasks:table_classical_tasks",
        ),
        figure(
            "fig12",
            "fig12_classical_tasks_vllm",
            "Fig 12: the classical tasks' energy intensity on vLLM",
            CATEGORY,
            Rows((NAME,), (NAME,), "vllm"),
            "llm_energy.figures.tasks:fig_classical_tasks_vllm",
        ),
        table(
            "table_classical_tasks_vllm",
            "classical_tasks_vllm.csv",
            "The classical tasks' energy intensity on vLLM",
            CATEGORY,
            Rows((NAME,), (NAME,), "vllm"),
            "llm_energy.figures.tasks:table_classical_tasks_vllm",
        ),
        # Written by the data rules from the task texts (workflow/rules/data.smk).
        table(
            "table3",
            "results/tables/tasks/table3_token_stats.csv",
            "Table 3: token statistics of the classical tasks",
            CATEGORY,
            None,
            None,
        ),
    )

    def points(self, exp: dict[str, Any], config: dict[str, Any]) -> Iterator[PointSpec]:
        # Each task's examples served offline in static batches, with their own lengths.
        requests = self.requests(exp)
        for task in exp["tasks"]:
            for b in exp["batch_sizes"]:
                yield PointSpec(
                    b,
                    exp["max_input_tokens"],
                    exp["max_output_tokens"],
                    GREEDY,
                    (NAME,),
                    StreamSpec(task, requests, "offline", vary_input=True),
                )

    def requests(self, exp: dict[str, Any]) -> int:
        requests = exp["requests"] if exp["requests"] is not None else exp["samples"]
        if requests > exp["samples"]:
            raise ConfigError(
                f"{self.where('requests')} ({requests}) is more than the examples sampled per "
                f"task (samples: {exp['samples']})"
            )
        return requests
