"""`job_retention_days`: finished jobs older than that are purged, a small batch at a time.

    retention = JobRetention(store, days, *, batch=PURGE_BATCH, interval=PURGE_INTERVAL,
                             pause=PURGE_PAUSE, now=utcnow)
    retention() -> float     purge at most `batch` finished jobs (status not new, voting or
                             running) whose last change is more than `days` days old, with their
                             nodes, options, output and events (the store cascades); returns the
                             seconds until it should be called again: `pause` when the batch was
                             full (more may be waiting), else `interval`
    retention.purged         jobs purged since it was made

It runs as the journal's housekeeping (pushd.broker.journal): in the journal's writer thread,
only when no transition waits to be written, so the broker's loop never waits for it and the
job writes it shares the database (and SQLite's one write lock) with go first. A database error
is the journal's to log; the next call tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pushd.store.times import utcnow

log = logging.getLogger(__name__)

PURGE_BATCH = 100  # jobs per transaction (each with its nodes, output and events)
PURGE_INTERVAL = 600.0  # seconds between looks when nothing is left to purge
PURGE_PAUSE = 1.0  # seconds between full batches


class JobRetention:
    def __init__(
        self,
        store: Any,
        days: int,
        *,
        batch: int = PURGE_BATCH,
        interval: float = PURGE_INTERVAL,
        pause: float = PURGE_PAUSE,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        if days < 1 or batch < 1:
            raise ValueError("job retention needs days >= 1 and batch >= 1")
        self._store = store
        self.days = days
        self.batch = batch
        self.interval = interval
        self.pause = pause
        self._now = now
        self.purged = 0

    def __call__(self) -> float:
        cutoff = self._now() - timedelta(days=self.days)
        removed = int(self._store.prune_jobs(cutoff, limit=self.batch))
        self.purged += removed
        if removed:
            log.info("purged %d finished jobs older than %d days", removed, self.days)
        return self.pause if removed >= self.batch else self.interval
