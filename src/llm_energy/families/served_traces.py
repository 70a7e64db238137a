"""Beyond the study: a trace's requests served by a real ``vllm serve`` at their arrival times,
energy per request over the run's steady state beside its latency, and the same requests in
static batches through the same server as the offline estimate."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from llm_energy.errors import ConfigError
from llm_energy.families.base import GREEDY, Family, Rows, figure, table
from llm_energy.measure.job import PointSpec, ServedSpec, StreamSpec

NAME = "served_traces"
ROWS = Rows((NAME,), (NAME,))
CATEGORY = "Online serving"
DRAW = "llm_energy.figures.serving"


def served_engine(engine: str, max_num_seqs: int, size: int) -> str:
    """The name of the server of ``engine`` with ``max_num_seqs`` over ``size`` GPUs."""
    return f"{engine}-served-s{max_num_seqs}" + (f"-tp{size}" if size > 1 else "")


def server_over_any_gpus(name: str) -> str:
    """A server's name (:func:`served_engine`) without its GPU count: one name for the same
    server over any number of GPUs."""
    return re.sub(r"-tp\d+$", "", name)


def engine_of_server(name: str) -> str:
    """A server's name (:func:`served_engine`) without its max_num_seqs and GPU count: one
    name for the servers of one engine, whatever their settings."""
    return re.sub(r"-s\d+(-tp\d+)?$", "", name)


class ServedTraces(Family):
    name = NAME
    description = (
        "Beyond the study: a trace's requests served through a real vLLM server (vllm serve) "
        "at the trace's own arrival times and at Poisson arrivals, scaled to request rates; "
        "latency per request, and energy per request over each run's steady state. One "
        "server per engine, max_num_seqs (batch_sizes) and tensor-parallel size."
    )
    schema = """
batch_sizes:
  $ref: "#/definitions/positive_int_list"
  description: >
    max_num_seqs of the servers (the most requests each runs at once): one server each, and
    the offline estimate's static batch.
  default: [64]
trace:
  type: string
  enum: [azure_conversation, azure_code, burstgpt]
  description: >
    Trace the requests' lengths (a seeded sample) and the trace arrivals' gaps come from.
  default: azure_conversation
requests:
  type: integer
  minimum: 2
  description: Requests per run (one run is one trial).
  default: 128
arrivals:
  type: array
  minItems: 1
  uniqueItems: true
  items: {type: string, enum: [trace, poisson]}
  description: >
    trace: the gaps between consecutive requests of the trace (from a seeded position),
    scaled to each rate; poisson: a seeded Poisson process at each rate.
  default: [trace, poisson]
request_rates:
  type: array
  minItems: 1
  uniqueItems: true
  items: {type: number, exclusiveMinimum: 0}
  description: Mean request rates, in requests per second.
  default: [1, 4, 16]
max_input_tokens:
  type: integer
  minimum: 1
  description: Input lengths drawn from the trace are clipped to this.
  default: 1024
max_output_tokens:
  type: integer
  minimum: 1
  description: Output lengths drawn from the trace are clipped to this.
  default: 256
tensor_parallel_sizes:
  $ref: "#/definitions/positive_int_list"
  description: GPUs each server spans (one server per size).
  default: [1]
vllm_options:
  type: object
  description: >
    Extra vLLM engine arguments for the servers of more than one GPU only (as
    tensor_parallel.vllm_options).
  default: {}
offline_estimate:
  type: boolean
  description: >
    Also serve the same requests in static batches of max_num_seqs through the same server,
    all present at once: the offline estimate the figures set the served runs against.
  default: true
health_timeout_s:
  type: number
  exclusiveMinimum: 0
  description: >
    Seconds a server has to answer its health endpoint after it starts; one that does not
    fails its job with the last lines of its output.
  default: 900
read_timeout_s:
  type: number
  exclusiveMinimum: 0
  description: Seconds a request's stream may stay silent before the request counts as failed.
  default: 600
