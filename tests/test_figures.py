"""Figures and tables from a synthetic tidy measurements table, and combining job tables."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from _outputs import draw
from matplotlib.figure import Figure

from llm_energy.analysis import aggregate
from llm_energy.errors import InputError
from llm_energy.families import outputs
from llm_energy.figures.controlled import table_controlled_sweeps
from llm_energy.figures.provenance import sessions
from llm_energy.figures.style import energy_label, provenance_note, save

BATCHES = (1, 4)
# input sweep: these input lengths at each fixed output length, and the reverse
INPUT_SWEEP = {"input_tokens": (16, 64, 256), "output_tokens": (8, 32)}
OUTPUT_SWEEP = {"output_tokens": (8, 32, 128), "input_tokens": (64, 512)}
# Fig 10's panels for these sweeps: one per fixed length of the other dimension.
PANELS = [
    "prefill, 8 output tokens",
    "prefill, 32 output tokens",
    "decode, 64 input tokens",
    "decode, 512 input tokens",
]


def _row(batch: int, inp: int, out: int, experiments: str, **kw) -> dict:
    prefill = batch * inp * 0.01
    decode = batch * out * 0.5
    row = {
        "experiments": experiments,
        "group": "tiny__pytorch",
        "backend": "transformers",
        "engine": "pytorch",
        "model": "tiny",
        "weights": "random",
        "dtype": "float32",
        "decoding": "greedy",
        "feasible": True,
        "error": "",
        "batch_size": batch,
        "input_tokens": inp,
        "output_tokens": out,
        "repetitions": 3,
        "duration_s": (inp + out) * 0.001 * batch,
        "energy_j": prefill + decode,
        "energy_std_j": 0.1,
        "prefill_energy_j": prefill,
        "decode_energy_j": decode,
        "prefill_duration_s": inp * 0.001 * batch,
        "decode_duration_s": out * 0.001 * batch,
        "energy_per_output_token_j": (prefill + decode) / (batch * out),
        "output_tokens_per_s": 100.0,
        "mean_power_w": 50.0,
        "idle_power_w": 5.0,
        "peak_memory_gib": 0.5,
        "energy_source": "measured",
        "meter": "nvml",
        "backend_version": "transformers 4.0",
        "torch_version": "2.0",
        "gpu_name": "NVIDIA H100",
        "hardware": "h100",
    }
    row.update(kw)
    return row


def _sweep_rows() -> list[dict]:
    tags: dict[tuple[int, int, int], set[str]] = {}
    for b in BATCHES:
        for out in INPUT_SWEEP["output_tokens"]:
            for inp in INPUT_SWEEP["input_tokens"]:
                tags.setdefault((b, inp, out), set()).add("input_sweep")
        for inp in OUTPUT_SWEEP["input_tokens"]:
            for out in OUTPUT_SWEEP["output_tokens"]:
                tags.setdefault((b, inp, out), set()).add("output_sweep")
    return [_row(b, i, o, "+".join(sorted(t))) for (b, i, o), t in sorted(tags.items())]


@pytest.fixture
def tidy() -> pd.DataFrame:
    return pd.DataFrame(_sweep_rows())


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _visible(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.get_visible()]


def _fig10(df):
    return draw("fig10", df)


# --- fig10 --------------------------------------------------------------------------------------


def test_fixture_has_points_shared_by_both_sweeps(tidy):
    assert set(tidy["experiments"]) == {"input_sweep", "output_sweep", "input_sweep+output_sweep"}
    assert not tidy.duplicated(["batch_size", "input_tokens", "output_tokens"]).any()


def test_fig10_has_one_panel_per_fixed_length_and_one_line_per_batch(tidy):
    fig = _fig10(tidy)
    assert isinstance(fig, Figure)
    axes = _visible(fig)
    # 2 fixed output lengths (prefill panels) + 2 fixed input lengths (decode panels)
    assert len(axes) == 4
    assert [ax.get_title() for ax in axes] == PANELS
    for ax in axes:
        lines = ax.get_lines()
        assert len(lines) == len(BATCHES)
        assert sorted(line.get_label() for line in lines) == ["batch 1", "batch 4"]
        assert "energy" in ax.get_ylabel()
        assert "(J)" in ax.get_ylabel()
        assert ax.get_yscale() == "log"
    prefill_ax, decode_ax = axes[0], axes[2]
    assert prefill_ax.get_xlabel() == "input tokens"
    assert decode_ax.get_xlabel() == "output tokens"
    assert prefill_ax.get_ylabel() == "prefill energy per batch (J)"
    assert decode_ax.get_ylabel() == "decode energy per batch (J)"


def test_fig10_lines_carry_the_swept_values(tidy):
    axes = _visible(_fig10(tidy))
    by_label = {line.get_label(): line for line in axes[0].get_lines()}  # prefill, out 8
    line = by_label["batch 4"]
    assert list(line.get_xdata()) == [16, 64, 256]
    expected = tidy[
        (tidy["batch_size"] == 4)
        & (tidy["output_tokens"] == 8)
        & tidy["experiments"].str.contains("input_sweep")
    ].sort_values("input_tokens")["prefill_energy_j"]
    assert list(line.get_ydata()) == pytest.approx(list(expected))
    decode = {line.get_label(): line for line in axes[2].get_lines()}["batch 1"]
    assert list(decode.get_xdata()) == [8, 32, 128]
    assert list(decode.get_ydata()) == pytest.approx([4.0, 16.0, 64.0])


def test_fig10_gives_each_model_a_row_of_panels_and_no_line_joins_two_models(tidy):
    big = tidy.assign(model="big", prefill_energy_j=10 * tidy["prefill_energy_j"])
    fig = _fig10(pd.concat([tidy, big], ignore_index=True))
    axes = _visible(fig)
    assert [ax.get_title() for ax in axes] == [
        f"{model}: {panel}" for model in ("big", "tiny") for panel in PANELS
    ]
    for ax in axes:
        lines = ax.get_lines()
        assert sorted(line.get_label() for line in lines) == ["batch 1", "batch 4"]
        # One point per swept length: a line holds one model's rows.
        assert all(len(set(line.get_xdata())) == len(line.get_xdata()) for line in lines)
    prefill = {line.get_label(): line for line in axes[0].get_lines()}["batch 4"]
    ours = {line.get_label(): line for line in axes[4].get_lines()}["batch 4"]
    assert list(prefill.get_ydata()) == pytest.approx(10 * ours.get_ydata())
    # The legend names each batch size once.
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["batch 1", "batch 4"]


def test_fig10_draws_a_batch_measured_in_two_sessions_as_a_line_for_each(tidy):
    """A batch size whose rows come from two machine sessions gets a line per session, named
    by it, the same in every panel; a batch from one session keeps its plain name; no line
    joins two sessions; token counts read 1k, not 1024."""
    tidy = tidy.assign(
        git_commit="a" * 40, machine_session="vm:aaaa", timestamp="2026-12-01T10:00:00+00:00"
    )
    later = tidy[tidy["batch_size"] == 1].assign(
        git_commit="b" * 40,
        machine_session="vm:bbbb",
        timestamp="2026-12-01T12:00:00+00:00",
        input_tokens=lambda d: d["input_tokens"] * 4,
    )
    # Another model measured in the earlier session alone: its lines keep their plain names.
    other = tidy.assign(model="zz")
    fig = _fig10(pd.concat([tidy, later, other], ignore_index=True))
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["batch 1 (git bbbbbbb)", "batch 1 (git aaaaaaa)", "batch 1", "batch 4"]
    assert {line.get_label() for line in _visible(fig)[-1].get_lines()} == {"batch 1", "batch 4"}
    prefill = _visible(fig)[0]
    lines = {line.get_label(): line for line in prefill.get_lines()}
    assert list(lines["batch 1 (git bbbbbbb)"].get_xdata()) == [64, 256, 1024]
    assert list(lines["batch 1 (git aaaaaaa)"].get_xdata()) == [16, 64, 256]
    earlier, latest = (lines[f"batch 1 (git {c * 7})"] for c in "ab")
    assert earlier.get_linestyle() != latest.get_linestyle()
    assert [t.get_text() for t in prefill.get_xticklabels()] == ["16", "64", "256", "1k"]


def test_fig10_shows_duration_when_no_row_has_energy(tidy):
    for col in ("energy_j", "prefill_energy_j", "decode_energy_j"):
        tidy[col] = math.nan
    tidy["meter"], tidy["energy_source"] = "none", "none"
    axes = _visible(_fig10(tidy))
    assert len(axes) == 4
    for ax in axes:
        assert "duration" in ax.get_ylabel()
        assert "(s)" in ax.get_ylabel()
        assert "(J)" not in ax.get_ylabel()
        assert len(ax.get_lines()) == len(BATCHES)
    line = {line.get_label(): line for line in axes[0].get_lines()}["batch 1"]
    assert list(line.get_ydata()) == pytest.approx([0.016, 0.064, 0.256])


def test_fig10_draws_the_phases_intervals_where_the_rows_keep_them(tidy):
    def footer(fig):
        return " ".join(t.get_text() for t in fig.texts)

    assert "no interval (these rows keep no prefill window per trial" in footer(_fig10(tidy))
    kept = tidy.assign(
        prefill_energy_j_ci95=0.1 * tidy["prefill_energy_j"],
        decode_energy_j_ci95=0.1 * tidy["decode_energy_j"],
    )
    fig = _fig10(kept)
    assert "no prefill window per trial" not in footer(fig)
    bars = [c for ax in _visible(fig) for c in ax.containers]
    assert len(bars) == 4 * len(BATCHES)  # an error bar set per line of every panel
    # One row without them: said for that row only.
    kept.loc[kept.index[0], "prefill_energy_j_ci95"] = math.nan
    assert "no interval where a row keeps no prefill window per trial" in footer(_fig10(kept))


def test_fig10_leaves_out_infeasible_rows(tidy):
    # The rows keep positive numbers, so that only the feasible flag can leave them out.
    oom = {"feasible": False, "error": "out of memory"}
    extra = [
        _row(64, 16, 8, "input_sweep", **oom),  # a batch that never fitted: no line of its own
        _row(4, 1024, 8, "input_sweep", **oom),  # the batch-4 line keeps its 3 points
    ]
    df = pd.concat([tidy, pd.DataFrame(extra)], ignore_index=True)
    axes = _visible(_fig10(df))
    assert len(axes) == 4
    for ax in axes:
        assert len(ax.get_lines()) == len(BATCHES)
        assert "batch 64" not in [line.get_label() for line in ax.get_lines()]
    line = {line.get_label(): line for line in axes[0].get_lines()}["batch 4"]
    assert list(line.get_xdata()) == [16, 64, 256]


def test_fig10_ignores_other_backends(tidy):
    other = tidy.copy()
    other["backend"] = "vllm"
    other["batch_size"] = other["batch_size"] * 100
    axes = _visible(_fig10(pd.concat([tidy, other], ignore_index=True)))
    for ax in axes:
        assert sorted(line.get_label() for line in ax.get_lines()) == ["batch 1", "batch 4"]


def test_fig10_without_feasible_rows_is_a_clear_error(tidy):
    tidy["feasible"] = False
    with pytest.raises(ValueError, match="no feasible controlled-sweep rows"):
        _fig10(tidy)


def test_fig10_on_a_table_without_sweep_rows_is_a_clear_error():
    df = pd.DataFrame([_row(b, 512, 64, "decoding") for b in BATCHES])
    with pytest.raises(ValueError, match="controlled-sweep"):
        _fig10(df)


def test_fig10_carries_the_provenance(tidy):
    fig = _fig10(tidy)
    text = " ".join(t.get_text() for t in fig.texts)
    assert "measured (nvml)" in text
    assert "tiny (random weights, float32)" in text
    assert "NVIDIA H100" in text


def test_registries_and_save(tidy, tmp_path):
    assert outputs()["table_controlled_sweeps"].function() is table_controlled_sweeps
    out = tmp_path / "figs" / "fig10.png"
    save(_fig10(tidy), out, dpi=50)
    assert out.is_file()
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["fig10.png"]  # no temporary left


def test_energy_label_and_provenance_note():
    df = pd.DataFrame(
        {
            "energy_source": ["measured", "estimate", "measured"],
            "meter": ["nvml", "codecarbon", "nvml"],
            "model": ["m", "m", "m"],
        }
    )
    assert energy_label(df) == "estimate (codecarbon), measured (nvml)"
    note = provenance_note(df)
    assert note.startswith("m (n/a weights, n/a)")  # missing columns read n/a
    assert energy_label(df.iloc[:0]) == "none"


def test_a_session_says_when_its_rows_were_written_first_to_last():
    """The rows' timestamps are when each point finished, not when the job started: the
    footer gives their span, with the last's date where it differs."""
    rows = pd.DataFrame(
        {
            "machine_session": ["vm:a", "vm:a", "vm:b", "vm:b", "vm:c"],
            "host": ["vm"] * 5,
            "git_commit": ["0123456789"] * 5,
            "timestamp": [
                "2026-12-07T16:22:59+00:00",
                "2026-12-07T16:15:01+00:00",
                "2026-12-07T23:50:00+00:00",
                "2026-12-08T00:10:00+00:00",
                "2026-12-09T01:02:03+00:00",
            ],
        }
    )
    described = [s.written for s in sessions(rows)]
    assert described == [
        "rows written 2026-12-07 16:15–16:22 UTC",
        "rows written 2026-12-07 23:50–2026-12-08 00:10 UTC",
        "rows written 2026-12-09 01:02 UTC",
    ]


