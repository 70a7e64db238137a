"""The claims computed from the rows: the verdict rule, the interval of a relative change, and
the table from the shipped H100 rows."""

from __future__ import annotations

import glob
import math
from pathlib import Path

import pandas as pd
import pytest
from _pipeline import copy_pipeline, run_snakemake

from llm_energy.analysis.claims import (
    claims_table,
    relative_change,
    shipped_claims,
    shipped_rows,
    shipped_workload_bins,
    summary,
    verdict,
    workload_claims,
)
from llm_energy.config import load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("paper", "sign", "low", "high", "expected"),
    [
        (-0.29, -1, -0.35, -0.25, "agrees"),
        (-0.29, -1, -0.60, -0.50, "agrees in direction"),
        (math.nan, -1, -0.60, -0.50, "agrees in direction"),
        (-0.29, -1, 0.10, 0.20, "disagrees"),
        (-0.29, -1, -0.05, 0.02, "inconclusive: the interval holds no change"),
        (-0.29, -1, math.nan, math.nan, "inconclusive: no interval"),
        (math.nan, 0, -0.02, 0.03, "agrees"),  # "no extra energy": no change is agreement
        (math.nan, 0, 0.02, 0.03, "disagrees"),
    ],
)
def test_one_rule_turns_an_interval_into_a_verdict(paper, sign, low, high, expected):
    value = -0.3 if math.isnan(low) else (low + high) / 2
    assert verdict(paper, sign, value, low, high).startswith(expected)
    assert verdict(paper, sign, math.nan, low, high) == "not measured"


def test_the_interval_of_a_relative_change_combines_both_rows():
    def row(pid, energy, ci):
        return {
            "point_id": pid,
            "batch_size": 1,
            "energy_j": energy,
            "energy_j_ci95": ci,
            "feasible": True,
            "repetitions": 3,
        }

    base = pd.DataFrame([row("a", 100.0, 2.0)])
    other = pd.DataFrame([row("b", 50.0, 1.5)])
    (c,) = relative_change(base, other, ("batch_size",))
    assert c.value == pytest.approx(-0.5)
    assert c.half_width == pytest.approx(0.5 * math.hypot(0.02, 0.03))
    assert c.rows == "a b"


def _row(pid, energy, session, when="2026-11-30T08:00:00+00:00"):
    return {
        "point_id": pid,
        "batch_size": 1,
        "energy_j": energy,
        "energy_j_ci95": energy / 100,
        "feasible": True,
        "repetitions": 3,
        "machine_session": session,
        "host": session.split(":")[0],
        "timestamp": when,
    }


def test_a_comparison_pairs_rows_of_one_machine_session():
    base = pd.DataFrame(
        [_row("a-old", 100.0, "h1:aaaa", "2026-11-01"), _row("a-new", 80.0, "h2:bbbb")]
    )
    other = pd.DataFrame([_row("b-old", 50.0, "h1:aaaa"), _row("b-new", 60.0, "h2:bbbb")])
    (c,) = relative_change(base, other, ("batch_size",))
    assert c.same_session
    assert c.rows == "a-new b-new"  # the latest session that has both
    assert c.value == pytest.approx(60 / 80 - 1)


def test_rows_of_two_machine_sessions_give_no_verdict():
    rows = pd.DataFrame(
        [
            {**_row("pt", 100.0, "h1:aaaa"), "engine": "pytorch", "backend": "transformers"},
            {**_row("vl", 50.0, "h2:bbbb"), "engine": "vllm", "backend": "vllm"},
        ]
    ).assign(
        experiments="engine_optimisations",
        model="m",
        torch_compile=False,
        cuda_graphs=[False, True],
        protocol_met=True,
        speculative_model="",
        speculative_acceptance="",
        serving="batch",
        tensor_parallel_size=1,
        input_tokens=512,
        output_tokens=64,
        decode_energy_j=float("nan"),
    )
    table = claims_table(rows)
    claim4 = table[table["claim"] == "4"].iloc[0]
    assert claim4["measured_value"] == pytest.approx(-0.5)
    assert claim4["verdict"] == "inconclusive: the rows come from different machine sessions"
    same = claims_table(rows.assign(machine_session="h1:aaaa"))
    assert same[same["claim"] == "4"].iloc[0]["verdict"] == "agrees in direction"


