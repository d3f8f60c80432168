"""StartupBeacon: beats from its thread until stopped; after stop() it never beats again."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from pushd.broker.beacon import StartupBeacon


def test_beats_at_once_then_every_period_until_stopped() -> None:
    times: list[float] = []
    beacon = StartupBeacon(lambda: times.append(time.monotonic()), 0.05)
    beacon.start()
    time.sleep(0.32)
    beacon.stop()
    count = len(times)
    time.sleep(0.15)
    assert len(times) == count == beacon.beats  # none after stop() returned
    assert 2 <= count <= 8  # never faster than the period
    assert all(b - a >= 0.045 for a, b in itertools.pairwise(times))


def test_stop_ends_the_wait_at_once_and_is_idempotent() -> None:
    beacon = StartupBeacon(lambda: None, 60.0)
    beacon.start()
    time.sleep(0.05)
    started = time.monotonic()
    beacon.stop()
    beacon.stop()
    assert time.monotonic() - started < 1.0
    assert beacon.beats == 1  # the first beat at once, not a period later


def test_a_failing_beat_does_not_end_the_beacon() -> None:
    calls = []

    def beat() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("socket gone")

    beacon = StartupBeacon(beat, 0.02)
    beacon.start()
    deadline = time.monotonic() + 2
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    beacon.stop()
    assert len(calls) >= 3
    assert beacon.beats == len(calls) - 1  # the failed one is not counted


def test_beats_only_from_its_own_thread() -> None:
    threads: set[int] = set()
    beacon = StartupBeacon(lambda: threads.add(threading.get_ident()), 0.01)
    beacon.start()
    time.sleep(0.05)
    beacon.stop()
    assert threads and threading.get_ident() not in threads and len(threads) == 1


def test_refuses_a_period_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        StartupBeacon(lambda: None, 0)
