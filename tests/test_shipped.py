"""Figures, tables and the report rebuilt from what the pipeline ships (the H100 measurements and
the summaries of the raw inputs), with no measurement job and no data mirror."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _pipeline import copy_pipeline, run_snakemake

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

FIGURES = (
    "fig1_workload_energy",
    "fig2_controlled_sweeps_vllm",
    "fig3_decoding_strategies",
    "fig4_architectures",
    "fig5_engine_optimisations",
    "fig6_tensor_parallel",
    "fig9_online_serving",
    "fig10_controlled_sweeps_pytorch",
    "fig11_controlled_sweeps_vllm_all_lengths",
)


# Rules that read raw inputs (traces, model configs, texts): none runs in a shipped build.
RAW_INPUT_RULES = (
    "prepare_trace",
    "trace_summary",
    "model_summary",
    "prepare_task",
    "task_summary",
    "task_lengths",
    "prepare_pg19",
)


def test_shipped_measurements_rebuild_every_h100_figure_and_the_report(tmp_path):
    work = copy_pipeline(tmp_path)
    args = ("--cores", "1", "--configfile", "config/h100.yaml")
    # No mirror: every measured number comes from the shipped tables, and what the trace, task
    # and workload tables need of the traces, model configs and texts from the shipped summaries.
    switch = ("--config", "shipped_measurements=true")
    planned = run_snakemake(work, "-n", *args, *switch)
    assert planned.returncode == 0, planned.stderr[-3000:]
    jobs = planned.stdout.split()
    assert "measure" not in jobs  # no measurement job, so no GPU needed
    assert "shipped_summary" in jobs
    for rule in RAW_INPUT_RULES:
        assert rule not in jobs, rule

    result = run_snakemake(work, *args, *switch, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in FIGURES:
        assert (work / f"results/figures/h100/{name}.png").stat().st_size > 20_000, name
    assert not (work / "results/measurements").exists()
    assert not (work / "results/data/traces").exists()
    assert not (work / "results/data/tasks").exists()
    # The data tables and figures come from the shipped summaries of the traces and texts.
    assert (work / "results/figures/traces/fig7_azure_conversation_cdf.png").exists()
    table3 = pd.read_csv(work / "results/tables/tasks/table3_token_stats.csv")
    assert list(table3["role"]) == ["classification", "translation", "summarization", "generation"]
    lengths = pd.read_csv(work / "results/tables/traces/trace_lengths.csv")
    assert len(lengths) == 4
    raw_conv = DATA / "traces/azure_2023/AzureLLMInferenceTrace_conv.csv"
    if raw_conv.is_file():  # the same numbers as plain pandas on the raw trace
        raw = pd.read_csv(raw_conv)["GeneratedTokens"]
        got = lengths.set_index(["trace", "side"]).loc[("azure_conversation", "output")]
        assert got["mean"] == pytest.approx(raw.mean(), rel=1e-9)
        assert got["p99"] == pytest.approx(raw.quantile(0.99), rel=1e-9)
        assert got["count"] == len(raw)
    table4 = pd.read_csv(work / "results/tables/h100/table4_energy_over_ideal.csv")
    assert set(table4["engine"]) == {"pytorch", "vllm"}
    assert table4["complete"].all() and (table4["requests_covered_fraction"] == 1).all()
    replay = pd.read_csv(work / "results/tables/h100/trace_replay.csv").iloc[0]
    assert replay["requests"] == 256 and pd.isna(replay["missing_bins"])
    assert abs(replay["estimate_error"]) < 0.10  # the binned estimate against the replay
    decoding = pd.read_csv(work / "results/tables/h100/decoding.csv")
    spec = decoding[decoding["decoding"].str.startswith("speculative")]
    assert set(spec.groupby("decoding")["spec_acceptance_rate"].max()) == {0.0, 1.0}
    tp = pd.read_csv(work / "results/tables/h100/tensor_parallel.csv")
    assert sorted(
        tp.loc[tp["engine_label"] == "PyTorch, eager", "tensor_parallel_size"].unique()
    ) == [
        1,
        2,
        4,
    ]
    table = pd.read_parquet(work / "results/aggregate/h100/measurements.parquet")
    # Only the rows of this hardware label: the cross-check run carries its own.
    assert set(table["hardware"]) == {"h100"}
    assert set(table["energy_source"]) == {"measured"}
    assert table["gpu_name"].eq("NVIDIA H100 80GB HBM3").all()
    log = (work / "logs/aggregate/h100.log").read_text()
    assert "left out" in log and "h100-crosscheck" in log

    report = run_snakemake(work, *args, *switch, "--report", "results/report.html")
    assert report.returncode == 0, report.stderr[-3000:]
    assert (work / "results/report.html").stat().st_size > 100_000
    html = (work / "results/report.html").read_text()
    # The first page is the claims table; the categories follow the paper's figures.
    first_page = json.loads(re.search(r"var workflow_desc = (.*?);\n", html).group(1))
    assert "The study's claims on h100." in first_page
    for claim in range(1, 8):
        assert f"Claim {claim}: " in first_page, claim
    categories = sorted(json.loads(re.search(r"var categories = (.*?);\n", html).group(1)))
    assert categories[0] == "00 · The study's eight claims, computed from the rows"
    numbers = [int(c[:2]) for c in categories]
    assert numbers == sorted(numbers) and {1, 2, 3, 4, 5, 6, 7, 9, 10, 11} <= set(numbers)
    # Each drawn figure's caption names the rows it draws: configuration, sessions, files.
    rows = re.findall(r"Rows\.</strong> \d+ measurements of hardware <tt[^>]*>h100</tt>", html)
    assert len(rows) >= len(FIGURES) - 1  # Fig 1's comes from the workload bins
    assert "config/h100.yaml" in html and "resources/measurements/h100/tp__" in html

    # Single targets rebuild on their own, in seconds.
    targets = (
        "results/figures/traces/fig7_azure_conversation_cdf.png",
        "results/tables/h100/table4_energy_over_ideal.csv",
        "results/figures/h100/fig1_workload_energy.png",
        "results/tables/tasks/table3_token_stats.csv",
    )
    for target in targets:
        (work / target).unlink()
    again = run_snakemake(work, "fig7", "table4", "fig1", "table3", *args, *switch)
    assert again.returncode == 0, again.stderr[-3000:]
    assert all((work / target).is_file() for target in targets)

    # Shipped summaries made with other bins than the configuration's stop the plan at once.
    config = yaml.safe_load((work / "config/h100.yaml").read_text())
    config["experiments"]["workload_traces"]["input_bins"] = [64, 256, 1024]
    (work / "config/other_bins.yaml").write_text(yaml.safe_dump(config))
    fig7 = "results/figures/traces/fig7_azure_conversation_cdf.png"
    other = run_snakemake(work, "-n", fig7, "--configfile", "config/other_bins.yaml", *switch)
    assert other.returncode != 0
    assert "configured input bins 64 256 1024 and output bins" in other.stdout + other.stderr


def test_shipped_measurements_rebuild_every_h200_figure(tmp_path):
    """The H200 set: the engines ladder and the Llama pair under the trial protocol, the
    R1-Distill-Qwen-32B pair at both acceptance bounds, tensor parallelism over 1, 2 and 4 GPUs
    on both engines, the classical tasks on both engines, and the OLMo models with their
    feed-forward blocks timed."""
    work = copy_pipeline(tmp_path)
    args = ("--cores", "1", "--configfile", "config/h200.yaml")
    result = run_snakemake(work, *args, "--config", "shipped_measurements=true", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in (
        "fig2_controlled_sweeps_vllm",
        "fig10_controlled_sweeps_pytorch",
        "fig11_controlled_sweeps_vllm_all_lengths",
        "fig3_decoding_strategies",
        "fig4_architectures",
        "fig5_engine_optimisations",
        "fig6_tensor_parallel",
        "fig8_classical_tasks",
        "fig12_classical_tasks_vllm",
    ):
        assert (work / f"results/figures/h200/{name}.png").stat().st_size > 20_000, name
    table = pd.read_parquet(work / "results/aggregate/h200/measurements.parquet")
    assert set(table["hardware"]) == {"h200"}
    assert table["gpu_name"].eq("NVIDIA H200").all()
    assert set(table["energy_source"]) == {"measured"}

    # Fig 11 from GPU rows: vLLM with CUDA graphs at batch 1 over the paper's whole ranges,
    # input 8 to 32,768 at two output lengths and output 8 to 4,096 at two input lengths.
    grid = table[
        table["experiments"].str.contains("_sweep")
        & table["cuda_graphs"].astype(bool)
        & (table["model"] == "llama-3.1-8b")
        & (table["batch_size"] == 1)
    ]
    inputs = grid[grid["experiments"].str.contains("input_sweep")]
    outputs = grid[grid["experiments"].str.contains("output_sweep")]
    assert (
        (
            inputs.groupby("output_tokens")["input_tokens"].agg(["min", "max"]).loc[[8, 64]]
            == [8, 32768]
        )
        .all()
        .all()
    )
    assert (
        (
            outputs.groupby("input_tokens")["output_tokens"].agg(["min", "max"]).loc[[64, 512]]
            == [8, 4096]
        )
        .all()
        .all()
    )

    spec = table[table["experiments"].str.split("+").map(lambda t: "speculative" in t)]
    assert set(spec["model"]) == {"llama-3.1-8b", "r1-distill-qwen-32b"}
    drafted = spec[spec["speculative_model"] != ""]
    rates = drafted.groupby("speculative_acceptance")["spec_acceptance_rate"].agg(["min", "max"])
    assert rates.loc["measured"].tolist() == [0.0, 0.0]
    assert rates.loc["forced"].tolist() == [1.0, 1.0]
    qwen = drafted[drafted["model"] == "r1-distill-qwen-32b"]
    assert qwen["engine_detail"].str.contains("draft_vocab=151936->152064").all()

    # The rows measured under the trial protocol, from twenty-eight machine sessions, each row's
    # trials from one: the first's (the engine ladders), the second's (OLMo on vLLM), the
    # third's (PyTorch over 1 and 2 GPUs), the fourth's (the served runs over 1 and 2 GPUs), the
    # fifth's (OLMo on PyTorch), the sixth's (PyTorch eager and compiled ladders, Qwen1.5-32B),
    # the seventh's (claim 1's Llama points on PyTorch, three of them measured again in the
    # eighth, with Qwen1.5-32B's first grid points on vLLM), the ninth's (the four decoding
    # strategies on PyTorch eager), the tenth's (Fig 11's 42 points of the grid on vLLM), the
    # eleventh's (claim 6's request streams in one fresh job, replacing the second's, which the
    # session's end cut short) and the twelfth's (the classical tasks at 1,024 examples on vLLM,
    # and claim 1 on vLLM with up to six trials, replacing the eighth's three) and the
    # thirteenth's (the R1-Distill-Qwen-32B pair, and the first classical tasks at batch 1 on
    # vLLM), the sixteenth's (claim 8's part 1, 11 bins on both engines, whose vLLM rows
    # replaced the fourteenth's and fifteenth's, now in repeats/) and the seventeenth's (claim
    # 8's part 2, 5 bins on both engines, whose vLLM rows replaced the fifteenth's last 4) and
    # the eighteenth's (claim 8's part 3, 4 bins on both engines, whose largest feasible batches
    # are 64 and 256) and the nineteenth's (claim 8's part 4, 5 bins on both engines on the
    # ladder of powers of two, at 32 to 128) and the twentieth's (claim 8's part 5, 3 bins on
    # both engines, whose out-of-memory rows on PyTorch carry the bound searched below them) and
    # the twenty-first's (claim 8's parts 6 and 7, 4 bins on both engines, whose vLLM rows of
    # part 6 replaced none: an earlier session's are in repeats/) and the twenty-second's
    # (claim 8's parts 8 and 9, 6 bins on both engines) and the twenty-third's (claim 8's part
    # 10, 2 bins on both engines) and the twenty-fourth's (claim 8's part 11, 1 bin on both
    # engines) and the twenty-fifth's (the classical tasks at batch 128 and 1,024 examples on
    # both engines) and the twenty-sixth's (summarization at batch 8 and 1,024 examples on both
    # engines) and the twenty-seventh's (classification and generation likewise) and the
    # twenty-eighth's (translation likewise) and vm:8b612e00's (translation at batch 1 on vLLM
    # from its first trial, replacing the thirteenth's row, which that session's device time cut
    # short at two trials: it is in repeats/) and vm:8b4cd9b5's (generation at batch 1 on vLLM)
    # and vm:062927c8's (summarization and classification at batch 1 on vLLM, the latter
    # replacing the thirteenth's row, now in repeats/, and classification at batch 1 on PyTorch)
    # and vm:d552e2c0's (the twelve points of h200.yaml's sweeps on vLLM beside claim 1's six).
    # Every row the aggregate keeps has three or more trials and met the protocol, but the bins'
    # smaller batches, passed over because their largest batch fits.
    measured = table["feasible"].astype(bool) & table["trials"].notna()
    passed_over = table[measured & table["trials"].eq(0)]
    by_part = [5, 4, 12, 7, 8, 5, 14, 11, 3, 2, 12, 9, 18, 17, 10, 8, 5, 4]
    assert len(passed_over) == (11 + 11 + 5 + 5) * 3 + sum(by_part)
    assert passed_over["error"].str.match(r"not measured: batch \d+ of this shape fits").all()
    trial_rows = table[measured & table["trials"].gt(0)]
    assert trial_rows.groupby("machine_session").size().to_dict() == {
        "vm:6758a46b": 11 + 11 + 10 + 3 + 3 + 3,
        "vm:39180068": 3 * 3,
        "vm:88c784be": 3 + 3,
        "vm:5bb49998": 3 * 7,
        "vm:357bc63c": 3 * 3,
        "vm:fd69deb4": 10 + 10 + 6,
        "vm:c77e44a6": 3,
        "vm:fb0e2555": 3 + 6,
        "vm:7d766c16": 4 * 4,
        "vm:6f095c0f": 42,
        "vm:04b4822d": 10,
        "vm:eae7f299": 8 + 6,
        "vm:0a9bac5a": 3 * 3,
        "vm:d45ccada": 11 + 11,
        "vm:25870c4e": 5 + 5,
        "vm:20cbbbe7": 4 + 4,
        "vm:56be094d": 5 + 5,
        "vm:4753b11c": 3 + 3,
        "vm:a62dda56": 3 + 3 + 1 + 1,
        "vm:56e679ac": 3 + 3 + 3 + 3,
        "vm:79b91bb4": 2 + 2,
        "vm:257ca46f": 1 + 1,
        "vm:16e3c961": 4 + 4,
        "vm:7af35bfd": 1 + 1,
        "vm:55867c79": 2 + 2,
        "vm:293e64f5": 1 + 1,
        "vm:8b612e00": 1,
        "vm:8b4cd9b5": 1,
        "vm:062927c8": 3,
        "vm:d552e2c0": 12,
    }
    assert (trial_rows["trials"] >= 3).all() and trial_rows["protocol_met"].astype(bool).all()

    parallel = pd.read_csv(work / "results/tables/h200/tensor_parallel.csv")
    sizes = parallel.groupby("engine_label")["tensor_parallel_size"].unique()
    assert len(sizes) == 2 and all(sorted(s) == [1, 2, 4] for s in sizes)
    assert (parallel.groupby("engine")["batch_size"].nunique() == 3).all()
    # vLLM with CUDA graphs: every added GPU shortens the batch and costs energy.
    vllm = parallel[parallel["engine"].str.startswith("vllm")]
    for _, rows in vllm.sort_values("tensor_parallel_size").groupby("batch_size"):
        assert rows["latency_per_batch_s"].is_monotonic_decreasing
        assert rows["energy_per_batch_j"].is_monotonic_increasing

    tasks = pd.read_csv(work / "results/tables/h200/classical_tasks.csv")
    # PyTorch's 32 examples of each task at batch 1, 8 and 32 (before the trial protocol), and
    # vLLM's 1,024 at batch 8 and 128 in trials, and at batch 1 for all four tasks (from three
    # sessions); then both engines' 1,024 at batch 128 in one session, whose vLLM rows measured
    # the batch-128 points again (the table keeps both sessions' rows), and both engines'
    # summarization at batch 8, then classification and generation at batch 8 in another
    # session, and translation in a third; and PyTorch's classification at batch 1.
    assert tasks["feasible"].all() and len(tasks) == 4 * 3 + 4 * 2 + 4 + 4 * 2 + 2 + 4 + 2 + 1
    examples = tasks.groupby("engine")["requests"].unique().map(set).to_dict()
    assert examples == {"pytorch": {32, 1024}, "vllm": {1024}}

    models = pd.read_csv(work / "results/tables/h200/architectures.csv")
    # Claim 3's models on both engines in trials, each engine's three from one session's code.
    assert (models["trials"] >= 3).all() and len(models) == 3 * 3 * 2
    assert (models.groupby("engine")["git_commit"].nunique() == 1).all()


def test_h200_feed_forward_shares_before_trials():
    """The feed-forward blocks' share of a generation's time, measured on PyTorch eager before
    the trial protocol (the trial session did not time them): OLMoE's experts take a larger
    share of its time than either dense model's MLPs, at every batch."""
    root = Path(__file__).resolve().parents[1] / "resources/measurements/repeats"
    models = pd.concat(
        pd.read_parquet(root / "h200_before_trials" / f"{name}__pytorch.parquet")
        for name in ("olmo-1b", "olmo-7b", "olmoe-1b-7b")
    )
    share = models.set_index(["model", "batch_size"])["ffn_time_share"]
    assert share.between(0.0, 1.0, inclusive="neither").all() and len(share) == 9
    for batch in (1, 8, 64):
        assert share["olmoe-1b-7b", batch] > max(share["olmo-1b", batch], share["olmo-7b", batch])


