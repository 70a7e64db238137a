"""Every figure drawn from small fixture rows, checked for what a reader relies on: legend
entries that differ, axis labels with units, a scaled quantity that says it is scaled, a
footer naming the sessions, GPUs and commits of the rows, intervals wherever the rows have
trials, points below the trial protocol drawn hollow and counted, and the paper's numbers."""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from _outputs import draw
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgba
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from test_figures import _row, _sweep_rows
from test_figures_engines import PYTORCH, _engine_rows, _stream_rows
from test_figures_parallel import _parallel_rows
from test_tasks import _task_row

from llm_energy.families import outputs, report_categories
from llm_energy.figures.points import COUNTER_RESOLUTION_S
from llm_energy.figures.style import ENGINE_LOOKS

VLLM = {"backend": "vllm", "engine": "vllm", "cuda_graphs": True, "torch_compile": False}
# Figures whose drawn quantities carry an interval when the rows have trials (the controlled
# sweeps draw prefill and decode energy, which the trials do not give one for).
WITH_INTERVALS = ("fig3", "fig4", "fig5", "fig6", "fig8", "fig9", "fig12")
FIGURES = (*WITH_INTERVALS, "fig2", "fig10", "fig11")
UNIT = re.compile(r"\((J|kJ|s|W|% of offline)\)")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _provenance(df: pd.DataFrame, commit: str = "0123456789abcdef") -> pd.DataFrame:
    """The provenance the runner writes on every row: host, commit, time, GPUs, point id."""
    return df.assign(
        host="node1",
        git_commit=commit,
        timestamp="2026-01-02T03:04:05+00:00",
        gpu_uuids="GPU-a",
        dtype="bfloat16",
        torch_version="2.9",
        backend_version="x 1",
        point_id=[f"p{commit[:3]}{i}" for i in range(len(df))],
    )


def _trials(df: pd.DataFrame, met: bool = True) -> pd.DataFrame:
    """Rows measured under the trial protocol: 3 trials and their 95 % intervals."""
    return df.assign(
        trials=3,
        protocol_met=met,
        repetitions=5,
        energy_j_ci95=0.05 * df["energy_j"],
        duration_s_ci95=0.03 * df["duration_s"],
    )


def _decoding_rows() -> pd.DataFrame:
    rows = [
        _row(b, 512, 64, "decoding", decoding=d, energy_per_request_j=b, **PYTORCH)
        for d in ("greedy", "beam")
        for b in (1, 8, 128)
    ]
    rows += [_row(b, 512, 64, "speculative", energy_per_request_j=b, **VLLM) for b in (1, 16, 128)]
    rows += [
        _row(
            b,
            512,
            64,
            "speculative",
            energy_per_request_j=b,
            speculative_model="draft",
            speculative_tokens=4,
            speculative_acceptance="measured",
            **{**VLLM, "engine": "vllm-spec"},
        )
        for b in (1, 16, 128)
    ]
    return pd.DataFrame(rows)


def _model_rows() -> pd.DataFrame:
    energy = {"olmo-1b": 1.0, "olmo-7b": 3.0, "olmoe-1b-7b": 1.5}
    return pd.DataFrame(
        [
            _row(b, 512, 64, "architectures", model=m, energy_per_request_j=b, **PYTORCH)
            | {"energy_per_output_token_j": energy[m] / b}
            for m in energy
            for b in (1, 8)
        ]
    )


def _task_rows() -> pd.DataFrame:
    """32 examples served per point (the H200 set's), one point out of memory."""
    rows = []
    for k, task in enumerate(("classification", "translation")):
        for batch in (1, 8):
            for engine in ("pytorch", "vllm"):
                energy = 1000.0 * (k + 1) / batch * (2 if engine == "pytorch" else 1)
                row = _task_row(engine, task, batch, energy, requests=32)
                row["energy_per_request_j"] = energy / 32
                rows.append(row)
    return pd.DataFrame(rows)


def _sweep(backend: str) -> pd.DataFrame:
    rows = pd.DataFrame(_sweep_rows())
    if backend == "vllm":
        rows = rows.assign(backend="vllm", engine="vllm", cuda_graphs=True, torch_compile=False)
    return rows


ROWS = {
    "fig2": lambda: _sweep("vllm"),
    "fig3": _decoding_rows,
    "fig4": _model_rows,
    "fig5": _engine_rows,
    "fig6": _parallel_rows,
    "fig8": _task_rows,
    "fig9": _stream_rows,
    "fig10": lambda: _sweep("transformers"),
    "fig11": lambda: _sweep("vllm"),
    "fig12": _task_rows,
}


def _rows(name: str, trials: bool) -> pd.DataFrame:
    rows = _provenance(ROWS[name]())
    return _trials(rows) if trials else rows


