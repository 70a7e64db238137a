"""Shared fixtures. Tests run on the CPU with the tiny random-weight model in resources/."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

TINY_MODEL = ROOT / "resources" / "models" / "tiny-llama" / "config.json"


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def tiny_config() -> dict:
    """A minimal valid config measuring the tiny model on the CPU with time only."""
    return {
        "hardware": "cpu",
        "device": "cpu",
        "dtype": "float32",
        "meter": {"primary": "none"},
        "protocol": {
            "min_duration_s": 0.0,
            "min_repetitions": 2,
            "warmup_repetitions": 1,
            "idle_duration_s": 0.0,
        },
        "models": {
            "tiny": {"hub_id": "local/tiny", "weights": "random", "config": str(TINY_MODEL)}
        },
        "engines": {"pytorch": {"backend": "transformers"}},
        "experiments": {
            "controlled_sweeps": {
                "enabled": True,
                "models": ["tiny"],
                "engines": ["pytorch"],
                "batch_sizes": [1, 2],
                "input_sweep": {"input_tokens": [8, 16], "output_tokens": [4]},
                "output_sweep": {"output_tokens": [4, 8], "input_tokens": [8]},
            }
        },
    }
