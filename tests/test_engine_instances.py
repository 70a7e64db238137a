"""The engine-instance experiment's shipped rows, its table and its figure."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import pandas as pd
import pytest
from _outputs import draw

ROWS = Path(__file__).resolve().parents[1] / "resources/engine_instances/h200/rows.parquet"


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return pd.read_parquet(ROWS)


def test_every_engine_was_started_several_times_in_one_session(rows):
    starts = rows.groupby("engine_label")["engine_instance"].nunique()
    assert starts.to_dict() == {"PyTorch eager": 5, "vLLM eager": 3, "vLLM CUDA graphs": 3}
    assert set(rows["gpu_name"]) == {"NVIDIA H200"} and rows["gpu_uuids"].nunique() == 1
    assert (rows["energy_source"] == "measured").all() and not rows["contended"].any()


def test_cuda_graphs_hold_between_starts_and_eager_pytorch_does_not(rows):
    table = draw("table_engine_instances", rows).set_index(["engine", "batch_size"])
    graphs = table.loc[("vLLM CUDA graphs", 64)]
    eager = table.loc[("PyTorch eager", 64)]
    assert graphs["energy_j_cv_between_pct"] < 0.1
    assert eager["energy_j_cv_between_pct"] > 2 * eager["energy_j_cv_within_pct"]


def test_the_figure_has_a_panel_per_batch_and_its_provenance(rows):
    fig = draw("fig_engine_instances", rows)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["batch 1", "batch 64"]
    assert any("NVIDIA H200" in t.get_text() for t in fig.texts)


# What docs/MEASURING.md quotes of the table: (engine, batch, column, decimals).
QUOTED = (
    ("PyTorch eager", 64, "energy_j_cv_between_pct", 1),
    ("PyTorch eager", 64, "energy_j_cv_within_pct", 1),
    ("PyTorch eager", 64, "duration_s_cv_between_pct", 1),
    ("PyTorch eager", 64, "duration_s_cv_within_pct", 1),
    ("vLLM CUDA graphs", 64, "energy_j_cv_between_pct", 2),
    ("vLLM CUDA graphs", 64, "energy_j_cv_within_pct", 1),
    ("vLLM CUDA graphs", 1, "energy_j_cv_between_pct", 2),
    ("vLLM CUDA graphs", 1, "energy_j_cv_within_pct", 2),
    ("vLLM CUDA graphs", 1, "duration_s_cv_between_pct", 1),
    ("vLLM CUDA graphs", 1, "duration_s_cv_within_pct", 2),
    ("vLLM eager", 64, "energy_j_cv_between_pct", 1),
    ("vLLM eager", 64, "energy_j_cv_within_pct", 1),
)


def test_the_numbers_the_docs_quote_are_the_tables(rows):
    table = draw("table_engine_instances", rows).set_index(["engine", "batch_size"])
    text = " ".join((ROWS.parents[3] / "docs/MEASURING.md").read_text().split())
    for engine, batch, column, decimals in QUOTED:
        quoted = f"{table.loc[(engine, batch), column]:.{decimals}f} %"
        assert quoted in text, (engine, batch, column, quoted)