def _footer(fig: Figure) -> str:
    return "\n".join(t.get_text() for t in fig.texts)


def _legends(fig: Figure) -> list:
    return [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]


def _look(handle) -> tuple:
    """What tells a legend entry apart: colour, line style and marker (or fill)."""
    if isinstance(handle, Line2D):
        return (
            to_rgba(handle.get_color()),
            str(handle.get_linestyle()),
            handle.get_marker(),
            to_rgba(handle.get_markerfacecolor()) if handle.get_marker() else None,
        )
    if isinstance(handle, Patch):
        return (to_rgba(handle.get_facecolor()), handle.get_hatch())
    return (type(handle).__name__, id(handle))


def _error_bars(fig: Figure) -> int:
    return sum(isinstance(c, ErrorbarContainer) for ax in fig.axes for c in ax.containers)


@pytest.mark.parametrize("name", FIGURES)
def test_every_figure_tells_its_legend_entries_apart(name):
    fig = draw(name, _rows(name, trials=True))
    legends = _legends(fig)
    assert legends, name
    for legend in legends:
        looks = [_look(h) for h in legend.legend_handles]
        labels = [t.get_text() for t in legend.get_texts()]
        assert len(set(looks)) == len(looks), (name, labels)


@pytest.mark.parametrize("name", FIGURES)
def test_every_axis_label_names_its_unit_and_a_scaled_quantity_says_so(name):
    rows = _rows(name, trials=True)
    fig = draw(name, rows)
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_visible() and ax.get_ylabel()]
    assert labels, name
    for label in labels:
        assert UNIT.search(label), (name, label)
        # A quantity "of 1,024" requests or examples is measured on fewer: it says from how many.
        if "1,024" in label:
            assert "scaled from" in label, (name, label)
    for ax in fig.axes:
        if ax.get_visible() and ax.get_xlabel():
            assert "batch size" in ax.get_xlabel() or "tokens" in ax.get_xlabel()


@pytest.mark.parametrize("name", FIGURES)
def test_every_footer_names_the_sessions_gpus_and_commit(name):
    fig = draw(name, _rows(name, trials=True))
    footer = _footer(fig)
    assert "1 session: git 0123456 (host node1, rows written 2026-01-02 03:04 UTC" in footer, name
    assert re.search(r"GPUs: 1 NVIDIA H100 by UUID", footer), name


@pytest.mark.parametrize("name", WITH_INTERVALS)
def test_intervals_are_drawn_where_the_rows_have_trials(name):
    with_trials = draw(name, _rows(name, trials=True))
    assert _error_bars(with_trials) > 0, name
    assert "95 % confidence interval" in _footer(with_trials)
    assert "hollow" not in _footer(with_trials)
    plt.close("all")
    without = draw(name, _rows(name, trials=False))
    assert _error_bars(without) == 0, name


@pytest.mark.parametrize("name", ("fig2", "fig10", "fig11"))
def test_the_sweeps_say_their_prefill_and_decode_have_no_interval(name):
    fig = draw(name, _rows(name, trials=True))
    assert _error_bars(fig) == 0
    assert "prefill and decode energy: no interval (these rows keep no prefill window" in (
        _footer(fig)
    )


@pytest.mark.parametrize("name", FIGURES)
def test_points_below_the_protocol_are_hollow_and_counted(name):
    rows = _rows(name, trials=True)
    feasible = rows["feasible"].astype(bool)
    below = rows.index[feasible][:2]
    rows.loc[below, "protocol_met"] = False
    footer = _footer(draw(name, rows))
    match = re.search(r"(\d+) (points?|bars?) hollow: below the trial protocol", footer)
    assert match, (name, footer)
    assert 1 <= int(match.group(1)) <= 2
    # Rows measured before trials existed did not meet the protocol either.
    footer = _footer(draw(name, _rows(name, trials=False)))
    assert re.search(r"\d+ (points?|bars?) hollow", footer), name


def _hollow_markers(ax) -> int:
    """Markers drawn hollow (white inside) by the line helper."""
    count = 0
    for c in ax.collections:
        if isinstance(c, PathCollection) and len(c.get_facecolors()):
            count += sum(np.allclose(f, to_rgba("white")) for f in c.get_facecolors())
    return count


def test_a_hollow_point_is_drawn_hollow():
    rows = _rows("fig5", trials=True)
    rows.loc[rows["feasible"].astype(bool).idxmax(), "protocol_met"] = False
    fig = draw("fig5", rows)
    assert sum(_hollow_markers(ax) for ax in fig.axes) == 1


def test_the_style_table_gives_each_engine_its_own_look():
    looks = [(str(v.colour), str(v.linestyle), v.marker) for v in ENGINE_LOOKS.values()]
    assert len({c for c, _, _ in looks}) == len({s for _, s, _ in looks}) == len(looks)
    assert len({m for _, _, m in looks}) == len(looks)


