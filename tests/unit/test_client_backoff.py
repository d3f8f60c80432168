"""Reconnect pacing: jittered exponential backoff with a cap; a deadline that only moves earlier."""

from __future__ import annotations

import random

from pushd_client.backoff import Backoff, Deadline


def test_backoff_grows_exponentially_within_the_cap() -> None:
    rng = random.Random(7)
    backoff = Backoff(base=1.0, cap=30.0, rng=rng)
    ceilings = [1, 2, 4, 8, 16, 30, 30, 30]
    for ceiling in ceilings:
        for _ in range(50):
            probe = Backoff(base=1.0, cap=30.0, rng=rng)
            probe.failures = backoff.failures
            assert 0.0 <= probe.next_delay() <= ceiling
        backoff.next_delay()
    assert backoff.failures == len(ceilings)


def test_backoff_is_jittered_not_synchronised() -> None:
    delays = {round(Backoff(cap=60.0, rng=random.Random(seed)).next_delay(), 6)
              for seed in range(20)}
    assert len(delays) == 20


def test_reset_starts_small_again() -> None:
    backoff = Backoff(base=1.0, cap=60.0, rng=random.Random(1))
    for _ in range(10):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_many_failures_do_not_overflow() -> None:
    backoff = Backoff(base=1.0, cap=5.0, rng=random.Random(3))
    backoff.failures = 10_000
    assert 0.0 <= backoff.next_delay() <= 5.0


def test_deadline_cannot_be_postponed() -> None:
    """Issue #193 of the stock client: each send error pushed the reconfigure 60 s later."""
    deadline = Deadline()
    assert not deadline.due(0.0)
    deadline.bring_forward(100.0)
    for now in range(0, 100, 10):
        deadline.bring_forward(now + 60.0)  # a failure every 10 s asking for "60 s from now"
    assert deadline.at == 60.0
    assert deadline.due(60.0) and not deadline.due(59.9)
    deadline.clear()
    assert deadline.at is None
