"""Request-length traces: loading and validation, Tables 1/2 statistics, binning, the trace
summaries they are drawn from, Fig 7."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from conftest import MIRROR
from matplotlib.figure import Figure

from llm_energy.analysis.summaries import (
    QUANTILES,
    TraceSummary,
    check_trace_summary,
    read_trace_summary,
    summarise_trace,
    write_trace_summary,
)
from llm_energy.cli import main
from llm_energy.errors import ConfigError, InputError
from llm_energy.figures.traces import fig7_trace_cdf, table_trace_bins, table_trace_lengths
from llm_energy.inputs import traces
from llm_energy.inputs.traces import (
    FORMULA_INPUT_BINS,
    OUTPUT_BINS,
    PRINTED_INPUT_BINS,
    TRACES,
    bin_requests,
    length_stats,
    load_trace,
    paper_bins,
    trace_path,
)

AZURE = [
    ("azure_conversation", "AzureLLMInferenceTrace_conv.csv", "conv", 19_366),
    ("azure_code", "AzureLLMInferenceTrace_code.csv", "code", 8_819),
]
needs_mirror = pytest.mark.mirror(f"traces/azure_2023/{AZURE[0][1]}")
BURST_HEADER = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
# (model, request, response, log type); response 0 = a failed request
BURST_ROWS = [
    ("ChatGPT", 472, 18, "Conversation log"),
    ("ChatGPT", 1087, 0, "Conversation log"),
    ("GPT-4", 300, 120, "Conversation log"),
    ("ChatGPT", 45, 7, "API log"),
    ("GPT-4", 2000, 0, "API log"),
    ("GPT-4", 90, 33, "API log"),
    ("ChatGPT", 16, 0, "API log"),
]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _burst_csv(tmp_path: Path, rows=BURST_ROWS) -> Path:
    lines = [f"{i * 5},{m},{r},{o},{r + o},{t}\n" for i, (m, r, o, t) in enumerate(rows)]
    return _write(tmp_path / "BurstGPT_1.csv", BURST_HEADER + "".join(lines))


def _lengths(df: pd.DataFrame) -> list[tuple[int, int]]:
    return list(zip(df["input_tokens"].tolist(), df["output_tokens"].tolist(), strict=True))


def _frame(inp: list[int], out: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"input_tokens": inp, "output_tokens": out}, dtype="int64")


def _summary(name: str, df: pd.DataFrame, tmp_path: Path, *bins: tuple[int, ...]) -> TraceSummary:
    """The trace's summary as the pipeline ships it: written to JSON and read back."""
    path = tmp_path / f"{name}.json"
    write_trace_summary(summarise_trace(name, df, *(bins or paper_bins())), path)
    return read_trace_summary(path)


# ---------------------------------------------------------------- registry and bins


