"""Energy meters. ``make_meter`` picks one by name and imports only what it needs.

Each meter is one module of this package, found by the ``NAME`` it declares (its name in a
configuration's ``meter``), with ``EXTRA``, the pip extra that installs its library (None where
it needs none), ``REQUIRES``, the importable top-level modules it needs, ``create(device,
gpu_uuids, gpu_count, codecarbon)``, and optionally ``check_device(device)``, which refuses a
device it cannot measure, and ``READS_ENERGY = False`` for a meter of time alone, which
cross-checks nothing. Its library is imported only when the meter is built.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from llm_energy.errors import ConfigError, MissingExtraError
from llm_energy.meters.base import EnergyMeter, Measurement


def _meter_modules() -> dict[str, ModuleType]:
    """Every module of this package that declares a meter, by the meter's name."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "NAME"):
            found[module.NAME] = module
    return found


_MODULES = _meter_modules()
METERS = tuple(sorted(_MODULES))
EXTRAS = {name: m.EXTRA for name, m in _MODULES.items() if m.EXTRA}
REQUIRES: dict[str, tuple[str, ...]] = {
    name: tuple(m.REQUIRES) for name, m in _MODULES.items() if m.REQUIRES
}

# The meters that read energy, which may cross-check the meter of record.
ENERGY_METERS = tuple(n for n in METERS if getattr(_MODULES[n], "READS_ENERGY", True))

__all__ = ["ENERGY_METERS", "METERS", "EnergyMeter", "Measurement", "make_meter", "require_meter"]


def _importable(module: str) -> bool:
    if sys.modules.get(module) is not None:  # already imported (or a stand-in put there)
        return True
    return importlib.util.find_spec(module) is not None


def require_meter(name: str) -> None:
    """Stop with one line naming the extra to install when meter ``name`` cannot run here."""
    missing = [m for m in REQUIRES.get(name, ()) if not _importable(m)]
    if missing:
        raise MissingExtraError(
            f"meter '{name}' needs {', '.join(missing)}: not installed in this environment "
            f"(pip install 'llm-energy[{EXTRAS[name]}]')"
        )


def make_meter(
    name: str,
    device: str,
    gpu_uuids: Sequence[str] | None = None,
    gpu_count: int = 1,
    codecarbon: dict[str, Any] | None = None,
) -> EnergyMeter:
    """Build the meter called ``name`` for a job on ``device`` using the given GPUs."""
    module = _MODULES.get(name)
    if module is None:
        raise ConfigError(f"unknown meter '{name}' (known: {', '.join(METERS)})")
    check = getattr(module, "check_device", None)
    if check is not None:
        check(device)
    require_meter(name)
    return module.create(device, gpu_uuids, gpu_count, codecarbon or {})