def test_decodes_share_takes_its_interval_from_each_trials_prefill_window():
    """Claim 1 on a row that keeps every trial's prefill window: the share's mean and interval
    are those of the trials' own shares; without them, the energy's relative interval."""
    import json

    from llm_energy.measure.trials import ci95_half_width

    full, prefill = [100.0, 104.0, 96.0], [10.0, 12.0, 11.0]
    row = {
        **_row("p", 100.0, "h1:aaaa"),
        "experiments": "output_sweep",
        "engine": "vllm",
        "input_tokens": 512,
        "output_tokens": 64,
        "protocol_met": True,
        "decode_energy_j": 89.0,
        "model": "m",
        "backend": "vllm",
        "torch_compile": False,
        "cuda_graphs": True,
        "speculative_model": "",
        "speculative_acceptance": "",
        "serving": "batch",
        "tensor_parallel_size": 1,
        "trial_energy_j": json.dumps(full),
        "trial_prefill_energy_j": json.dumps(prefill),
    }
    (claim1,) = claims_table(pd.DataFrame([row])).query("claim == '1'").itertuples()
    assert claim1.condition == "m, vllm, batch 1, 512 in, 64 out"
    shares = [(f - p) / f for f, p in zip(full, prefill, strict=True)]
    assert claim1.measured_value == pytest.approx(sum(shares) / 3)
    half = ci95_half_width(shares)
    assert claim1.ci95_high - claim1.measured_value == pytest.approx(half)
    assert claim1.verdict.startswith("agrees")  # well above one half
    # The same row without per-trial prefill values: the share of the means, the energy's
    # relative interval.
    (plain,) = (
        claims_table(pd.DataFrame([{**row, "trial_prefill_energy_j": "[]"}]))
        .query("claim == '1'")
        .itertuples()
    )
    assert plain.measured_value == pytest.approx(0.89)
    assert plain.ci95_high - plain.measured_value == pytest.approx(0.89 * 0.01)


def test_the_shipped_h100_rows_give_every_claim_they_measure():
    rows = pd.concat(
        [pd.read_parquet(p) for p in glob.glob(str(ROOT / "resources/measurements/h100/*"))],
        ignore_index=True,
    )
    rows = rows[rows["hardware"] == "h100"]
    table = claims_table(rows)
    assert set(table["claim"]) == {"1", "2", "3", "4", "5", "6", "7"}
    # Computed from the rows, as a reader can recompute it: vLLM against PyTorch at batch 1.
    engines = rows[rows["experiments"].str.contains("engine_optimisations")]
    at = engines[engines["batch_size"] == 1].set_index("engine")["energy_j"]
    claim4 = table[(table["claim"] == "4") & table["condition"].str.endswith("batch_size 1")]
    assert claim4["measured_value"].iloc[0] == pytest.approx(at["vllm"] / at["pytorch"] - 1)
    # Most H100 rows predate trials: no comparison of them claims more than its rows allow.
    # Claim 3 on PyTorch pairs rows measured in trials in one session: each has its interval.
    trials = (table["claim"] == "3") & table["condition"].str.contains("engine pytorch")
    assert trials.sum() == 6
    assert table[~trials]["verdict"].str.startswith(("inconclusive", "not measured")).all()
    assert table[trials]["ci95_low"].notna().all()
    assert not table[trials]["verdict"].str.startswith("inconclusive").any()
    # Claim 1 reads one row per share: its session is never in question.
    assert table[table["claim"] == "1"]["verdict"].str.startswith("inconclusive: no interval").all()


