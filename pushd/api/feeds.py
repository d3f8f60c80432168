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

Shared reads: with a hub, the streams of one worker share their store reads. A read is keyed
on what it asks (the query and its arguments) and on the topic's `EventHub.generation`; streams
asking the same thing under the same generation get one query's answer (a stream that asks while
that query runs waits for it). The generation changes before any stream is woken for a new
event, so a shared answer never predates an event its reader was woken for; answers are also
dropped after half of `poll_interval` (or `keepalive`) seconds, the safety net for a
publication the socket dropped. So when the broker publishes, each worker reads the new events
once, not once per stream, and encodes each event's frame once. An org stream opened without
``Last-Event-ID`` starts after the org's newest event id at that moment (every stream then asks
from the same id); its retention horizon is taken per read, rounded down to the minute so
concurrent readers agree.

Store contract used: ``job_events_after(org_id, job_id, after_id, limit=)``,
``org_events_after(org_id, after_id, since=, limit=)`` (events with ``id``, ``name``, ``data``,
``created_at``, ``job_id``), ``last_event_id(org_id)``, ``get_job`` and
``get_job_summary(org_id, job_id)``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from pushd.api.events import EventHub
from pushd.api.formats import SSE_KEEPALIVE, feed_timestamp, sse_event
from pushd.metrics import families
from pushd.states import TERMINAL_JOB_STATUSES, JobStatus

log = logging.getLogger(__name__)

JOB_COMPLETE = "job_complete"
# Events read per query: a big job's history streams without being held in memory at once.
PAGE = 500
# How long a terminal job without a job_complete event (after the resume point) is re-read.
END_GRACE = 1.0
# Shared answers kept per worker before stale ones are swept, and the hard bound after that.
SHARED_SWEEP_AT = 64
SHARED_MAX = 256
# Encoded frames kept per worker (events are immutable, so a frame never changes).
FRAME_CACHE = 2048


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


class _Shared:
    """One answer to a store read, shared by the streams that ask under its generation."""

    __slots__ = ("done", "generation", "ok", "started", "topic", "value")

    def __init__(self, topic: str, generation: int, started: float) -> None:
        self.topic = topic
        self.generation = generation
        self.started = started
        self.done = threading.Event()  # a gevent Event in the workers (threading is patched)
        self.ok = False
        self.value: Any = None