# --- what each figure's defects were ------------------------------------------------------------


def test_fig6_marks_an_engine_at_fewer_sizes_the_paper_and_its_second_model():
    rows = _provenance(_parallel_rows())
    tp = rows["experiments"] == "tensor_parallel"
    graphs_wide = tp & rows["cuda_graphs"].astype(bool) & (rows["tensor_parallel_size"] > 1)
    fig = draw("fig6", rows[~graphs_wide])
    footer = _footer(fig)
    assert "vLLM, CUDA graphs: TP 1 only (no rows at TP 2, 4)" in footer
    assert "the paper's Fig 6 also has r1-distill-qwen-32b" in footer
    assert "claim 7" in footer and "TP 2: latency -40.2 %, energy +29.3 %" in footer
    stars = [c for ax in fig.axes for c in ax.collections if _is_star(c)]
    assert stars


def _is_star(collection) -> bool:
    return (
        isinstance(collection, PathCollection)
        and len(collection.get_sizes())
        and (collection.get_sizes()[0] == 150)
    )


def test_fig6_names_the_sessions_each_line_comes_from():
    rows = _parallel_rows()
    wide = rows["tensor_parallel_size"] > 1
    rows = pd.concat([_provenance(rows[~wide]), _provenance(rows[wide], "fedcba9876543210")])
    footer = _footer(draw("fig6", rows))
    assert "2 sessions" in footer
    assert re.search(r"git fedcba9 \(host node1, [^)]*: [^)]*PyTorch, eager, TP 2", footer)


def test_fig3_marks_a_line_joining_two_sessions_point_by_point():
    rows = _decoding_rows()
    late = (rows["decoding"] == "greedy") & (rows["batch_size"] == 128)
    late &= rows["backend"] == "transformers"
    rows = pd.concat([_provenance(rows[~late]), _provenance(rows[late], "fedcba9876543210")])
    fig = draw("fig3", rows)
    pytorch = fig.axes[0]
    tags = [t.get_text() for t in pytorch.texts]
    assert tags.count("0123456") == 2 and tags.count("fedcba9") == 1
    labels = [t.get_text() for t in pytorch.get_legend().get_texts()]
    assert "greedy (git 0123456, git fedcba9)" in labels
    assert "beam (git 0123456)" in labels
    footer = _footer(fig)
    assert "lines joining machine sessions" in footer
    assert "PyTorch, eager, greedy: git 0123456 (1, 8), git fedcba9 (128)" in footer


def test_fig3_marks_the_papers_speculative_numbers():
    fig = draw("fig3", _rows("fig3", trials=True))
    vllm = fig.axes[1]
    texts = [t.get_text() for t in vllm.texts]
    assert any("paper: up to -29.1 % vs greedy at batch ≤ 16" in t for t in texts)
    assert "paper:\n+25.7 %" in texts
    assert "claim 2" in _footer(fig)


def test_fig4_sets_the_papers_claim_beside_ours():
    fig = draw("fig4", _rows("fig4", trials=True))
    (box,) = fig.axes[0].texts
    assert box.get_text().splitlines() == [
        "paper: OLMoE up to +54.2 % vs OLMo-1B",
        "here: +50.0 % (b1), +50.0 % (b8)",
        "paper: below OLMo-7B; here below at 2 of 2 batch sizes",
    ]


def test_fig5_names_the_session_of_each_compared_line():
    rows = _engine_rows()
    compiled = rows["engine"] == "pytorch-compile"
    rows = pd.concat(
        [_provenance(rows[~compiled]), _provenance(rows[compiled], "fedcba9876543210")]
    )
    fig = draw("fig5", rows)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "PyTorch, torch.compile (git fedcba9)" in labels
    assert "PyTorch, eager (git 0123456)" in labels


def test_fig5_and_fig8_say_from_how_many_they_scale():
    fig5 = draw("fig5", _rows("fig5", trials=True))
    assert fig5.axes[0].get_ylabel() == ("energy of 1,024 requests (kJ),\nscaled from 1–256 served")
    fig8 = draw("fig8", _rows("fig8", trials=True))
    assert fig8.axes[0].get_ylabel() == "energy of 1,024 examples (J),\nscaled from 32 served"


