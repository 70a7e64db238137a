"""Fig 6 and its table (tensor parallelism) from a synthetic table in the measurements' schema,
and their wiring through the registries, the rules and the report."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from _outputs import draw
from test_figures import _row

from llm_energy.figures.parallel import fig_tensor_parallel, table_tensor_parallel
from llm_energy.figures.style import save

ROOT = Path(__file__).resolve().parents[1]
ENGINES = {
    "pytorch": {"backend": "transformers", "torch_compile": False, "cuda_graphs": False},
    "vllm": {"backend": "vllm", "torch_compile": False, "cuda_graphs": True},
}
SIZES = (1, 2, 4)
BATCHES = (1, 8, 64)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _energy_j(engine: str, size: int, batch: int) -> float:
    # More GPUs: more energy per batch, less time; vLLM spends less than PyTorch.
    return (200.0 if engine == "pytorch" else 100.0) * (1 + 0.3 * (size - 1)) * batch**0.5


def _duration_s(engine: str, size: int, batch: int) -> float:
    return (2.0 if engine == "pytorch" else 1.0) / size**0.5 * (1 + batch / 64)


def _parallel_rows() -> pd.DataFrame:
    rows = []
    for base, opts in ENGINES.items():
        for size in SIZES:
            engine = base if size == 1 else f"{base}-tp{size}"
            for b in BATCHES:
                energy, duration = _energy_j(base, size, b), _duration_s(base, size, b)
                row = _row(
                    b,
                    512,
                    64,
                    "tensor_parallel",
                    model="llama-3.1-8b",
                    engine=engine,
                    group=f"llama-3.1-8b__{engine}",
                    tensor_parallel_size=size,
                    gpu_count=size,
                    energy_j=energy,
                    duration_s=duration,
                    energy_per_output_token_j=energy / (b * 64),
                    energy_per_request_j=energy / b,
                    mean_power_w=energy / duration,
                    git_commit="0123456789abcdef",
                    **opts,
                )
                if (base, size, b) == ("pytorch", 1, 64):  # does not fit on one GPU
                    row.update(feasible=False, error="out of memory: CUDA out of memory")
                    for col in ("energy_j", "duration_s", "energy_per_output_token_j"):
                        row[col] = math.nan
                    row["energy_per_request_j"] = row["mean_power_w"] = math.nan
                rows.append(row)
    # A point another family measured on the same engine: not part of Fig 6.
    rows.append(_row(1, 512, 64, "engine_optimisations", gpu_count=1, tensor_parallel_size=1))
    return pd.DataFrame(rows)


def _point(table: pd.DataFrame, label: str, size: int, batch: int) -> pd.Series:
    hit = table[
        (table["engine_label"] == label)
        & (table["tensor_parallel_size"] == size)
        & (table["batch_size"] == batch)
    ]
    assert len(hit) == 1
    return hit.iloc[0]


def test_table_gives_power_per_gpu_and_the_change_from_one_gpu():
    table = draw("table_tensor_parallel", _parallel_rows())
    assert len(table) == len(ENGINES) * len(SIZES) * len(BATCHES)
    vllm4 = _point(table, "vLLM, CUDA graphs", 4, 8)
    energy, duration = _energy_j("vllm", 4, 8), _duration_s("vllm", 4, 8)
    assert vllm4["energy_per_batch_j"] == pytest.approx(energy)
    assert vllm4["latency_per_batch_s"] == pytest.approx(duration)
    assert vllm4["energy_per_output_token_j"] == pytest.approx(energy / (8 * 64))
    assert vllm4["mean_power_per_gpu_w"] == pytest.approx(energy / duration / 4)
    # Against the same batch on one GPU: energy x1.9, time /2.
    assert vllm4["energy_change_pct"] == pytest.approx(90.0)
    assert vllm4["latency_change_pct"] == pytest.approx(-50.0)
    pytorch2 = _point(table, "PyTorch, eager", 2, 1)
    assert pytorch2["energy_change_pct"] == pytest.approx(30.0)
    assert pytorch2["latency_change_pct"] == pytest.approx(100 * (2**-0.5 - 1))
    one_gpu = table[table["tensor_parallel_size"] == 1]
    assert one_gpu["energy_change_pct"].dropna().eq(0).all()


def test_table_keeps_the_infeasible_point_and_has_no_change_without_its_one_gpu_point():
    table = table_tensor_parallel(_parallel_rows())
    failed = table[~table["feasible"]]
    assert len(failed) == 1
    assert failed.iloc[0]["error"].startswith("out of memory")
    assert math.isnan(failed.iloc[0]["mean_power_per_gpu_w"])
    # PyTorch at batch 64 fits on 2 and 4 GPUs, but there is no one-GPU point to compare with.
    for size in (2, 4):
        point = _point(table, "PyTorch, eager", size, 64)
        assert point["feasible"]
        assert math.isnan(point["energy_change_pct"])
        assert math.isnan(point["latency_change_pct"])
    # Sorted per model, engine and batch size, the sizes of one batch next to each other.
    first = table.head(3)
    assert list(first["tensor_parallel_size"]) == [1, 2, 4]
    assert first["batch_size"].eq(1).all() and first["engine_label"].eq("PyTorch, eager").all()


def test_table_and_figure_need_tensor_parallel_rows():
    other = _parallel_rows()
    other = other[~other["experiments"].str.contains("tensor_parallel")]
    with pytest.raises(ValueError, match="no tensor_parallel rows"):
        table_tensor_parallel(other)
    with pytest.raises(ValueError, match="no tensor_parallel rows"):
        fig_tensor_parallel(other)


def test_table_refuses_two_rows_of_one_point():
    rows = _parallel_rows()
    twin = rows[rows["engine"] == "vllm"].assign(engine="vllm-copy")
    with pytest.raises(ValueError, match="share a point"):
        table_tensor_parallel(pd.concat([rows, twin]))


def test_fig6_draws_one_row_per_model_and_marks_the_infeasible_point(tmp_path):
    rows = _parallel_rows()
    big = rows[rows["experiments"] == "tensor_parallel"].assign(model="r1-distill-qwen-32b")
    fig = draw("fig6", pd.concat([rows, big], ignore_index=True))
    assert fig.axes[0].get_title() == "llama-3.1-8b: energy per token"
    assert fig.axes[4].get_title() == "r1-distill-qwen-32b: latency per batch"
    assert len(fig.axes) == 6
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [
        "TP 1 (1 GPU)",
        "TP 2 (2 GPUs)",
        "TP 4 (4 GPUs)",
        "PyTorch, eager",
        "vLLM, CUDA graphs",
        "not feasible",
        "paper, from TP 1",
    ]
    footer = " ".join(t.get_text() for t in fig.texts)
    assert "llama-3.1-8b, PyTorch, eager, TP 1: batch 64 (out of memory)" in footer
    assert "hardware h100" in footer and "random weights" in footer and "0123456" in footer
    out = tmp_path / "fig6_tensor_parallel.png"
    save(fig, out, dpi=60)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 10_000


def test_fig6_and_its_table_are_outputs_of_the_tensor_parallel_family():
    """Declared by the family's module, drawn by the figure and table rules, with captions."""
    from llm_energy.families import families, outputs

    family = families()["tensor_parallel"]
    assert {o.name for o in family.outputs} == {"fig6", "table_tensor_parallel"}
    for name in ("fig6", "table_tensor_parallel"):
        o = outputs()[name]
        assert o.rows.tags == ("tensor_parallel",)
        assert (ROOT / "workflow/report" / f"{name}.rst").read_text().strip()
    assert outputs()["fig6"].function() is fig_tensor_parallel
    assert outputs()["table_tensor_parallel"].function() is table_tensor_parallel