def test_the_olmo_trial_rows_are_the_points_of_the_configuration_that_measured_them():
    """config/h200.yaml with config/h200_three_trials.yaml names the shipped OLMo PyTorch rows'
    points (their ids, of version 2, hold the protocol's trial counts): every point has its
    row. The rows lack the feed-forward time share that config/h200.yaml now asks for, so a run
    that resumes from them measures the points again, and says why."""
    from llm_energy.config import load_config
    from llm_energy.measure.plan import plan_study
    from llm_energy.measure.resume import left_notes, read_tables, rows_of_points, trials_left

    root = Path(__file__).resolve().parents[1]
    jobs = plan_study(
        load_config(str(root / "config/h200.yaml"), str(root / "config/h200_three_trials.yaml"))
    )
    shipped = sorted((root / "resources/measurements/h200").glob("trials__olmo*__pytorch.parquet"))
    assert len(shipped) == 3
    shipped = read_tables(shipped)
    for model in ("olmo-1b", "olmo-7b", "olmoe-1b-7b"):
        plan = jobs[f"{model}__pytorch"]
        assert {key for key, _, _ in rows_of_points(plan, shipped)} == {p.key for p in plan.points}
        left = trials_left(plan, root / "no-journal", shipped)
        assert all(n > 0 for n in left.values()), model
        (note,) = left_notes(plan, shipped, left)
        assert "3 have a row in the given tables without the feed-forward time share" in note


