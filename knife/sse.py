"""Server-Sent Events: a line parser and a reconnecting feed reader for the job feed.

Public API:
    Event(name, id, data)               .json() -> dict (the data object, {} when not JSON)
    SSEParser()                         .feed(line: str) -> Event | None ; .finish() -> Event | None
    iter_events(lines) -> Iterator[Event]   whole-stream helper (for bytes or str lines)
    FEED_UNAVAILABLE                    sentinel put on the queue when the feed cannot be used
    FEED_ENDED                          sentinel: the server closed a stream that had finished
    FEED_CONNECTED                      sentinel: a stream was opened (each (re)connection)
    FeedReader(http, path, queue, *, last_event_id=None, stall_timeout=60.0, max_failures=5,
               end_events=JOB_END_EVENTS)   (end_events=frozenset() for the endless org feed)
        .start() / .stop()              a daemon thread that puts Event objects on `queue`,
                                        reconnecting with `Last-Event-ID` after a drop

The original server ends a finished job's stream with a `summary` event that lacks the closing
blank line, so `finish()` dispatches a pending event at end of stream when its data is complete
JSON (a truncated event from a dropped connection is dropped and comes again on reconnect).
Lines (MAX_LINE_BYTES) and each event's data (MAX_EVENT_CHARS; SSEParser.feed raises
ValueError beyond it, and the reader reconnects) are bounded so a broken server cannot grow
memory without limit.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import queue as queue_module
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from http.client import HTTPConnection  # the parameter `http` hides the module in __init__
from typing import Any

from pushd_knife.chefhttp import ApiError, ChefHTTP
from pushd_knife.exitcodes import CliError

MAX_LINE_BYTES = 16 * 1024 * 1024
STOP_JOIN = 2.0  # seconds stop() waits for the reader thread to end
# One event's data lines together: a stream of short `data:` lines must not grow memory either.
MAX_EVENT_CHARS = MAX_LINE_BYTES
# HTTP statuses that mean "this server has no usable feed": fall back to polling at once.
NO_FEED_STATUSES = frozenset({404, 405, 406, 501})

FEED_UNAVAILABLE = object()
FEED_ENDED = object()
FEED_CONNECTED = object()
JOB_END_EVENTS = frozenset({"job_complete", "summary"})


@dataclass(frozen=True)
class Event:
    name: str
    id: str | None
    data: str

    def json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.data)
        except json.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}


class SSEParser:
    """Incremental parser of the text/event-stream format (one decoded line at a time)."""

    def __init__(self) -> None:
        self._name = ""
        self._id: str | None = None
        self._data: list[str] = []
        self._data_chars = 0
        self.last_event_id: str | None = None

    def feed(self, line: str) -> Event | None:
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment, e.g. the server's `:keepalive`
        field_name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field_name == "event":
            self._name = value
        elif field_name == "data":
            self._data_chars += len(value) + 1
            if self._data_chars > MAX_EVENT_CHARS:
                raise ValueError(f"feed event larger than {MAX_EVENT_CHARS} characters")
            self._data.append(value)
        elif field_name == "id" and "\0" not in value:
            self._id = value
        return None

    def finish(self) -> Event | None:
        """End of stream: dispatch an event not closed by a blank line if its data is whole.

        The original's final `summary` lacks the blank line; an event cut off by a dropped
        connection has truncated JSON and is discarded (it is replayed after reconnecting).
        """
        if not self._data:
            return None
        try:
            json.loads("\n".join(self._data))
        except json.JSONDecodeError:
            self._reset()
            return None
        return self._dispatch()

    def _dispatch(self) -> Event | None:
        if not self._data and not self._name:
            self._id = None
            return None
        event = Event(self._name or "message", self._id, "\n".join(self._data))
        if self._id is not None:
            self.last_event_id = self._id
        self._reset()
        return event

    def _reset(self) -> None:
        self._name, self._id, self._data, self._data_chars = "", None, [], 0


def iter_events(lines: Iterable[bytes | str]) -> Iterator[Event]:
    parser = SSEParser()
    for raw in lines:
        line = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        event = parser.feed(line)
        if event is not None:
            yield event
    tail = parser.finish()
    if tail is not None:
        yield tail


class FeedReader:
    """Reads a feed on a daemon thread and hands events to the main thread through a queue.

    After a dropped connection it reconnects with `Last-Event-ID` (backing off 0.2 s, 0.4 s,
    ... up to 5 s); after `max_failures` failed attempts in a row, or at once when the server
    has no feed (404/405/406/501), it puts FEED_UNAVAILABLE and stops. A connection that stays
    silent for `stall_timeout` seconds (the server sends keepalives every 15 s) is dropped and
    reopened. When a stream that delivered one of `end_events` (`job_complete`, `summary`)
    closes, it puts FEED_ENDED and stops.
    """

    def __init__(
        self,
        http: ChefHTTP,
        path: str,
        queue: queue_module.Queue[Any],
        *,
        last_event_id: str | None = None,
        stall_timeout: float = 60.0,
        max_failures: int = 5,
        end_events: frozenset[str] = JOB_END_EVENTS,
    ) -> None:
        self.http = http
        self.end_events = end_events
        self.path = path
        self.queue = queue
        self.last_event_id = last_event_id
        self.stall_timeout = stall_timeout
        self.max_failures = max_failures
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="push-jobs-feed", daemon=True)
        self._conn: HTTPConnection | None = None
        self._sock: socket.socket | None = None  # the stream's socket (see stop)
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop reading; returns once the reader thread ended (or after STOP_JOIN seconds).

        The socket is shut down, not only closed: closing it does not wake a read blocked
        in the reader thread, which then outlived the interpreter, and a daemon thread woken
        during interpreter shutdown can abort the process ("FATAL: exception not rethrown",
        SIGABRT, seen after Ctrl-C)."""
        self._stop.set()
        self._hang_up()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(STOP_JOIN)

    def _hang_up(self) -> None:
        sock, conn = self._sock, self._conn
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()

    def _run(self) -> None:
        try:
            self._follow()
        except Exception as exc:
            # stop() closes the connection under a blocked read, which http.client reports
            # in several ways; after stop() nobody listens, before it the caller must poll.
            if not self._stop.is_set():
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.queue.put(FEED_UNAVAILABLE)

    def _follow(self) -> None:
        failures = 0
        finished = False
        while not self._stop.is_set():
            headers = {"Last-Event-ID": self.last_event_id} if self.last_event_id else {}
            try:
                conn, response, sock = self.http.open_stream(self.path, headers,
                                                             timeout=self.stall_timeout)
            except ApiError as exc:
                self.last_error = f"{exc.status} {exc.message}"
                if exc.status in NO_FEED_STATUSES:
                    self.queue.put(FEED_UNAVAILABLE)
                    return
                failures += 1
            except CliError as exc:
                self.last_error = exc.message
                failures += 1
            else:
                self._conn, self._sock = conn, sock
                if self._stop.is_set():  # stop() came while this connection was being opened
                    self._hang_up()
                    return
                self.queue.put(FEED_CONNECTED)
                delivered, finished = self._read(response)
                conn.close()
                self._conn = self._sock = None
                if finished:
                    self.queue.put(FEED_ENDED)
                    return
                # A job stream that closes before any event is a failure; an endless feed
                # (no end events: the org feed) may legitimately be quiet.
                failures = 0 if delivered or not self.end_events else failures + 1
            if failures >= self.max_failures:
                self.queue.put(FEED_UNAVAILABLE)
                return
            self._stop.wait(min(5.0, 0.2 * 2 ** max(0, failures - 1)))

    def _read(self, response: http.client.HTTPResponse) -> tuple[bool, bool]:
        """Read events until the stream ends; (delivered any event, saw the job's end)."""
        parser = SSEParser()
        delivered = finished = False
        try:
            while not self._stop.is_set():
                raw = response.readline(MAX_LINE_BYTES + 1)
                if not raw:
                    break
                if len(raw) > MAX_LINE_BYTES:
                    self.last_error = "feed line too long"
                    return delivered, False
                event = parser.feed(raw.decode("utf-8", errors="replace"))
                if event is not None:
                    finished = self._deliver(event) or finished
                    delivered = True
        except (OSError, http.client.HTTPException, ValueError, AttributeError) as exc:
            # AttributeError: http.client after the socket was closed by stop().
            self.last_error = str(exc) or type(exc).__name__
            return delivered, False
        tail = parser.finish()
        if tail is not None:
            finished = self._deliver(tail) or finished
            delivered = True
        return delivered, finished

    def _deliver(self, event: Event) -> bool:
        if event.id is not None:
            self.last_event_id = event.id
        self.queue.put(event)
        return event.name in self.end_events


def wait_for(item_queue: queue_module.Queue[Any], deadline: float) -> Any | None:
    """Next queue item, or None once `deadline` (time.monotonic()) passes."""
    remaining = deadline - time.monotonic()
    try:
        if remaining <= 0:
            return item_queue.get_nowait()
        return item_queue.get(timeout=remaining)
    except queue_module.Empty:
        return None
