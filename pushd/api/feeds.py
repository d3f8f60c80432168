"""The two SSE feeds (original-server.md 6), built on persisted events with stable ids.

    FeedStreams(store, hub, *, keepalive=15.0, poll_interval=2.0, org_retention=86400,
                summary=callable)
        ``job_stream(org_id, job_id, last_event_id) -> Iterator[bytes]``
            Replays the job's events from the database (all of them, or those after
            `last_event_id` when it names one of this job's events; an unknown or malformed id
            replays everything, as the original does), then streams new ones until
            ``job_complete``, then sends ``summary`` (the job document) and ends. A job that
            finished before the request replays its full history, then its summary.
        ``org_stream(org_id, last_event_id) -> Iterator[bytes]``
            Without `last_event_id`: only events from now on. With a retained id: the events
            after it. With an unknown, malformed or expired id: a ``start_of_history`` event,
            then every retained event. Each data object carries ``"job"`` right after
            ``timestamp``. Never ends by itself.
        Both send ``:keepalive`` after `keepalive` seconds of silence. The event id on the wire is
        the database id, so ``Last-Event-ID`` resumes exactly in any worker and after restarts.
        `hub` may be None (then streams poll the store every `poll_interval` seconds); with a hub
        they wake as soon as the broker publishes, and still poll as a safety net.

Store contract used: ``job_events_after(org_id, job_id, after_id, limit=)``,
``org_events_after(org_id, after_id, since=, limit=)`` (events with ``id``, ``name``, ``data``,
``created_at``, ``job_id``), ``get_job`` and ``get_job_summary(org_id, job_id)``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from pushd.api.events import EventHub
from pushd.api.formats import SSE_KEEPALIVE, feed_timestamp, sse_event
from pushd.states import TERMINAL_JOB_STATUSES, JobStatus

log = logging.getLogger(__name__)

JOB_COMPLETE = "job_complete"
# Events read per query: a big job's history streams without being held in memory at once.
PAGE = 500
# How long a terminal job without a job_complete event (after the resume point) is re-read.
END_GRACE = 1.0


def parse_event_id(value: str | None) -> int | None:
    """The database id in a ``Last-Event-ID`` header, or None when absent or malformed."""
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit() or len(text) > 18:
        return None
    return int(text)


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _event_data(event: Any, *, with_job: bool) -> dict[str, Any]:
    data = dict(event.data or {})
    stamp = data.pop("timestamp", None) or feed_timestamp(event.created_at)
    out: dict[str, Any] = {"timestamp": stamp}
    if with_job:
        data.pop("job", None)
        out["job"] = event.job_id
    out.update(data)
    return out


def _frame(event: Any, *, with_job: bool = False) -> bytes:
    return sse_event(event.name, event.id, _event_data(event, with_job=with_job))


class FeedStreams:
    def __init__(
        self,
        store: Any,
        hub: EventHub | None,
        *,
        summary: Callable[[Any], dict[str, Any]],
        keepalive: float = 15.0,
        poll_interval: float = 2.0,
        org_retention: float = 86400.0,
    ) -> None:
        self._store = store
        # NOTE: streams outlive their request, so each store call takes its own connection.
        self._connection = getattr(store, "connection", None) or contextlib.nullcontext
        self._hub = hub
        self._summary = summary
        self._keepalive = keepalive
        self._poll = poll_interval
        self._retention = org_retention

    # -- job feed ---------------------------------------------------------------------------

    def job_stream(self, org_id: str, job_id: str, last_event_id: str | None) -> Iterator[bytes]:
        listener = self._hub.listen(f"job.{job_id}") if self._hub else None
        try:
            yield from self._job_events(org_id, job_id, parse_event_id(last_event_id), listener)
        finally:
            if listener is not None:
                listener.close()

    def _job_events(
        self, org_id: str, job_id: str, resume_after: int | None, listener: Any
    ) -> Iterator[bytes]:
        last_id = 0
        finished = False
        resumed_at = self._job_event(org_id, job_id, resume_after) if resume_after else None
        if resumed_at is not None:
            last_id = resumed_at.id
            # Resuming right after job_complete: only the summary is left.
            finished = resumed_at.name == JOB_COMPLETE
        over_since: float | None = None
        silent_since = time.monotonic()
        while not finished:
            sent = False
            for ev in self._pages(self._store.job_events_after, org_id, job_id, last_id):
                yield _frame(ev)
                last_id, sent = ev.id, True
                finished = finished or ev.name == JOB_COMPLETE
            if sent:
                silent_since = time.monotonic()
                continue
            if self._job_is_over(org_id, job_id):
                # The status may have committed after the events query above: look again
                # (briefly) before deciding the job ended with no job_complete after last_id
                # (resumed past it, or it ended while no broker ran).
                if over_since is None:
                    over_since = time.monotonic()
                    continue
                if time.monotonic() - over_since >= END_GRACE:
                    break
                self._wait(listener, END_GRACE / 4)
                continue
            if time.monotonic() - silent_since >= self._keepalive:
                yield SSE_KEEPALIVE
                silent_since = time.monotonic()
            self._wait(listener)
        job = self._q(self._store.get_job, org_id, job_id)
        if job is not None:
            yield sse_event(
                "summary",
                f"{last_id}-summary" if last_id else "summary",
                {"timestamp": feed_timestamp(_utcnow()), **self._summary(job)},
            )

    def _job_event(self, org_id: str, job_id: str, event_id: int) -> Any:
        """The job's event with this id, or None."""
        probe = self._rows(self._store.job_events_after, org_id, job_id, event_id - 1, limit=1)
        return probe[0] if probe and probe[0].id == event_id else None

    def _job_is_over(self, org_id: str, job_id: str) -> bool:
        job = self._q(self._store.get_job_summary, org_id, job_id)
        return job is None or JobStatus(job.status) in TERMINAL_JOB_STATUSES

    # -- org feed ---------------------------------------------------------------------------

    def org_stream(self, org_id: str, last_event_id: str | None) -> Iterator[bytes]:
        listener = self._hub.listen(f"org.{org_id}") if self._hub else None
        try:
            yield from self._org_events(org_id, last_event_id, listener)
        finally:
            if listener is not None:
                listener.close()

    def _org_events(self, org_id: str, last_event_id: str | None, listener: Any) -> Iterator[bytes]:
        now = _utcnow()
        horizon = now - timedelta(seconds=self._retention)
        last_id: int | None = None  # None: nothing sent yet and no history wanted
        if last_event_id is not None:
            resume_after = parse_event_id(last_event_id)
            if resume_after is not None and self._is_org_event(org_id, resume_after, horizon):
                last_id = resume_after
            else:
                start = {"timestamp": feed_timestamp(horizon)}
                yield sse_event("start_of_history", "start_id", start)
                last_id = 0
        silent_since = time.monotonic()
        while True:
            since = now if last_id is None else horizon
            sent = False
            for ev in self._pages(self._store.org_events_after, org_id, last_id, since=since):
                yield _frame(ev, with_job=True)
                last_id, sent = ev.id, True
            if sent:
                silent_since = time.monotonic()
            elif time.monotonic() - silent_since >= self._keepalive:
                yield SSE_KEEPALIVE
                silent_since = time.monotonic()
            self._wait(listener)

    def _is_org_event(self, org_id: str, event_id: int, horizon: datetime) -> bool:
        probe = self._rows(
            self._store.org_events_after, org_id, event_id - 1, since=horizon, limit=1
        )
        return bool(probe) and probe[0].id == event_id

    def _pages(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[Any]:
        """Events after the last positional argument (an id), read PAGE at a time."""
        *head, after = args
        while True:
            page = self._rows(func, *head, after, limit=PAGE, **kwargs)
            yield from page
            if len(page) < PAGE:
                return
            after = page[-1].id

    def _q(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with self._connection():
            return func(*args, **kwargs)

    def _rows(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Any]:
        with self._connection():
            return list(func(*args, **kwargs))

    # -- waiting ----------------------------------------------------------------------------

    def _wait(self, listener: Any, timeout: float | None = None) -> None:
        if timeout is None:
            timeout = min(self._poll, self._keepalive)
        if listener is None:
            time.sleep(timeout)
        else:
            listener.wait(timeout)