def test_the_compiled_ladder_and_its_eager_baseline_share_one_session():
    """Claim 5's torch.compile comparison on the H200: PyTorch eager and compiled over batch 1
    to 1,024 in one machine session, each with its largest feasible batch bisected; the eager
    ladder agrees within 7 % with the one measured beside vLLM on another machine."""
    root = Path(__file__).resolve().parents[1] / "resources/measurements/h200"
    eager, compiled, before = (
        pd.read_parquet(root / f"{name}.parquet").set_index("batch_size")
        for name in (
            "compile__llama-3.1-8b__pytorch",
            "compile__llama-3.1-8b__pytorch-compile",
            "trials__llama-3.1-8b__pytorch",
        )
    )
    for rows in (eager, compiled):
        assert set(rows["machine_session"]) == {"vm:fd69deb4"}
        assert list(rows.index) == [2**k for k in range(11)]
        ran = rows[rows["feasible"].astype(bool)]
        assert (ran["trials"] >= 3).all() and ran["protocol_met"].all()
        assert rows.loc[1024, "largest_feasible_batch"] == 512
        assert rows.loc[1024, "smallest_infeasible_batch"] == 576
    assert compiled["torch_compile"].all() and not eager["torch_compile"].any()
    assert set(before["machine_session"]) == {"vm:6758a46b"}
    change = (eager["energy_j"] / before["energy_j"] - 1).dropna()
    assert len(change) == 10 and change.abs().max() < 0.07