def test_claim_8_of_the_shipped_h100_rows_gives_the_value_without_an_interval():
    """The H100 bins predate trials, and ten of Azure code's bins pair rows of two sessions
    (told apart by commit): without an interval, claim 8 gives the value alone, as it did
    before it carried intervals."""
    from llm_energy.analysis.workload_estimate import workload_totals

    config = load_config(ROOT / "config" / "h100.yaml")
    bins = shipped_workload_bins(config, shipped_rows(ROOT, "h100"), ROOT)
    assert bins["energy_ci95_j"].isna().all()
    totals = workload_totals(bins).set_index(["trace", "engine"])
    assert totals["energy_ci95_j"].isna().all()
    assert set(totals["machine_sessions"]) == {"vm@7bc5219;vm@7d9f91f"}
    claims = workload_claims(bins).set_index("condition")
    # vLLM's engine captured CUDA graphs of up to 512 sequences: its bins at batch 1,024 ran
    # their decoding steps without them, and the condition says how many. The H100 ladder
    # stepped by four: most bins' batches lie four times below one out of memory.
    code = claims.loc[
        "azure_code, vllm against pytorch (pytorch: of 56 bins, 44 at under half the largest "
        "batch that may fit; vllm: of 56 bins, 17 at batches past its CUDA graphs and 39 at "
        "under half the largest batch that may fit)"
    ]
    past = bins[(bins["engine"] == "vllm") & (bins["trace"] == "azure_code") & bins["measured"]]
    assert (past["batch_size"] > past["cuda_graph_max_batch"]).sum() == 17
    assert set(past["cuda_graph_max_batch"]) == {512.0}
    energy = totals["energy_j"]
    expected = energy["azure_code", "vllm"] / energy["azure_code", "pytorch"] - 1
    assert code["measured_value"] == pytest.approx(expected)
    assert f"{100 * code['measured_value']:+.1f}" == "-32.4"
    assert math.isnan(code["ci95_low"]) and math.isnan(code["ci95_high"])
    assert set(claims["verdict"]) == {"inconclusive: no interval (rows without independent trials)"}


@pytest.mark.integration
def test_snakemake_claims_runs_offline_from_the_shipped_rows(tmp_path):
    work = copy_pipeline(tmp_path)
    args = ("claims", "--cores", "1", "--configfile", "config/h100.yaml")
    result = run_snakemake(work, *args, "--config", "shipped_measurements=true")
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(work / "results/claims/h100.csv", dtype={"claim": str})
    assert set(table["claim"]) == {str(c) for c in range(1, 9)}
    assert (work / "results/claims/h100.md").read_text().startswith("# The study's claims")
    # The docs' claims are computed in one process (make docs-claims): the same table.
    here = shipped_claims(load_config(work / "config/h100.yaml"), work)
    text = ["claim", "quantity", "condition", "verdict", "rows"]
    pd.testing.assert_frame_equal(here[text].fillna(""), table[text].fillna(""))
    numbers = ["paper_value", "measured_value", "ci95_low", "ci95_high"]
    pd.testing.assert_frame_equal(here[numbers].astype(float), table[numbers], rtol=1e-8)


def _engine_rows(**pytorch_changes) -> pd.DataFrame:
    """vLLM with CUDA graphs against PyTorch eager at one shape (claim 4), each row with its
    trials' interval and a healthy GPU unless changed."""
    common = {
        "experiments": "engine_optimisations",
        "model": "m",
        "batch_size": 8,
        "input_tokens": 512,
        "output_tokens": 64,
        "feasible": True,
        "repetitions": 3,
        "protocol_met": True,
        "gpu_health": "ok",
        "speculative_model": "",
        "speculative_acceptance": "",
        "serving": "batch",
        "tensor_parallel_size": 1,
        "decode_energy_j": 1.0,
        "duration_s_ci95": 0.01,
    }
    pytorch = {
        **common,
        "engine": "pytorch",
        "backend": "transformers",
        "torch_compile": False,
        "cuda_graphs": False,
        "energy_j": 100.0,
        "energy_j_ci95": 1.0,
        "duration_s": 1.0,
        "point_id": "pt",
        **pytorch_changes,
    }
    vllm = {
        **common,
        "engine": "vllm",
        "backend": "vllm",
        "torch_compile": False,
        "cuda_graphs": True,
        "energy_j": 40.0,
        "energy_j_ci95": 0.5,
        "duration_s": 0.5,
        "point_id": "vl",
    }
    return pd.DataFrame([pytorch, vllm])