# --- table_controlled_sweeps --------------------------------------------------------------------


def test_table_keeps_only_sweep_rows_and_sorts_them(tidy):
    others = pd.DataFrame(
        [
            _row(1, 512, 64, "decoding"),
            _row(2, 512, 64, "architectures"),
            _row(8, 512, 64, "engine_optimisations"),
        ]
    )
    shuffled = pd.concat([others, tidy], ignore_index=True).sample(frac=1.0, random_state=3)
    table = table_controlled_sweeps(shuffled)
    assert len(table) == len(tidy)
    assert list(table.index) == list(range(len(tidy)))
    keys = list(
        zip(table["output_tokens"], table["input_tokens"], table["batch_size"], strict=True)
    )
    assert keys == sorted(keys)
    assert "experiments" not in table.columns
    assert list(table.columns[:7]) == [
        "backend",
        "engine",
        "model",
        "weights",
        "batch_size",
        "input_tokens",
        "output_tokens",
    ]
    assert {"prefill_energy_j", "decode_energy_j", "energy_source", "meter"} <= set(table.columns)


def test_table_keeps_infeasible_sweep_rows(tidy):
    infeasible = _row(64, 16, 8, "input_sweep", feasible=False, energy_j=math.nan)
    table = table_controlled_sweeps(pd.concat([tidy, pd.DataFrame([infeasible])]))
    assert len(table) == len(tidy) + 1
    assert (~table["feasible"]).sum() == 1


