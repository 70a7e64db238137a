"""A server process the job owns: started on a free port, waited for until healthy, stopped
with every process it started.

The server runs in a process group of its own, so that stopping it reaches its engine and
worker processes too: SIGTERM to the group, then SIGKILL to what is left after a grace period.
It is stopped when the job ends, fails, or receives SIGTERM (``scancel``, Snakemake stopping
its jobs): the job's SIGTERM handler stops the group, then hands the signal on (to the
measuring job's stop, :mod:`llm_energy.measure.stop`, which exits 75; elsewhere the process
dies of it). If the job is killed outright, the kernel sends the server SIGTERM
(``PR_SET_PDEATHSIG``) and its output pipe closes. Its output goes into the job's log, line by
line, and its last lines are kept for the error of a server that does not become healthy or
dies.

Standard library only: the client and vLLM live elsewhere.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from llm_energy.errors import BackendError
from llm_energy.measure.host import proc_stats

Log = Callable[[str], None]

HOST = "127.0.0.1"
LOG_TAIL_LINES = 25
# vLLM's engine and workers need seconds to leave after SIGTERM; then they are killed. Below
# Slurm's default KillWait (30 s), so that the job still exits on its own after the server.
STOP_GRACE_S = 20.0
# After its engine has stopped, the HTTP server (uvicorn, under vLLM) waits for open connections
# to close, and says so in this line; those are the job's own client's, which cannot close them
# while the job stops the server (vLLM 0.26 on an H200 waited until it was killed). Once the line
# is seen, the server is given WAITING_FOR_CONNECTIONS_S more, then killed.
WAITING_FOR_CONNECTIONS = "Waiting for connections to close"
WAITING_FOR_CONNECTIONS_S = 2.0
# Attempts when the port is taken between choosing it and the server binding it.
START_ATTEMPTS = 3
PORT_IN_USE = ("address already in use", "errno 98", "eaddrinuse")
PR_SET_PDEATHSIG = 1


class ServerError(BackendError):
    """The server did not start, did not become healthy in time, or died."""


def port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_port(host: str = HOST) -> int:
    """A port that nothing listens on now (the system's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def choose_port(preferred: int | None, host: str = HOST) -> tuple[int, str]:
    """``preferred`` when it is free, else a free one; and a note when it was taken."""
    if preferred is None:
        return free_port(host), ""
    if port_is_free(preferred, host):
        return preferred, ""
    port = free_port(host)
    return port, f"port {preferred} is in use; the server takes port {port}"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """The kernel sends this process SIGTERM when the job that started it dies."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def group_pids(pgid: int) -> list[int]:
    """The processes of process group ``pgid`` still alive (not zombies), from /proc."""
    return sorted(pid for pid, f in proc_stats() if f[0] != "Z" and int(f[2]) == pgid)


class ServerProcess:
    """One server child. ``command(port)`` is its command line for a port; ``health_url(port)``
    the URL that answers 200 once it serves. Use as a context manager, or call ``start`` and
    ``stop``."""

    def __init__(
        self,
        command: Callable[[int], Sequence[str]],
        health_url: Callable[[int], str],
        *,
        env: dict[str, str] | None = None,
        health_timeout_s: float = 900.0,
        preferred_port: int | None = None,
        log: Log = print,
        name: str = "server",
        host: str = HOST,
        stop_grace_s: float = STOP_GRACE_S,
    ) -> None:
        self._command = command
        self._health_url = health_url
        self.env = env
        self.health_timeout_s = health_timeout_s
        self.preferred_port = preferred_port
        self.log = log
        self.name = name
        self.host = host
        self.stop_grace_s = stop_grace_s
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.pgid: int | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self._reader: threading.Thread | None = None
        self._previous: dict[int, Any] = {}
        self._waiting_for_connections_since: float | None = None

    def _say(self, message: str) -> None:
        # Also called from the signal handler, which may interrupt a write to the same log.
        with contextlib.suppress(RuntimeError, OSError, ValueError):
            self.log(message)

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the server and return once it is healthy; stop it and raise otherwise."""
        self._on_signals()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        preferred = self.preferred_port
        for attempt in range(1, START_ATTEMPTS + 1):
            port, note = choose_port(preferred, self.host)
            if note:
                self._say(f"{self.name}: {note}")
            try:
                self._spawn(port)
                self._wait_healthy()
                return
            except ServerError:
                taken = any(m in line.lower() for line in self.tail for m in PORT_IN_USE)
                if not taken or attempt == START_ATTEMPTS:
                    raise
                self._stop_group()
                self._say(
                    f"{self.name}: port {port} was taken before the server bound it; trying another"
                )
                preferred = None

    def _spawn(self, port: int) -> None:
        command = [str(c) for c in self._command(port)]
        self.port = port
        self.tail.clear()
        self._waiting_for_connections_since = None
        self._say(f"{self.name}: starting on {self.host}:{port}: {' '.join(command)}")
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        self.pgid = self.proc.pid
        self._reader = threading.Thread(target=self._read_output, daemon=True, name="server-log")
        self._reader.start()

    def _read_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.tail.append(line)
            self._say(f"{self.name}| {line}")
            if WAITING_FOR_CONNECTIONS in line and self._waiting_for_connections_since is None:
                self._waiting_for_connections_since = time.monotonic()

    def _wait_healthy(self) -> None:
        assert self.proc is not None and self.port is not None
        url = self._health_url(self.port)
        t0 = time.monotonic()
        next_note = 60.0
        while True:
            code = self.proc.poll()
            if code is not None:
                self._drain()
                raise ServerError(
                    f"{self.name} exited with status {code} before it was healthy; "
                    f"its last lines:\n{self.tail_text()}"
                )
            if _answers(url):
                self._say(
                    f"{self.name}: healthy after {time.monotonic() - t0:.1f} s ({url}, process "
                    f"group {self.pgid})"
                )
                return
            waited = time.monotonic() - t0
            if waited > self.health_timeout_s:
                raise ServerError(
                    f"{self.name} was not healthy after {self.health_timeout_s:g} s "
                    f"({url}); its last lines:\n{self.tail_text()}"
                )
            if waited > next_note:
                self._say(f"{self.name}: not healthy yet after {waited:.0f} s")
                next_note += 60.0
            time.sleep(0.5)

    def check_alive(self) -> None:
        """Raise, with the server's last lines, when it has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            self._drain()
            raise ServerError(
                f"{self.name} exited with status {self.proc.returncode} while serving; its "
                f"last lines:\n{self.tail_text()}"
            )

    def tail_text(self) -> str:
        return "\n".join(f"  {line}" for line in self.tail) or "  (no output)"

    def _drain(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5)

    def stop(self) -> None:
        """Stop the server's process group: SIGTERM, then SIGKILL after the grace period."""
        self._stop_group()
        self._restore_signals()

    def _stop_group(self) -> None:
        if self.pgid is None:
            return
        pgid, proc = self.pgid, self.proc
        self.pgid = None
        if group_pids(pgid) or (proc is not None and proc.poll() is None):
            self._say(f"{self.name}: stopping (process group {pgid})")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        started = time.monotonic()
        while (now := time.monotonic()) < started + self.stop_grace_s:
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=0.2)
            if not group_pids(pgid):
                break
            waiting = self._waiting_for_connections_since
            if waiting is not None and now - waiting >= WAITING_FOR_CONNECTIONS_S:
                self._say(
                    f"{self.name}: its engine has stopped and it still waits for open "
                    f"connections {now - started:.1f} s after SIGTERM; killing it"
                )
                self._kill_group(pgid)
                break
            time.sleep(0.2)
        else:
            self._say(f"{self.name}: still running after {self.stop_grace_s:g} s; killing it")
            self._kill_group(pgid)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self._drain()

    @staticmethod
    def _kill_group(pgid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)

    # -- signals --------------------------------------------------------------------------------

    def _on_signals(self) -> None:
        """Stop the server before the job dies of SIGTERM or SIGHUP (only the main thread can
        set handlers; elsewhere the parent-death signal is left to do it)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if sig not in self._previous:
                self._previous[sig] = signal.signal(sig, self._on_signal)

    def _restore_signals(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        previous = self._previous.get(signum, signal.SIG_DFL)
        self._say(f"{self.name}: the job received {signal.Signals(signum).name}")
        self.stop()
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            # Die of the signal as the job would have without the server.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False