@pytest.mark.parametrize(
    ("table", "layers", "complete"),
    [
        ("grid__llama-3.1-8b__vllm", [], 42),
        ("grid__qwen1.5-32b__pytorch", ["h200_qwen.yaml"], 6),
        ("grid__qwen1.5-32b__vllm", ["h200_qwen.yaml"], 6),
    ],
)
def test_the_grid_rows_are_points_of_the_grid(table, layers, complete):
    """The shipped grid rows are points of config/h200_grid.yaml (with the layer they were
    measured with): a resumed run measures none of them again and only the rest of the grid.
    Llama-3.1-8B's Fig 11 rows are points of the whole grid; Qwen1.5-32B's, measured with a
    warm-up before every trial, of config/h200_qwen.yaml, which keeps that setting."""
    from llm_energy.config import load_config
    from llm_energy.measure.plan import plan_study
    from llm_energy.measure.resume import read_tables, trials_left

    root = Path(__file__).resolve().parents[1]
    files = [str(root / "config" / name) for name in ("h200_grid.yaml", *layers)]
    job = plan_study(load_config(*files))[table.split("__", 1)[1]]
    path = root / f"resources/measurements/h200/{table}.parquet"
    left = trials_left(job, root / "no-journal", read_tables([path]))
    done = [key for key, n in left.items() if n == 0]
    assert len(done) == complete == len(pd.read_parquet(path))
    assert len(left) > complete or layers


