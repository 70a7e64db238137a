"""Combine the per-job tables into one tidy measurements table."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from llm_energy.errors import InputError

if TYPE_CHECKING:
    from llm_energy.families.base import Rows
from llm_energy.measure import health
from llm_energy.measure.columns import REQUIRED_COLUMNS
from llm_energy.measure.store import read_table, write_csv_atomic, write_parquet_atomic


def combine(paths: Iterable[Path]) -> pd.DataFrame:
    frames = []
    for path in paths:
        df = read_table(path)
        missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
        if missing and len(df):
            raise InputError(f"{path}: not a measurement table (missing {', '.join(missing)})")
        frames.append(df)
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(REQUIRED_COLUMNS))
    table = pd.concat(frames, ignore_index=True)
    if "gpu_health" in table.columns:
        # Beside tables measured since, those measured before the GPU was watched read unknown.
        table = health.complete(table)
    table = _say_before_trials(table)
    return table.sort_values(
        ["group", "decoding", "input_tokens", "output_tokens", "batch_size"], kind="stable"
    ).reset_index(drop=True)


def measured(table: pd.DataFrame) -> pd.Series:
    """Which rows hold a measurement: feasible, with at least one repetition."""
    return table["feasible"].astype(bool) & (table["repetitions"].fillna(0) > 0)


BEFORE_TRIALS = "measured before the trial protocol: one window, no trials, no interval"


def _say_before_trials(table: pd.DataFrame) -> pd.DataFrame:
    """Beside rows measured in trials, those measured before the trial protocol say so in
    ``protocol_note`` (their ``protocol_met`` stays empty: no protocol was asked of them, and
    their missing interval keeps them out of every verdict). A table without trials at all is
    left as it is."""
    if "trials" not in table:
        return table
    before = measured(table) & table["trials"].isna()
    if not before.any():
        return table
    table = table.copy()
    note = table["protocol_note"] if "protocol_note" in table else pd.Series("", table.index)
    table["protocol_note"] = note.astype(object).where(~before, BEFORE_TRIALS)
    return table


def write(table: pd.DataFrame, parquet: Path, csv: Path | None = None) -> None:
    write_parquet_atomic(table, Path(parquet))
    if csv is not None:
        write_csv_atomic(table, csv)


def shipped_experiments(paths: Iterable[str | Path], hardware: str) -> set[tuple[str, str]]:
    """(backend, experiment tag) of every row of ``hardware`` in the shipped tables."""
    found: set[tuple[str, str]] = set()
    for path in paths:
        df = pd.read_parquet(path, columns=["hardware", "backend", "experiments"])
        df = df[df["hardware"] == hardware]
        for backend, tags in (
            df[["backend", "experiments"]].drop_duplicates().itertuples(index=False)
        ):
            found.update((backend, t) for t in str(tags).split("+") if t)
    return found


def _shipped_configs(
    config_dir: Path, measurements_dir: Path
) -> Iterator[tuple[str, dict[str, Any], list[Path]]]:
    """(path relative to the checkout, configuration, shipped tables) of each configuration
    file in ``config_dir`` whose hardware label has shipped tables in ``measurements_dir``."""
    for path in sorted(Path(config_dir).glob("*.yaml")):
        config = yaml.safe_load(path.read_text()) or {}
        label = config.get("hardware")
        if not label:
            continue
        tables = sorted((Path(measurements_dir) / str(label)).glob("*.parquet"))
        if tables:
            yield f"{path.parent.name}/{path.name}", config, tables


def _own_first(found: list[tuple[str, dict[str, Any]]], first: str | None) -> list[str]:
    """The names of ``found`` (name, configuration) with hardware label ``first`` first."""
    return [name for name, config in sorted(found, key=lambda f: (f[1]["hardware"] != first, f[0]))]


def _enables(config: dict[str, Any], family: str) -> bool:
    return bool(((config.get("experiments") or {}).get(family) or {}).get("enabled"))


def configs_shipping(
    rows: Rows, config_dir: Path, measurements_dir: Path, first: str | None = None
) -> list[str]:
    """The configuration files that enable one of the families of ``rows`` (any, where the
    rows are of any family) and whose shipped tables hold rows that it wants; those of hardware
    label ``first`` (the asking configuration's) first, so that a configuration that does not
    plan a figure is sent to one of its own hardware that draws it from the same tables."""
    return _own_first(
        [
            (name, config)
            for name, config, tables in _shipped_configs(config_dir, measurements_dir)
            if (not rows.tags or any(_enables(config, family) for family in rows.families))
            and rows.found_in(shipped_experiments(tables, config["hardware"]))
        ],
        first,
    )


def configs_enabling(
    family: str, config_dir: Path, measurements_dir: Path, first: str | None = None
) -> list[str]:
    """The configuration files with shipped tables that enable ``family``, those of hardware
    label ``first`` first."""
    return _own_first(
        [
            (name, config)
            for name, config, _ in _shipped_configs(config_dir, measurements_dir)
            if _enables(config, family)
        ],
        first,
    )