max_failed_fraction:
  type: number
  minimum: 0
  maximum: 1
  description: >
    A run with a larger share of failed requests is not used (its row says why); failed
    requests are counted in every row (requests_failed).
  default: 0.01
port:
  type: [integer, "null"]
  minimum: 1
  maximum: 65535
  description: >
    Port each server tries first (a free one when it is taken); null lets the system
    choose a free port.
  default: null
"""
    tags = (NAME,)
    outputs = (
        figure(
            "fig_serving_rate",
            "fig_serving_energy_per_request",
            "Energy per request against request rate through a vLLM server",
            CATEGORY,
            ROWS,
            f"{DRAW}:fig_serving_rate",
        ),
        figure(
            "fig_serving_pareto",
            "fig_serving_pareto",
            "Energy per request against p99 time per output token across server settings",
            CATEGORY,
            ROWS,
            f"{DRAW}:fig_serving_pareto",
        ),
        table(
            "table_served_traces",
            "served_traces.csv",
            "Served runs: latency, steady state and energy per request beside the offline estimate",
            CATEGORY,
            ROWS,
            f"{DRAW}:table_served_traces",
        ),
    )

    def jobs(self, exp: dict[str, Any], config: dict[str, Any]) -> list[tuple[str, str]]:
        """(model, server engine) per engine, max_num_seqs and tensor-parallel size; registers
        the server engines under config['engines']."""
        jobs = []
        for engine in exp["engines"]:
            base = config["engines"][engine]
            self.check_engine(exp, config, engine)
            for n in exp["batch_sizes"]:
                for size in exp["tensor_parallel_sizes"]:
                    options = dict(base.get("options", {}))
                    if size > 1:
                        options.update(exp["vllm_options"])
                    options["max_num_seqs"] = n
                    name = served_engine(engine, n, size)
                    config["engines"][name] = {
                        **base,
                        "backend": "vllm_server",
                        "tensor_parallel_size": size,
                        "options": options,
                    }
                    jobs += [(model, name) for model in exp["models"]]
        return jobs

    def check_engine(self, exp: dict[str, Any], config: dict[str, Any], engine: str) -> None:
        base = config["engines"][engine]
        if base["backend"] != "vllm":
            raise ConfigError(
                f"{self.where('engines')}: '{engine}' is not a vLLM engine; the served runs "
                "start vllm serve with a vLLM engine's options"
            )
        if base.get("tensor_parallel_size", 1) != 1:
            raise ConfigError(
                f"{self.where('engines')}: '{engine}' already spans "
                f"{base['tensor_parallel_size']} GPUs; name a one-GPU engine and list the "
                f"sizes under experiments.{NAME}.tensor_parallel_sizes"
            )

    def points(self, exp: dict[str, Any], config: dict[str, Any]) -> Iterator[PointSpec]:
        """Per max_num_seqs: a served point per arrival and rate, and the offline estimate."""
        served = StreamSpec(exp["trace"], exp["requests"], "served", vary_input=True)
        offline = StreamSpec(exp["trace"], exp["requests"], "offline", vary_input=True)
        caps = (exp["max_input_tokens"], exp["max_output_tokens"])
        for n in exp["batch_sizes"]:
            for arrival in exp["arrivals"]:
                for rate in exp["request_rates"]:
                    yield PointSpec(
                        n, *caps, GREEDY, (NAME,), served, served=ServedSpec(arrival, rate)
                    )
            if exp["offline_estimate"]:
                yield PointSpec(n, *caps, GREEDY, (NAME,), offline)

    def job_points(
        self,
        exp: dict[str, Any],
        config: dict[str, Any],
        job: tuple[str, str],
        points: list[PointSpec],
    ) -> list[PointSpec]:
        """A server's points are those of its max_num_seqs."""
        n = config["engines"][job[1]]["options"]["max_num_seqs"]
        return [p for p in points if p.batch_size == n]

    def job_options(self, exp: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
        keys = ("health_timeout_s", "read_timeout_s", "max_failed_fraction", "port")
        return {"server_options": {k: exp[k] for k in keys}}
