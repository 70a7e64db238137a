"""Shared fixtures. Tests run on the CPU with the tiny random-weight model in resources/."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

TINY_MODEL = ROOT / "resources" / "models" / "tiny-llama" / "config.json"

# The data mirror beside the checkout: texts, tokenizers, traces and model configs.
MIRROR = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="module")
def vllm_python() -> str:
    """The interpreter of the vLLM environment (make test builds .venv-vllm and names it)."""
    python = os.environ.get("LLM_ENERGY_VLLM_PYTHON", str(ROOT / ".venv-vllm" / "bin" / "python"))
    if not Path(python).exists():
        if os.environ.get("LLM_ENERGY_REQUIRE_VLLM"):
            pytest.fail(f"no vLLM environment at {python} (make test builds it)")
        pytest.skip(f"no vLLM environment at {python}; run the suite with make test")
    return str(Path(python).absolute())


def require_mirror(*paths: str) -> Path:
    """The data mirror, once each of ``paths`` (relative to it) exists. Otherwise the test is
    skipped, or fails when LLM_ENERGY_REQUIRE_SHARED=1 (as in CI)."""
    missing = [MIRROR / p for p in paths or (".",) if not (MIRROR / p).exists()]
    if missing:
        what = ", ".join(str(p) for p in missing)
        if os.environ.get("LLM_ENERGY_REQUIRE_SHARED") == "1":
            pytest.fail(
                f"the data mirror is required (LLM_ENERGY_REQUIRE_SHARED=1): no {what}",
                pytrace=False,
            )
        pytest.skip(f"no data mirror: {what}")
    return MIRROR


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "mirror(*paths): the test reads these paths of the data mirror (require_mirror)"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("mirror"):
        require_mirror(*marker.args)


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
            # One trial a point and no control point: tests of those ask for them. A control
            # point's window is its point's own.
            "min_trials": 1,
            "control_point": False,
            "control_min_duration_s": 0.0,
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
