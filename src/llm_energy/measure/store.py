"""Atomic file writes and the per-job resume journal.

Every finished point is written to the journal at once, as its own file, by write-then-rename,
so a job killed at any moment leaves only whole rows behind. A rerun reads the journal, skips
the points it holds and measures the rest. The job's table is assembled from the journal at
the end, also atomically.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from llm_energy.errors import InputError, StoreError, first_line


def read_table(path: Path | str, **options: Any) -> pd.DataFrame:
    """A Parquet table (a CSV one where the name ends in .csv); one that is missing or cannot
    be read is an :class:`~llm_energy.errors.InputError` naming it, not a reader's traceback.
    ``options`` go to the reader (``columns``, ``dtype``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such table")
    try:
        if path.suffix == ".csv":
            return pd.read_csv(path, **options)
        return pd.read_parquet(path, **options)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{path}: cannot read it as a table ({first_line(exc)})") from exc


def write_atomic(path: Path | str, write: Callable[[str], object]) -> None:
    """Call ``write`` on a temporary file beside ``path``, then rename it into place, so that
    readers see the old file or the whole new one, never a partial one."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(tmp)
        # mkstemp makes the file private; give it the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        _sync(tmp)
        os.replace(tmp, path)
        # The rename too, so that a node that fails next keeps the entry; some network file
        # systems cannot sync a folder, and their rename is already on the server.
        with contextlib.suppress(OSError):
            _sync(path.parent)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            # A full disk or a lost mount: one line naming the path; what was written stays.
            raise StoreError(f"{path}: cannot write ({exc.strerror or exc})") from exc
        raise


def _sync(path: Path | str) -> None:
    """Flush a file's data, or a folder's entries, to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_parquet_atomic(df: pd.DataFrame, path: Path | str) -> None:
    write_atomic(path, lambda tmp: df.to_parquet(tmp, index=False))


def write_csv_atomic(df: pd.DataFrame, path: Path | str, float_format: str | None = None) -> None:
    write_atomic(path, lambda tmp: df.to_csv(tmp, index=False, float_format=float_format))


class Journal:
    """One Parquet file per finished point, named by point id, in ``directory``; the version of
    the id function that named them is in ``journal.json`` (a journal without one holds
    version 1 ids: see :mod:`llm_energy.measure.point_ids`)."""

    MARKER = "journal.json"

    def __init__(
        self,
        directory: Path,
        new_version: int | None = None,
        log: Callable[[str], object] = print,
    ) -> None:
        """Open the journal in ``directory``; a new one is marked ``new_version`` (the current
        id version by default)."""
        from llm_energy.measure.point_ids import CURRENT_VERSION, VERSIONS

        self.log = log
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        marker = self.directory / self.MARKER
        if marker.is_file():
            self.version = int(json.loads(marker.read_text())["point_id_version"])
        elif any(self.directory.glob("*.parquet")):
            self.version = 1
        else:
            self.version = new_version or CURRENT_VERSION
            write_atomic(
                marker,
                lambda tmp: Path(tmp).write_text(
                    json.dumps({"point_id_version": self.version}) + "\n"
                ),
            )
        if self.version not in VERSIONS:
            raise ValueError(
                f"{marker}: point id version {self.version} is not one this release knows "
                f"({VERSIONS})"
            )

    @classmethod
    def existing(cls, directory: Path | None) -> Journal | None:
        """The journal in ``directory``, or None where none was written there (opening one
        writes its marker, so a look that must write nothing asks here first)."""
        if directory is None:
            return None
        directory = Path(directory)
        if (directory / cls.MARKER).is_file() or any(directory.glob("*.parquet")):
            return cls(directory)
        return None

    def _path(self, point_id: str) -> Path:
        return self.directory / f"{point_id}.parquet"

    def _trial_path(self, point_id: str, trial: int) -> Path:
        return self.directory / f"{point_id}.t{trial}.parquet"

    def has(self, point_id: str) -> bool:
        """Whether the point has at least one trial (a row written before trials existed, or
        copied from a shipped table, counts as its first)."""
        return self._path(point_id).is_file() or any(self.directory.glob(f"{point_id}.t*.parquet"))

    def record(self, point_id: str, row: dict) -> None:
        """A row measured elsewhere (a shipped table): the point's first trial."""
        write_parquet_atomic(pd.DataFrame([row]), self._path(point_id))

    def record_trial(self, point_id: str, trial: int, row: dict) -> None:
        write_parquet_atomic(pd.DataFrame([row]), self._trial_path(point_id, trial))

    def record_control(self, run_started: str, edge: str, point_id: str, row: dict) -> None:
        """A measurement of the job's control point at one edge (start, end) of a run."""
        entry = {**row, "run_started": run_started, "edge": edge, "point_id": point_id}
        name = f"control.{run_started.replace(':', '')}.{edge}.parquet"
        write_parquet_atomic(pd.DataFrame([entry]), self.directory / name)

    def record_run(self, run: dict[str, Any]) -> None:
        """One run of the job (a process of ``llm-energy measure``), filed by when it started
        (``started_utc``): written when it starts and again, with when and how it ended, when
        it ends; a run killed outright keeps its start alone."""
        text = json.dumps(run) + "\n"
        path = self.directory / f"run.{str(run['started_utc']).replace(':', '')}.json"
        write_atomic(path, lambda tmp: Path(tmp).write_text(text))

    def runs(self) -> list[dict[str, Any]]:
        """Every run of the job, oldest first."""
        runs = []
        for path in sorted(self.directory.glob("run.*.json")):
            try:
                runs.append(json.loads(path.read_text()))
            except (OSError, ValueError) as exc:  # damaged, as in trials(): said, left out
                self.log(f"journal: {path.name} cannot be read ({exc}); left out")
        return runs

    def controls(self) -> pd.DataFrame:
        """Every control measurement of the job's runs."""
        frames = []
        for path in sorted(self.directory.glob("control.*.parquet")):
            try:
                frames.append(pd.read_parquet(path))
            except Exception as exc:  # damaged, as in trials()
                self.log(f"journal: {path.name} cannot be read ({exc}); left out")
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def _numbered(self, point_id: str) -> dict[int, Path]:
        numbered = {}
        for path in self.directory.glob(f"{point_id}.t*.parquet"):
            number = path.name[len(point_id) + 2 : -len(".parquet")]
            if number.isdigit():
                numbered[int(number)] = path
        return numbered

    def set_aside(self, point_id: str, folder: str) -> Path:
        """Move the point's entries (its trials, and a row written before trials existed) to
        ``other_sessions/<folder>/`` of the journal, kept there, out of the point's trials: its
        next trial is its first again. Returns that folder."""
        aside = self.directory / "other_sessions" / folder
        aside.mkdir(parents=True, exist_ok=True)
        entries = [*self._numbered(point_id).values()]
        if self._path(point_id).is_file():
            entries.append(self._path(point_id))
        for path in entries:
            target = aside / path.name
            n = 1
            while target.exists():
                n += 1
                target = aside / f"{path.name}.{n}"
            path.rename(target)
        return aside

    def set_aside_trials(self, point_id: str) -> list[dict]:
        """The point's trials that :meth:`set_aside` moved out of its trials, every session's."""
        trials = []
        for path in sorted((self.directory / "other_sessions").glob(f"*/{point_id}.t*.parquet")):
            try:
                trials.append(pd.read_parquet(path).iloc[0].to_dict())
            except Exception as exc:  # damaged, as in trials(): said, left out
                self.log(f"journal: {path} cannot be read ({exc}); left out")
        return trials

    def next_trial(self, point_id: str) -> int:
        """The number the point's next trial is filed under (after every file, damaged ones
        moved aside included, so that none is overwritten)."""
        numbers = list(self._numbered(point_id))
        aside = self.directory.glob(f"{point_id}.t*.parquet.damaged*")
        numbers += [int(p.name.split(".t")[-1].split(".")[0]) for p in aside]
        first = 1 if not self._path(point_id).is_file() else 2
        return max([first - 1, *numbers]) + 1

    def trials(self, point_id: str) -> list[dict]:
        """The point's trials so far, in the order they were measured. An entry that cannot
        be read (cut short by a full disk, a network file system or a copy) is moved aside,
        kept under ``.damaged``, and said in the log; its trial is measured again."""
        numbered = self._numbered(point_id)
        paths = [self._path(point_id)] if self._path(point_id).is_file() else []
        paths += [numbered[k] for k in sorted(numbered)]
        rows = []
        for path in paths:
            try:
                rows.append(pd.read_parquet(path).iloc[0].to_dict())
            except Exception as exc:  # pyarrow's errors, an empty table: the file is damaged
                aside = path.with_name(path.name + ".damaged")
                n = 1
                while aside.exists():
                    n += 1
                    aside = path.with_name(f"{path.name}.damaged{n}")
                path.rename(aside)
                self.log(
                    f"journal: {path.name} cannot be read ({exc}); moved aside to "
                    f"{aside.name}, its trial is measured again"
                )
        return rows
