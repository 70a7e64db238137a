"""A line in the job's log while a long step runs, saying what it is doing and for how long,
so that a trial of many minutes (a classical task's 1,024 requests served one at a time, a
served replay, a probe of a large batch) does not leave the log silent until it ends.

A :class:`Heartbeat` is a daemon thread that wakes every ``every_s`` seconds (a minute by
default) and logs one line; a step shorter than that logs nothing. The measuring code names
its phase (:func:`phase`) as it goes: warm-up, prefill window, window, replay."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType

HEARTBEAT_S = 60.0

_current: Heartbeat | None = None


def phase(name: str) -> None:
    """Name what the step now running is doing (nothing happens where no heartbeat runs)."""
    beat = _current
    if beat is not None:
        beat.phase = name


class Heartbeat:
    """Logs ``what``, the phase and the minutes since it started every ``every_s`` seconds
    (:data:`HEARTBEAT_S` by default) until the ``with`` block ends; with ``expected``, also
    what says how long the step takes ("the point's trials took up to 350 s in this run").
    One heartbeat runs at a time: the innermost is the one :func:`phase` names."""

    def __init__(
        self,
        log: Callable[[str], None],
        what: str,
        expected: str | None = None,
        every_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log, self.what, self.expected = log, what, expected
        self.every_s = HEARTBEAT_S if every_s is None else every_s
        self.clock = clock
        self.phase = ""
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self._outer: Heartbeat | None = None
        self._started = 0.0

    def __enter__(self) -> Heartbeat:
        global _current
        self._outer, _current = _current, self
        self._started = self.clock()
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _current
        self._done.set()
        self._thread.join()
        _current = self._outer

    def line(self) -> str:
        """What the next beat logs."""
        minutes = (self.clock() - self._started) / 60
        doing = f", {self.phase}" if self.phase else ""
        line = f"... still at {self.what}{doing}: {minutes:.1f} min so far"
        if self.expected:
            line += f" ({self.expected})"
        return line

    def _beat(self) -> None:
        while not self._done.wait(self.every_s):
            self.log(self.line())