LAYERED_TABLES = {
    "compile__llama-3.1-8b__pytorch": (["h200_engines_compile.yaml"], 11),
    "compile__llama-3.1-8b__pytorch-compile": (["h200_engines_compile.yaml"], 11),
    "sweeps__llama-3.1-8b__pytorch": (["h200_three_trials.yaml", "h200_claim1.yaml"], 6),
    "sweeps__llama-3.1-8b__vllm": (["h200_sweeps.yaml"], 18),
    "decoding__llama-3.1-8b__pytorch": (["h200_three_trials.yaml", "h200_decoding.yaml"], 16),
    "online__llama-3.1-8b__vllm": (["h200_claim6.yaml"], 10),
    "tasks__llama-3.1-8b__vllm": (["h200_tasks.yaml"], 8),
    "tasks-batch1__llama-3.1-8b__vllm": (["h200_tasks_batch1.yaml"], 1),
    "tasks-batch1-translation__llama-3.1-8b__vllm": (["h200_tasks_batch1.yaml"], 1),
    "tasks-batch1-generation__llama-3.1-8b__vllm": (["h200_tasks_batch1.yaml"], 1),
    "tasks-batch1-summarization__llama-3.1-8b__vllm": (["h200_tasks_batch1.yaml"], 1),
    "tasks-batch1__llama-3.1-8b__pytorch": (
        ["h200_tasks_batch1.yaml", "h200_tasks_batch1_pytorch.yaml"],
        1,
    ),
    "tasks-batch128__llama-3.1-8b__vllm": (
        ["h200_three_trials.yaml", "h200_tasks_batch128.yaml"],
        4,
    ),
    "tasks-batch128__llama-3.1-8b__pytorch": (
        ["h200_three_trials.yaml", "h200_tasks_batch128.yaml"],
        4,
    ),
    "tasks-batch8-summarization__llama-3.1-8b__vllm": (
        ["h200_three_trials.yaml", "h200_tasks_batch8.yaml"],
        1,
    ),
    "tasks-batch8-summarization__llama-3.1-8b__pytorch": (
        ["h200_three_trials.yaml", "h200_tasks_batch8.yaml"],
        1,
    ),
    "tasks-batch8-classification-generation__llama-3.1-8b__vllm": (
        ["h200_three_trials.yaml", "h200_tasks_batch8.yaml"],
        2,
    ),
    "tasks-batch8-classification-generation__llama-3.1-8b__pytorch": (
        ["h200_three_trials.yaml", "h200_tasks_batch8.yaml"],
        2,
    ),
    "tasks-batch8-translation__llama-3.1-8b__vllm": (
        ["h200_three_trials.yaml", "h200_tasks_batch8.yaml"],
        1,
    ),
    "tasks-batch8-translation__llama-3.1-8b__pytorch": (
        ["h200_three_trials.yaml", "h200_tasks_batch8.yaml"],
        1,
    ),
    "workloads-part1__llama-3.1-8b__vllm": (
        ["h200_workloads.yaml", "h200_workloads_parts/part1.yaml"],
        11 * 4,
    ),
    "workloads-part1__llama-3.1-8b__pytorch": (
        ["h200_workloads.yaml", "h200_workloads_parts/part1.yaml"],
        11 * 4,
    ),
    "workloads-part2__llama-3.1-8b__vllm": (
        ["h200_workloads.yaml", "h200_workloads_parts/part2.yaml"],
        5 * 4,
    ),
    "workloads-part2__llama-3.1-8b__pytorch": (
        ["h200_workloads.yaml", "h200_workloads_parts/part2.yaml"],
        5 * 4,
    ),
    "workloads-part3__llama-3.1-8b__vllm": (
        ["h200_workloads.yaml", "h200_workloads_parts/part3.yaml"],
        4 * 4,
    ),
    "workloads-part3__llama-3.1-8b__pytorch": (
        ["h200_workloads.yaml", "h200_workloads_parts/part3.yaml"],
        4 * 4,
    ),
    "workloads-part4__llama-3.1-8b__vllm": (
        ["h200_workloads.yaml", "h200_workloads_parts/part4.yaml"],
        5 * 7,
    ),
    "workloads-part4__llama-3.1-8b__pytorch": (
        ["h200_workloads.yaml", "h200_workloads_parts/part4.yaml"],
        5 * 7,
    ),
    "workloads-part5__llama-3.1-8b__vllm": (
        ["h200_workloads.yaml", "h200_workloads_parts/part5.yaml"],
        3 * 7,
    ),
    "workloads-part5__llama-3.1-8b__pytorch": (
        ["h200_workloads.yaml", "h200_workloads_parts/part5.yaml"],
        3 * 7,
    ),
    "workloads-part6__llama-3.1-8b__vllm": (
        ["h200_workloads.yaml", "h200_workloads_parts/part6.yaml"],
        3 * 7,
    ),
    "workloads-part6__llama-3.1-8b__pytorch": (
        ["h200_workloads.yaml", "h200_workloads_parts/part6.yaml"],
        3 * 7,
    ),
    "workloads-part7__llama-3.1-8b__vllm": (
        ["h200_workloads.yaml", "h200_workloads_parts/part7.yaml"],
        7,
    ),
    "workloads-part7__llama-3.1-8b__pytorch": (
        ["h200_workloads.yaml", "h200_workloads_parts/part7.yaml"],
        7,
    ),
    "workloads-part8__llama-3.1-8b__vllm": (
        ["h200_workloads.yaml", "h200_workloads_parts/part8.yaml"],
        3 * 7,
    ),
    "workloads-part8__llama-3.1-8b__pytorch": (
        ["h200_workloads.yaml", "h200_workloads_parts/part8.yaml"],
        3 * 7,
    ),
    "workloads-part9__llama-3.1-8b__vllm": (
        ["h200_workloads.yaml", "h200_workloads_parts/part9.yaml"],
        3 * 7,
    ),
    "workloads-part9__llama-3.1-8b__pytorch": (
        ["h200_workloads.yaml", "h200_workloads_parts/part9.yaml"],
        3 * 7,
    ),
    "workloads-part10__llama-3.1-8b__vllm": (
        ["h200_workloads.yaml", "h200_workloads_parts/part10.yaml"],
        2 * 7,
    ),
    "workloads-part10__llama-3.1-8b__pytorch": (
        ["h200_workloads.yaml", "h200_workloads_parts/part10.yaml"],
        2 * 7,
    ),
    "workloads-part11__llama-3.1-8b__vllm": (
        ["h200_workloads.yaml", "h200_workloads_parts/part11.yaml"],
        7,
    ),
    "workloads-part11__llama-3.1-8b__pytorch": (
        ["h200_workloads.yaml", "h200_workloads_parts/part11.yaml"],
        7,
    ),
    # Another hardware's table: HARDWARE/TABLE, its layers over config/HARDWARE.yaml.
    "h100/tasks-batch1__llama-3.1-8b__vllm": (["h100_tasks_batch1.yaml"], 2),
    "h100/tasks-batch1-summarization__llama-3.1-8b__vllm": (["h100_tasks_batch1.yaml"], 0),
    "h100/tasks-batch1-generation__llama-3.1-8b__vllm": (["h100_tasks_batch1.yaml"], 1),
    "h100/tasks-batch1__llama-3.1-8b__pytorch": (
        ["h100_tasks_batch1.yaml", "h100_tasks_batch1_pytorch.yaml"],
        1,
    ),
    "h100/tasks-batch8-128__llama-3.1-8b__vllm": (["h100_tasks_batch8_128.yaml"], 8),
    "h100/tasks-batch8-128__llama-3.1-8b__pytorch": (
        ["h100_tasks_batch8_128.yaml", "h100_tasks_batch8_128_pytorch.yaml"],
        5,
    ),
    "h100/tasks-batch8-summarization__llama-3.1-8b__pytorch": (
        ["h100_tasks_batch8_128.yaml", "h100_tasks_batch8_128_pytorch.yaml"],
        1,
    ),
    "h100/tasks-batch8-translation-generation__llama-3.1-8b__pytorch": (
        ["h100_tasks_batch8_128.yaml", "h100_tasks_batch8_128_pytorch.yaml"],
        2,
    ),
    "h100/trials__olmo-1b__pytorch": ([], 3),
    "h100/trials__olmo-7b__pytorch": ([], 3),
    "h100/trials__olmoe-1b-7b__pytorch": ([], 3),
    "spec__r1-distill-qwen-32b__vllm": (["h200_speculative.yaml"], 3),
    "spec__r1-distill-qwen-32b__vllm-spec-r1-distill-qwen-1.5b-k4": (["h200_speculative.yaml"], 3),
    "spec__r1-distill-qwen-32b__vllm-spec-r1-distill-qwen-1.5b-k4-forced": (
        ["h200_speculative.yaml"],
        3,
    ),
}


