"""The claims the docs quote against the claims computed from the shipped rows: the generated
blocks and tables are current, every signed percentage of the README and of the claims page is
a number that the computed tables or the paper give, every energy per request the claims page
quotes is a shipped row's with its interval, every ratio of the classical tasks it quotes is
one of two of their rows, and the summary renderer itself."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from llm_energy import cli
from llm_energy.analysis import paper
from llm_energy.analysis.claims import (
    COLUMNS,
    block,
    docs_block,
    markdown,
    replace_block,
    shipped_claims,
    shipped_rows,
    shipped_workload_totals,
    summary,
)
from llm_energy.analysis.sessions import machine_sessions
from llm_energy.config import load_config
from llm_energy.errors import InputError
from llm_energy.families import outputs
from llm_energy.figures.workload_estimate import table4_energy_over_ideal

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "REPRODUCTION.md"
QUOTING = (ROOT / "README.md", PAGE)
HARDWARE = ("h200", "h100")
REFRESH = "run `make docs-claims` to regenerate them from the shipped rows"


@pytest.fixture(scope="module")
def computed() -> dict[str, dict]:
    """Per hardware label: the shipped rows, their claims table and the workload totals."""
    out = {}
    for hardware in HARDWARE:
        config = load_config(ROOT / "config" / f"{hardware}.yaml")
        rows = shipped_rows(ROOT, hardware)
        out[hardware] = {
            "rows": rows,
            "claims": shipped_claims(config, ROOT),
            "totals": shipped_workload_totals(config, rows, ROOT),
        }
    return out


# --- (a) the generated blocks are what the rows give now -----------------------------------------


@pytest.mark.parametrize("hardware", HARDWARE)
def test_the_claims_page_holds_the_claims_of_the_shipped_rows(computed, hardware):
    c = computed[hardware]
    expected = docs_block(c["claims"], c["rows"], hardware).rstrip("\n")
    found = block(PAGE.read_text(), f"claims:{hardware}")
    assert found is not None, f"docs/REPRODUCTION.md has no claims:{hardware} block; {REFRESH}"
    assert found == expected, f"docs/REPRODUCTION.md's claims:{hardware} block is stale; {REFRESH}"


@pytest.mark.parametrize("hardware", HARDWARE)
def test_the_shipped_claims_tables_are_those_of_the_rows(computed, hardware):
    path = ROOT / "docs" / "claims" / f"{hardware}.md"
    assert path.read_text() == markdown(computed[hardware]["claims"], hardware), (
        f"docs/claims/{hardware}.md is stale; {REFRESH}"
    )


# --- (b) every signed percentage the docs quote is computed --------------------------------------

# A sign (ASCII or the typographic minus) that starts a number, not a range's hyphen ("10-16 %").
SIGNED_PCT = re.compile(r"(?<![\w.])([+\-\u2212])\s?(\d+(?:\.\d+)?)\s?%")


def _at_one_decimal(percents) -> set[str]:
    return {f"{p:+.1f}" for p in percents if not pd.isna(p)}


def allowed_percentages(computed: dict[str, dict]) -> set[str]:
    """The signed percentages the docs may print: a measured value or interval bound of the
    claims tables, of Table 4 or of the trace replay, at one decimal as the claims table prints
    them; a paper's number recorded in ``analysis.paper``, at its precision or rounded."""
    allowed: set[str] = set()
    for c in computed.values():
        claims = c["claims"]
        for column in ("measured_value", "ci95_low", "ci95_high", "paper_value"):
            allowed |= _at_one_decimal(100 * claims[column].astype(float))
        if c["totals"] is not None:
            table4 = table4_energy_over_ideal(c["totals"])
            for column in [x for x in table4.columns if x.startswith("over_ideal_")]:
                allowed |= _at_one_decimal(table4[column].astype(float))
        rows = c["rows"]
        if rows["experiments"].astype(str).str.contains("trace_replay").any():
            replay = outputs()["table_trace_replay"].make(rows)
            for column in ("estimate_error", "whole_batches_error"):
                allowed |= _at_one_decimal(100 * replay[column].astype(float))
    for value in paper.relative_changes():
        allowed |= {f"{100 * value:+.{d}f}" for d in (0, 1, 2)}
    return allowed


