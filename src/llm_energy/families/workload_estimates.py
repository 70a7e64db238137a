"""The offline workload energy model (the study's section 4): each (input bin, output bin) of
the traces measured at the largest batch that fits, for each trace's binned energy against the
ideal baselines (Table 4, Fig 1)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd

from llm_energy.errors import ConfigError
from llm_energy.families.base import GREEDY, Family, figure, table
from llm_energy.inputs.prompts import TraceLengths
from llm_energy.measure.job import PointSpec

NAME = "workload_estimates"
CATEGORY = "Workload energy"


class WorkloadEstimates(Family):
    name = NAME
    description = (
        "Energy of each (input bin, output bin) of experiments.workload_traces at the largest "
        "batch that fits, for the traces' binned energy estimate against the ideal (Fig 1, "
        "Table 4)."
    )
    schema = """
batch_sizes:
  $ref: "#/definitions/positive_int_list"
  description: >
    Ladder searched for each bin's largest feasible batch (see batch_search).
  default: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
batch_search:
  type: string
  enum: [largest_feasible, every]
  description: >
    largest_feasible tries each bin's batches largest first and measures only the
    largest that fits (the estimate needs no other; smaller ones are recorded as not
    measured); every measures the whole ladder up to the first out-of-memory batch.
  default: largest_feasible
occupied_bins_only:
  type: boolean
  description: >
    Measure only the bins that hold requests of experiments.workload_traces.traces
    (the job reads the traces when it starts; planning lists every bin); false measures
    every bin.
  default: false
bins:
  type: [array, "null"]
  items:
    type: array
    items: {type: integer, minimum: 1}
    minItems: 2
    maxItems: 2
  description: >
    Measure only these [input bin, output bin] pairs of experiments.workload_traces' bins
    (null: every bin). One part of the bins at a time, so that a part fits one allocation
    and both engines measure it in one machine session; the estimate reads every measured
    bin, whichever run measured it.
  default: null
missing_bins:
  type: string
  enum: [error, incomplete]
  description: >
    A bin with requests but no feasible measurement of an engine either stops the
    estimate with an error naming it, or leaves the engine's total incomplete with the
    missing bins and the fraction of requests covered listed.
  default: error
ideal_gpu:
  type: [string, "null"]
  description: >
    Key of the hardware table (llm_energy/analysis/hardware.yaml) whose TDP, peaks and
    bandwidth give the ideal baselines; null means the `hardware` label, which must then
    be such a key.
  default: null
"""
    default_batch_sizes = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
    tags = (NAME,)
    # Written by the workload rules from the measurements and the traces' summaries
    # (workflow/rules/workloads.smk).
    outputs = (
        table(
            "table4",
            "results/tables/{hardware}/table4_energy_over_ideal.csv",
            "Table 4: the traces' estimated energy over the ideal",
            CATEGORY,
            None,
            None,
        ),
        figure(
            "fig1",
            "results/figures/{hardware}/fig1_workload_energy",
            "Fig 1: each trace's energy per engine against the ideal",
            CATEGORY,
            None,
            None,
        ),
        table(
            "table_workload_energy",
            "results/tables/{hardware}/workload_energy.csv",
            "Each trace's estimated energy per engine, and the ideal baselines",
            CATEGORY,
            None,
            None,
        ),
        table(
            "table_workload_energy_bins",
            "results/tables/{hardware}/workload_energy_bins.csv",
            "The estimate bin by bin",
            CATEGORY,
            None,
            None,
        ),
    )

    def points(self, exp: dict[str, Any], config: dict[str, Any]) -> Iterator[PointSpec]:
        traces = config["experiments"]["workload_traces"]
        every = [(i, o) for i in traces["input_bins"] for o in traces["output_bins"]]
        chosen = every if exp["bins"] is None else {(int(i), int(o)) for i, o in exp["bins"]}
        unknown = sorted(set(chosen) - set(every))
        if unknown:
            raise ConfigError(
                f"{self.where('bins')}: "
                + ", ".join(f"[{i}, {o}]" for i, o in unknown)
                + " not among the bins of experiments.workload_traces (input_bins "
                + " ".join(map(str, traces["input_bins"]))
                + ", output_bins "
                + " ".join(map(str, traces["output_bins"]))
                + ")"
            )
        for i, o in every:
            if (i, o) not in chosen:
                continue
            for b in exp["batch_sizes"]:
                yield PointSpec(b, i, o, GREEDY, (NAME,))

    def job_options(self, exp: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if exp["batch_search"] == "largest_feasible":
            options["largest_feasible_only"] = (NAME,)
        if exp["occupied_bins_only"]:
            traces = config["experiments"]["workload_traces"]
            options["selections"] = {
                NAME: {k: traces[k] for k in ("traces", "input_bins", "output_bins")}
            }
        return options

    def select(
        self, points: list[PointSpec], options: dict[str, Any], data: TraceLengths
    ) -> list[PointSpec]:
        """The bins that hold at least one request of any of the traces."""
        from llm_energy.inputs.traces import bin_requests

        occupied: set[tuple[int, int]] = set()
        for trace in options["traces"]:
            df = pd.read_parquet(data.folder / f"{trace}.parquet")
            counts = bin_requests(df, options["input_bins"], options["output_bins"]).counts
            occupied |= {
                (int(i), int(o))
                for i, o in zip(counts["input_bin"], counts["output_bin"], strict=True)
            }
        return [p for p in points if (p.input_tokens, p.output_tokens) in occupied]