@pytest.mark.parametrize("table", sorted(LAYERED_TABLES))
def test_the_layered_tables_rows_are_the_points_of_their_configuration(table):
    """The configuration layers in config/ name the points of the tables measured with them: a
    run that resumes from the shipped rows keeps every row that met the protocol and measures
    nothing of them again. A table of a job not yet finished holds some of its points."""
    from llm_energy.config import load_config
    from llm_energy.measure.plan import plan_study
    from llm_energy.measure.resume import read_tables, rows_of_points, trials_left

    root = Path(__file__).resolve().parents[1]
    layers, complete = LAYERED_TABLES[table]
    hardware, name = table.split("/") if "/" in table else ("h200", table)
    config = root / f"config/{hardware}.yaml"
    files = [str(config), *(str(root / "config" / layer) for layer in layers)]
    job = plan_study(load_config(*files))[name.split("__", 1)[1]]
    path = root / f"resources/measurements/{hardware}/{name}.parquet"
    rows = pd.read_parquet(path)
    tables = read_tables([path])
    left = trials_left(job, root / "no-journal", tables)
    # Every row is a point of the job under the id version it carries.
    assert {row["point_id"] for _, row, _ in rows_of_points(job, tables)} == set(rows["point_id"])
    assert sum(n == 0 for n in left.values()) == complete