def _claim4(rows: pd.DataFrame) -> str:
    table = claims_table(rows)
    return table[(table["claim"] == "4") & (table["rows"] == "pt vl")]["verdict"].iloc[0]


def test_a_comparison_with_a_throttled_row_is_inconclusive_and_says_why():
    assert not _claim4(_engine_rows()).startswith("inconclusive")
    verdict = _claim4(_engine_rows(gpu_health="counter_backwards+throttled_power"))
    assert verdict == "inconclusive: a row's GPU health is counter_backwards, throttled_power"
    # Rows that cannot tell (older tables, meters without NVML) are not held against a claim.
    assert not _claim4(_engine_rows(gpu_health="unknown")).startswith("inconclusive")
    assert not _claim4(_engine_rows().drop(columns="gpu_health")).startswith("inconclusive")
    assert _claim4(_engine_rows(protocol_met=False)).endswith("did not meet the protocol")


def test_a_shape_measured_in_two_sessions_gives_a_share_for_each_named_by_its_session():
    """Claim 1 lists each session's share of one shape apart, each condition naming its
    session; a shape of one session keeps its plain condition, and the summary says where its
    lowest and highest shares come from."""
    common = {
        "experiments": "output_sweep",
        "model": "m",
        "engine": "vllm",
        "backend": "vllm",
        "input_tokens": 512,
        "output_tokens": 64,
        "protocol_met": True,
        "speculative_model": "",
        "speculative_acceptance": "",
        "serving": "batch",
        "tensor_parallel_size": 1,
    }
    rows = pd.DataFrame(
        [
            {**_row("early", 100.0, "vm:aaaa"), **common, "decode_energy_j": 90.0},
            {**_row("late", 100.0, "vm:bbbb"), **common, "decode_energy_j": 92.0},
            {**_row("alone", 100.0, "vm:bbbb"), **common, "batch_size": 8, "decode_energy_j": 70.0},
        ]
    )
    claim1 = claims_table(rows).query("claim == '1'").set_index("rows")
    assert claim1.loc["early", "condition"] == "m, vllm, batch 1, 512 in, 64 out, session vm:aaaa"
    assert claim1.loc["late", "condition"] == "m, vllm, batch 1, 512 in, 64 out, session vm:bbbb"
    assert claim1.loc["alone", "condition"] == "m, vllm, batch 8, 512 in, 64 out"
    line = summary(claims_table(rows).query("claim == '1'"))
    assert "70.0 % [69.3 %, 70.7 %] (batch 8)" in line
    assert "92.0 % [91.1 %, 92.9 %] (batch 1, session vm:bbbb)" in line


def test_claim_8s_condition_says_which_bins_ran_below_their_largest_feasible_batch():
    """A bin whose batch is under half the largest that may fit (a ladder coarser than powers
    of two): the condition counts them per engine, beside the bins past CUDA graphs."""
    from llm_energy.analysis.claims import _bin_notes

    by_engine = pd.DataFrame(
        {
            "bins_measured": [5, 5],
            "bins_past_cuda_graphs": [0, 2],
            "bins_under_half_largest_fit": [1, 3],
        },
        index=pd.Index(["pytorch", "vllm"], name="engine"),
    )
    assert _bin_notes(by_engine) == (
        " (pytorch: of 5 bins, 1 at under half the largest batch that may fit; vllm: of 5 "
        "bins, 2 at batches past its CUDA graphs and 3 at under half the largest batch that "
        "may fit)"
    )
    assert (
        _bin_notes(by_engine.assign(bins_under_half_largest_fit=0, bins_past_cuda_graphs=0)) == ""
    )
