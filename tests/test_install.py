"""``pip install .`` gives a package that finds its own files (schema, hardware table) from any
folder, without the checkout's ``src/`` on the path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.integration


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built offline (no deps, no build isolation) and installed into a folder."""
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "source"  # a copy, so that the build leaves nothing in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "src",
        source / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    wheels = tmp / "wheel"
    build = _run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), "."], cwd=source
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = wheels.glob("llm_energy-*.whl")
    target = tmp / "site"
    install = _run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)])
    assert install.returncode == 0, install.stdout + install.stderr
    return target


def _installed_python(target: Path, code_or_args: list[str], cwd: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(target)  # the installed copy only, never the checkout's src/
    return _run([sys.executable, *code_or_args], cwd=cwd, env=env)


def test_the_wheel_holds_the_package_data(installed: Path) -> None:
    package = installed / "llm_energy"
    assert (package / "config" / "schema.yaml").is_file()
    assert (package / "analysis" / "hardware.yaml").is_file()
    assert (package / "py.typed").is_file()


def test_the_installed_package_validates_a_config_from_another_folder(
    installed: Path, tmp_path: Path
) -> None:
    where = _installed_python(
        installed, ["-c", "import llm_energy; print(llm_energy.__file__)"], tmp_path
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).resolve().is_relative_to(installed.resolve())

    config = ROOT / "config" / "config.yaml"
    result = _installed_python(
        installed, ["-m", "llm_energy", "validate-config", str(config)], tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "config is valid" in result.stdout