@pytest.mark.parametrize("engine", ["vllm", "pytorch"])
def test_parts_measured_on_the_coarser_ladder_keep_their_rows_and_leave_the_rungs_between(engine):
    """Parts 1 to 3 were measured on the rungs 16, 64, 256 and 1,024 alone, before h200.yaml's
    workload ladder took every power of two: their shipped rows are points of the finer
    ladder's plan, complete, and what it adds are the rungs between. The parts' split counts
    those bins measured, so their layers stay as their tables were measured with."""
    from llm_energy.analysis.gpu_hours.parts import measured_bins, read_parts
    from llm_energy.config import load_config
    from llm_energy.measure.plan import plan_study
    from llm_energy.measure.resume import read_tables, rows_of_points, trials_left

    root = Path(__file__).resolve().parents[1]
    layers = ["h200.yaml", "h200_workloads.yaml", "h200_workloads_parts/part3.yaml"]
    job = plan_study(load_config(*(str(root / "config" / name) for name in layers)))
    job = job[f"llama-3.1-8b__{engine}"]
    path = root / f"resources/measurements/h200/workloads-part3__llama-3.1-8b__{engine}.parquet"
    rows = pd.read_parquet(path)
    tables = read_tables([path])
    assert {row["point_id"] for _, row, _ in rows_of_points(job, tables)} == set(rows["point_id"])
    left = trials_left(job, root / "no-journal", tables)
    done = {key[0] for key, n in left.items() if n == 0}
    todo = {key[0] for key, n in left.items() if n}
    assert done == {16, 64, 256, 1024} and todo == {32, 128, 512}
    part3 = read_parts(root / "config/h200_workloads_parts")[2]
    assert measured_bins({job.group: job}, tables) == set(part3)


