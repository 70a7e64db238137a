"""What a vLLM engine's settings say about how it ran, read from its configuration (the
engine itself is tested in tests/test_vllm.py)."""

from types import SimpleNamespace

import pytest

from llm_energy.backends.vllm.backend import cuda_graph_max_batch


def _config(enforce_eager=False, mode="FULL_AND_PIECEWISE", max_size=512):
    return SimpleNamespace(
        model_config=SimpleNamespace(enforce_eager=enforce_eager),
        compilation_config=SimpleNamespace(
            cudagraph_mode=None if mode is None else SimpleNamespace(name=mode),
            max_cudagraph_capture_size=max_size,
        ),
    )


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (_config(), 512),
        (_config(max_size=1024), 1024),
        (_config(enforce_eager=True), 0),
        (_config(mode="NONE"), 0),
        (_config(mode=None), 0),
        (_config(max_size=None), 0),
    ],
)
def test_the_largest_batch_a_decoding_step_launches_as_a_cuda_graph(config, expected):
    """A step of more sequences than the engine captured runs kernel by kernel: the rows say
    where that bound lies, and 0 where the engine captures no graphs."""
    assert cuda_graph_max_batch(config) == expected


def test_a_rows_cuda_graph_bound_is_its_own_or_its_vllm_versions_default():
    """A row that carries the bound gives it; a vLLM 0.26 row measured before the column gives
    that version's default, min(2 x max_num_seqs, 512); engines without graphs and unknown
    versions give none."""
    import math

    import pandas as pd

    from llm_energy.analysis.claims import _past_graphs_note
    from llm_energy.analysis.cuda_graphs import cuda_graph_max_batch as of_row

    old = {
        "backend": "vllm",
        "cuda_graphs": True,
        "backend_version": "vllm 0.26.0",
        "engine": "vllm",
        "batch_size": 1024,
        "engine_detail": "vLLM max_num_seqs=1024 max_model_len=576",
    }
    assert of_row(pd.Series(old)) == 512
    small = {**old, "engine_detail": "vLLM max_num_seqs=64", "batch_size": 64}
    assert of_row(pd.Series(small)) == 128
    assert of_row(pd.Series({**old, "cuda_graph_max_batch": 1024})) == 1024
    assert of_row(pd.Series({**old, "cuda_graph_max_batch": math.nan})) == 512
    for other in ({"cuda_graphs": False}, {"backend": "transformers"}):
        assert math.isnan(of_row(pd.Series({**old, **other})))
    assert math.isnan(of_row(pd.Series({**old, "backend_version": "vllm 0.99.0"})))
    # vllm serve's rows: its version's default, unless the server was given compilation
    # settings of its own.
    served = {
        **old,
        "backend": "vllm_server",
        "backend_version": "vllm 0.26.0 (server)",
        "engine_detail": "vllm serve max_num_seqs=64 max_model_len=1152 enforce_eager=False",
        "server_config": '{"max_num_seqs":64}',
    }
    assert of_row(pd.Series(served)) == 128
    own = '{"compilation_config":"{\\"max_cudagraph_capture_size\\": 8}","max_num_seqs":64}'
    assert math.isnan(of_row(pd.Series({**served, "server_config": own})))
    # What a claim's condition says beside such a row.
    note = " (vllm: steps of more than 512 sequences without CUDA graphs)"
    assert _past_graphs_note(pd.Series(old)) == note
    assert _past_graphs_note(pd.Series(small)) == ""
    assert _past_graphs_note(pd.Series({**old, "cuda_graph_max_batch": 0})) == (
        " (vllm: no CUDA graphs captured)"
    )