def signed_percentages(text: str) -> list[tuple[str, str]]:
    """(number as printed with an ASCII sign, its line) of every signed percentage."""
    found = []
    for line in text.splitlines():
        for sign, number in SIGNED_PCT.findall(line):
            found.append((("-" if sign != "+" else "+") + number, line.strip()))
    return found


@pytest.mark.parametrize("page", QUOTING, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_signed_percentage_quoted_is_computed(computed, page):
    allowed = allowed_percentages(computed)
    quoted = signed_percentages(page.read_text())
    assert quoted, f"{page.name} quotes no signed percentage: is the pattern still right?"
    stray = [f"{n} % in: {line[:120]}" for n, line in quoted if n not in allowed]
    assert not stray, (
        f"{page.relative_to(ROOT)} quotes numbers that neither the claims computed from the "
        "shipped rows nor the paper's numbers (llm_energy.analysis.paper) give:\n"
        + "\n".join(stray)
    )


def test_the_pattern_finds_signed_numbers_and_not_ranges():
    text = "saves −45.4 % (batch 1), +26 % here, -5.5 % there; 10-16 % and 45–75 % are ranges"
    assert [n for n, _ in signed_percentages(text)] == ["-45.4", "+26", "-5.5"]


# --- (c) every energy per request the claims page quotes is a row's -----------------------------

# "23.5 J", "23.5 J per request", each with its interval where one follows: "(±1.0 %)".
JOULES = re.compile(
    r"(?<![\w.,])(\d+(?:\.\d+)?) J(?![\w/])(?: per request)?(?:\s+\(\u00b1(\d+(?:\.\d+)?) %\))?"
)


def quoted_energies(text: str) -> list[tuple[str, str | None]]:
    """(energy as printed, its interval's half-width in per cent or None) of every energy in
    joules the text quotes, read across line breaks."""
    return [(joules, pct or None) for joules, pct in JOULES.findall(" ".join(text.split()))]


def row_energies(rows: pd.DataFrame) -> dict[str, set[str]]:
    """Every measured row's energy per request, at the precision printed, mapped to its
    interval's half-width as a share of it (per cent, at one decimal; empty without trials)."""
    out: dict[str, set[str]] = {}

    def column(name: str) -> pd.Series:  # the H100 rows predate trials and their columns
        return rows[name].astype(float) if name in rows else pd.Series(math.nan, rows.index)

    per_request = column("energy_per_request_j")
    half = column("energy_per_request_j_ci95")
    share = column("energy_j_ci95") / column("energy_j")
    share = (half / per_request).where(half.notna(), share)
    for value, rel in zip(per_request, share, strict=True):
        if pd.isna(value):
            continue
        for digits in (0, 1, 2):
            out.setdefault(f"{value:.{digits}f}", set()).update(
                set() if pd.isna(rel) else {f"{100 * rel:.1f}"}
            )
    return out


def test_every_energy_per_request_quoted_is_a_row_s_with_its_interval(computed):
    energies: dict[str, set[str]] = {}
    for c in computed.values():
        for value, shares in row_energies(c["rows"]).items():
            energies.setdefault(value, set()).update(shares)
    quoted = quoted_energies(PAGE.read_text())
    assert quoted, "docs/REPRODUCTION.md quotes no energy in joules: is the pattern still right?"
    stray = [
        f"{joules} J" + (f" (\u00b1{pct} %)" if pct else "")
        for joules, pct in quoted
        if joules not in energies or (pct is not None and pct not in energies[joules])
    ]
    assert not stray, (
        "docs/REPRODUCTION.md quotes energies per request that no shipped row gives with that "
        "interval:\n" + "\n".join(stray)
    )


def test_the_joules_pattern_reads_values_and_intervals_across_lines():
    text = (
        "used 14.0 J per request (\u00b118.4 %) against 5.7 J\n(\u00b11.6 %), and 39.0 J; "
        "1,024 J/token"
    )
    assert quoted_energies(text) == [("14.0", "18.4"), ("5.7", "1.6"), ("39.0", None)]


# A ratio of energies per request the classical-tasks section quotes: "3.0 times", "4.0
# (translation) to 5.7 (summarization) times".
TIMES = re.compile(
    r"(\d+\.\d+)(?: \([a-z]+\))? to (\d+\.\d+)(?: \([a-z]+\))? times|(\d+\.\d+) times"
)


def quoted_ratios(text: str) -> list[str]:
    return [n for match in TIMES.findall(" ".join(text.split())) for n in match if n]


def task_ratios(rows: pd.DataFrame) -> set[str]:
    """Energy per request of one classical-task row over another's of the same task and 1,024
    examples, at one and two decimals: another batch on the same engine, or the other engine
    at the same batch in the same machine session."""
    tasks = rows[
        rows["experiments"].astype(str).str.contains("classical_tasks")
        & (rows["requests"] == 1024)
        & rows["energy_per_request_j"].notna()
    ].assign(session=lambda r: machine_sessions(r))
    ratios: set[str] = set()
    for _, a in tasks.iterrows():
        for _, b in tasks.iterrows():
            same_engine = a["engine"] == b["engine"]
            paired = (same_engine and a["batch_size"] != b["batch_size"]) or (
                not same_engine and a["batch_size"] == b["batch_size"] and a.session == b.session
            )
            if a["trace"] == b["trace"] and paired:
                ratio = a["energy_per_request_j"] / b["energy_per_request_j"]
                ratios |= {f"{ratio:.1f}", f"{ratio:.2f}"}
    return ratios


def test_every_ratio_the_classical_tasks_section_quotes_is_one_of_its_rows(computed):
    text = PAGE.read_text()
    section = text[text.index("## Classical tasks") : text.index("## 8.")]
    quoted = quoted_ratios(section)
    assert quoted, "the classical-tasks section quotes no ratio: is the pattern still right?"
    # Rows of one hardware each: no ratio pairs two GPUs.
    allowed = set().union(*(task_ratios(computed[hardware]["rows"]) for hardware in HARDWARE))
    stray = [n for n in quoted if n not in allowed]
    assert not stray, (
        "docs/REPRODUCTION.md's classical-tasks section quotes ratios of energy per request "
        f"that no two shipped rows of one task give: {stray}"
    )


def test_the_ratio_pattern_reads_single_ratios_and_ranges():
    text = "used 4.0 (translation) to 5.7 (summarization)\ntimes vLLM's, and 1.07 times; twice"
    assert quoted_ratios(text) == ["4.0", "5.7", "1.07"]


# --- (d) the summary renderer, on a small table --------------------------------------------------


def _claim(claim, quantity, condition, paper_value, value, half, verdict):
    low, high = (math.nan, math.nan) if math.isnan(half) else (value - half, value + half)
    return dict(
        zip(
            COLUMNS,
            (claim, quantity, condition, paper_value, value, low, high, verdict, "a b"),
            strict=True,
        )
    )


def test_the_summary_gives_each_series_its_range_intervals_and_verdicts():
    nan = math.nan
    share = "decode's share of the energy (energy_j)"
    rows = [_claim("1", share, "", nan, nan, nan, "not measured")]
    rows += [
        _claim("4", "vLLM against PyTorch (energy_j)", f"model m, batch_size {b}", nan, v, h, w)
        for b, v, h, w in (
            (1, -0.454, 0.041, "agrees in direction"),
            (8, -0.30, 0.02, "agrees in direction"),
            (512, -0.25, 0.015, "inconclusive: the interval holds no change"),
        )
    ]
    rows.append(
        _claim(
            "7",
            "energy on 2 GPUs against 1, batch 1 (energy_j)",
            "model m, engine vllm, CUDA graphs, batch_size 1",
            0.293,
            0.281,
            nan,
            "inconclusive: no interval (rows without independent trials)",
        )
    )
    table = pd.DataFrame(rows)
    assert summary(table).splitlines() == [
        "- Claim 1, decode's share of the energy: not measured.",
        "- Claim 4, vLLM against PyTorch, energy; model m: "
        "\u221245.4 % [\u221249.5 %, \u221241.3 %] (batch 1) to "
        "\u221225.0 % [\u221226.5 %, \u221223.5 %] (batch 512); "
        "3 comparisons: 2 agree in direction, 1 inconclusive: the interval holds no change.",
        # batch 1 is in the quantity already; no interval, and the paper at its precision.
        "- Claim 7, energy on 2 GPUs against 1, batch 1; model m, engine vllm, CUDA graphs "
        "(paper +29.3 %): +28.1 %; inconclusive: no interval.",
    ]


def test_the_summary_keeps_series_of_other_paper_values_and_shapes_apart():
    share = "decode's share of the energy (energy_j)"
    rows = [
        _claim("1", share, f"pytorch, batch {b}, 512 in, {o} out", math.nan, v, 0.01, "agrees")
        for b, o, v in ((1, 64, 0.96), (64, 64, 0.46), (64, 512, 0.88))
    ]
    rows += [
        _claim(
            "2", "draft (energy_j)", f"forced acceptance, model m, batch_size {b}", p, v, 0.02, w
        )
        for b, p, v, w in (
            (1, -0.2914, -0.516, "agrees in direction"),
            (16, -0.2914, -0.242, "agrees in direction"),
            (128, 0.2565, 0.011, "inconclusive: the interval holds no change"),
        )
    ]
    lines = summary(pd.DataFrame(rows)).splitlines()
    # Shares are not changes: no sign; both varying shapes say where each end was measured.
    assert lines[0] == (
        "- Claim 1, decode's share of the energy; pytorch, 512 in: "
        "46.0 % [45.0 %, 47.0 %] (batch 64, 64 out) to 96.0 % [95.0 %, 97.0 %] (batch 1, 64 out); "
        "3 of 3 agree."
    )
    # One series per paper value: batch 1 and 16 against the saving, batch 128 the cost.
    assert lines[1].startswith(
        "- Claim 2, draft, energy; forced acceptance, model m (paper \u221229.14 %): "
    )
    assert lines[1].endswith("(batch 16); 2 of 2 agree in direction.")
    assert lines[2] == (
        "- Claim 2, draft, energy; forced acceptance, model m, batch 128 (paper +25.65 %): "
        "+1.1 % [\u22120.9 %, +3.1 %]; inconclusive: the interval holds no change."
    )


def test_a_block_is_replaced_between_its_markers_and_read_back():
    text = "intro\n<!-- claims:x begin -->\nold\n<!-- claims:x end -->\noutro\n"
    new = replace_block(text, "claims:x", "new line\n")
    assert new == "intro\n<!-- claims:x begin -->\nnew line\n<!-- claims:x end -->\noutro\n"
    assert block(new, "claims:x") == "new line"
    assert replace_block(new, "claims:x", "new line\n") == new
    assert block(text, "claims:y") is None
    with pytest.raises(InputError, match="claims:y"):
        replace_block(text, "claims:y", "body")


def test_the_provenance_counts_gpus_commits_sessions_and_trials(computed):
    text = docs_block(computed["h100"]["claims"], computed["h100"]["rows"], "h100")
    rows = computed["h100"]["rows"]
    gpus = {u for v in rows["gpu_uuids"].dropna() for u in str(v).split(",") if u}
    assert f"name {len(gpus)} GPUs (by UUID)" in text
    # Rows all measured before the trial protocol have no intervals to count.
    before = rows[rows["trials"].isna()]
    assert "none of them in independent trials" in docs_block(
        computed["h100"]["claims"], before, "h100"
    )
    for hardware in ("h100", "h200"):
        rows = computed[hardware]["rows"]
        text = docs_block(computed[hardware]["claims"], rows, hardware)
        tried = rows[rows["trials"].fillna(0) > 0]
        low, high = int(tried["trials"].min()), int(tried["trials"].max())
        sessions = len(set(machine_sessions(tried)))
        many = "s" if sessions > 1 else ""
        trials = f"from {sessions} machine session{many} in {low} to {high} independent trials"
        assert f"{len(tried)} of them {trials}" in text, hardware


def test_the_refresh_command_writes_what_the_page_holds(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("before\n<!-- claims:h200 begin -->\n<!-- claims:h200 end -->\nafter\n")
    config = str(ROOT / "config" / "h200.yaml")
    args = ["claims-docs", config, "--root", str(ROOT), "--page", str(page)]
    assert cli.main([*args, "--tables", str(tmp_path / "claims")]) == 0
    assert block(page.read_text(), "claims:h200") == block(PAGE.read_text(), "claims:h200")
    assert page.read_text().endswith("\nafter\n")
    shipped = (ROOT / "docs" / "claims" / "h200.md").read_text()
    assert (tmp_path / "claims" / "h200.md").read_text() == shipped
    # A page without the label's block is refused, not silently left as it was.
    page.write_text("no block here\n")
    assert cli.main([*args, "--tables", str(tmp_path / "claims")]) == 2
    assert page.read_text() == "no block here\n"
