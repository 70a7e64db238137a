"""Classical NLP tasks measured as request streams (Figs 8, 12) and PG-19 prompts for the
controlled sweeps: planning, the lengths tables from the mirror, runs on the tiny model, the
figures, and the rules."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from typing import Any, ClassVar

import matplotlib

from llm_energy.measure.point_ids import id_with_setup, measurement_hash

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import yaml
from _outputs import draw
from _pipeline import copy_pipeline, run_snakemake
from conftest import MIRROR, require_mirror

from llm_energy import cli
from llm_energy.backends.base import Backend
from llm_energy.config import validate
from llm_energy.errors import ConfigError, InputError
from llm_energy.inputs.prompts import PG19Prompts, TraceLengths
from llm_energy.measure import controls, runner
from llm_energy.measure.job import DecodingSpec, PointSpec, StreamSpec, stable_hash
from llm_energy.measure.plan import pg19_token_budget, plan_study, task_inputs, trace_inputs

needs_mirror = pytest.mark.mirror("text", "tokenizers/llama3")
LLAMA3_VOCAB = 128_256


def _tasks_config(tiny_config: dict, **settings: Any) -> dict:
    tiny_config["experiments"]["controlled_sweeps"]["enabled"] = False
    tiny_config["experiments"]["classical_tasks"] = {
        "enabled": True,
        "models": ["tiny"],
        "engines": ["pytorch"],
        "batch_sizes": [1, 4],
        "tasks": ["classification", "translation"],
        "samples": 6,
        **settings,
    }
    return validate(tiny_config)


@pytest.fixture(scope="module")
def tokenizer():
    pytest.importorskip("transformers")
    require_mirror("tokenizers/llama3")
    from llm_energy.inputs.texts import load_tokenizer

    return load_tokenizer(MIRROR)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# --------------------------------------------------------------------------- planning


def test_task_points_are_offline_streams_over_each_tasks_examples(tiny_config):
    job = plan_study(_tasks_config(tiny_config))["tiny__pytorch"]
    shapes = {(p.stream.trace, p.batch_size) for p in job.points}
    assert shapes == {(t, b) for t in ("classification", "translation") for b in (1, 4)}
    for p in job.points:
        assert p.stream == StreamSpec(p.stream.trace, 6, "offline", vary_input=True)
        assert (p.input_tokens, p.output_tokens) == (4096, 1024)  # caps, not lengths
        assert p.experiments == ("classical_tasks",) and p.prompts == "random"
    assert task_inputs(job) == ["classification", "translation"]
    assert trace_inputs(job) == []
    assert len({id_with_setup(p, measurement_hash(job, 1), 1) for p in job.points}) == 4


def test_task_requests_and_caps_come_from_the_config(tiny_config):
    config = _tasks_config(tiny_config, requests=3, max_input_tokens=64, max_output_tokens=8)
    job = plan_study(config)["tiny__pytorch"]
    assert {(p.stream.requests, p.input_tokens, p.output_tokens) for p in job.points} == {
        (3, 64, 8)
    }


def test_more_requests_than_samples_fails_at_planning(tiny_config):
    with pytest.raises(ConfigError, match=r"requests \(7\) is more than the examples"):
        plan_study(_tasks_config(tiny_config, requests=7))


def test_classical_tasks_without_models_prepare_data_only(tiny_config):
    config = _tasks_config(tiny_config, models=[], engines=[])
    assert plan_study(config) == {}


def test_task_points_join_a_job_with_trace_streams(tiny_config):
    tiny_config["engines"]["vllm"] = {"backend": "vllm"}
    tiny_config["experiments"]["online_serving"] = {
        "enabled": True,
        "models": ["tiny"],
        "engines": ["vllm"],
        "batch_sizes": [2],
        "requests": 4,
        "trace": "azure_code",
    }
    config = _tasks_config(tiny_config, engines=["pytorch", "vllm"])
    job = plan_study(config)["tiny__vllm"]
    assert trace_inputs(job) == ["azure_code"]
    assert task_inputs(job) == ["classification", "translation"]


# --------------------------------------------------------------------------- lengths tables


@needs_mirror
def test_lengths_tables_from_the_mirror(tokenizer, tmp_path):
    from llm_energy.inputs.texts import encode, sample_task, task_lengths, tokenizer_label

    label = tokenizer_label(MIRROR)
    assert "Llama-3.1-8B" in label and "tokenizers/llama3" in label
    wmt = pd.read_json(MIRROR / "text/wmt14/newstest2014_en-de.jsonl", lines=True)
    for name, role, fixed in (
        ("imdb", "classification", 1),
        ("wikitext", "generation", 64),
        ("wmt14", "translation", None),
    ):
        sample = sample_task(name, MIRROR, n=5, seed=3, cache_dir=tmp_path)
        table = task_lengths(sample, tokenizer, MIRROR, tokenizer_name=label, cache_dir=tmp_path)
        assert list(table.columns) == [
            "task",
            "dataset",
            "example_id",
            "input_tokens",
            "output_tokens",
            "output_source",
            "tokenizer",
        ]
        assert (table["task"] == role).all() and (table["tokenizer"] == label).all()
        assert table["example_id"].tolist() == sample["example_id"].tolist()
        prompts = encode(sample["text"].tolist(), tokenizer)
        assert table["input_tokens"].tolist() == [len(ids) for ids in prompts]
        if fixed is not None:
            assert (table["output_tokens"] == fixed).all()
            assert (table["output_source"] == "fixed").all()
        else:  # the German reference of each sampled English sentence
            refs = wmt["de"].iloc[sample["example_id"]].tolist()
            assert table["output_tokens"].tolist() == [len(ids) for ids in encode(refs, tokenizer)]
            assert (table["output_source"] == "reference").all()
        assert table.attrs["tokenizer"] == label


@needs_mirror
def test_summaries_without_highlights_need_the_fallback(tokenizer, tmp_path):
    from llm_energy.inputs.texts import sample_task, task_lengths

    sample = sample_task("cnn_dailymail", MIRROR, n=4, seed=0, cache_dir=tmp_path)
    with pytest.raises(InputError, match=r"no 'highlights' field.*fallback_output_tokens"):
        task_lengths(sample, tokenizer, MIRROR, cache_dir=tmp_path)
    table = task_lengths(sample, tokenizer, MIRROR, fallback_output_tokens=75, cache_dir=tmp_path)
    assert (table["output_tokens"] == 75).all()
    assert (table["output_source"] == "fallback").all()
    assert "no reference" in table.attrs["outputs"]


def test_hub_references_give_the_summary_lengths(monkeypatch):
    datasets = pytest.importorskip("datasets")
    from llm_energy.inputs.texts import load_targets

    rows = [{"article": f"Article {i}.", "highlights": "word " * (i + 1)} for i in range(3)]
    calls = []

    def hub(*args, **kwargs):
        calls.append(args)
        return rows

    monkeypatch.setattr(datasets, "load_dataset", hub)
    targets, origin = load_targets("cnn_dailymail", None)
    assert targets == [r["highlights"] for r in rows]
    assert origin == "hf:abisee/cnn_dailymail/3.0.0:test (highlights)"
    assert calls == [("abisee/cnn_dailymail", "3.0.0")]


@needs_mirror
def test_task_lengths_command_writes_the_table(tmp_path, tokenizer):
    sample = tmp_path / "translation.parquet"
    assert (
        cli.main(
            [
                "prepare-task",
                "translation",
                "--out",
                str(sample),
                "--samples",
                "4",
                "--mirror",
                str(MIRROR),
            ]
        )
        == 0
    )
    out = tmp_path / "lengths" / "translation.parquet"
    assert cli.main(["task-lengths", str(sample), "--out", str(out), "--mirror", str(MIRROR)]) == 0
    table = pd.read_parquet(out)
    assert len(table) == 4 and (table["output_source"] == "reference").all()
    assert table.attrs["dataset"] == "wmt14"
    assert table["tokenizer"].str.contains("Llama-3.1-8B").all()


# --------------------------------------------------------------------------- request lengths


def _lengths_table(folder: Path, task: str, inputs: list[int], outputs: list[int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"input_tokens": inputs, "output_tokens": outputs}).to_parquet(
        folder / f"{task}.parquet"
    )


def test_task_streams_read_the_task_folder_and_count_clipped_requests(tmp_path):
    _lengths_table(tmp_path / "tasks", "summarization", [10, 50, 30, 20], [5, 3, 40, 7])
    lengths = TraceLengths(tmp_path / "traces", tmp_path / "tasks")
    point = PointSpec(2, 40, 10, stream=StreamSpec("summarization", 4, "offline", True))
    drawn, clipped = lengths.draw(point, seed=0)
    assert sorted(drawn) == sorted([(10, 5), (40, 3), (30, 10), (20, 7)])  # all four, capped
    assert clipped == 2
    assert lengths.lengths(point, seed=0) == drawn
    with pytest.raises(InputError, match="task_lengths rule"):
        TraceLengths(tmp_path / "traces", tmp_path / "none").table("generation")


# --------------------------------------------------------------------------- runs


def _run_task_job(job, tmp_path: Path) -> pd.DataFrame:
    """The job's table, its task streams read from ``tmp_path / "tasks"``."""
    return runner.run_job(
        job,
        tmp_path / "out.parquet",
        tmp_path / "journal",
        log=lambda m: None,
        traces_dir=tmp_path / "traces",
        tasks_dir=tmp_path / "tasks",
    )


