"""The summaries of the raw inputs: Table 3 with its provenance, and the copies shipped in
resources/summaries/, checked against the configuration and, with the mirror, against the raw
inputs they were made from."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import MIRROR, require_mirror

from llm_energy.analysis.summaries import (
    TABLE3_PROVENANCE,
    check_architecture_summary,
    check_task_table,
    check_trace_summary,
    read_trace_summary,
    sha256_file,
    summarise_trace,
    task_table,
)
from llm_energy.config import validate
from llm_energy.errors import InputError
from llm_energy.inputs.traces import TRACES, load_trace

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "resources" / "summaries"
SENTENCE = "The quick brown fox jumps over the lazy dog."  # 10 Llama 3 tokens


def _h100() -> dict:
    return validate(yaml.safe_load((ROOT / "config" / "h100.yaml").read_text()))


@pytest.fixture(scope="module")
def tokenizer():
    pytest.importorskip("transformers")
    pytest.importorskip("tiktoken")
    require_mirror("tokenizers/llama3")
    from llm_energy.inputs.texts import load_tokenizer

    return load_tokenizer(MIRROR)


def _sample(task: str, texts: list[str], seed: int = 0) -> pd.DataFrame:
    df = pd.DataFrame({"task": task, "example_id": range(len(texts)), "text": texts})
    df.attrs.update(source=f"/data/{task}.jsonl", requested=len(texts), seed=seed)
    return df


def test_table3_carries_the_provenance_of_each_sample(tokenizer, tmp_path: Path) -> None:
    from llm_energy.inputs.texts import token_stats

    samples = [_sample("wmt14", [SENTENCE, SENTENCE * 2]), _sample("imdb", ["Hello", SENTENCE])]
    table = task_table(samples, tokenizer, "llama3 (test)")
    stats = token_stats(pd.concat(samples, ignore_index=True), tokenizer)
    assert list(table.columns) == ["task", "role", *stats.columns[1:], *TABLE3_PROVENANCE]
    pd.testing.assert_frame_equal(
        table.set_index("task")[list(stats.columns)], stats, check_names=False
    )
    assert table["source"].tolist() == ["/data/wmt14.jsonl", "/data/imdb.jsonl"]
    assert table["samples_requested"].tolist() == [2, 2] and table["seed"].tolist() == [0, 0]
    assert (table["tokenizer"] == "llama3 (test)").all() and table["git_commit"].all()
    path = tmp_path / "table3.csv"
    table.to_csv(path, index=False)
    check_task_table(path, ["translation", "classification"], 2, 0)
    for roles, samples, seed in (
        (["classification", "translation"], 2, 0),
        (["translation", "classification"], 1024, 0),
        (["translation", "classification"], 2, 7),
    ):
        with pytest.raises(InputError, match=r"Table 3 of the tasks translation, classification"):
            check_task_table(path, roles, samples, seed)


def test_every_shipped_summary_fits_config_h100_and_names_its_source() -> None:
    config = _h100()
    traces = config["experiments"]["workload_traces"]
    for name in traces["traces"]:
        path = SHIPPED / "traces" / f"{name}.json"
        summary = check_trace_summary(path, name, traces["input_bins"], traces["output_bins"])
        made = summary.provenance
        assert made["source"].endswith(Path(TRACES[name].mirror_path).name)
        assert len(made["source_sha256"]) == len(made["prepared_sha256"]) == 64
        assert len(made["git_commit"]) == 40 and made["created_utc"]
    for name in config["experiments"]["workload_estimates"]["models"]:
        path = SHIPPED / "models" / f"{name}.json"
        made = check_architecture_summary(path, config["models"][name]["hub_id"]).provenance
        assert made["config"].endswith("config.json") and len(made["config_sha256"]) == 64
    tasks = config["experiments"]["classical_tasks"]
    table3 = SHIPPED / "tasks" / "table3_token_stats.csv"
    check_task_table(table3, tasks["tasks"], tasks["samples"], config["protocol"]["seed"])


@pytest.mark.parametrize("name", ["azure_conversation", "azure_code"])
def test_a_shipped_trace_summary_is_the_summary_of_the_mirrors_trace(name: str) -> None:
    raw = require_mirror(TRACES[name].mirror_path) / TRACES[name].mirror_path
    shipped = read_trace_summary(SHIPPED / "traces" / f"{name}.json")
    assert shipped.provenance["source_sha256"] == sha256_file(raw)
    traces = _h100()["experiments"]["workload_traces"]
    now = summarise_trace(name, load_trace(name, raw), traces["input_bins"], traces["output_bins"])
    assert shipped.lengths == now.lengths and shipped.quantiles == now.quantiles
    assert len(shipped.binnings) == len(now.binnings)
    for held, made in zip(shipped.binnings, now.binnings, strict=True):
        assert (held.input_bins, held.output_bins, held.total, held.dropped_total) == (
            made.input_bins,
            made.output_bins,
            made.total,
            made.dropped_total,
        )
        pd.testing.assert_frame_equal(held.counts, made.counts, check_exact=True)


def test_table3_sets_each_task_beside_the_papers_numbers() -> None:
    from llm_energy.analysis.paper import PAPER_TABLE3
    from llm_energy.analysis.summaries import task_table_beside_paper

    stats = pd.read_csv(ROOT / "resources/summaries/tasks/table3_token_stats.csv")
    table = task_table_beside_paper(stats).set_index("task")
    assert list(table.columns[:7]) == [
        "role",
        "mean",
        "paper_mean",
        "std",
        "paper_std",
        "max",
        "paper_max",
    ]
    for task, (mean, std, longest) in PAPER_TABLE3.items():
        assert table.loc[task, ["paper_mean", "paper_std", "paper_max"]].tolist() == [
            mean,
            std,
            longest,
        ]
    assert table.loc["wmt14", "mean_over_paper"] == pytest.approx(25 / 49.96)
