"""Typed errors. Each carries one message meant to be read by a person."""


def first_line(exc: BaseException) -> str:
    """An exception's first line, or its type when it says nothing."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class LlmEnergyError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(LlmEnergyError):
    """The configuration is invalid: an unknown key, a wrong type or an impossible combination."""


class MeterError(LlmEnergyError):
    """An energy meter could not start or read."""


class MeterUnavailableError(MeterError):
    """The requested meter cannot work on this machine (no NVML, no GPU, missing package)."""


class BackendError(LlmEnergyError):
    """A backend could not load a model or run generation."""


class MissingExtraError(LlmEnergyError):
    """A backend or meter needs a package that this environment lacks; names the extra."""


class InputError(LlmEnergyError):
    """Input data (a dataset, a trace, a plan file) is malformed."""


class StoreError(LlmEnergyError):
    """A result or journal file could not be written (a full disk, a lost mount)."""


class DeviceUnusableError(LlmEnergyError):
    """The GPU takes no more work in this process: a CUDA error that CUDA keeps (an illegal
    memory access, a device-side assert), a second one in a row, or a failed recovery.
    ``row`` is the failed trial's row, for the journal."""

    def __init__(self, message: str, row: dict | None = None) -> None:
        super().__init__(message)
        self.row = row
