"""Which rows a figure draws, and which shipped configurations hold them."""

from __future__ import annotations

import pandas as pd

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
    (configs / "a.yaml").write_text("hardware: gpu-a\n")
    (configs / "b.yaml").write_text("hardware: gpu-b\n")
    (configs / "c.yaml").write_text("hardware: gpu-c\n")  # nothing shipped
    (configs / "empty.yaml").write_text("")
    _table(shipped / "gpu-a" / "x.parquet", "gpu-a", "transformers", "classical_tasks")
    _table(shipped / "gpu-b" / "y.parquet", "gpu-b", "vllm", "tensor_parallel+classical_tasks")
    # A table under one label holding another label's rows does not count for it.
    _table(shipped / "gpu-c" / "z.parquet", "gpu-b", "vllm", "classical_tasks")

    assert configs_shipping(TASKS_VLLM, configs, shipped) == ["config/b.yaml"]
    any_backend = Rows(("classical_tasks",), ("classical_tasks",))
    assert configs_shipping(any_backend, configs, shipped) == ["config/a.yaml", "config/b.yaml"]
    assert configs_shipping(DECODING, configs, shipped) == []
    # The asking configuration's own label is left out, whatever its file is called.
    assert configs_shipping(any_backend, configs, shipped, "gpu-a") == ["config/b.yaml"]
