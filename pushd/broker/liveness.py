"""Per-node liveness deadlines: a node silent for `offline_after` seconds is offline.

    monitor = LivenessMonitor(offline_after=threshold * interval)
    monitor.touch(ref, now)          a valid message arrived: O(1), one dict store (hot path)
    monitor.hold(ref, until)         do not report the node before `until` even if silent (a node
                                     re-attached after a broker restart); cleared with the node
    monitor.forget(ref)              stop watching a node (its session ended for another reason)
    monitor.expired(now) -> list     every watched node whose deadline passed; they are forgotten
    monitor.last_seen(ref) -> float | None
    len(monitor)                     watched nodes

The original judged liveness by a decaying heartbeat average scanned every 40 s (30-70 s to
notice a dead node). Here each node has a deadline, last_seen + offline_after. A heap holds
(deadline as last scheduled, ref); `touch` only updates last_seen and never touches the heap, so
a heartbeat costs one dict assignment. `expired` pops entries whose scheduled deadline passed
and either reports the node (truly silent) or pushes it back at its real deadline. Each node
therefore costs at most one heap operation per `offline_after` period, and the caller runs
`expired` from one timer every heartbeat interval: detection within one interval of the
deadline, with no scan over all nodes.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)  # a node reference: the tracker's (org, node) tuple


class LivenessMonitor(Generic[K]):
    def __init__(self, offline_after: float) -> None:
        if offline_after <= 0:
            raise ValueError("offline_after must be positive")
        self.offline_after = offline_after
        self._last_seen: dict[K, float] = {}
        self._scheduled: dict[K, float] = {}  # the one live heap entry per node
        self._held: dict[K, float] = {}  # earliest time a node may be reported
        self._heap: list[tuple[float, int, K]] = []
        self._tiebreak = 0

    def __len__(self) -> int:
        return len(self._last_seen)

    def touch(self, ref: K, now: float) -> None:
        if ref not in self._last_seen:
            self._push(now + self.offline_after, ref)
        self._last_seen[ref] = now

    def hold(self, ref: K, until: float) -> None:
        # Only extends the deadline: the heap entry, when it surfaces, is pushed back to it.
        self._held[ref] = until

    def forget(self, ref: K) -> None:
        # The heap entry stays and is discarded when it surfaces (no longer scheduled).
        self._last_seen.pop(ref, None)
        self._scheduled.pop(ref, None)
        self._held.pop(ref, None)

    def last_seen(self, ref: K) -> float | None:
        return self._last_seen.get(ref)

    def expired(self, now: float) -> list[K]:
        dead: list[K] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            scheduled, _, ref = heapq.heappop(heap)
            if self._scheduled.get(ref) != scheduled:
                continue  # forgotten, or superseded by a newer entry for the same node
            deadline = max(self._last_seen[ref] + self.offline_after, self._held.get(ref, 0.0))
            if deadline <= now:
                del self._last_seen[ref]
                del self._scheduled[ref]
                self._held.pop(ref, None)
                dead.append(ref)
            else:
                self._push(deadline, ref)
        return dead

    def _push(self, deadline: float, ref: K) -> None:
        self._tiebreak += 1
        self._scheduled[ref] = deadline
        heapq.heappush(self._heap, (deadline, self._tiebreak, ref))
