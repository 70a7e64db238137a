"""A copy of the pipeline in a scratch folder, for tests that run Snakemake end to end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ("Snakefile", "workflow", "config", "envs", "resources", "src", "profiles")


def copy_pipeline(dest: Path) -> Path:
    for name in PIPELINE:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def run_snakemake(
    workdir: Path, *args: str, timeout: int = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Snakemake of this environment on a pipeline copy, with its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def measure_command(plan_file: Path, out: Path, journal: Path) -> tuple[list[str], dict[str, str]]:
    """``llm-energy measure`` of one job plan, and the environment that finds this package."""
    cmd = [sys.executable, "-m", "llm_energy", "measure", "--plan", str(plan_file)]
    cmd += ["--out", str(out), "--journal", str(journal)]
    return cmd, {**os.environ, "PYTHONPATH": str(ROOT / "src")}
