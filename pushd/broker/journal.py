"""Persist job transitions and feed events, then publish the events (implements contracts.Journal).

    journal = StoreJournal(store, publish)
    journal.record(transition)     buffer one Transition (called by the job engine)
    journal.flush() -> int         write every buffered transition in ONE database transaction,
                                   then publish their events; returns how many events

`store` is the `pushd.store` package (or anything with the same functions); `publish(topic,
payload: dict)` sends on the events PUB socket. Each event becomes a row via
`store.append_events`, which returns its stable id; only after the transaction commits is it
published as topic ``job.<job_id>`` (every event) and ``org.<org_id>`` (`start` and
`job_complete`), payload ``{"id", "event", "job", "data"}``, where data starts with
``timestamp`` (``YYYY-MM-DD HH:MM:SS.uuuuuuZ``).

The broker calls `flush` once per loop turn, so a burst of node replies costs one transaction.
If the database is unavailable (`store.StoreUnavailable`) the batch stays queued and is retried
on the next turn (at most MAX_RETAINED transitions are kept). Any other refusal splits the
batch: transitions are written one by one and only those the store refuses are dropped (and
logged). `record` flushes early at MAX_BUFFERED transitions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pushd.broker.contracts import NodeOutput, Transition
from pushd.states import JobStatus, NodeStatus
from pushd.store.times import event_timestamp, utcnow

log = logging.getLogger(__name__)

MAX_BUFFERED = 2000
MAX_RETAINED = 200_000
ORG_FEED_EVENTS = frozenset({"start", "job_complete"})


class StoreJournal:
    def __init__(self, store: Any, publish: Callable[[str, dict[str, Any]], None]) -> None:
        self._store = store
        self._publish = publish
        self._pending: list[Transition] = []

    def record(self, transition: Transition) -> None:
        self._pending.append(transition)
        if len(self._pending) >= MAX_BUFFERED:
            self.flush()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def flush(self) -> int:
        if not self._pending:
            return 0
        batch, self._pending = self._pending, []
        try:
            return self._write(batch)
        except self._store.StoreUnavailable as err:
            self._requeue(batch, err)
            return 0
        except Exception:
            log.exception("a batch of %d job transitions failed; writing them one by one",
                          len(batch))
        written = 0
        for index, transition in enumerate(batch):
            try:
                written += self._write([transition])
            except self._store.StoreUnavailable as err:
                self._requeue(batch[index:], err)
                break
            except Exception:
                log.exception("dropped the transition of job %s the store refused",
                              transition.job_id)
        return written

    def _requeue(self, batch: list[Transition], err: Exception) -> None:
        # The database is down for now: keep the transitions (bounded) and retry next turn,
        # so a PostgreSQL restart loses nothing.
        self._pending[:0] = batch
        if len(self._pending) > MAX_RETAINED:
            lost = len(self._pending) - MAX_RETAINED
            del self._pending[:lost]
            log.error("database unavailable too long: dropped %d job transitions", lost)
        log.warning("database unavailable (%s); %d transitions wait", err, len(self._pending))

    def _write(self, batch: list[Transition]) -> int:
        store = self._store
        stamp = event_timestamp(utcnow())
        events: list[tuple[str, str, str, dict[str, Any]]] = []
        # Merge the batch per job: a burst of 2,000 acks becomes one grouped node update per
        # job instead of 2,000 statements. Later transitions win; events keep their order.
        jobs: dict[tuple[str, str], _JobChanges] = {}
        for t in batch:
            changes = jobs.setdefault((t.org_id, t.job_id), _JobChanges())
            changes.node_statuses.update(t.node_statuses)
            changes.outputs.update(t.outputs)
            if t.job_status is not None:
                changes.job_status = t.job_status
            for event in t.events:
                events.append((t.org_id, t.job_id, event.name, {"timestamp": stamp, **event.data}))
        with store.transaction():
            for (org_id, job_id), changes in jobs.items():
                if changes.node_statuses:
                    store.set_node_statuses(org_id, job_id, changes.node_statuses)
                for node, output in changes.outputs.items():
                    store.store_output(
                        org_id, job_id, node, output.stdout, output.stderr,
                        _size(output.stdout, output.stdout_dropped),
                        _size(output.stderr, output.stderr_dropped),
                        output.truncated,
                    )
                if changes.job_status is not None:
                    store.set_job_status(org_id, job_id, changes.job_status)
            ids = store.append_events(events) if events else []
        for event_id, (org_id, job_id, name, data) in zip(ids, events, strict=True):
            payload = {"id": event_id, "event": name, "job": job_id, "data": data}
            log.info("event %d job %s %s %s", event_id, job_id, name, _brief(data))
            self._publish(f"job.{job_id}", payload)
            if name in ORG_FEED_EVENTS:
                self._publish(f"org.{org_id}", payload)
        return len(events)


class _JobChanges:
    __slots__ = ("job_status", "node_statuses", "outputs")

    def __init__(self) -> None:
        self.job_status: JobStatus | None = None
        self.node_statuses: dict[str, tuple[NodeStatus, str | None]] = {}
        self.outputs: dict[str, NodeOutput] = {}


def _size(text: str | None, dropped: int) -> int | None:
    """Size of the whole output in bytes when the node cut it (approximate: the dropped count
    is in characters), else None to let the store measure what it keeps."""
    if not dropped:
        return None
    return len((text or "").encode("utf-8", "surrogateescape")) + dropped


def _brief(data: dict[str, Any]) -> str:
    parts = [f"{k}={data[k]}" for k in ("node", "status") if k in data]
    return " ".join(parts)
