"""What the commands share: the log, reading plans and configurations, writing tables."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_energy.errors import LlmEnergyError

if TYPE_CHECKING:
    import pandas as pd

    from llm_energy.inputs.prompts import TraceLengths
    from llm_energy.measure.job import JobPlan


def log(msg: str) -> None:
    """One line of the command's output, flushed at once (a job's log is read as it runs)."""
    print(msg, flush=True)


def read_plan(path: Path) -> JobPlan:
    from llm_energy.measure.job import JobPlan

    try:
        return JobPlan.from_json(path.read_text())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LlmEnergyError(f"cannot read plan {path}: {exc}") from exc


def load_configs(config_files: list[str]) -> dict:
    from llm_energy.config import load_config

    return load_config(*config_files)


def write_csv(table, out: str) -> None:
    from llm_energy.measure.store import write_csv_atomic

    write_csv_atomic(table, out, float_format="%.10g")


def pairs(items: list[str] | None, flag: str) -> dict[str, str]:
    """``NAME=VALUE`` arguments of ``flag`` as a dict."""
    found = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise LlmEnergyError(f"{flag} takes NAME=VALUE, not {item!r}")
        found[name] = value
    return found


def stream_lengths(args: argparse.Namespace) -> TraceLengths:
    """The prepared lengths that request streams draw from (``--traces``, ``--task-lengths``),
    for the estimate of a stream with no measured time per request."""
    from llm_energy.inputs.prompts import TraceLengths

    return TraceLengths(Path(args.traces), Path(args.task_lengths))


def read_table(path: Path | str, **options: Any) -> pd.DataFrame:
    """A table given to a command: :func:`llm_energy.measure.store.read_table`, which names a
    file that is missing or cannot be read in one message."""
    from llm_energy.measure.store import read_table as read

    return read(path, **options)
