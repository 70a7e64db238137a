"""The docs against what they describe: the README's length and commands, the column page
against the row schema and the shipped tables, and every relative link."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from llm_energy.measure import columns

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, ROOT / "config" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def bash_commands(markdown: str) -> list[str]:
    """The command lines of the ```bash blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", markdown, flags=re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(shlex.join(words))
    return commands


def snakemake_commands() -> list[str]:
    return [c for c in bash_commands(README.read_text()) if c.split()[0] == "snakemake"]


def test_readme_is_short():
    assert len(README.read_text().splitlines()) <= 200


def test_columns_page_is_generated(capsys):
    columns.main()
    assert (ROOT / "docs" / "COLUMNS.md").read_text() == capsys.readouterr().out, (
        "docs/COLUMNS.md is stale: python -m llm_energy.measure.columns > docs/COLUMNS.md"
    )


def test_column_names_are_unique():
    names = [c.name for c in columns.COLUMNS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    "table", sorted((ROOT / "resources" / "measurements" / "h100").glob("*.parquet")), ids=str
)
def test_required_columns_are_in_the_shipped_tables(table):
    present = set(pd.read_parquet(table).columns)
    missing = [c for c in columns.REQUIRED_COLUMNS if c not in present]
    assert not missing, f"{table.name} lacks {missing}"


def test_shipped_columns_are_documented():
    documented = {c.name for c in columns.COLUMNS}
    patterns = [
        re.compile("^" + re.sub(r"\\\{[a-z_]+\\\}", "[a-z0-9_]+", re.escape(c.name)) + "$")
        for c in columns.COLUMNS
        if "{" in c.name
    ]
    for table in sorted((ROOT / "resources" / "measurements").rglob("*.parquet")):
        for name in pd.read_parquet(table).columns:
            assert name in documented or any(p.match(name) for p in patterns), (
                f"{table.name}: column {name} is not in llm_energy.measure.columns"
            )


def test_readme_has_snakemake_commands():
    assert snakemake_commands()


@pytest.mark.integration
@pytest.mark.parametrize("command", snakemake_commands())
def test_readme_snakemake_commands_dry_run(command):
    args = shlex.split(command)[1:]
    args += ["-n", "--quiet"]
    if not any(a == "--cores" or a.startswith("--cores=") or a == "-c" for a in args):
        args += ["--cores", "1"]
    result = subprocess.run(
        [str(SNAKEMAKE), *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_exist(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = target.split("#")[0]
        if not (page.parent / path).exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def test_the_estimate_quoted_in_the_configuration_guide_is_the_benchmarks_output():
    """The configuration guide's paragraph on how long a configuration's jobs take quotes only
    numbers that the estimates and the stream benchmark it cites printed."""
    import re

    text = (ROOT / "config/README.md").read_text()
    start = text.index("Fitted to the 35 points measured on one H100")
    paragraph = text[start:].split("\n\n")[0]
    cited = re.findall(r"`benchmarks/data/([^`]+)`", paragraph)
    assert len(cited) >= 3
    known = "".join((ROOT / "benchmarks/data" / name).read_text() for name in cited)
    known_numbers = set(re.findall(r"\d+(?:\.\d+)?", known))
    # Paths, commands, names with digits, and the tasks' length caps (the configuration's).
    paragraph = re.sub(r"`[^`]*`|H[12]00|Llama-3\.1-8B|Fig 4|4,096|1,024", "", paragraph)
    quoted = re.findall(r"\d+(?:\.\d+)?", paragraph)
    assert len(quoted) > 10
    assert [q for q in quoted if q not in known_numbers] == []


def test_the_protocol_cost_quoted_in_measuring_md_is_the_benchmarks_output():
    """Every number of MEASURING.md's paragraph on what the protocol costs, and of each
    session's paragraph in SESSIONS.md, is one the session's benchmarks printed or read
    (benchmarks/gpu_time_share.py and the others, their inputs and outputs kept in
    benchmarks/data/)."""
    import re

    text = (ROOT / "docs/MEASURING.md").read_text()
    paragraph = text[text.index("**What the protocol costs.**") :].split("\n\n")[0]
    paragraph = re.sub(r"`[^`]*`|H200", "", paragraph)  # paths, commands, the GPU's name
    data = ROOT / "benchmarks/data"
    known = "".join(p.read_text() for p in sorted(data.glob("h200_2026-11-30_*")))
    known_numbers = set(re.findall(r"\d+(?:\.\d+)?", known))
    quoted = re.findall(r"\d+(?:\.\d+)?", paragraph)
    assert len(quoted) > 20
    assert [q for q in quoted if q not in known_numbers] == []
    text = (ROOT / "docs/SESSIONS.md").read_text()
    for start, files in (
        ("**A second session, on one H200**", "h200_2026-11-30b_*"),
        ("**A third session, on two H200s**", "h200_2026-11-30c_*"),
        ("**A fourth session, on two H200s, through snakemake**", "h200_2026-11-30d_*"),
        ("**A fifth session, on one H200**", "h200_2026-12-01_*"),
        ("**A sixth session, on one H200**", "h200_2026-12-01b_*"),
        ("**A seventh session, on one H200**", "h200_2026-12-01c_*"),
        ("**An eighth session, on one H200**", "h200_2026-12-01d_*"),
        ("**The plan, refitted to the rows of the eight sessions**", "h200_2026-12-01e_*"),
        ("**A ninth session, on one H200**", "h200_2026-12-01f_*"),
        ("**A tenth session, on one H200**", "h200_2026-12-02_*"),
        ("**An eleventh session, on one H200**", "h200_2026-12-02b_*"),
        ("**A twelfth session, on two machines with one H200 each**", "h200_2026-12-02c_*"),
        ("**A thirteenth session, on one H200**", "h200_2026-12-02d_*"),
        ("**A fourteenth session, on one H200**", "h200_2026-12-03_*"),
        ("**A fifteenth session, on one H200**", "h200_2026-12-03b_*"),
        ("**A sixteenth session, on one H200**", "h200_2026-12-03c_*"),
        ("**A seventeenth session, on one H200**", "h200_2026-12-03d_*"),
        ("**An eighteenth session, on one H200**", "h200_2026-12-03e_*"),
        ("**A nineteenth session, on one H200**", "h200_2026-12-04_*"),
        ("**A twentieth session, on one H200**", "h200_2026-12-04b_*"),
        ("**A twenty-first session, on one H200**", "h200_2026-12-04c_*"),
        ("**A twenty-second session, on one H200**", "h200_2026-12-04d_*"),
        ("**A twenty-third session, on one H200**", "h200_2026-12-04e_*"),
        ("**A twenty-fourth session, on one H200**", "h200_2026-12-04f_*"),
        ("**A twenty-fifth session, on one H200**", "h200_2026-12-05_*"),
        ("**A twenty-sixth session, on one H200**", "h200_2026-12-05b_*"),
        ("**A twenty-seventh session, on one H200**", "h200_2026-12-06_*"),
        ("**A twenty-eighth session, on one H200**", "h200_2026-12-06b_*"),
        ("**A twenty-ninth session, on one H200**", "h200_2026-12-06c_*"),
        ("**A session on one H100**", "h100_2026-12-05_*"),
        ("**A second session on one H100**", "h100_2026-12-05b_*"),
        ("**A third session on one H100**", "h100_2026-12-05c_*"),
        ("**A fourth session on one H100**", "h100_2026-12-06_*"),
        ("**A fifth session on one H100**", "h100_2026-12-06b_*"),
        ("**A sixth session on one H100**", "h100_2026-12-06c_*"),
        ("**A seventh session on one H100**", "h100_2026-12-06d_*"),
        ("**An eighth session on one H100**", "h100_2026-12-06e_*"),
        ("**A ninth session on one H100**", "h100_2026-12-07_*"),
        ("**A tenth session on one H100**", "h100_2026-12-07b_*"),
        ("**An eleventh session on one H100**", "h100_2026-12-07c_*"),
    ):
        later = text[text.index(start) :].split("\n\n")[0]
        later = re.sub(r"`[^`]*`|H[12]00|OLMo-\d+B|Qwen1\.5-32B", "", later)
        known = "".join(p.read_text() for p in sorted(data.glob(files)))
        known_numbers = set(re.findall(r"\d+(?:\.\d+)?", known))
        quoted = re.findall(r"\d+(?:\.\d+)?", later)
        assert len(quoted) > 8, start
        assert [q for q in quoted if q not in known_numbers] == [], start
