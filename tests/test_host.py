"""Which jobs share a host, and the CPU time other processes use during a trial."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

from llm_energy.measure.host import CLOCK_TICKS, HostLoad, process_tree_ticks

SRC = Path(__file__).resolve().parents[1] / "src"

# Busy for {s} seconds of its own CPU time, however loaded the host is.
BUSY = "import time\nwhile time.process_time() < {s}: pass\n"


def test_the_jobs_own_processes_are_its_own_and_others_are_not():
    before = process_tree_ticks(os.getpid())
    # A child of this process is the job's own (vLLM's engine process, tensor-parallel ranks),
    # also once it has ended.
    subprocess.run([sys.executable, "-c", BUSY.format(s=0.6)], check=True)
    own_s = (process_tree_ticks(os.getpid()) - before) / CLOCK_TICKS
    assert own_s > 0.4
    assert process_tree_ticks(999_999_999) == 0.0  # no such process: nothing of its own
    load = HostLoad()
    load.start()
    time.sleep(0.2)
    others = load.stop()
    assert not math.isnan(others) and others >= 0.0


def test_exclusive_jobs_wait_for_the_host_and_shared_ones_share_it(tmp_path):
    script = (
        "import sys, time; from pathlib import Path; "
        "from llm_energy.measure.host import claim_host; "
        "claim_host(Path(sys.argv[1]), sys.argv[2] == 'shared', print); "
        "print('holding', flush=True); time.sleep(1.5)"
    )

    def start(mode: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path), mode],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(SRC)},
        )

    holder = start("shared")
    assert holder.stdout.readline().strip() == "holding"
    shared, alone = start("shared"), start("exclusive")
    shared_out, _ = shared.communicate(timeout=20)
    alone_out, _ = alone.communicate(timeout=20)
    holder.wait(timeout=20)
    assert "waiting for the host" not in shared_out  # shares with the holder at once
    assert "waiting for the host" in alone_out  # measures alone: waits for both


def test_a_job_waiting_for_the_host_stops_on_sigterm(tmp_path):
    import signal
    import time

    hold = (
        "import sys, time; from pathlib import Path; "
        "from llm_energy.measure.host import claim_host; "
        "claim_host(Path(sys.argv[1]), False, print); print('holding', flush=True); "
        "time.sleep(60)"
    )
    wait = (
        "import sys; from pathlib import Path; from llm_energy.measure import stop; "
        "from llm_energy.measure.host import claim_host\n"
        "with stop.on_signals():\n"
        "    try:\n"
        "        claim_host(Path(sys.argv[1]), False, lambda m: print(m, flush=True), 0.05)\n"
        "    except stop.Stopped as exc:\n"
        "        print(exc, flush=True); sys.exit(stop.EXIT_STOPPED)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}

    def start(script: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    holder = start(hold)
    try:
        assert holder.stdout.readline().strip() == "holding"
        waiter = start(wait)
        assert "waiting for the host" in waiter.stdout.readline()
        t0 = time.monotonic()
        waiter.send_signal(signal.SIGTERM)
        out, _ = waiter.communicate(timeout=20)
        assert waiter.returncode == 75 and out.startswith("stopped by SIGTERM")
        assert time.monotonic() - t0 < 5
    finally:
        holder.kill()
        holder.wait()