class SharedReads:
    """Store reads shared between the streams of one worker (see the module docstring)."""

    def __init__(
        self, hub: EventHub, max_age: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._hub = hub
        self._max_age = max_age
        self._clock = clock
        self._answers: dict[tuple[Any, ...], _Shared] = {}

    def read(self, topic: str, key: tuple[Any, ...], load: Callable[[], Any]) -> Any:
        generation = self._hub.generation(topic)
        if generation is None:
            return load()
        now = self._clock()
        shared = self._answers.get(key)
        if (
            shared is not None
            and shared.generation == generation
            and now - shared.started < self._max_age
        ):
            shared.done.wait()
            if shared.ok:
                return shared.value
            return load()  # the shared query failed: this stream tries (and reports) its own
        shared = _Shared(topic, generation, now)
        self._answers[key] = shared
        if len(self._answers) > SHARED_SWEEP_AT:
            self._sweep(now)
        try:
            shared.value = load()
            shared.ok = True
        finally:
            if not shared.ok and self._answers.get(key) is shared:
                del self._answers[key]
            shared.done.set()
        return shared.value

    def _sweep(self, now: float) -> None:
        for key, shared in list(self._answers.items()):
            if (
                shared.generation != self._hub.generation(shared.topic)
                or now - shared.started >= self._max_age
            ):
                del self._answers[key]
        while len(self._answers) > SHARED_MAX:
            del self._answers[next(iter(self._answers))]

    def __len__(self) -> int:
        return len(self._answers)


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
        self._shared = (
            SharedReads(hub, min(poll_interval, keepalive) / 2) if hub is not None else None
        )
        self._frames: dict[tuple[int, bool], bytes] = {}

    # -- job feed ---------------------------------------------------------------------------

    def job_stream(self, org_id: str, job_id: str, last_event_id: str | None) -> Iterator[bytes]:
        listener = self._hub.listen(f"job.{job_id}") if self._hub else None
        open_streams = families.SSE_STREAMS.labels(feed="job")
        open_streams.inc()  # every reader of the feed counts: REST and dashboard alike
        try:
            yield from self._job_events(org_id, job_id, parse_event_id(last_event_id), listener)
        finally:
            open_streams.dec()
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
            for ev in self._pages(
                f"job.{job_id}", self._store.job_events_after, org_id, job_id, last_id
            ):
                yield self._encoded(ev, with_job=False)
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
        job = self._shared_q(f"job.{job_id}", self._store.get_job, org_id, job_id)
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
        job = self._shared_q(f"job.{job_id}", self._store.get_job_summary, org_id, job_id)
        return job is None or JobStatus(job.status) in TERMINAL_JOB_STATUSES

    # -- org feed ---------------------------------------------------------------------------

    def org_stream(self, org_id: str, last_event_id: str | None) -> Iterator[bytes]:
        listener = self._hub.listen(f"org.{org_id}") if self._hub else None
        open_streams = families.SSE_STREAMS.labels(feed="org")
        open_streams.inc()
        try:
            yield from self._org_events(org_id, last_event_id, listener)
        finally:
            open_streams.dec()
            if listener is not None:
                listener.close()

    def _org_events(self, org_id: str, last_event_id: str | None, listener: Any) -> Iterator[bytes]:
        now = _utcnow()
        horizon = now - timedelta(seconds=self._retention)
        last_id: int | None = None  # None: nothing sent yet and no history wanted
        if last_event_id is None:
            # Events from now on: those after the newest one (None: the org has none yet).
            last_id = self._q(self._store.last_event_id, org_id)
            # A comment at once, so the response's headers leave now: a reader learns it is
            # connected without waiting for the first job event or keepalive (15 s).
            yield SSE_KEEPALIVE
        else:
            resume_after = parse_event_id(last_event_id)
            if resume_after is not None and self._is_org_event(org_id, resume_after, horizon):
                last_id = resume_after
            else:
                start = {"timestamp": feed_timestamp(horizon)}
                yield sse_event("start_of_history", "start_id", start)
                last_id = 0
        silent_since = time.monotonic()
        while True:
            since = now if last_id is None else self._horizon()
            sent = False
            for ev in self._pages(
                f"org.{org_id}", self._store.org_events_after, org_id, last_id, since=since
            ):
                yield self._encoded(ev, with_job=True)
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

    def _horizon(self) -> datetime:
        """The oldest retained org event's time, rounded down to the minute."""
        horizon = _utcnow() - timedelta(seconds=self._retention)
        return horizon.replace(second=0, microsecond=0)

    def _encoded(self, event: Any, *, with_job: bool) -> bytes:
        key = (event.id, with_job)
        frame = self._frames.get(key)
        if frame is None:
            frame = _frame(event, with_job=with_job)
            if len(self._frames) >= FRAME_CACHE:
                self._frames.clear()
            self._frames[key] = frame
        return frame

    def _pages(
        self, topic: str, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Iterator[Any]:
        """Events after the last positional argument (an id), read PAGE at a time."""
        *head, after = args
        while True:
            page = self._shared_rows(topic, func, *head, after, limit=PAGE, **kwargs)
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

    def _shared_q(self, topic: str, func: Callable[..., Any], *args: Any) -> Any:
        if self._shared is None:
            return self._q(func, *args)
        key = (func.__name__, *args)
        return self._shared.read(topic, key, lambda: self._q(func, *args))

    def _shared_rows(
        self, topic: str, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> tuple[Any, ...]:
        def load() -> tuple[Any, ...]:
            return tuple(self._rows(func, *args, **kwargs))

        if self._shared is None:
            return load()
        key = (func.__name__, *args, *sorted(kwargs.items()))
        return self._shared.read(topic, key, load)

    # -- waiting ----------------------------------------------------------------------------

    def _wait(self, listener: Any, timeout: float | None = None) -> None:
        if timeout is None:
            timeout = min(self._poll, self._keepalive)
        if listener is None:
            time.sleep(timeout)
        else:
            listener.wait(timeout)
