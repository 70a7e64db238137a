"""Figures comparing engines, strategies and models (Figs 2, 3, 4, 5, 9, 11) from synthetic
tables in the measurements' schema."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from _outputs import draw
from matplotlib.collections import PolyCollection
from test_figures import _row, _sweep_rows

from llm_energy.figures.engines import engine_label
from llm_energy.figures.style import ENGINE_LOOKS


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


ENGINES = {
    "pytorch": {"backend": "transformers", "torch_compile": False, "cuda_graphs": False},
    "pytorch-compile": {"backend": "transformers", "torch_compile": True, "cuda_graphs": False},
    "vllm-eager": {"backend": "vllm", "torch_compile": False, "cuda_graphs": False},
    "vllm": {"backend": "vllm", "torch_compile": False, "cuda_graphs": True},
}


PYTORCH = ENGINES["pytorch"]


def _engine_rows() -> pd.DataFrame:
    rows = []
    for k, (engine, opts) in enumerate(ENGINES.items()):
        for b in (1, 8, 64, 256):
            feasible = not (engine.startswith("pytorch") and b == 256)
            row = _row(b, 512, 64, "engine_optimisations", engine=engine, **opts)
            row["energy_per_request_j"] = 100.0 / (k + 1) / b**0.5
            row["feasible"] = feasible
            if not feasible:
                row["error"] = "out of memory: CUDA out of memory"
                row["energy_per_request_j"] = math.nan
            rows.append(row)
    return pd.DataFrame(rows)


def test_engine_labels_name_each_option():
    labels = {engine_label(pd.Series(opts)) for opts in ENGINES.values()}
    assert labels == set(ENGINE_LOOKS)


def test_fig5_table_scales_each_batch_to_1024_requests():
    rows = _engine_rows()
    table = draw("table_engine_optimisations", rows)
    row = table[(table["engine"] == "vllm") & (table["batch_size"] == 8)].iloc[0]
    assert row["energy_1024_requests_j"] == pytest.approx(1024 * 100.0 / 4 / 8**0.5)
    measured = rows[(rows["engine"] == "vllm") & (rows["batch_size"] == 8)].iloc[0]
    assert row["time_1024_requests_s"] == pytest.approx(measured["duration_s"] / 8 * 1024)
    infeasible = table[~table["feasible"]]
    assert set(infeasible["engine"]) == {"pytorch", "pytorch-compile"}
    assert infeasible["error"].str.startswith("out of memory").all()


def test_fig5_marks_pytorchs_largest_measured_batch():
    fig = draw("fig5", _engine_rows())
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 4 + 2  # one line per engine, one marker per PyTorch engine
    marks = [t.get_text() for t in ax.texts]
    # The rows say which sizes were tried, not that the sizes between were searched.
    for engine in ("PyTorch, eager", "PyTorch, torch.compile"):
        assert (
            f"{engine}: largest measured\nbatch 64 (batch 256: out of memory;\n"
            "sizes between not tried)"
        ) in marks
    # Where a search between them found the bound, the mark gives it.
    rows = _engine_rows()
    rows.loc[~rows["feasible"].astype(bool), "largest_feasible_batch"] = 160.0
    marks = [t.get_text() for t in draw("fig5", rows).axes[0].texts]
    assert (
        "PyTorch, eager: largest measured\nbatch 64 (batch 256: out of memory;\n"
        "largest that runs: 160)"
    ) in marks


def test_fig5_draws_an_engine_measured_in_two_sessions_as_a_line_for_each():
    rows = _engine_rows().assign(
        machine_session="vm:new", git_commit="bbbbbbb", timestamp="2026-12-01T10:00:00+00:00"
    )
    earlier = rows[rows["engine"] == "pytorch"].assign(
        machine_session="vm:old", git_commit="aaaaaaa", timestamp="2026-11-30T08:00:00+00:00"
    )
    earlier["energy_per_request_j"] *= 1.1
    ax = draw("fig5", pd.concat([rows, earlier], ignore_index=True)).axes[0]
    labels = [h.get_label() for h in ax.get_legend().legend_handles]
    # The latest session's line first; no line joins the two, so no point is tagged.
    assert labels[:2] == ["PyTorch, eager (git bbbbbbb)", "PyTorch, eager (git aaaaaaa)"]
    assert len(ax.get_lines()) == 5 + 2
    marks = [t.get_text() for t in ax.texts]
    assert all("largest measured" in text for text in marks)
    # One mark per PyTorch engine, from the latest session; two at one batch stack.
    assert len(marks) == 2
    offsets = sorted(t.xyann[1] for t in ax.texts)
    assert offsets[0] < offsets[1]


def test_fig5_says_which_of_the_papers_engines_its_rows_lack():
    rows = _engine_rows()
    texts = " ".join(t.get_text() for t in draw("fig5", rows).texts)
    assert "no rows of" not in texts
    without_compile = rows[rows["engine"] != "pytorch-compile"]
    texts = " ".join(t.get_text() for t in draw("fig5", without_compile).texts)
    assert "no rows of PyTorch, torch.compile in these measurements" in texts


def _stream_rows() -> pd.DataFrame:
    rows = []
    for b, off, on in ((2, 100.0, 80.0), (8, 50.0, 52.0)):
        for serving, energy in (("offline", off), ("online", on)):
            rows.append(
                _row(
                    b,
                    32,
                    64,
                    "online_serving",
                    engine="vllm",
                    backend="vllm",
                    serving=serving,
                    trace="azure_conversation",
                    requests=24,
                    generated_tokens=700,
                    energy_j=energy,
                    duration_s=energy / 10,
                )
            )
    return pd.DataFrame(rows)


def test_fig9_table_gives_the_saving_of_continuous_batching():
    table = draw("table_online_serving", _stream_rows()).set_index("batch_size")
    assert table.loc[2, "energy_saving"] == pytest.approx(0.2)
    assert table.loc[8, "energy_saving"] == pytest.approx(1 - 52 / 50)
    assert table.loc[2, "generated_tokens"] == 700
    fig = draw("fig9", _stream_rows())
    heights = sorted(round(p.get_height(), 6) for p in fig.axes[0].patches)
    assert heights == sorted([20.0, round(100 * (1 - 52 / 50), 6)])


def test_fig9_needs_both_serving_modes():
    rows = _stream_rows()
    with pytest.raises(ValueError, match="offline and online"):
        draw("table_online_serving", rows[rows["serving"] == "offline"])


def test_fig2_draws_the_vllm_sweep_at_the_longest_fixed_lengths_and_fig11_all():
    rows = pd.DataFrame(_sweep_rows())
    rows["backend"], rows["engine"] = "vllm", "vllm"
    rows["cuda_graphs"], rows["torch_compile"] = True, False
    fig2 = draw("fig2", rows)
    assert [ax.get_title() for ax in fig2.axes if ax.get_visible()] == [
        "prefill, 32 output tokens",
        "decode, 512 input tokens",
    ]
    fig11 = draw("fig11", rows)
    assert len([ax for ax in fig11.axes if ax.get_visible()]) == 4


def test_fig3_and_fig4_draw_one_line_per_strategy_and_model():
    decoding = pd.DataFrame(
        [
            _row(b, 512, 64, "decoding", decoding=d, energy_per_request_j=b, **PYTORCH)
            for d in ("greedy", "beam", "top_p")
            for b in (1, 8)
        ]
    )
    fig3 = draw("fig3", decoding)
    assert sorted(line.get_label() for line in fig3.axes[0].get_lines()) == [
        "beam",
        "greedy",
        "top_p",
    ]
    models = pd.DataFrame(
        [
            _row(b, 512, 64, "architectures", model=m, energy_per_request_j=b, **PYTORCH)
            for m in ("olmo-1b", "olmoe-1b-7b")
            for b in (1, 8)
        ]
    )
    fig4 = draw("fig4", models)
    assert sorted(line.get_label() for line in fig4.axes[0].get_lines()) == [
        "olmo-1b",
        "olmoe-1b-7b",
    ]
    table = draw("table_architectures", models)
    assert list(table["model"].unique()) == ["olmo-1b", "olmoe-1b-7b"]
    assert "ffn_time_share" not in table
    # The one text: the paper's claim 3 beside ours.
    (box,) = fig4.axes[0].texts
    assert box.get_text().startswith("paper: OLMoE up to +54.2 % vs OLMo-1B")
    with pytest.raises(ValueError, match="architectures"):
        draw("table_architectures", decoding)

    # Timed feed-forward blocks: the table keeps their share and each point is labelled.
    shares = {("olmo-1b", 1): 0.17, ("olmo-1b", 8): 0.18, ("olmoe-1b-7b", 1): 0.29}
    models["ffn_time_share"] = [
        shares.get((m, b)) for m, b in zip(models.model, models.batch_size, strict=True)
    ]
    models["ffn_block"] = models["model"].map({"olmo-1b": "OlmoMLP", "olmoe-1b-7b": "Moe"})
    timed = draw("fig4", models)
    shares = [t.get_text() for t in timed.axes[0].texts if not t.get_text().startswith("paper")]
    assert sorted(shares) == ["17%", "18%", "29%"]
    # With intervals over trials: shown where they round to a point or more.
    intervals = {("olmo-1b", 1): 0.003, ("olmo-1b", 8): 0.012, ("olmoe-1b-7b", 1): 0.327}
    models["ffn_time_share_ci95"] = [
        intervals.get((m, b)) for m, b in zip(models.model, models.batch_size, strict=True)
    ]
    timed = draw("fig4", models)
    shares = [t.get_text() for t in timed.axes[0].texts if not t.get_text().startswith("paper")]
    assert sorted(shares) == ["17%", "18±1%", "29±33%"]
    assert any("feed-forward blocks" in t.get_text() for t in timed.texts)
    assert draw("table_architectures", models)["ffn_time_share"].notna().sum() == 3


def test_fig3_names_each_speculative_bound_and_keeps_its_acceptance_rate():
    vllm = {"backend": "vllm", "engine": "vllm", "cuda_graphs": True, "torch_compile": False}
    rows = [_row(b, 512, 64, "speculative", energy_per_request_j=b, **vllm) for b in (1, 8)]
    for acceptance, rate in (("measured", 0.01), ("forced", 1.0)):
        rows += [
            _row(
                b,
                512,
                64,
                "speculative",
                energy_per_request_j=b,
                speculative_model="draft",
                speculative_tokens=4,
                speculative_acceptance=acceptance,
                spec_acceptance_rate=rate,
                **{**vllm, "engine": f"vllm-spec-{acceptance}"},
            )
            for b in (1, 8)
        ]
    table = draw("table_decoding", pd.DataFrame(rows))
    rates = table.groupby("decoding")["spec_acceptance_rate"].first()
    assert rates["speculative, draft draft, k=4"] == 0.01
    assert rates["speculative, draft draft, k=4, all accepted (forced)"] == 1.0
    fig3 = draw("fig3", pd.DataFrame(rows))
    assert len(fig3.axes[0].get_lines()) == 3
    # the band between the two bounds, and the forced bound dashed
    bands = [c for c in fig3.axes[0].collections if isinstance(c, PolyCollection)]
    assert len(bands) == 1
    styles = {line.get_label(): line.get_linestyle() for line in fig3.axes[0].get_lines()}
    assert styles["speculative, draft draft, k=4, all accepted (forced)"] == "--"