# --- aggregate.combine --------------------------------------------------------------------------


def _write(df: pd.DataFrame, path: Path) -> Path:
    df.to_parquet(path, index=False)
    return path


def test_combine_concatenates_job_tables(tmp_path, tidy):
    other = tidy.copy()
    other["group"] = "tiny__compiled"
    other["engine"] = "compiled"
    a = _write(other, tmp_path / "b.parquet")
    b = _write(tidy.iloc[::-1], tmp_path / "a.parquet")
    table = aggregate.combine([a, b])
    assert len(table) == 2 * len(tidy)
    assert list(table.index) == list(range(len(table)))
    assert list(table.columns) == list(tidy.columns)
    # sorted by group, then shape
    assert list(table["group"].iloc[: len(tidy)]) == ["tiny__compiled"] * len(tidy)
    part = table[table["group"] == "tiny__pytorch"]
    keys = list(zip(part["input_tokens"], part["output_tokens"], part["batch_size"], strict=True))
    assert keys == sorted(keys)


def test_combine_skips_empty_tables(tmp_path, tidy):
    full = _write(tidy, tmp_path / "full.parquet")
    empty = _write(pd.DataFrame(), tmp_path / "empty.parquet")
    assert len(aggregate.combine([empty, full])) == len(tidy)
    nothing = aggregate.combine([empty])
    assert nothing.empty
    assert set(aggregate.REQUIRED_COLUMNS) <= set(nothing.columns)