def test_task_point_runs_through_transformers_on_the_tiny_model(tiny_config, tmp_path, monkeypatch):
    from llm_energy.backends.transformers.backend import TransformersBackend

    config = _tasks_config(tiny_config, tasks=["translation"], batch_sizes=[4], max_input_tokens=40)
    job = plan_study(config)["tiny__pytorch"]
    inputs, outputs = [12, 45, 7, 30, 22, 9], [3, 6, 2, 5, 4, 1]
    _lengths_table(tmp_path / "tasks", "translation", inputs, outputs)
    served = []
    serve = TransformersBackend.serve

    def recording(self, prepared, output_tokens, concurrency, *, continuous):
        served.append(([len(p) for p in prepared["prompts"]], list(output_tokens), concurrency))
        return serve(self, prepared, output_tokens, concurrency, continuous=continuous)

    monkeypatch.setattr(TransformersBackend, "serve", recording)
    table = _run_task_job(job, tmp_path)
    (row,) = table.to_dict("records")
    assert row["feasible"] and row["backend"] == "transformers"
    assert (row["trace"], row["serving"], row["requests"]) == ("translation", "offline", 6)
    assert row["generated_tokens"] == sum(outputs)
    assert row["clipped_requests"] == 1  # the 45-token prompt, cut to the 40-token cap
    assert row["prompts"] == "random" and row["experiments"] == "classical_tasks"
    assert row["duration_s"] > 0
    # The warm-up serves one batch of the requests; every repetition of the window all of them.
    warmup, *window = served
    assert len(warmup[0]) == 4 and warmup[2] == 4
    lens, outs, concurrency = window[0]
    assert concurrency == 4
    assert sorted(zip(lens, outs, strict=True)) == sorted(
        zip([min(i, 40) for i in inputs], outputs, strict=True)
    )
    assert all(s == window[0] for s in window)  # every repetition serves the same requests


