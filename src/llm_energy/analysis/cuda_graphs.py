"""How far a vLLM engine's CUDA graphs reach: the most sequences one decoding step may hold and
still launch as a captured graph. A step with more sequences runs kernel by kernel, so a row
of a larger batch measured the engine without graphs for its decoding, whatever the engine's
``cuda_graphs`` says; the claims and the workload estimate say so beside such rows."""

from __future__ import annotations

import math
import re

import pandas as pd

# The most sequences vLLM launches a decoding step of as a CUDA graph when its configuration does
# not say (vllm/config/vllm.py: min(2 x max_num_seqs, 512)), by version, for the rows measured
# before they carried `cuda_graph_max_batch`.
VLLM_DEFAULT_CUDA_GRAPH_MAX_BATCH = {"vllm 0.26.0": 512}


def cuda_graph_max_batch(row: pd.Series) -> float:
    """The most sequences one decoding step of ``row``'s engine launched as a CUDA graph: its
    ``cuda_graph_max_batch``, or for a vLLM row measured before that column or through
    ``vllm serve`` (which does not report it), its version's default bound with its
    ``max_num_seqs``; NaN for engines without graphs and where neither is known."""
    if str(row.get("backend", "")) not in ("vllm", "vllm_server") or not bool(
        row.get("cuda_graphs", False)
    ):
        return math.nan
    own = row.get("cuda_graph_max_batch")
    if own is not None and not pd.isna(own):
        return float(own)
    # A server's version reads "vllm X (server)"; a server given its own compilation settings
    # (server_config) may capture other sizes than the default.
    version = str(row.get("backend_version", "")).removesuffix(" (server)")
    default = VLLM_DEFAULT_CUDA_GRAPH_MAX_BATCH.get(version)
    seqs = re.search(r"max_num_seqs=(\d+)", str(row.get("engine_detail", "")))
    if default is None or seqs is None or "compilation_config" in str(row.get("server_config", "")):
        return math.nan
    return float(min(2 * int(seqs.group(1)), default))
