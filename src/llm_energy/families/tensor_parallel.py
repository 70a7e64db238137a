"""Tensor parallelism: each model on each engine over several GPUs (the study's Fig 6)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from llm_energy.errors import ConfigError
from llm_energy.families.base import Family, Rows, figure, shape_points, table
from llm_energy.measure.job import PointSpec

NAME = "tensor_parallel"
ROWS = Rows((NAME,), (NAME,))
CATEGORY = "Tensor parallelism"


def parallel_engine(engine: str, size: int) -> str:
    return engine if size == 1 else f"{engine}-tp{size}"


class TensorParallel(Family):
    name = NAME
    description = "Tensor parallelism over several GPUs (Fig 6)."
    schema = """
sizes:
  $ref: "#/definitions/positive_int_list"
  description: Tensor-parallel sizes.
  default: [1, 2, 4]
vllm_options:
  type: object
  description: >
    Extra vLLM engine arguments for the engines of more than one GPU only, e.g.
    disable_custom_all_reduce: true where the GPUs cannot map each other's memory.
  default: {}
input_tokens: {type: integer, minimum: 1, description: Input length., default: 512}
output_tokens: {type: integer, minimum: 1, description: Output length., default: 64}
"""
    tags = (NAME,)
    outputs = (
        figure(
            "fig6",
            "fig6_tensor_parallel",
            "Fig 6: tensor parallelism over 1, 2 and 4 GPUs",
            CATEGORY,
            ROWS,
            "llm_energy.figures.parallel:fig_tensor_parallel",
        ),
        table(
            "table_tensor_parallel",
            "tensor_parallel.csv",
            "Tensor parallelism",
            CATEGORY,
            ROWS,
            "llm_energy.figures.parallel:table_tensor_parallel",
        ),
    )

    def jobs(self, exp: dict[str, Any], config: dict[str, Any]) -> list[tuple[str, str]]:
        """(model, engine) of each model on each engine at each size; registers the engines
        of more than one GPU under config['engines']."""
        jobs = []
        for engine in exp["engines"]:
            base = config["engines"][engine]
            if base.get("tensor_parallel_size", 1) != 1:
                raise ConfigError(
                    f"{self.where('engines')}: '{engine}' already spans "
                    f"{base['tensor_parallel_size']} GPUs; name a one-GPU engine and list the "
                    f"sizes under experiments.{NAME}.sizes"
                )
            for size in exp["sizes"]:
                name = parallel_engine(engine, size)
                if size > 1:
                    engine_spec = {**base, "tensor_parallel_size": size}
                    if base["backend"] == "vllm" and exp.get("vllm_options"):
                        engine_spec["options"] = {**base.get("options", {}), **exp["vllm_options"]}
                    config["engines"][name] = engine_spec
                jobs += [(model, name) for model in exp["models"]]
        return jobs

    def points(self, exp: dict[str, Any], config: dict[str, Any]) -> Iterator[PointSpec]:
        yield from shape_points(NAME, exp)