def test_fig8_shares_one_scale_and_marks_only_what_did_not_fit():
    fig = draw("fig8", _rows("fig8", trials=True))
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert all(axes[0].get_shared_y_axes().joined(axes[0], ax) for ax in axes[1:])
    assert "not feasible" not in _footer(fig)
    assert not any(t.get_text() == "×" for ax in axes for t in ax.texts)
    plt.close("all")
    rows = _rows("fig8", trials=True)
    oom = rows.index[(rows["engine"] == "pytorch") & (rows["batch_size"] == 8)][0]
    rows.loc[oom, ["feasible", "error", "energy_j"]] = [False, "out of memory: CUDA", np.nan]
    rows.loc[oom, "energy_per_request_j"] = np.nan
    fig = draw("fig8", rows)
    crosses = [t for ax in fig.axes for t in ax.texts if t.get_text() == "×"]
    assert len(crosses) == 1
    assert "× not feasible (out of memory): 1 bars" in _footer(fig)


def test_fig8_says_not_measured_where_no_row_is_and_names_the_engines_it_draws():
    rows = _rows("fig8", trials=True)
    fig = draw("fig8", rows)
    assert fig._suptitle.get_text() == "Classical NLP tasks: PyTorch against vLLM (Fig 8)"
    assert not any(t.get_text() == "not measured" for ax in fig.axes for t in ax.texts)
    plt.close("all")
    vllm = rows[rows["backend"] == "vllm"]
    one = vllm[vllm["trace"] == vllm["trace"].iloc[0]]
    gone = vllm.drop(index=one.index[one["batch_size"] == one["batch_size"].min()])
    fig = draw("fig8", gone)
    assert fig._suptitle.get_text() == "Classical NLP tasks on vLLM (Fig 8)"
    said = [(ax, t) for ax in fig.axes for t in ax.texts if t.get_text() == "not measured"]
    assert len(said) == 1
    plt.close("all")
    # In its task's place inside the panel, also where no engine measured the panel's last task.
    last = rows["trace"].eq("translation") & rows["batch_size"].eq(1)
    fig = draw("fig8", rows[~last])
    said = [(ax, t) for ax in fig.axes for t in ax.texts if t.get_text() == "not measured"]
    assert len(said) == 2
    for ax, text in said:
        low, high = ax.get_xlim()
        assert low < text.get_position()[0] < high


def test_fig8_says_where_the_engines_bars_come_from_two_machine_sessions():
    """Each task's two bars from one session: no note. PyTorch's batch-8 rows from another
    session: the footer says at which batch, and how many tasks."""
    rows = _rows("fig8", trials=True).assign(machine_session="vm:a")
    assert "two machine sessions" not in _footer(draw("fig8", rows))
    plt.close("all")
    other = (rows["engine"] == "pytorch") & (rows["batch_size"] == 8)
    rows.loc[other, "machine_session"] = "vm:b"
    note = "engines side by side from two machine sessions at batch 8 (2 tasks)"
    assert note in _footer(draw("fig8", rows))


def test_fig12_hatches_bars_from_windows_the_counter_cannot_resolve():
    rows = _rows("fig12", trials=True)
    short = rows["batch_size"] == 8
    rows.loc[short, "repetitions"] = 1
    rows.loc[short, "duration_s"] = COUNTER_RESOLUTION_S / 2
    fig = draw("fig12", rows)
    hatched = [p for p in fig.axes[0].patches if p.get_hatch()]
    assert len(hatched) == int((short & (rows["backend"] == "vllm")).sum())
    assert re.search(r"2 bars hatched: a window under 1 s", _footer(fig))


def test_fig9_draws_the_savings_interval_and_the_papers_number():
    fig = draw("fig9", _rows("fig9", trials=True))
    assert _error_bars(fig) == 2  # one per panel
    table = draw("table_online_serving", _rows("fig9", trials=True)).set_index("batch_size")
    # 1 - 80/100 = 0.2, the ratio 0.8 carrying both rows' 5 % relative half-widths.
    assert table.loc[2, "energy_saving_ci95"] == pytest.approx(0.8 * np.hypot(0.05, 0.05))
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "paper: up to 5 %\nsaved at batch ≥ 64" not in texts  # no batch of 64 or more here
    rows = _rows("fig9", trials=True)
    rows.loc[rows["batch_size"] == 8, "batch_size"] = 64
    texts = [t.get_text() for t in draw("fig9", rows).axes[0].texts]
    assert "paper: up to 5 %\nsaved at batch ≥ 64" in texts


# --- the report ---------------------------------------------------------------------------------


def test_report_categories_open_on_the_claims_then_follow_the_papers_figures():
    categories = report_categories()
    ordered = sorted(set(categories.values()))
    assert ordered[0] == categories["claims"]
    figures = [categories[f"fig{n}"] for n in range(1, 13)]
    assert figures == sorted(figures) and len(set(figures)) == 12
    assert categories["table_classical_tasks_vllm"] == categories["fig12"]
    assert categories["table_online_serving"] == categories["fig9"]
    assert categories["table4"] == categories["fig1"]
    assert set(categories) == set(outputs())
