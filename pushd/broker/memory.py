"""Freed heap memory given back to the kernel (glibc), so the broker's RSS follows what it uses.

    trim = MallocTrim(interval=TRIM_INTERVAL, *, trim=None, rss=None)
    trim() -> float        one malloc_trim(0); the seconds until the next call (`interval`)
    trim.available         False where the C library has no malloc_trim (musl): calls do nothing
    trim.calls, trim.released   calls made; RSS bytes given back so far (before - after, >= 0)

    chores = Chores(*tasks, clock=time.monotonic)     tasks: callables returning the seconds
                                                      until their next call (None is skipped)
    chores() -> float      runs every task that is due (one that raises is logged and tried
                           again after CHORE_RETRY s); the seconds until the next one is due

The broker hands a `Chores` of job retention and `MallocTrim` to its journal as housekeeping:
they run in the journal's writer thread when nothing waits to be written, never in the loop.

Why: the broker's threads free at a high rate what they allocated -- libzmq's I/O thread the
buffer of every message, the pipes and Curve state of every connection that closes (a node
restart, a reconnect) -- and glibc keeps freed memory inside its arenas, giving back to the
kernel only the free top of a heap. In the soak (bench/bench_soak.py; bench/RESULTS.md "Soak")
the broker's RSS grew 29 % in the 25 minutes after the first 5 with no Python-level growth
(tracemalloc); its largest arena kept the same memory in use while growing by free fragments
(+44 MiB in 10 minutes). malloc_trim(0) also releases the free pages in the middle of every
arena; once a minute it halved the soak's growth (3.8 -> 1.95 MiB/min), at 11-64 ms a call in
the writer thread. Pages given back cost a page fault when malloc reuses them.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

TRIM_INTERVAL = 60.0  # seconds between malloc_trim(0) calls
CHORE_RETRY = 60.0  # seconds before a chore that raised runs again
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _glibc_trim() -> Callable[[], object] | None:
    try:
        function = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return lambda: function(0)  # ctypes releases the GIL for the call


def rss_bytes() -> int:
    """This process's resident set (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


class MallocTrim:
    def __init__(
        self,
        interval: float = TRIM_INTERVAL,
        *,
        trim: Callable[[], object] | None = None,
        rss: Callable[[], int] = rss_bytes,
    ) -> None:
        self.interval = interval
        self._trim = trim if trim is not None else _glibc_trim()
        self._rss = rss
        self.calls = 0
        self.released = 0

    @property
    def available(self) -> bool:
        return self._trim is not None

    def __call__(self) -> float:
        if self._trim is None:
            return self.interval
        before = self._rss()
        started = time.monotonic()
        self._trim()
        took = time.monotonic() - started
        freed = max(0, before - self._rss())
        self.calls += 1
        self.released += freed
        log.debug("malloc_trim gave back %.1f MiB in %.1f ms", freed / 2**20, took * 1000)
        return self.interval


class Chores:
    def __init__(
        self,
        *tasks: Callable[[], float] | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tasks = [task for task in tasks if task is not None]
        self._clock = clock
        self._due = [0.0] * len(self._tasks)  # 0: at the first call

    def __len__(self) -> int:
        return len(self._tasks)

    def __call__(self) -> float:
        for index, task in enumerate(self._tasks):
            if self._due[index] > self._clock():
                continue
            try:
                delay = float(task())
            except Exception:
                log.exception("housekeeping task %r failed; trying again in %.0f s", task,
                              CHORE_RETRY)
                delay = CHORE_RETRY
            self._due[index] = self._clock() + max(delay, 0.0)
        if not self._tasks:
            return CHORE_RETRY
        return max(0.0, min(self._due) - self._clock())
