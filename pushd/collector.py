"""When the cyclic garbage collector runs in the broker's process.

    quiet_collector() -> None
        collect once, freeze what exists (modules, settings, keys: never garbage), then
        collect the young generation every YOUNG_THRESHOLD container allocations and the
        oldest at most once every FULL_EVERY collections of the middle one. Call once, at
        start.

Why: CPython's defaults (700, 10, 10) are tuned for programs that make cycles. The broker makes
few (every full collection during a job collected nothing) but allocates fast: an 8,000-node
job's messages, transitions and events pass through ~240 young, ~20 middle and 2-3 full
collections in the loop's thread, 100-220 ms of it, each full one 27-101 ms over 50,000-90,000
objects (bench/RESULTS.md, 2026-12-07). Objects that wait a few milliseconds (a transition
until the journal writes it) outlive two young collections at 700 and reach the oldest
generation, whose growth then triggers full collections. With a young generation of 10,000
they mostly die young; cycles are still collected, just later (a garbage cycle costs memory,
never correctness), and frozen objects are no longer traversed at all.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000  # container allocations between young collections (CPython: 700)
MIDDLE_THRESHOLD = 10  # young collections between middle ones (CPython's default)
FULL_EVERY = 100  # middle collections before a full one may run (CPython: 10)


def quiet_collector() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, FULL_EVERY)