def test_a_stop_asked_for_mid_stream_ends_the_window_before_the_next_batch(
    tiny_config, tmp_path, monkeypatch
):
    """A thousand requests are one repetition of minutes, longer than Slurm waits between
    SIGTERM and SIGKILL: a stream stops between two of its batches, not at its end."""
    import signal

    from llm_energy.backends.transformers.backend import TransformersBackend
    from llm_energy.measure import stop

    config = _tasks_config(tiny_config, tasks=["translation"], batch_sizes=[2], max_input_tokens=40)
    job = plan_study(config)["tiny__pytorch"]
    _lengths_table(tmp_path / "tasks", "translation", [12, 45, 7, 30, 22, 9], [3, 6, 2, 5, 4, 1])
    batches = []
    generate = TransformersBackend.generate

    def signalled_in_the_windows_first_batch(self, prepared, output_tokens, decoding):
        batches.append(prepared["input_ids"].shape[0])
        if len(batches) == 2:  # the warm-up's one batch, then the window's first
            stop._record(signal.SIGTERM, None)
        return generate(self, prepared, output_tokens, decoding)

    monkeypatch.setattr(TransformersBackend, "generate", signalled_in_the_windows_first_batch)
    try:
        with pytest.raises(stop.Stopped, match="stopped by SIGTERM"):
            _run_task_job(job, tmp_path)
    finally:
        stop.reset()
    assert batches == [2, 2]  # of the window's three batches, the first alone
    assert not list((tmp_path / "journal").glob("*.t*.parquet"))  # the window is not written


