"""The request traces (BurstGPT, Azure conversation and code): their length statistics beside
the paper's (Tables 1 and 2), their binning and the real against binned lengths (Fig 7). This
family measures nothing; the traces' bins are what ``workload_estimates`` measures."""

from __future__ import annotations

from typing import Any

from llm_energy.families.base import Family, figure, table

NAME = "workload_traces"
CATEGORY = "Workload traces"


class WorkloadTraces(Family):
    name = NAME
    description = "Offline energy model of real request traces (Figs 1, 7; Tables 1, 2, 4)."
    schema = """
traces:
  type: array
  items: {type: string, enum: [burstgpt, azure_conversation, azure_code]}
  description: Traces to estimate.
  default: [burstgpt, azure_conversation, azure_code]
input_bins:
  $ref: "#/definitions/positive_int_list"
  description: Input-length bins (the study's printed list).
  default: [32, 128, 256, 512, 1024, 2048, 4096, 8192]
output_bins:
  $ref: "#/definitions/positive_int_list"
  description: Output-length bins.
  default: [8, 16, 32, 64, 128, 256, 512]
"""
    measures = False
    # Written by the data rules from the traces' summaries (workflow/rules/data.smk).
    outputs = (
        table(
            "table1",
            "results/tables/traces/table1_burstgpt_lengths.csv",
            "Table 1: BurstGPT's input and output lengths, ours beside the paper's",
            CATEGORY,
            None,
            None,
        ),
        table(
            "table2",
            "results/tables/traces/table2_azure_lengths.csv",
            "Table 2: the Azure traces' input and output lengths, ours beside the paper's",
            CATEGORY,
            None,
            None,
        ),
        table(
            "table_trace_lengths",
            "results/tables/traces/trace_lengths.csv",
            "Length statistics of every configured trace",
            CATEGORY,
            None,
            None,
        ),
        table(
            "table_trace_bins",
            "results/tables/traces/trace_bins.csv",
            "Requests per bin, and those the bins drop",
            CATEGORY,
            None,
            None,
        ),
        figure(
            "fig7",
            "results/figures/traces/fig7_azure_conversation_cdf",
            "Fig 7: real against binned Azure conversation lengths",
            CATEGORY,
            None,
            None,
        ),
    )

    def makes(self, output: str, exp: dict[str, Any]) -> bool:
        return output != "fig7" or "azure_conversation" in exp["traces"]
