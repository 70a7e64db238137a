"""A long step logs a line every so often, saying what it is doing and for how long
(src/llm_energy/measure/heartbeat.py); a short one logs nothing."""

from __future__ import annotations

import threading

from llm_energy.measure import heartbeat


def test_a_step_longer_than_a_beat_says_its_phase_and_minutes_and_a_short_one_says_nothing():
    lines: list[str] = []
    beaten = threading.Event()

    def log(line: str) -> None:
        lines.append(line)
        beaten.set()

    now = [100.0]
    with heartbeat.Heartbeat(log, "trial 1 batch=1", "about 5 min", 0.01, lambda: now[0]):
        heartbeat.phase("window")
        now[0] += 90.0
        assert beaten.wait(5)
    assert lines[0] == ("... still at trial 1 batch=1, window: 1.5 min so far (about 5 min)")
    # A step that ends before its first beat logs nothing, and phase() outside any is a no-op.
    quiet: list[str] = []
    with heartbeat.Heartbeat(quiet.append, "trial 2", every_s=60):
        heartbeat.phase("warm-up")
    heartbeat.phase("nothing runs")
    assert quiet == [] and heartbeat._current is None


def test_the_innermost_heartbeat_takes_the_phase_and_the_outer_one_comes_back():
    outer = heartbeat.Heartbeat(lambda line: None, "trial 1", every_s=60)
    inner = heartbeat.Heartbeat(lambda line: None, "a probe", every_s=60)
    with outer:
        with inner:
            heartbeat.phase("probing batch 384")
        heartbeat.phase("window")
    assert (inner.phase, outer.phase) == ("probing batch 384", "window")
    assert heartbeat._current is None
