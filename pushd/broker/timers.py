"""A heap of one-shot timers for a single-threaded event loop (implements contracts.Scheduler).

    queue = TimerQueue(clock=time.monotonic)
    timer = queue.call_later(delay, callback)   # -> ScheduledTimer; timer.cancel()
    queue.now() -> float
    queue.next_delay(default) -> float          seconds until the earliest live timer (>= 0)
    queue.run_due() -> int                      run every timer due by now; returns how many ran.
                                                A timer a callback schedules while it runs waits
                                                for the next call (the next loop turn), even
                                                with no delay: that is how work is sliced

    ManualClock()                                a settable clock for tests: clock.advance(seconds)

Cancelled timers stay in the heap and are skipped when they surface (lazy deletion), so cancel
is O(1). A callback that raises is logged and does not stop the others: one bad job must not
stop the loop.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class ScheduledTimer:
    __slots__ = ("callback", "cancelled", "deadline")

    def __init__(self, deadline: float, callback: Callable[[], None]) -> None:
        self.deadline = deadline
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class TimerQueue:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, ScheduledTimer]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._clock()

    def call_later(self, delay: float, callback: Callable[[], None]) -> ScheduledTimer:
        timer = ScheduledTimer(self._clock() + max(0.0, delay), callback)
        heapq.heappush(self._heap, (timer.deadline, next(self._order), timer))
        return timer

    def next_delay(self, default: float) -> float:
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        if not self._heap:
            return default
        return min(default, max(0.0, self._heap[0][0] - self._clock()))

    def run_due(self) -> int:
        ran = 0
        now = self._clock()
        # Timers added from here on (by the callbacks below) are numbered above `limit`.
        limit = next(self._order)
        while self._heap and self._heap[0][0] <= now and self._heap[0][1] < limit:
            _, _, timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            timer.cancelled = True  # fired timers cannot be cancelled into a second run
            ran += 1
            try:
                timer.callback()
            except Exception:
                log.exception("timer callback %r failed", timer.callback)
        return ran


class ManualClock:
    """A clock that moves only when told to (unit tests)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.value = start

    def __call__(self) -> float:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += seconds
