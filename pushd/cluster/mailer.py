"""The broker's writes to the cluster tables, on a thread of their own (never the loop's).

    mailer = Mailer(member)
    mailer.start(); mailer.stop()
    mailer.post({recipient: [message, ...]})        mail, in the order posted
    mailer.presence({(org_id, node): True | False | None})   held-node changes (set_presence)

Items are written in the order they were handed over (one FIFO), so a `send` posted after a
presence change reaches the database after it. A database error keeps the item at the head of
the queue and retries after RETRY_DELAY; the queue is bounded (MAX_QUEUED items: the oldest are
dropped and logged, as the journal does), because mail for a member is worthless once its lease
ran out anyway. `idle(timeout)` waits until everything handed over is written (shutdown).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Mapping
from typing import Any

from pushd import store
from pushd.store import cluster

log = logging.getLogger(__name__)

RETRY_DELAY = 0.5
MAX_QUEUED = 10_000


class Mailer:
    def __init__(self, member: str) -> None:
        self.member = member
        self._cond = threading.Condition(threading.Lock())
        self._queue: collections.deque[tuple[str, Any]] = collections.deque()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.posted = 0
        self.dropped = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cluster-mailer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def post(self, mail: Mapping[str, list[dict[str, Any]]]) -> None:
        if mail:
            self._put("mail", dict(mail))

    def presence(self, changes: Mapping[tuple[str, str], bool | None]) -> None:
        if changes:
            self._put("presence", dict(changes))

    def idle(self, timeout: float) -> bool:
        """Wait until everything handed over is written (tests, shutdown)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue, timeout)

    def _put(self, kind: str, item: Any) -> None:
        with self._cond:
            self._queue.append((kind, item))
            while len(self._queue) > MAX_QUEUED:
                self._queue.popleft()
                self.dropped += 1
                log.error("cluster mail queue full (database slow or down): oldest item dropped")
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._stopping)
                if not self._queue:
                    return
                kind, item = self._queue[0]
            try:
                if kind == "mail":
                    cluster.post_mail(self.member, item)
                    self.posted += sum(len(messages) for messages in item.values())
                else:
                    cluster.set_presence(self.member, item)
            except store.StoreError as err:
                log.warning("cluster write failed (%s); retrying", err)
                with self._cond:
                    if self._stopping:
                        return
                    self._cond.wait(RETRY_DELAY)
                continue
            except Exception:
                log.exception("cluster write of %s refused; dropped", kind)
            with self._cond:
                self._queue.popleft()
                self._cond.notify_all()