def test_vllm_streams_stop_at_the_next_step_with_their_requests_in_flight_aborted():
    """A stop asked for mid-stream ends a vLLM stream at the engine's next step, static
    batches or continuous batching alike: the requests in flight are aborted and no other is
    added, where the stream's end might be minutes away."""
    import signal
    from types import SimpleNamespace

    from llm_energy.backends.vllm.backend import VllmBackend
    from llm_energy.measure import stop

    added: list[str] = []
    aborted: list[str] = []
    done: list[str] = []
    stop_after = {"finished": 0}

    class Engine:
        def add_request(self, request_id, prompt, params):
            added.append(request_id)

        def abort_request(self, request_ids):
            aborted.extend(request_ids)

        def step(self):
            # One request finishes a step, the oldest in flight.
            oldest = next(r for r in added if r not in done)
            done.append(oldest)
            if len(done) == stop_after["finished"]:
                stop._record(signal.SIGTERM, None)
            return [
                SimpleNamespace(
                    finished=True, request_id=oldest, outputs=[SimpleNamespace(token_ids=[0] * 2)]
                )
            ]

    backend = VllmBackend.__new__(VllmBackend)
    backend._llm = SimpleNamespace(llm_engine=Engine())
    backend._check_capacity = lambda prompts, outputs: None
    backend.sampling_params = lambda output_tokens, decoding: None
    prompts = [{"prompt_token_ids": [1, 2]} for _ in range(6)]

    def serve(continuous: bool, after: int) -> tuple[list[str], list[str]]:
        for kept in (added, aborted, done):
            kept.clear()
        stop_after["finished"] = after
        try:
            with pytest.raises(stop.Stopped, match="stopped by SIGTERM"):
                backend.serve(prompts, [2] * 6, 2, continuous=continuous)
        finally:
            stop.reset()
        return [r.split("-")[1] for r in added], [r.split("-")[1] for r in aborted]

    # A static batch of two, stopped after its first request: the second is aborted.
    assert serve(continuous=False, after=1) == (["0", "1"], ["1"])
    # Stopped as the first batch drains: nothing in flight, the second batch never added.
    assert serve(continuous=False, after=2) == (["0", "1"], [])
    # Continuous batching: the request added when the first finished is aborted.
    assert serve(continuous=True, after=2) == (["0", "1", "2"], ["2"])
    # Without a stop, the whole stream.
    stop_after["finished"] = 0
    added.clear()
    done.clear()
    assert backend.serve(prompts, [2] * 6, 2, continuous=True) == 12 and len(added) == 6


class Recorder(Backend):
    """Generates nothing; keeps the prompts it is given. Llama 3's vocabulary size."""

    name = "recorder"
    prompts: ClassVar[list] = []
    vocab = LLAMA3_VOCAB

    def load(self, config_dir: str, seed: int) -> None:
        Recorder.prompts = []

    @property
    def vocab_size(self) -> int:
        return self.vocab

    def prepare(self, token_ids: list[list[int]]) -> list[list[int]]:
        Recorder.prompts.append(token_ids)
        return token_ids

    def generate(self, prepared: Any, output_tokens: int, decoding: DecodingSpec) -> int:
        return len(prepared) * output_tokens

    def versions(self) -> dict[str, str]:
        return {"backend_version": "recorder 0", "torch_version": "none"}


def _pg19_config(tiny_config: dict) -> dict:
    sweeps = tiny_config["experiments"]["controlled_sweeps"]
    sweeps.update(
        prompts="pg19",
        batch_sizes=[1, 2],
        input_sweep={"input_tokens": [8, 16], "output_tokens": [2]},
        output_sweep={"output_tokens": [2], "input_tokens": [8]},
    )
    return validate(tiny_config)


