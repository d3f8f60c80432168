"""Reconnect pacing: exponential backoff with full jitter, and a deadline that only moves earlier.

Public API:

    Backoff(base=1.0, cap=60.0, rng=random.Random())
        .next_delay() -> float     uniform(0, min(cap, base * 2**failures)); counts a failure
        .reset()                   after a connection proved to work
        .failures -> int
    Deadline()
        .at -> float | None        monotonic time, or None when nothing is scheduled
        .bring_forward(when)       keep the earlier of the current deadline and `when`
        .clear()
        .due(now) -> bool

Why a deadline that only moves earlier: the stock client pushed its reconfigure deadline 60 s
further on every failed send, so with 10 s heartbeats it never reconfigured (issue #193).
Full jitter spreads a fleet's reconnects after a server restart instead of synchronising them.
"""

from __future__ import annotations

import random


class Backoff:
    """Exponential backoff with full jitter (see the module docstring)."""

    def __init__(
        self, base: float = 1.0, cap: float = 60.0, rng: random.Random | None = None
    ) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2 ** min(self.failures, 32)))
        self.failures += 1
        return self._rng.uniform(0.0, ceiling)

    def reset(self) -> None:
        self.failures = 0


class Deadline:
    """A point in monotonic time that can be brought forward, never pushed back."""

    def __init__(self) -> None:
        self.at: float | None = None

    def bring_forward(self, when: float) -> None:
        if self.at is None or when < self.at:
            self.at = when

    def clear(self) -> None:
        self.at = None

    def due(self, now: float) -> bool:
        return self.at is not None and now >= self.at
