"""Which rows a figure draws, and which shipped configurations hold them."""

from __future__ import annotations

import pandas as pd
import pytest

from llm_energy.analysis import aggregate
from llm_energy.analysis.aggregate import configs_shipping
from llm_energy.families import Rows

TASKS_VLLM = Rows(("classical_tasks",), ("classical_tasks",), "vllm")
DECODING = Rows(("decoding_strategies", "speculative_decoding"), ("decoding", "speculative"))


def test_draws_matches_tags_and_backend():
    assert TASKS_VLLM.found_in({("vllm", "classical_tasks")})
    assert not TASKS_VLLM.found_in({("transformers", "classical_tasks"), ("vllm", "decoding")})
    assert DECODING.found_in({("transformers", "speculative")})
    assert not DECODING.found_in(set())
    assert str(TASKS_VLLM) == "experiments.classical_tasks on vllm"
    assert str(DECODING) == "experiments.decoding_strategies or experiments.speculative_decoding"


def _table(path, hardware, backend, experiments):
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(
        {"hardware": [hardware], "backend": [backend], "experiments": [experiments]}
    )
    frame.to_parquet(path)


def test_configs_shipping_reads_each_configs_hardware_label(tmp_path):
    configs, shipped = tmp_path / "config", tmp_path / "measurements"
    configs.mkdir()
    tasks = "experiments:\n  classical_tasks:\n    enabled: true\n"
    (configs / "a.yaml").write_text(f"hardware: gpu-a\n{tasks}")
    (configs / "b.yaml").write_text(f"hardware: gpu-b\n{tasks}")
    (configs / "c.yaml").write_text(f"hardware: gpu-c\n{tasks}")  # nothing shipped
    # Its label's tables hold the rows, but it does not plan them.
    (configs / "b_other.yaml").write_text("hardware: gpu-b\n")
    (configs / "empty.yaml").write_text("")
    _table(shipped / "gpu-a" / "x.parquet", "gpu-a", "transformers", "classical_tasks")
    _table(shipped / "gpu-b" / "y.parquet", "gpu-b", "vllm", "tensor_parallel+classical_tasks")
    # A table under one label holding another label's rows does not count for it.
    _table(shipped / "gpu-c" / "z.parquet", "gpu-b", "vllm", "classical_tasks")

    assert configs_shipping(TASKS_VLLM, configs, shipped) == ["config/b.yaml"]
    any_backend = Rows(("classical_tasks",), ("classical_tasks",))
    assert configs_shipping(any_backend, configs, shipped) == ["config/a.yaml", "config/b.yaml"]
    assert configs_shipping(DECODING, configs, shipped) == []
    # The asking configuration's own label comes first, whatever its files are called.
    assert configs_shipping(any_backend, configs, shipped, "gpu-b") == [
        "config/b.yaml",
        "config/a.yaml",
    ]
    # Rows of any family are found through every configuration whose tables hold them.
    every = Rows(("any family",), ())
    assert configs_shipping(every, configs, shipped) == [
        "config/a.yaml",
        "config/b.yaml",
        "config/b_other.yaml",
    ]


def test_rows_measured_before_the_trial_protocol_say_so(tmp_path):
    """The aggregate notes rows without trials as measured before the protocol, leaving their
    protocol_met empty; trial rows and infeasible rows keep their own."""
    from test_figures import _row

    from llm_energy.analysis.aggregate import BEFORE_TRIALS

    old = _row(1, 16, 8, "input_sweep")
    rows = {
        "before": old,
        "trial": {**_row(8, 16, 8, "input_sweep"), "trials": 3.0, "protocol_met": True},
        "infeasible": {**_row(64, 16, 8, "input_sweep"), "feasible": False, "repetitions": 0},
    }
    paths = []
    for name, row in rows.items():
        paths.append(tmp_path / f"{name}.parquet")
        pd.DataFrame([row]).to_parquet(paths[-1], index=False)
    table = aggregate.combine(paths).set_index("batch_size")
    assert table.loc[1, "protocol_note"] == BEFORE_TRIALS
    assert pd.isna(table.loc[1, "protocol_met"])
    assert table.loc[[8, 64], "protocol_note"].fillna("").eq("").all()


@pytest.mark.parametrize(
    "command",
    [
        ["aggregate", "--out", "{tmp}/all.parquet", "{table}"],
        ["figure", "fig2", "--measurements", "{table}", "--out", "{tmp}/fig.png"],
        [
            *["claims", "--measurements", "{table}", "--hardware", "h"],
            *["--out", "{tmp}/c.csv", "--markdown", "{tmp}/c.md"],
        ],
    ],
)
def test_a_table_that_cannot_be_read_is_one_message_naming_it(command, tmp_path, capsys):
    """A corrupt or missing table given to a command stops it with one line naming the file."""
    from llm_energy.cli import main

    table = tmp_path / "broken.parquet"
    table.write_text("not parquet")
    argv = [a.format(tmp=tmp_path, table=table) for a in command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"llm-energy: error: {table}: cannot read it as a table (")
    assert err.count("\n") == 1
    table.unlink()
    assert main(argv) == 2
    assert f"{table}: no such table" in capsys.readouterr().err