@pytest.fixture(scope="module")
def pg19_file(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    require_mirror("text/pg19_style")
    out = tmp_path_factory.mktemp("pg19") / "llama3_tokens.parquet"
    argv = ["prepare-pg19", "--out", str(out), "--tokens", "32", "--min-tokens", "17"]
    assert cli.main([*argv, "--mirror", str(MIRROR)]) == 0
    return out


def test_pg19_planning_and_point_ids(tiny_config):
    jobs = plan_study(_pg19_config(tiny_config))
    (job,) = jobs.values()
    assert {p.prompts for p in job.points} == {"pg19"}
    assert pg19_token_budget(jobs) == (2 * 16, 16 + 2 - 1)
    h = measurement_hash(job, 1)
    p = next(p for p in job.points if p.key[:3] == (2, 16, 2))
    assert p.key == (2, 16, 2, "greedy", "pg19")
    assert id_with_setup(p, h, 1).startswith("b2_i16_o2_greedy_pg19_")
    # A random point keeps the id it had before prompt sources existed.
    random = dataclasses.replace(p, prompts="random")
    assert id_with_setup(random, h, 1) == "b2_i16_o2_greedy_" + stable_hash(
        [dataclasses.asdict(DecodingSpec()), h], 8
    )
    assert random.key == (2, 16, 2, "greedy")


@needs_mirror
def test_pg19_rows_carry_the_tokenizers_ids(
    tiny_config, tokenizer, pg19_file, tmp_path, monkeypatch
):
    from llm_energy.inputs.texts import encode, pg19_tokens

    monkeypatch.setattr(runner, "make_backend", lambda m, e, d, t: Recorder(m, e, d, t))
    job = plan_study(_pg19_config(tiny_config))["tiny__pytorch"]
    table = runner.run_job(
        job, tmp_path / "o.parquet", tmp_path / "j", log=lambda m: None, pg19_path=pg19_file
    )
    assert (table["prompts"] == "pg19").all()
    assert (table["prompt_id_modulo"] == 0).all()
    book = sorted((MIRROR / "text" / "pg19_style").glob("*.txt"))[0].read_text(encoding="utf-8")
    ids = encode([book[:2000]], tokenizer)[0][:32]
    assert Recorder.prompts[0] == [ids[:8]]  # batch 1 at 8 tokens: the study's prompt
    assert [ids[:16], ids[16:32]] in Recorder.prompts  # batch 2 at 16: two windows of the text
    assert [ids[:8], ids[8:16]] in Recorder.prompts  # batch 2 at 8: windows 8 apart
    assert pg19_tokens(MIRROR, tokenizer, 16) == ids[:16]
    assert book.startswith(tokenizer.decode(ids[:16]))


@needs_mirror
def test_pg19_on_the_tiny_model_maps_ids_into_its_vocabulary(tiny_config, pg19_file, tmp_path):
    job = plan_study(_pg19_config(tiny_config))["tiny__pytorch"]
    table = runner.run_job(
        job, tmp_path / "o.parquet", tmp_path / "j", log=lambda m: None, pg19_path=pg19_file
    )
    assert table["feasible"].all() and (table["backend"] == "transformers").all()
    assert (table["prompts"] == "pg19").all()
    assert (table["prompt_id_modulo"] == 4096).all()  # the tiny model's vocabulary
    prompts, modulo = PG19Prompts(pg19_file).prompts(2, 16, 4096)
    ids = pd.read_parquet(pg19_file)["token_id"].tolist()
    assert modulo == 4096 and prompts == [
        [i % 4096 for i in ids[:16]],
        [i % 4096 for i in ids[16:]],
    ]


def test_pg19_windows_need_enough_text(tmp_path):
    path = tmp_path / "t.parquet"
    pd.DataFrame({"token_id": list(range(10))}).to_parquet(path)
    source = PG19Prompts(path)
    rows, modulo = source.prompts(3, 6, LLAMA3_VOCAB)
    assert rows == [[0, 1, 2, 3, 4, 5], [2, 3, 4, 5, 6, 7], [4, 5, 6, 7, 8, 9]] and modulo == 0
    with pytest.raises(InputError, match="cannot give 6 distinct prompts of 6 tokens"):
        source.prompts(6, 6, LLAMA3_VOCAB)
    with pytest.raises(InputError, match="prepare_pg19 rule"):
        PG19Prompts(tmp_path / "missing.parquet").prompts(1, 4, LLAMA3_VOCAB)


def test_random_rows_measured_before_prompt_sources_say_random(tiny_config, tmp_path, monkeypatch):
    """A journal row written without a prompts column gets the plan's source."""
    monkeypatch.setattr(runner, "make_backend", lambda m, e, d, t: Recorder(m, e, d, t))
    job = plan_study(validate(tiny_config))["tiny__pytorch"]
    runner.run_job(job, tmp_path / "o.parquet", tmp_path / "j", log=lambda m: None)
    for f in (tmp_path / "j").glob("*.parquet"):
        pd.read_parquet(f).drop(columns=["prompts"]).to_parquet(f)
    table = runner.run_job(job, tmp_path / "o.parquet", tmp_path / "j", log=lambda m: None)
    assert len(table) == len(job.points) and (table["prompts"] == "random").all()


# --------------------------------------------------------------------------- figures


def _task_row(engine: str, task: str, batch: int, energy: float, **kw: Any) -> dict:
    vllm = engine.startswith("vllm")
    row = {
        "experiments": "classical_tasks",
        "model": "llama-3.1-8b",
        "engine": engine,
        "backend": "vllm" if vllm else "transformers",
        "cuda_graphs": engine == "vllm",
        "torch_compile": False,
        "weights": "random",
        "dtype": "bfloat16",
        "trace": task,
        "serving": "offline",
        "batch_size": batch,
        "requests": 1024,
        "input_tokens": 4096,
        "output_tokens": 1024,
        "generated_tokens": 2048,
        "clipped_requests": 0,
        "feasible": True,
        "error": "",
        "energy_j": energy,
        "energy_per_request_j": energy / 1024,
        "energy_per_output_token_j": energy / 2048,
        "duration_s": energy / 300,
        "mean_power_w": 300.0,
        "energy_source": "measured",
        "meter": "nvml",
        "gpu_name": "NVIDIA H100",
        "backend_version": "x 1",
        "torch_version": "2",
    }
    row.update(kw)
    return row


@pytest.fixture
def task_table() -> pd.DataFrame:
    rows = []
    for k, task in enumerate(("generation", "classification", "summarization", "translation")):
        for batch in (1, 8, 128):
            rows.append(_task_row("vllm", task, batch, 1000.0 * (k + 1) / batch))
            if batch == 128 and task == "summarization":
                rows.append(
                    _task_row(
                        "pytorch",
                        task,
                        batch,
                        float("nan"),
                        feasible=False,
                        error="out of memory: CUDA",
                    )
                )
            else:
                rows.append(_task_row("pytorch", task, batch, 3000.0 * (k + 1) / batch))
    rows.append(_task_row("vllm", "", 8, 5.0, experiments="input_sweep", trace=""))
    return pd.DataFrame(rows)


def test_table_behind_fig8(task_table):
    table = draw("table_classical_tasks", task_table)
    assert len(table) == 24  # the sweep row is left out
    assert table["task"].drop_duplicates().tolist() == [
        "classification",
        "translation",
        "summarization",
        "generation",
    ]
    first = table.iloc[:6]
    assert first["engine_label"].tolist() == ["PyTorch, eager"] * 3 + ["vLLM, CUDA graphs"] * 3
    assert first["batch_size"].tolist() == [1, 8, 128] * 2
    feasible = table[table["feasible"]]
    assert (feasible["energy_1024_requests_j"] == feasible["energy_j"]).all()  # 1,024 requests
    oom = table[~table["feasible"]]
    assert oom[["task", "engine", "batch_size"]].values.tolist() == [
        ["summarization", "pytorch", 128]
    ]
    assert oom["error"].iloc[0].startswith("out of memory")
    assert {"max_input_tokens", "max_output_tokens", "clipped_requests"} <= set(table.columns)


def test_table_behind_fig12_is_vllm_only(task_table):
    table = draw("table_classical_tasks_vllm", task_table)
    assert len(table) == 12 and (table["engine"] == "vllm").all()
    row = table[(table["task"] == "classification") & (table["batch_size"] == 8)].iloc[0]
    assert row["energy_per_output_token_j"] == pytest.approx(2000.0 / 8 / 2048)
    with pytest.raises(InputError, match="no vLLM classical_tasks rows"):
        draw("table_classical_tasks_vllm", task_table[task_table["backend"] != "vllm"])


def _bar_heights(ax) -> list[float]:
    return [p.get_height() for p in ax.patches]


def test_fig8_has_a_panel_per_batch_size_and_a_bar_per_engine_and_task(task_table):
    fig = draw("fig8", task_table)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == [f"llama-3.1-8b, batch {b}" for b in (1, 8, 128)]
    for ax in axes:
        assert [t.get_text() for t in ax.get_xticklabels()] == [
            "classification",
            "translation",
            "summarization",
            "generation",
        ]
        assert len(ax.patches) == 8  # 4 tasks x 2 engines
        assert ax.get_yscale() == "log"
    assert "Fig 8" in fig._suptitle.get_text()
    # Batch 1, classification (the generation task is drawn as k=0): vLLM 2000 J, PyTorch 6000.
    heights = _bar_heights(axes[0])
    assert heights[0] == pytest.approx(6000.0) and heights[4] == pytest.approx(2000.0)
    # The infeasible PyTorch summarization at batch 128 has no bar but a cross.
    assert sum(h != h for h in _bar_heights(axes[2])) == 1
    assert any(t.get_text() == "×" for t in axes[2].texts)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["PyTorch, eager", "vLLM, CUDA graphs"]
    # What was served comes from the rows: 2048 tokens over 1024 requests, per task.
    note = "".join(t.get_text() for t in fig.texts)
    assert "output tokens per request (forced: random weights never stop)" in note
    assert "classification 2, translation 2, summarization 2, generation 2" in note
    assert "1024 examples served per point" in note


def test_fig12_shows_energy_per_token_and_per_request_by_batch_size(task_table):
    fig = draw("fig12", task_table)
    per_token, per_request = fig.axes[:2]
    assert per_token.get_ylabel() == "energy per output token (J)"
    assert per_request.get_ylabel() == "energy per request (J)"
    assert len(per_token.patches) == 12  # 4 tasks x 3 batch sizes
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["batch 1", "batch 8", "batch 128"]
    # First bar: classification at batch 1 = 2000 J over 2048 tokens and 1024 requests.
    assert per_token.patches[0].get_height() == pytest.approx(2000.0 / 2048)
    assert per_request.patches[0].get_height() == pytest.approx(2000.0 / 1024)
    assert "Fig 12" in fig._suptitle.get_text()


def test_a_bar_measured_in_two_sessions_is_drawn_from_the_later(task_table):
    """A point measured again in a later machine session is one bar, the later session's,
    in Figs 8 and 12; the table keeps both rows, and each footer says how many it left out."""
    task_table = task_table.assign(timestamp="2026-12-02T03:10:00+00:00", point_id="")
    task_table["point_id"] = [f"p{k}" for k in range(len(task_table))]
    again = _task_row(
        "vllm", "generation", 128, 100.0, timestamp="2026-12-04T15:20:00+00:00", point_id="p0"
    )
    table = pd.concat([task_table, pd.DataFrame([again])], ignore_index=True)
    assert len(draw("table_classical_tasks", table)) == 25
    fig = draw("fig12", table)
    per_token = fig.axes[0]
    assert len(per_token.patches) == 12
    # generation is the last task drawn; its batch-128 bar is the later row's 100 J.
    assert per_token.patches[-1].get_height() == pytest.approx(100.0 / 2048)
    note = "".join(t.get_text() for t in fig.texts)
    assert "1 earlier measurement of drawn bars not drawn" in note
    fig8 = "".join(t.get_text() for t in draw("fig8", table).texts)
    assert "1 earlier measurement of drawn bars not drawn" in fig8


def test_figures_without_energy_show_time(task_table):
    table = task_table.assign(energy_j=float("nan"), energy_per_request_j=float("nan"))
    table["energy_per_output_token_j"] = float("nan")
    fig = draw("fig12", table)
    assert [ax.get_ylabel() for ax in fig.axes] == ["time per request (s)"]
    fig8 = draw("fig8", table)
    assert fig8.axes[0].get_ylabel() == "time of 1,024 examples (s)"


def test_figures_without_task_rows_are_a_clear_error(task_table):
    sweeps = task_table[task_table["experiments"] == "input_sweep"]
    with pytest.raises(InputError, match="no classical_tasks rows"):
        draw("fig8", sweeps)


# --------------------------------------------------------------------------- workflow


def _snakemake(workdir: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return run_snakemake(workdir, *args, timeout=timeout)


@pytest.mark.integration
@needs_mirror
def test_workflow_measures_tasks_with_pg19_sweeps_and_draws_fig8(tmp_path):
    work = copy_pipeline(tmp_path)
    config = yaml.safe_load((work / "config/smoke.yaml").read_text())
    config["mirror"] = {"data": str(MIRROR)}
    config["meter"] = {"primary": "none"}
    config["protocol"].update(min_duration_s=0.0, min_repetitions=1, idle_duration_s=0.0)
    config["experiments"]["controlled_sweeps"].update(
        prompts="pg19",
        batch_sizes=[1, 2],
        input_sweep={"input_tokens": [8, 16], "output_tokens": [2]},
        output_sweep={"output_tokens": [2, 4], "input_tokens": [8]},
    )
    config["experiments"]["classical_tasks"] = {
        "enabled": True,
        "models": ["tiny-llama"],
        "engines": ["pytorch"],
        "batch_sizes": [4],
        "tasks": ["classification", "translation"],
        "samples": 8,
        "max_input_tokens": 1024,
        "max_output_tokens": 32,
    }
    (work / "config/tasks.yaml").write_text(yaml.safe_dump(config))
    args = ("--cores", "2", "--configfile", "config/tasks.yaml")
    dry = _snakemake(work, "-n", *args)
    assert dry.returncode == 0, dry.stderr[-3000:]
    stats = dry.stdout.split("Job stats:")[-1]
    for rule in ("task_lengths", "prepare_pg19", "figure", "table", "task_table"):
        assert rule in stats, rule
    for output in ("fig8_classical_tasks.png", "classical_tasks.csv", "table3_token_stats.csv"):
        assert output in dry.stdout, output
    assert "fig12_classical_tasks_vllm" not in dry.stdout  # no vLLM engine measures the tasks
    result = _snakemake(work, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = pd.read_parquet(work / "results/aggregate/cpu/measurements.parquet")
    tasks = rows[rows["experiments"] == "classical_tasks"]
    assert sorted(tasks["trace"]) == ["classification", "translation"]
    assert (tasks["requests"] == 8).all() and tasks["feasible"].all()
    lengths = pd.read_parquet(work / "results/data/task_lengths/classification.parquet")
    assert tasks.set_index("trace").loc["classification", "generated_tokens"] == len(lengths)
    sweeps = rows[rows["experiments"].str.contains("_sweep")]
    assert (sweeps["prompts"] == "pg19").all() and (sweeps["prompt_id_modulo"] == 4096).all()
    table = pd.read_csv(work / "results/tables/cpu/classical_tasks.csv")
    assert set(table["task"]) == {"classification", "translation"}
    assert (work / "results/figures/cpu/fig8_classical_tasks.png").stat().st_size > 10_000
    log = (work / "logs/measure/cpu/tiny-llama__pytorch.log").read_text()
    assert "--task-lengths results/data/task_lengths" in log


def test_a_job_of_request_streams_alone_measures_a_control_point_of_its_own(tiny_config, tmp_path):
    """A job whose points are all request streams (here one classical task) has no plain point
    to control its run with: it measures a batch of one at 512 in and 64 out, cut to its
    longest stream's caps, at the run's start and end, and every row says the drift."""
    tiny_config["protocol"]["control_point"] = True
    config = _tasks_config(tiny_config, tasks=["translation"], batch_sizes=[4], max_input_tokens=40)
    job = plan_study(config)["tiny__pytorch"]
    control = controls.control_point(job.points, job.protocol)
    (stream,) = job.points
    assert control is not None and control.stream is None and control not in job.points
    assert (control.batch_size, control.input_tokens) == (1, 40)
    assert control.output_tokens == min(64, stream.output_tokens)
    _lengths_table(tmp_path / "tasks", "translation", [12, 30, 7], [3, 5, 2])
    journal = tmp_path / "journal"
    table = runner.run_job(
        job,
        tmp_path / "out.parquet",
        journal,
        log=lambda m: None,
        traces_dir=tmp_path / "traces",
        tasks_dir=tmp_path / "tasks",
    )
    assert sorted(p.name.split(".")[-2] for p in journal.glob("control.*.parquet")) == [
        "end",
        "start",
    ]
    (row,) = table.to_dict("records")
    assert row["control_point_id"].startswith("b1_i40_")
    assert row["control_drift_duration"] == row["control_drift_duration"]  # not NaN