def test_registry_names_real_sources_and_columns() -> None:
    assert set(TRACES) == {"burstgpt", "azure_conversation", "azure_code"}
    azure = "https://raw.githubusercontent.com/Azure/AzurePublicDataset/master/data/"
    assert TRACES["azure_conversation"].url == azure + "AzureLLMInferenceTrace_conv.csv"
    assert TRACES["azure_code"].url == azure + "AzureLLMInferenceTrace_code.csv"
    assert (
        TRACES["burstgpt"].url
        == "https://github.com/HPMLL/BurstGPT/releases/download/v1.1/BurstGPT_1.csv"
    )
    assert TRACES["azure_conversation"].mirror_path == (
        "traces/azure_2023/AzureLLMInferenceTrace_conv.csv"
    )
    assert TRACES["azure_code"].mirror_path == "traces/azure_2023/AzureLLMInferenceTrace_code.csv"
    assert TRACES["burstgpt"].mirror_path == "traces/burstgpt/BurstGPT_1.csv"
    for name in ("azure_conversation", "azure_code"):
        src = TRACES[name]
        assert (src.input_column, src.output_column) == ("ContextTokens", "GeneratedTokens")
        assert src.model_column is None and not src.zero_output_is_failure
    b = TRACES["burstgpt"]
    assert (b.input_column, b.output_column) == ("Request tokens", "Response tokens")
    assert (b.model_column, b.log_type_column, b.zero_output_is_failure) == (
        "Model",
        "Log Type",
        True,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.url = "x"  # type: ignore[misc]


def test_paper_bins() -> None:
    assert paper_bins() == (
        (32, 128, 256, 512, 1024, 2048, 4096, 8192),
        (8, 16, 32, 64, 128, 256, 512),
    )
    inp, out = paper_bins("formula")
    assert inp == (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
    assert out == OUTPUT_BINS
    assert set(FORMULA_INPUT_BINS) - set(PRINTED_INPUT_BINS) == {16, 64}
    with pytest.raises(ConfigError):
        paper_bins("other")  # type: ignore[arg-type]


# ---------------------------------------------------------------- real Azure 2023 traces


@needs_mirror
@pytest.mark.parametrize(("name", "file", "key", "rows"), AZURE)
def test_azure_length_stats_match_plain_pandas(
    name: str, file: str, key: str, rows: int, tmp_path: Path
) -> None:
    path = MIRROR / "traces" / "azure_2023" / file
    df = load_trace(name, path)
    assert len(df) == rows
    assert list(df.columns) == ["input_tokens", "output_tokens", "arrival_s"]
    assert (df[["input_tokens", "output_tokens"]].dtypes == "int64").all()
    # Arrival times: seconds since the first request, in the trace's order.
    assert df["arrival_s"].iloc[0] == 0 and df["arrival_s"].is_monotonic_increasing
    assert df.attrs["failed_dropped"] == 0
    # Tables 1 and 2 are drawn from the trace's summary: the same numbers, bit for bit.
    stats = _summary(name, df, tmp_path).length_stats()
    pd.testing.assert_frame_equal(stats, length_stats(df), check_exact=True)
    assert list(stats.index) == ["input", "output"]
    assert list(stats.columns) == ["mean", "std", "median", "p99", "count"]

    raw = pd.read_csv(path)  # independent: plain pandas on the raw CSV
    assert len(raw) == rows
    recorded = json.loads((path.parent / "stats.json").read_text())[key]
    assert recorded["rows"] == rows
    for label, col in (("input", "ContextTokens"), ("output", "GeneratedTokens")):
        s = raw[col]
        got = stats.loc[label]
        assert got["mean"] == pytest.approx(s.mean(), rel=1e-12)
        assert got["std"] == pytest.approx(s.std(), rel=1e-12)
        assert got["median"] == pytest.approx(s.median(), rel=1e-12)
        assert got["p99"] == pytest.approx(s.quantile(0.99), rel=1e-12)
        assert got["count"] == rows
        # and the figures the mirror's provenance script recorded (rounded to 2 decimals)
        assert got["mean"] == pytest.approx(recorded[col]["mean"], abs=0.005)
        assert got["std"] == pytest.approx(recorded[col]["std_ddof1"], abs=0.005)
        assert got["median"] == recorded[col]["median"]
        assert got["p99"] == pytest.approx(recorded[col]["p99_linear"], abs=1e-6)


@needs_mirror
@pytest.mark.parametrize("variant", ["printed", "formula"])
def test_azure_binning_accounts_for_every_request(variant: str) -> None:
    df = load_trace("azure_conversation", MIRROR / TRACES["azure_conversation"].mirror_path)
    inp_bins, out_bins = paper_bins(variant)  # type: ignore[arg-type]
    b = bin_requests(df, inp_bins, out_bins)
    over_i = df["input_tokens"] > 8192
    over_o = df["output_tokens"] > 512
    assert b.dropped_input == int(over_i.sum()) > 0
    assert b.dropped_output == int(over_o.sum()) > 0  # conv output p99 (601) is above 512
    assert b.dropped_total == int((over_i | over_o).sum())
    assert b.counts["requests"].sum() + b.dropped_total == len(df) == b.total
    assert len(b.binned) == b.counts["requests"].sum()
    small = int(((df["input_tokens"] <= 16) & ~over_o).sum())
    assert small > 0  # the conv trace has prompts of 2 tokens
    in16 = int(b.counts.loc[b.counts["input_bin"] == 16, "requests"].sum())
    assert in16 == (small if variant == "formula" else 0)


# ---------------------------------------------------------------- BurstGPT (synthetic, real schema)


def test_burstgpt_drops_failed_requests_by_default(tmp_path: Path) -> None:
    df = load_trace("burstgpt", _burst_csv(tmp_path))
    assert _lengths(df) == [(472, 18), (300, 120), (45, 7), (90, 33)]
    assert df.attrs["failed_dropped"] == 3
    assert (df[["input_tokens", "output_tokens"]].dtypes == "int64").all()
    assert list(df.index) == [0, 1, 2, 3]


def test_arrival_times_are_kept_where_the_trace_logs_good_ones(tmp_path: Path) -> None:
    """Seconds since the first request (BurstGPT logs seconds); a trace whose times do not
    parse keeps its lengths and says why it has no arrival times."""
    df = load_trace("burstgpt", _burst_csv(tmp_path))
    assert df["arrival_s"].tolist() == [0.0, 10.0, 15.0, 25.0]
    path = _write(
        tmp_path / "a.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,5,1\n"
        "2023-11-16 18:15:48.1805900,7,3\n",
    )
    assert load_trace("azure_code", path)["arrival_s"].tolist() == pytest.approx([0.0, 1.5])
    bad = _write(tmp_path / "b.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\nt,5,0\n")
    df = load_trace("azure_code", bad)
    assert "arrival_s" not in df.columns
    assert df.attrs["arrivals_note"] == f"{bad}: line 2: column 'TIMESTAMP': bad time 't'"


def test_burstgpt_keeps_failed_requests_on_request(tmp_path: Path) -> None:
    df = load_trace("burstgpt", _burst_csv(tmp_path), failed="keep")
    assert _lengths(df) == [(r, o) for _, r, o, _ in BURST_ROWS]
    assert df.attrs["failed_dropped"] == 0
    assert df.attrs["failed_kept"] == 3


def test_burstgpt_model_and_log_type_filters(tmp_path: Path) -> None:
    path = _burst_csv(tmp_path)
    gpt4 = load_trace("burstgpt", path, models=["GPT-4"])
    assert _lengths(gpt4) == [(300, 120), (90, 33)]
    assert gpt4.attrs["failed_dropped"] == 1  # counted within the selection only
    conv = load_trace("burstgpt", path, log_types=["Conversation log"], failed="keep")
    assert _lengths(conv) == [(472, 18), (1087, 0), (300, 120)]
    both = load_trace("burstgpt", path, models=["ChatGPT"], log_types=["API log"])
    assert _lengths(both) == [(45, 7)]
    assert both.attrs["failed_dropped"] == 1
    with pytest.raises(InputError, match="no requests left"):
        load_trace("burstgpt", path, models=["Llama"])


def test_azure_has_no_failure_rule_and_no_filters(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\nt,5,0\nt,7,3\n")
    df = load_trace("azure_code", path)
    assert _lengths(df) == [(5, 0), (7, 3)]
    assert df.attrs["failed_dropped"] == 0
    with pytest.raises(InputError, match="filter"):
        load_trace("azure_code", path, models=["GPT-4"])


def test_burstgpt_filter_needs_its_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "b.csv", "Timestamp,Request tokens,Response tokens\n0,5,6\n")
    assert _lengths(load_trace("burstgpt", path)) == [(5, 6)]
    with pytest.raises(InputError, match=r"'Model'") as err:
        load_trace("burstgpt", path, models=["ChatGPT"])
    assert str(path) in str(err.value)


# ---------------------------------------------------------------- malformed traces

AZ_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("", r"empty file"),
        (AZ_HEADER, r"no rows"),
        (AZ_HEADER + "\n\n", r"no rows"),
        ("TIMESTAMP,ContextTokens\nt,5\n", r"missing column.*'GeneratedTokens'"),
        (AZ_HEADER + "t,5,6\nt,-3,4\n", r"line 3: column 'ContextTokens': negative length -3"),
        (AZ_HEADER + "t,5,6\nt,7,8\nt,9,12.5\n", r"line 4: column 'GeneratedTokens'.*'12\.5'"),
        (AZ_HEADER + "t,abc,6\n", r"line 2: column 'ContextTokens'.*non-integer.*'abc'"),
        (AZ_HEADER + "t,5,6\nt,5,\n", r"line 3: column 'GeneratedTokens': missing length"),
        (AZ_HEADER + "t,5,6\n\nt,x,6\n", r"line 4: column 'ContextTokens'"),  # blank line counted
        (AZ_HEADER + "t,5,6\nt,5,6,7,8\n", r"line 3"),  # too many fields
    ],
)
def test_malformed_trace_raises_one_input_error(tmp_path: Path, text: str, pattern: str) -> None:
    path = _write(tmp_path / "trace.csv", text)
    with pytest.raises(InputError, match=pattern) as err:
        load_trace("azure_conversation", path)
    assert str(err.value).startswith(f"{path}: ")