def test_repeated_h200_points_agree_across_machines():
    """The vLLM points over 1 and 2 GPUs measured on two machines of the same type, before the
    trial protocol: the repeats are the same points (same measurement setup) and agree within
    10 %."""
    root = Path(__file__).resolve().parents[1] / "resources/measurements/repeats"
    for name in ("llama-3.1-8b__vllm", "llama-3.1-8b__vllm-tp2"):
        repeat = pd.read_parquet(root / "h200" / f"{name}.parquet").set_index("point_id")
        shipped = pd.read_parquet(root / "h200_before_trials" / f"{name}.parquet")
        shipped = shipped.set_index("point_id")
        assert len(repeat) == 3 and repeat.index.isin(shipped.index).all()
        shipped = shipped.loc[repeat.index]
        assert (repeat["git_commit"] != shipped["git_commit"]).all()
        for column in ("duration_s", "energy_j"):
            ratio = shipped[column] / repeat[column]
            assert ratio.between(0.9, 1.1).all(), (name, column, ratio.tolist())


def _served_repeat(engine: str, folder: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The shipped H200 served rows of ``engine`` and the same points from
    ``resources/measurements/repeats/<folder>``, both indexed by point id, in one order."""
    root = Path(__file__).resolve().parents[1] / "resources/measurements"
    name = f"served__llama-3.1-8b__{engine}.parquet"
    shipped = pd.read_parquet(root / "h200" / name).set_index("point_id")
    repeat = pd.read_parquet(root / "repeats" / folder / name).set_index("point_id")
    return shipped, repeat.loc[shipped.index]


def test_served_points_measured_in_two_sessions_agree():
    """The served points over 1 and 2 GPUs, measured in two machine sessions of two H200s (the
    earlier by llm-energy measure, the shipped one through snakemake): energy per request
    agrees within 8 % for the CUDA-graph servers and within 13 % for the eager one, as
    resources/measurements/README.md says."""
    bounds = {"vllm-served-s64": 0.08, "vllm-served-s64-tp2": 0.08, "vllm-eager-served-s64": 0.13}
    for engine, bound in bounds.items():
        shipped, earlier = _served_repeat(engine, "h200_served_earlier_session")
        assert len(shipped) == 7
        assert set(shipped["machine_session"]) == {"vm:5bb49998"}
        assert set(earlier["machine_session"]) == {"vm:88c784be"}
        ratio = shipped["energy_per_request_j"] / earlier["energy_per_request_j"]
        assert (ratio - 1).abs().max() < bound, (engine, ratio.round(3).tolist())


def test_served_points_repeated_through_snakemake_on_fresh_machines_agree():
    """The one-GPU served points measured again through snakemake, each server on a fresh
    machine of its own: energy per request within 10 % of the shipped rows at every point
    (resources/measurements/README.md gives the spread), and every row meets the protocol."""
    sessions = {"vllm-served-s64": "vm:b6d77f89", "vllm-eager-served-s64": "vm:8c833ee4"}
    for engine, session in sessions.items():
        shipped, repeat = _served_repeat(engine, "h200_served_2026-12-01")
        assert set(repeat["machine_session"]) == {session}
        assert repeat["protocol_met"].all() and (repeat["trials"] >= 3).all()
        ratio = repeat["energy_per_request_j"] / shipped["energy_per_request_j"]
        assert (ratio - 1).abs().max() < 0.10, (engine, ratio.round(3).tolist())


def test_a_figure_this_configuration_has_no_rows_for_names_the_one_that_has(tmp_path):
    """Fig 8 under config/h100.yaml with the H100 tables' classical-task rows taken out: the dry
    run stops before any job with one message that points at the configuration whose do."""
    work = copy_pipeline(tmp_path)
    for table in (work / "resources/measurements/h100").glob("tasks-*.parquet"):
        table.unlink()
    args = ("-n", "--cores", "1", "--configfile", "config/h100.yaml")
    result = run_snakemake(work, *args, "--config", "shipped_measurements=true", "--", "fig8")
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "fig8 draws experiments.classical_tasks" in message
    assert "resources/measurements/h100/ ships none" in message
    assert "snakemake fig8 --configfile config/h200.yaml --config shipped_measurements=true" in (
        message
    )
    # The same target where the rows are shipped plans the figure.
    args = ("-n", "--cores", "1", "--configfile", "config/h200.yaml")
    result = run_snakemake(work, *args, "--config", "shipped_measurements=true", "--", "fig8")
    assert result.returncode == 0, result.stderr[-3000:]
    # A configuration that does not plan the figure is sent to one of its own hardware first.
    args = ("-n", "--cores", "1", "--configfile", "config/h200_grid.yaml")
    result = run_snakemake(work, *args, "--config", "shipped_measurements=true", "--", "fig4")
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "fig4 draws experiments.architectures, and this configuration (hardware h200) " in (
        message
    )
    assert "snakemake fig4 --configfile config/h200.yaml --config" in message
    # Fig 1 is made by the workload estimate, which config/h200_grid.yaml does not enable: the
    # hint names the figure and the configuration that makes it.
    args = ("-n", "--cores", "1", "--configfile", "config/h200_grid.yaml")
    result = run_snakemake(work, *args, "--config", "shipped_measurements=true", "--", "fig1")
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "fig1 is made by experiments.workload_estimates" in message
    assert "snakemake fig1 --configfile config/h200.yaml" in message
