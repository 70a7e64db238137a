"""Beyond the study: a sample of a trace's requests served directly (real lengths, each bin's
requests in static batches) beside every bin shape measured at the same batch size, so that the
binned estimate of the same requests can be checked against a measurement."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from llm_energy.families.base import GREEDY, Family, Rows, table
from llm_energy.inputs.prompts import TraceLengths, bin_groups
from llm_energy.measure.job import PointSpec, StreamSpec

NAME = "trace_replay"


class TraceReplay(Family):
    name = NAME
    description = (
        "Beyond the study: a sample of a trace's requests served directly (real lengths, each "
        "bin's requests in static batches of each batch size) beside every bin shape of "
        "experiments.workload_traces measured at the same batch size, so that the binned "
        "estimate of the same requests can be checked against a measurement."
    )
    schema = """
trace:
  type: string
  enum: [burstgpt, azure_conversation, azure_code]
  description: Trace the requests are drawn from (only requests within the bins).
  default: azure_code
requests: {type: integer, minimum: 1, description: Requests in the sample., default: 256}
sampled_bins_only:
  type: boolean
  description: >
    Measure only the bin shapes that the sample's requests fall in (the job reads the
    trace when it starts; planning lists every bin shape); false measures every bin shape.
  default: false
"""
    tags = (NAME,)
    outputs = (
        table(
            "table_trace_replay",
            "trace_replay.csv",
            "A trace's requests served directly against their binned estimate",
            "Workload energy",
            Rows((NAME,), (NAME,)),
            "llm_energy.analysis.replay:replay_comparison",
        ),
    )

    def points(self, exp: dict[str, Any], config: dict[str, Any]) -> Iterator[PointSpec]:
        traces = config["experiments"]["workload_traces"]
        ib, ob = tuple(sorted(traces["input_bins"])), tuple(sorted(traces["output_bins"]))
        stream = StreamSpec(exp["trace"], exp["requests"], "offline", True, ib, ob)
        for b in exp["batch_sizes"]:
            yield PointSpec(b, ib[-1], ob[-1], GREEDY, (NAME,), stream)
            for i in ib:
                for o in ob:
                    yield PointSpec(b, i, o, GREEDY, (NAME,))

    def job_options(self, exp: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
        if not exp["sampled_bins_only"]:
            return {}
        return {"selections": {NAME: {"seed": config["protocol"]["seed"]}}}

    def select(
        self, points: list[PointSpec], options: dict[str, Any], data: TraceLengths
    ) -> list[PointSpec]:
        """The replays, and the bin shapes their sample of requests falls in: the same seeded
        draw as the replay's own (it does not depend on the batch size)."""
        replays = [p for p in points if p.stream is not None]
        if not replays:
            return points
        seed = options["seed"]
        lengths = data.lengths(replays[0], seed)
        stream = replays[0].stream
        sampled = set(bin_groups(lengths, stream.input_bins, stream.output_bins))
        return [
            p
            for p in points
            if p.stream is not None or (p.input_tokens, p.output_tokens) in sampled
        ]