def test_burstgpt_malformed_length_names_line(tmp_path: Path) -> None:
    rows = [*BURST_ROWS[:2], ("GPT-4", "12.5", 3, "API log")]
    lines = [f"0,{m},{r},{o},0,{t}\n" for m, r, o, t in rows]
    path = _write(tmp_path / "bg.csv", BURST_HEADER + "".join(lines))
    with pytest.raises(InputError, match=r"line 4: column 'Request tokens'.*'12\.5'"):
        load_trace("burstgpt", path)


def test_missing_file_and_unknown_trace(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        load_trace("azure_code", tmp_path / "absent.csv")
    with pytest.raises(ConfigError, match="unknown trace"):
        load_trace("sharegpt", tmp_path / "absent.csv")


def test_integral_float_lengths_are_accepted(tmp_path: Path) -> None:
    path = _write(tmp_path / "f.csv", AZ_HEADER + "t,12.0, 7\n")
    assert _lengths(load_trace("azure_code", path)) == [(12, 7)]


# ---------------------------------------------------------------- statistics and binning


def test_length_stats_small_frame() -> None:
    inp = [1, 2, 3, 4, 100]
    df = _frame(inp, [10, 10, 10, 10, 10])
    stats = length_stats(df)
    assert stats.loc["input", "mean"] == 22.0
    assert stats.loc["input", "median"] == 3.0
    assert stats.loc["input", "std"] == pytest.approx(np.std(inp, ddof=1), rel=1e-12)
    assert stats.loc["input", "p99"] == pytest.approx(4 + 0.96 * 96, rel=1e-12)
    assert stats.loc["output", "std"] == 0.0
    assert stats["count"].tolist() == [5, 5]


def test_ceiling_mapping_at_bin_edges() -> None:
    inp = [1, 32, 33, 512, 513, 8192, 8193, 100, 9000]
    out = [8, 9, 16, 17, 512, 1, 5, 513, 600]
    b = bin_requests(_frame(inp, out), PRINTED_INPUT_BINS, OUTPUT_BINS)
    assert _lengths(b.binned) == [
        (32, 8),
        (32, 16),
        (128, 16),
        (512, 32),
        (1024, 512),
        (8192, 8),
    ]
    assert (b.dropped_input, b.dropped_output, b.dropped_total) == (2, 2, 3)
    assert b.counts["requests"].sum() + b.dropped_total == len(inp) == b.total
    assert list(b.counts.columns) == ["input_bin", "output_bin", "requests"]
    assert b.counts.loc[b.counts["input_bin"] == 32, "requests"].sum() == 2


def test_bins_are_sorted_and_validated() -> None:
    df = _frame([5, 70, 300], [3, 3, 3])
    b = bin_requests(df, [256, 64, 512, 64], [8])
    assert _lengths(b.binned) == [(64, 8), (256, 8), (512, 8)]
    assert b.input_bins == (64, 256, 512)
    with pytest.raises(ConfigError):
        bin_requests(df, [], [8])
    with pytest.raises(ConfigError):
        bin_requests(df, [0, 8], [8])


def test_printed_and_formula_bins_differ_in_the_16_bin() -> None:
    df = _frame([3, 16, 17, 40, 9000], [4, 4, 4, 4, 4])
    printed = bin_requests(df, *paper_bins("printed"))
    formula = bin_requests(df, *paper_bins("formula"))
    assert 16 not in set(printed.counts["input_bin"])
    f16 = formula.counts.loc[formula.counts["input_bin"] == 16, "requests"].sum()
    assert f16 == 2
    assert printed.counts.loc[printed.counts["input_bin"] == 32, "requests"].sum() == 3
    for b in (printed, formula):
        assert b.dropped_total == b.dropped_input == 1
        assert b.counts["requests"].sum() + b.dropped_total == len(df)


# ---------------------------------------------------------------- trace_path


def _point_at(monkeypatch: pytest.MonkeyPatch, name: str, url: str) -> None:
    monkeypatch.setitem(TRACES, name, dataclasses.replace(TRACES[name], url=url))


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_trace_path_prefers_the_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "mirror"
    copy = mirror / TRACES["azure_code"].mirror_path
    copy.parent.mkdir(parents=True)
    copy.write_text(AZ_HEADER + "t,1,2\n")
    _point_at(monkeypatch, "azure_code", "file:///nonexistent/x.csv")
    cache = tmp_path / "cache"
    assert trace_path("azure_code", str(mirror), cache) == copy
    assert trace_path("azure_code", mirror, cache) == copy
    assert not cache.exists()


@needs_mirror
def test_trace_path_finds_the_shared_mirror(tmp_path: Path) -> None:
    got = trace_path("azure_conversation", MIRROR, tmp_path)
    assert got == MIRROR / "traces" / "azure_2023" / "AzureLLMInferenceTrace_conv.csv"
    assert _leftovers(tmp_path) == []


def test_trace_path_downloads_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = _write(tmp_path / "upstream.csv", AZ_HEADER + "t,11,22\nt,33,44\n")
    _point_at(monkeypatch, "azure_code", source.as_uri())
    cache = tmp_path / "cache"
    empty_mirror = tmp_path / "empty_mirror"  # set, but without the file: download anyway
    empty_mirror.mkdir()
    got = trace_path("azure_code", empty_mirror, cache)
    assert got == cache / "traces" / "azure_2023" / "AzureLLMInferenceTrace_code.csv"
    assert got.read_bytes() == source.read_bytes()
    assert _leftovers(cache) == ["AzureLLMInferenceTrace_code.csv"]  # no temporary file left
    assert _lengths(load_trace("azure_code", got)) == [(11, 22), (33, 44)]
    _point_at(monkeypatch, "azure_code", "file:///nonexistent/x.csv")
    assert trace_path("azure_code", None, cache) == got  # cached: no second download


def test_interrupted_download_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Broken(io.BytesIO):
        def read(self, size: int = -1) -> bytes:
            if self.tell() > 0:
                raise OSError("connection reset")
            return super().read(4)

    monkeypatch.setattr(traces.urllib.request, "urlopen", lambda *a, **k: Broken(b"x" * 100))
    cache = tmp_path / "cache"
    with pytest.raises(InputError, match="connection reset"):
        trace_path("burstgpt", None, cache)
    assert _leftovers(cache) == []


def test_unreachable_url_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _point_at(monkeypatch, "burstgpt", "file:///nonexistent")
    with pytest.raises(InputError) as err:
        trace_path("burstgpt", tmp_path / "no_mirror", tmp_path / "cache")
    msg = str(err.value)
    assert "file:///nonexistent" in msg and "mirror.data" in msg
    assert _leftovers(tmp_path) == []


# ---------------------------------------------------------------- trace summaries


def _ties_trace(n: int = 5000) -> pd.DataFrame:
    """Lengths with many ties and a long tail, some above the largest bins."""
    rng = np.random.default_rng(7)
    inp = np.concatenate([rng.integers(1, 9000, n // 2), rng.choice([5, 300, 1024], n - n // 2)])
    out = np.concatenate([rng.integers(0, 700, n // 2), rng.choice([1, 64, 129], n - n // 2)])
    df = _frame(inp.tolist(), out.tolist())
    df.attrs.update(source="/data/trace.csv", failed_dropped=3)
    return df


def _ecdf(values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Fraction of ``values`` at or below each point of ``at``, by plain counting."""
    return np.array([(values <= x).mean() for x in at])


def test_summary_holds_what_direct_computation_gives(tmp_path: Path) -> None:
    df = _ties_trace()
    configured = ((64, 256, 1024, 4096), (16, 128))
    summary = _summary("azure_code", df, tmp_path, *configured)
    assert summary.trace == "azure_code" and summary.requests == len(df)
    assert summary.failed_dropped == 3
    assert summary.provenance["source"] == "/data/trace.csv"
    pd.testing.assert_frame_equal(summary.length_stats(), length_stats(df), check_exact=True)
    for bins in (configured, paper_bins("printed"), paper_bins("formula")):
        direct = bin_requests(df, *bins)
        held = summary.binning(*bins)
        pd.testing.assert_frame_equal(held.counts, direct.counts, check_exact=True)
        assert (held.total, held.dropped_input, held.dropped_output, held.dropped_total) == (
            direct.total,
            direct.dropped_input,
            direct.dropped_output,
            direct.dropped_total,
        )
    assert summary.binning([4096, 64, 256, 1024, 64], [128, 16]) is summary.binning(*configured)
    p = np.linspace(0, 1, QUANTILES)
    for side in ("input", "output"):
        values = df[f"{side}_tokens"].to_numpy()
        x, y = summary.cdf(side)  # type: ignore[arg-type]
        assert x.tolist() == np.quantile(values, p, method="inverted_cdf").tolist()
        assert x[0] == values.min() and x[-1] == values.max() and y.tolist() == p.tolist()
        # Drawn as a post step curve, the grid is the empirical CDF within 1 / (QUANTILES - 1).
        at = np.unique(values)
        drawn = y[np.searchsorted(x, at, side="right") - 1]
        assert np.abs(drawn - _ecdf(values, at)).max() <= 1 / (QUANTILES - 1) + 1e-12


def test_a_summary_of_other_bins_says_which_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "azure_code.json"
    write_trace_summary(summarise_trace("azure_code", _ties_trace(200), *paper_bins()), path)
    with pytest.raises(InputError) as err:
        check_trace_summary(path, "azure_code", [64, 256], [8, 32])
    msg = str(err.value)
    assert msg.startswith(f"{path}: ")
    assert "input bins 64 256 and output bins 8 32" in msg
    assert "input 32 128 256 512 1024 2048 4096 8192 / output 8 16 32 64 128 256 512" in msg
    assert "resources/summaries" in msg
    with pytest.raises(InputError, match="not of 'azure_conversation'"):
        check_trace_summary(path, "azure_conversation", *paper_bins())
    path.write_text('{"kind": "architecture_summary"}')
    with pytest.raises(InputError, match="not a trace summary"):
        read_trace_summary(path)
    path.write_text('{"kind": "trace_summary", "trace": "x"}')
    with pytest.raises(InputError, match="malformed trace summary"):
        read_trace_summary(path)


def test_trace_tables_from_summaries_equal_those_from_the_traces(tmp_path: Path) -> None:
    prepared, summaries = [], []
    for name, n in (("azure_conversation", 3000), ("azure_code", 800)):
        df = _ties_trace(n)
        df.to_parquet(tmp_path / f"{name}.parquet", index=False)
        prepared.append(str(tmp_path / f"{name}.parquet"))
        summaries.append(str(tmp_path / f"{name}.json"))
        bins = ["--input-bins", "64", "512", "--output-bins", "32", "256"]
        assert main(["trace-summary", prepared[-1], "--out", summaries[-1], *bins]) == 0
    outputs = {}
    for kind, paths in (("raw", prepared), ("summary", summaries)):
        lengths, bins_csv = tmp_path / f"{kind}_lengths.csv", tmp_path / f"{kind}_bins.csv"
        args = ["trace-tables", *paths, "--lengths", str(lengths), "--bins", str(bins_csv)]
        assert main([*args, "--input-bins", "64", "512", "--output-bins", "32", "256"]) == 0
        outputs[kind] = (lengths.read_text(), bins_csv.read_text())
    assert outputs["summary"] == outputs["raw"]
    lengths = pd.read_csv(tmp_path / "summary_lengths.csv")
    raw = pd.read_parquet(prepared[0])
    got = lengths[(lengths["trace"] == "azure_conversation") & (lengths["side"] == "output")]
    assert got["mean"].iloc[0] == pytest.approx(raw["output_tokens"].mean(), rel=1e-9)
    assert got["failed_requests_dropped"].iloc[0] == 3
    table = table_trace_bins(
        {"t": read_trace_summary(summaries[1])}, {"configured": ((512, 64), (256, 32))}
    )
    assert table["input_bins"].tolist() == ["64 512"] and table["kept"].iloc[0] > 0
    assert table_trace_lengths({"t": read_trace_summary(summaries[1])})["count"].tolist() == [
        800,
        800,
    ]


# ---------------------------------------------------------------- Fig 7


def _fig7_input() -> pd.DataFrame:
    path = MIRROR / TRACES["azure_conversation"].mirror_path
    if path.is_file():
        return load_trace("azure_conversation", path)
    return _ties_trace()


def test_fig7_from_the_summary_draws_the_traces_cdfs(tmp_path: Path) -> None:
    df = _fig7_input()
    bins = paper_bins()
    b = bin_requests(df, *bins)
    summary = _summary("azure_conversation", df, tmp_path)
    fig = fig7_trace_cdf(summary, *bins, "Azure conversation: real vs binned lengths")
    try:
        assert isinstance(fig, Figure)
        axes = [ax for ax in fig.axes if ax.get_visible()]
        assert len(axes) == 2
        for ax, col in zip(axes, ("input_tokens", "output_tokens"), strict=True):
            assert len(ax.get_lines()) == 2
            assert ax.get_xscale() == "log"
            assert ax.get_xlabel() and ax.get_ylabel()
            real, binned = ax.get_lines()
            assert real.get_ydata()[-1] == pytest.approx(1.0)
            assert binned.get_ydata()[-1] == pytest.approx(1.0)
            assert real.get_xdata().min() == df[col].min()
            assert real.get_xdata().max() == df[col].max()
            # Real: the trace's empirical CDF within a thousandth, at every length it holds.
            values = df[col].to_numpy()
            at = np.unique(values)
            x, y = real.get_xdata(), real.get_ydata()
            drawn = y[np.searchsorted(x, at, side="right") - 1]
            assert np.abs(drawn - _ecdf(values, at)).max() <= 1 / (QUANTILES - 1) + 1e-12
            # Binned: exactly the CDF of the binned requests, at every bin they fill.
            kept = b.binned[col].to_numpy()
            x, y = binned.get_xdata(), binned.get_ydata()
            at = np.unique(kept)
            drawn = y[np.searchsorted(x, at, side="right") - 1]
            assert drawn.tolist() == pytest.approx(_ecdf(kept, at).tolist(), abs=1e-12)
            assert y[0] == 0.0 and x[0] == kept.min()
        legend = [t.get_text() for t in axes[0].get_legend().get_texts()]
        assert legend == [
            f"real (n={len(df):,})",
            f"binned (n={len(df) - b.dropped_total:,})",
            "the paper's",
        ]
        # The paper's median and 99th percentile of the trace (its Table 2), on each side.
        for ax in axes:
            marks = [t.get_text() for t in ax.texts]
            assert any(m.startswith("paper median") for m in marks)
            assert any(m.startswith("paper p99") for m in marks)
        notes = " ".join(t.get_text() for t in fig.texts)
        assert re.search(rf"{b.dropped_total:,} of {len(df):,} requests dropped", notes)
    finally:
        plt.close(fig)


def test_fig7_of_bins_the_summary_lacks_is_one_error(tmp_path: Path) -> None:
    summary = _summary("azure_conversation", _ties_trace(100), tmp_path)
    with pytest.raises(InputError, match="configured input bins 64 and output bins 8"):
        fig7_trace_cdf(summary, [64], [8], "x")
