"""A family is one module (plus a caption per output): a made-up one, dropped into a copy of
the pipeline, is validated, planned, measured on the CPU and drawn, with nothing else changed."""

from __future__ import annotations

import textwrap

import pandas as pd
import pytest
import yaml
from _pipeline import copy_pipeline, run_snakemake

pytestmark = pytest.mark.integration

FAMILY = '''
"""A made-up family: energy against batch size at one short shape."""

from __future__ import annotations

import matplotlib.pyplot as plt

from llm_energy.families.base import Family, Rows, figure, shape_points

ROWS = Rows(("made_up",), ("made_up",))


def fig_made_up(df):
    rows = df[df["experiments"].str.contains("made_up")].sort_values("batch_size")
    fig, ax = plt.subplots()
    ax.plot(rows["batch_size"], rows["duration_s"], marker="o")
    ax.set_xlabel("batch size")
    ax.set_ylabel("time per batch (s)")
    return fig


class MadeUp(Family):
    name = "made_up"
    description = "A family made up for a test."
    schema = """
input_tokens: {type: integer, minimum: 1, description: Input length., default: 8}
output_tokens: {type: integer, minimum: 1, description: Output length., default: 2}
"""
    default_batch_sizes = (1, 2)
    tags = ("made_up",)
    outputs = (
        figure(
            "fig_made_up", "fig_made_up", "A made-up figure", "Made up", ROWS,
            "llm_energy.families.made_up:fig_made_up",
        ),
    )

    def points(self, exp, config):
        yield from shape_points("made_up", exp)
'''


def test_a_new_family_is_one_module(tmp_path):
    work = copy_pipeline(tmp_path)
    (work / "src/llm_energy/families/made_up.py").write_text(textwrap.dedent(FAMILY))
    (work / "workflow/report/fig_made_up.rst").write_text("Time per batch of a made-up family.\n")
    config = yaml.safe_load((work / "config/smoke.yaml").read_text())
    config["meter"] = {"primary": "none"}
    config["protocol"] = {
        "min_duration_s": 0.0,
        "min_repetitions": 2,
        "idle_duration_s": 0.0,
        "control_min_duration_s": 0.0,
    }
    config["experiments"] = {
        "made_up": {"enabled": True, "models": ["tiny-llama"], "engines": ["pytorch"]}
    }
    (work / "config/made_up.yaml").write_text(yaml.safe_dump(config))

    # Planned: its block is validated (an unknown key fails) and its points make a job.
    bad = {**config, "experiments": {"made_up": {**config["experiments"]["made_up"], "x": 1}}}
    (work / "config/bad.yaml").write_text(yaml.safe_dump(bad))
    result = run_snakemake(work, "-n", "--cores", "1", "--configfile", "config/bad.yaml")
    assert result.returncode != 0
    assert "unknown key 'experiments.made_up.x'" in result.stdout + result.stderr

    # Measured on the CPU and drawn, asked for by the figure's name.
    result = run_snakemake(
        work, "fig_made_up", "--cores", "1", "--configfile", "config/made_up.yaml"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figure = work / "results/figures/cpu/fig_made_up.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = pd.read_parquet(work / "results/aggregate/cpu/measurements.parquet")
    assert sorted(rows["batch_size"]) == [1, 2]
    assert set(rows["experiments"]) == {"made_up"}
    assert rows["feasible"].all() and rows["duration_s"].gt(0).all()
    # And the configuration's default target asks for it too, without measuring again.
    figure.unlink()
    dry = run_snakemake(work, "-n", "--cores", "1", "--configfile", "config/made_up.yaml")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "results/figures/cpu/fig_made_up.png" in dry.stdout
    assert "rule measure:" not in dry.stdout


def test_a_dry_run_stops_on_a_missing_model_config_naming_it(tmp_path):
    work = copy_pipeline(tmp_path)
    config = yaml.safe_load((work / "config/smoke.yaml").read_text())
    config["models"]["tiny-llama"]["config"] = "resources/models/gone/config.json"
    (work / "config/gone.yaml").write_text(yaml.safe_dump(config))
    result = run_snakemake(work, "-n", "--cores", "1", "--configfile", "config/gone.yaml")
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "model 'tiny-llama': no config.json at resources/models/gone/config.json" in message