def test_combine_names_the_file_missing_required_columns(tmp_path, tidy):
    good = _write(tidy, tmp_path / "good.parquet")
    bad = _write(tidy.drop(columns=["energy_j", "gpu_name"]), tmp_path / "bad.parquet")
    with pytest.raises(InputError) as exc:
        aggregate.combine([good, bad])
    msg = str(exc.value)
    assert "bad.parquet" in msg
    assert "energy_j" in msg
    assert "gpu_name" in msg
    assert "good.parquet" not in msg


def test_combine_accepts_or_names_a_table_with_only_the_required_columns(tmp_path):
    row = _row(1, 16, 8, "input_sweep")
    path = _write(
        pd.DataFrame([{c: row[c] for c in aggregate.REQUIRED_COLUMNS}]), tmp_path / "t.parquet"
    )
    try:
        table = aggregate.combine([path])
    except InputError as exc:
        assert "t.parquet" in str(exc)
    else:
        assert len(table) == 1


def test_write_parquet_and_csv(tmp_path, tidy):
    parquet, csv = tmp_path / "out" / "m.parquet", tmp_path / "m.csv"
    aggregate.write(tidy, parquet, csv)
    pd.testing.assert_frame_equal(pd.read_parquet(parquet), tidy)
    assert len(pd.read_csv(csv)) == len(tidy)
