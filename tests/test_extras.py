"""A backend or meter whose pip extra is missing stops with one line naming the extra."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from llm_energy import backends, meters
from llm_energy.errors import MissingExtraError
from llm_energy.meters import make_meter, require_meter

REAL_FIND_SPEC = importlib.util.find_spec


def _without(monkeypatch: pytest.MonkeyPatch, *absent: str) -> None:
    """This environment as if ``absent`` were not installed."""

    def find_spec(name: str, package: str | None = None):
        if name.split(".")[0] in absent:
            return None
        return REAL_FIND_SPEC(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    for name in absent:
        monkeypatch.delitem(sys.modules, name, raising=False)


@pytest.mark.parametrize(
    ("backend", "absent", "extra"),
    [("transformers", "torch", "transformers"), ("vllm", "vllm", "vllm")],
)
def test_a_backend_without_its_extra_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, backend: str, absent: str, extra: str
) -> None:
    _without(monkeypatch, absent)
    assert backends.missing_modules(backend) == [absent]
    with pytest.raises(MissingExtraError) as err:
        backends.require(backend, engine="eng")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"engine 'eng' uses backend '{backend}', which needs {absent}:")
    assert f"pip install 'llm-energy[{extra}]'" in message


def test_a_backend_with_its_modules_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: object())
    assert backends.missing_modules("transformers") == []
    backends.require("transformers")


def test_every_folder_of_the_backends_package_is_a_backend_that_declares_what_it_needs() -> None:
    """A backend is found by its folder's name: nothing else lists it."""
    from pathlib import Path

    folders = Path(backends.__file__).parent.iterdir()
    found = tuple(sorted(p.name for p in folders if (p / "__init__.py").is_file()))
    assert found == backends.BACKENDS
    assert {"transformers", "vllm", "vllm_server"} <= set(backends.BACKENDS)
    for name in backends.BACKENDS:
        module = backends.backend_module(name)
        assert module.REQUIRES and module.INSTALL and callable(module.create)


@pytest.mark.parametrize(("meter", "module"), [("nvml", "pynvml"), ("codecarbon", "codecarbon")])
def test_a_meter_without_its_extra_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, meter: str, module: str
) -> None:
    _without(monkeypatch, module)
    expected = (
        f"meter '{meter}' needs {module}: not installed in this environment "
        f"(pip install 'llm-energy[{meter}]')"
    )
    with pytest.raises(MissingExtraError) as err:
        require_meter(meter)
    assert str(err.value) == expected
    with pytest.raises(MissingExtraError) as err:
        make_meter(meter, "cuda")  # stops before importing the meter's module
    assert str(err.value) == expected


def test_every_meter_with_a_library_declares_its_extra() -> None:
    assert set(meters.REQUIRES) == set(meters.EXTRAS) == set(meters.METERS) - {"none"}


def test_the_null_meter_needs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: None)
    require_meter("none")
    assert make_meter("none", "cpu").name == "none"


def test_a_meter_already_imported_counts_as_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: None)
    monkeypatch.setitem(sys.modules, "pynvml", object())  # as the tests' stand-in NVML
    require_meter("nvml")
