"""Starting `new` jobs: a big job's nodes are loaded one page per loop turn, and after a broker
restart a job waits only for its nodes that are coming back.

    starts = JobStarts(scheduler, store, nodes, start, grace_until=0.0, window=70.0,
                       page=LOAD_PAGE)
    starts.begin(summary, names=None)   start the `new` job `summary` (a store JobSummary): its
                                        node names are read from the store a page per turn
                                        unless given, then `start(summary, names)` runs once
                                        the job may start (below)
    starts.cancel(job_id) -> bool       forget a job still loading or held (it was aborted)
    starts.org_of(job_id) -> str | None the org of a job still loading or held

The control request that asks for a start is answered at once: loading 100,000 node rows in
one go took the loop ~0.5 s, during which no other control request (node_states, admit) was
answered. Each page is one keyset query (`store.job_node_names`), a few milliseconds.

After a restart (`grace_until` in the scheduler's clock, the broker's recovery grace), nodes
reconnect over a few heartbeat intervals. A job whose nodes were online when the broker went
away (last seen, per the store's known nodes, within `window` seconds of the org's latest
last-seen time) waits for those of them that are not available yet, and starts as soon as
none is left, at the latest when the grace ends. Nodes the broker never saw, or saw long
before it stopped, are not waited for: they vote `down` at once, as they would without a
restart. A job whose nodes are all back starts at once. (Nodes re-attached to a job that was
running when the broker stopped are re-attached by the job engine, not held here.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Protocol

from pushd.broker.contracts import NodeRef, Scheduler

log = logging.getLogger(__name__)

LOAD_PAGE = 5000  # node names read per loop turn (~5 ms on SQLite)
HOLD_CHECK = 0.1  # seconds between checks of held jobs' nodes during the grace


class Availability(Protocol):
    def is_available(self, ref: NodeRef) -> bool: ...


class _Pending:
    __slots__ = ("names", "summary", "waiting")

    def __init__(self, summary: Any) -> None:
        self.summary = summary
        self.names: list[str] = []
        self.waiting: set[str] | None = None  # nodes held for (after a restart), once loaded


class JobStarts:
    def __init__(
        self,
        scheduler: Scheduler,
        store: Any,
        nodes: Availability,
        start: Callable[[Any, list[str]], None],
        *,
        grace_until: float = 0.0,
        window: float = 70.0,
        page: int = LOAD_PAGE,
    ) -> None:
        self._scheduler = scheduler
        self._store = store
        self._nodes = nodes
        self._start = start
        self._grace_until = grace_until
        self._window = window
        self._page = page
        self._pending: dict[str, _Pending] = {}
        self._returning: dict[str, set[str]] = {}  # org id -> nodes online at the stop
        self._checking = False

    def begin(self, summary: Any, names: list[str] | None = None) -> None:
        if summary.id in self._pending:
            return  # asked again (the API retried, or found at start and asked by the API)
        pending = self._pending[summary.id] = _Pending(summary)
        if names is None:
            self._scheduler.call_later(0.0, lambda: self._load(pending))
        else:
            pending.names = names
            self._loaded(pending)

    def cancel(self, job_id: str) -> bool:
        return self._pending.pop(job_id, None) is not None

    def org_of(self, job_id: str) -> str | None:
        pending = self._pending.get(job_id)
        return None if pending is None else pending.summary.org_id

    # -- loading -----------------------------------------------------------------------------

    def _load(self, pending: _Pending) -> None:
        summary = pending.summary
        if self._pending.get(summary.id) is not pending:
            return  # aborted meanwhile
        after = pending.names[-1] if pending.names else None
        try:
            page = self._store.job_node_names(
                summary.org_id, summary.id, after=after, limit=self._page
            )
        except Exception:
            # The database is away: try again shortly; the job stays `new` in the store.
            log.exception("could not read the nodes of job %s; retrying", summary.id)
            self._scheduler.call_later(1.0, lambda: self._load(pending))
            return
        pending.names.extend(page)
        if len(page) == self._page:
            self._scheduler.call_later(0.0, lambda: self._load(pending))
        else:
            self._loaded(pending)

    def _loaded(self, pending: _Pending) -> None:
        if self._scheduler.now() < self._grace_until:
            returning = self._returning_nodes(pending.summary.org_id)
            pending.waiting = {name for name in pending.names if name in returning}
            if self._held(pending):
                log.info("job %s waits for %d of its nodes to come back after the restart",
                         pending.summary.id, len(pending.waiting))
                self._check_soon()
                return
        self._go(pending)

    # -- the restart hold --------------------------------------------------------------------

    def _returning_nodes(self, org_id: str) -> set[str]:
        returning = self._returning.get(org_id)
        if returning is None:
            try:
                seen = self._store.known_nodes(org_id)
            except Exception:
                log.exception("could not read the known nodes of org %s", org_id)
                seen = {}
            returning = set()
            if seen:
                since = max(seen.values()) - timedelta(seconds=self._window)
                returning = {name for name, when in seen.items() if when >= since}
            self._returning[org_id] = returning
        return returning

    def _held(self, pending: _Pending) -> bool:
        """Drop the held-for nodes that are available now; True while any is left."""
        waiting = pending.waiting
        if not waiting:
            return False
        org_id = pending.summary.org_id
        waiting.difference_update(
            [name for name in waiting if self._nodes.is_available((org_id, name))]
        )
        return bool(waiting)

    def _check_soon(self) -> None:
        if not self._checking:
            self._checking = True
            self._scheduler.call_later(HOLD_CHECK, self._check)

    def _check(self) -> None:
        self._checking = False
        grace_over = self._scheduler.now() >= self._grace_until
        held = False
        for pending in list(self._pending.values()):
            if pending.waiting is None:
                continue  # still loading
            if grace_over or not self._held(pending):
                self._go(pending)
            else:
                held = True
        if held:
            self._check_soon()
        elif grace_over:
            self._returning.clear()

    def _go(self, pending: _Pending) -> None:
        summary = pending.summary
        if self._pending.pop(summary.id, None) is not pending:
            return
        try:
            self._start(summary, pending.names)
        except Exception:
            log.exception("could not start job %s", summary.id)
