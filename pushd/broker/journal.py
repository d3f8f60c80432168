"""Persist job transitions and feed events, then publish the events (implements contracts.Journal).

    journal = StoreJournal(store, publish, *, output_max_bytes=None, housekeeping=None)
    journal.record(transition)     buffer one Transition (called by the job engine, loop thread)
    journal.start()                start the writer thread (the broker does, as its loop starts)
    journal.flush() -> int         hand the buffered transitions to the writer without waiting;
                                   returns how many
    journal.sync(timeout=None) -> bool
                                   flush, then wait until everything handed off so far is
                                   committed and published (True) or `timeout` seconds passed
                                   or the database is unavailable (False). With no writer thread
                                   (before start, after close) it writes in the calling thread
                                   instead, one attempt.
    journal.close(timeout) -> bool sync (waiting out a database outage up to `timeout`), then
                                   stop the writer; what is still unwritten is logged as lost
                                   (and stays queued for a later sync)
    journal.pending                transitions recorded and not yet written (or dropped)
    journal.recorded               transitions recorded since the journal was made (a caller
                                   compares it before/after a step to know if it recorded any)

`store` is the `pushd.store` package (or anything with the same functions); `publish(topic,
payload)` sends on the events PUB socket: a feed wake-up's payload is bytes (``{"id": N}``), a
cluster wake-up's an empty dict (the publisher encodes a dict). While the writer thread runs,
`publish` is only called from it (a ZeroMQ socket must be used by one thread at a time): the
loop hands the socket over with `start` and gets it back after `close`.

The writer takes everything queued (up to MAX_BATCH transitions and about MAX_BATCH_ROWS node
statuses and events, whole transitions), merges it per job and writes
it in ONE database transaction: node statuses grouped per (status, reason), events in one
multi-row insert. Each event's row id (`store.append_events`) is its stable id; only after the
transaction commits are the feeds woken: one message per topic per batch, topic
``job.<job_id>`` (any event of the job) or ``org.<org_id>`` (`start` and `job_complete`),
payload ``{"id": N}``, the newest event id of the batch on that topic (every event up to it is
committed). The streams read the events from the store; the events socket carries no event
data. Each event's data (starting with ``timestamp``, ``YYYY-MM-DD HH:MM:SS.uuuuuuZ``) is
JSON-encoded once, in the writer (`store.encode_data`'s encoding). Batches are written and
woken in the order they were recorded, so events of a job keep their order.

If the database is unavailable (`store.StoreUnavailable`) the batch goes back to the head of the
queue and the writer retries after RETRY_DELAY seconds. Any other refusal splits the batch:
transitions are written one by one and only those the store refuses are dropped (and logged).
The queue is bounded: past MAX_RETAINED transitions (the database down for long, or a writer
that cannot keep up) the oldest are dropped and an error logged, so memory stays bounded
(MAX_RETAINED transitions of a few hundred bytes each). `record` hands off early at
MAX_BUFFERED transitions.

`output_max_bytes` (the setting of that name; None: no cap) bounds each stored stream of a
node's output: a longer one keeps its last `output_max_bytes` bytes behind the truncation marker
nodes use (pushd.protocol.output), its row keeps the original size and `truncated`. The cut is
made here, in the writer thread, not in the broker's loop. Live output chunks (`LiveChunk`,
pushd clients' `output` messages) are appended to the running node's stored output with the
same cap (`store.append_output`). Their `output` events are ordinary job events (stored in the
batch's transaction, then woken; the org feed never gets them), so the feed has every chunk
at once; the stored copy of a stream (what `GET .../output?offset=N` reads) is written at most
every LIVE_ROW_INTERVAL seconds, the chunks that came meanwhile in one read and write (they
wait in the writer thread, at most that long, or until the writer is next idle), because a
read-modify-write per chunk was most of the broker's cost per line. A result for the node
drops its pending chunks (the result replaces the live copy).

`housekeeping` (a callable returning the seconds until its next call: the broker's is a
pushd.broker.memory.Chores of pushd.broker.retention.JobRetention and MallocTrim) runs in the
writer thread when it is due and nothing waits to be written: first when the writer is first
idle, then as it asks. Its errors are logged and it is called again after HOUSEKEEPING_RETRY
seconds.

Job-level events are logged at INFO, per-node ones (those whose data names a `node`) at DEBUG.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from pushd.broker.contracts import NodeOutput, Transition
from pushd.protocol.output import cap_text
from pushd.states import JobStatus, NodeStatus
from pushd.store.events import EncodedJSON, encode_data
from pushd.store.times import event_timestamp, utcnow

log = logging.getLogger(__name__)

MAX_BUFFERED = 2000
MAX_BATCH = 20_000
# Rows (node statuses + events) one transaction takes at most, whole transitions at a time: a
# big job's fan-out records 2,000 nodes (and 4,000 events) per transition, and one transaction
# of them all held SQLite's write lock for seconds, stalling every other writer (an API worker
# creating a job, the broker's known-nodes flush).
MAX_BATCH_ROWS = 20_000
MAX_RETAINED = 200_000
RETRY_DELAY = 0.5  # seconds between attempts while the database is unavailable
HOUSEKEEPING_RETRY = 60.0  # seconds before housekeeping that failed runs again
LIVE_ROW_INTERVAL = 1.0  # seconds between writes of one stream's stored live output
ORG_FEED_EVENTS = frozenset({"start", "job_complete"})

_Event = tuple[str, str, str, EncodedJSON]  # org_id, job_id, name, data as stored
# The data column's encoding (pushd.store.events.encode_data): compact, ASCII only.
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode


class StoreJournal:
    def __init__(
        self,
        store: Any,
        publish: Callable[[str, bytes | dict[str, Any]], None],
        *,
        max_retained: int = MAX_RETAINED,
        output_max_bytes: int | None = None,
        housekeeping: Callable[[], float] | None = None,
        cluster: Any = None,
    ) -> None:
        self._store = store
        self._cluster = cluster  # store.cluster on PostgreSQL: event order lock and doorbell
        self._remote_topics: set[str] = set()
        self._publish = publish
        self._max_retained = max_retained
        self._output_max_bytes = output_max_bytes
        self._housekeeping = housekeeping
        self._housekeeping_due = 0.0  # time.monotonic(); 0: when the writer is first idle
        self._pending: list[Transition] = []  # loop side: recorded since the last flush
        self._recorded = 0
        # Shared with the writer, under _cond: the queue (FIFO; a failed batch goes back to its
        # head) and two counters. Transitions are numbered in hand-off order; `_done` counts
        # those written or dropped, and because the queue is FIFO, every transition numbered
        # below `_done` is finished: that is what sync() waits for.
        self._cond = threading.Condition(threading.Lock())
        self._queue: collections.deque[Transition] = collections.deque()
        self._handed = 0
        self._done = 0
        self._unavailable = False  # the last attempt found the database unavailable
        self._stopping = False
        self._thread: threading.Thread | None = None
        # Writer side: live output waiting for its stream's next write, and when that is due.
        self._live: dict[tuple[str, str, str, str], list[tuple[int, str]]] = {}
        self._live_due: dict[tuple[str, str, str, str], float] = {}

    # -- loop side ------------------------------------------------------------------------------

    def record(self, transition: Transition) -> None:
        self._pending.append(transition)
        self._recorded += 1
        if len(self._pending) >= MAX_BUFFERED:
            self.flush()

    @property
    def recorded(self) -> int:
        return self._recorded

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._pending) + self._handed - self._done

    def flush(self) -> int:
        """Hand the recorded transitions to the writer; never waits for the database."""
        if not self._pending:
            return 0
        batch, self._pending = self._pending, []
        with self._cond:
            self._queue.extend(batch)
            self._handed += len(batch)
            self._bound()
            self._cond.notify_all()
        return len(batch)

    def start(self) -> None:
        """Start the writer thread (from then on `publish` is called from it only)."""
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="journal-writer", daemon=True
                )
                self._thread.start()

    def sync(self, timeout: float | None = None) -> bool:
        """Wait until everything recorded so far is committed and published (see module doc)."""
        return self._sync(timeout, wait_out_outage=False)

    def close(self, timeout: float = 10.0) -> bool:
        """Write what is queued (retrying an unavailable database up to `timeout`), then stop
        the writer thread. Afterwards flush() queues and sync() writes in the caller's thread."""
        done = self._sync(timeout, wait_out_outage=True)
        with self._cond:
            self._stopping = True
            thread, self._thread = self._thread, None
            self._cond.notify_all()
        if thread is not None:
            thread.join()
        with self._cond:
            self._stopping = False
            lost = self._handed - self._done
        if lost:
            log.error("journal closed with %d job transitions unwritten", lost)
        return done and not lost

    def _sync(self, timeout: float | None, *, wait_out_outage: bool) -> bool:
        self.flush()
        with self._cond:
            target = self._handed
            inline = self._thread is None
        if inline:
            self._drain_inline()
        else:
            with self._cond:
                self._cond.wait_for(
                    lambda: self._done >= target
                    or (self._unavailable and not wait_out_outage),
                    timeout,
                )
        with self._cond:
            return self._done >= target

    def _bound(self) -> None:
        # Called with _cond held. The oldest go first: the newest state of a job matters most.
        lost = len(self._queue) - self._max_retained
        if lost > 0:
            for _ in range(lost):
                self._queue.popleft()
            self._done += lost
            log.error("journal queue over %d transitions (database unavailable or too slow): "
                      "dropped the %d oldest", self._max_retained, lost)

    # -- writer side ----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                # One connection for as long as the database answers: SQLite checkpoints the
                # WAL whenever its last connection closes (~4 ms a batch), and a pool checkout
                # per batch is waste. A failure drops it; the next attempt connects afresh.
                with self._store.connection():
                    if self._serve():
                        return
            except Exception as err:  # connecting failed (peewee's error, not translated)
                log.warning("database unavailable (%s)", err)
                with self._cond:
                    self._unavailable = True
                    self._cond.notify_all()
            with self._cond:
                if self._stopping:
                    return
                self._cond.wait(RETRY_DELAY)  # database down: back off (close() wakes us)

    def _serve(self) -> bool:
        """Write batches as they come: True when stopped, False when the database failed."""
        while True:
            with self._cond:
                while not self._queue and not self._stopping and not self._remote_topics:
                    idle = self._idle_time()
                    if idle is not None and idle <= 0:
                        break
                    self._cond.wait(idle)
                if not self._queue and self._stopping:
                    self._write_live_now(everything=True)
                    return True
                batch = self._take() if self._queue else None
                remote, self._remote_topics = self._remote_topics, set()
            if remote:
                self._wake_remote(remote)
            if batch is None:
                if not self._write_live_now():
                    return False
                if self._housekeeping is not None and self._housekeeping_due <= time.monotonic():
                    self._run_housekeeping()  # nothing waits to be written: its turn
            elif not self._finish(batch, self._write_batch(batch)):
                return False

    def _idle_time(self) -> float | None:
        """Seconds until housekeeping or a live output write is due (None: never)."""
        dues = list(self._live_due.values())
        if self._housekeeping is not None:
            dues.append(self._housekeeping_due)
        if not dues:
            return None
        return min(dues) - time.monotonic()

    def _write_live_now(self, *, everything: bool = False) -> bool:
        """Write the live output that is due (all of it with `everything`), in its own
        transaction; False when the database is unavailable (it stays pending)."""
        now = time.monotonic()
        due = [key for key, at in self._live_due.items() if everything or at <= now]
        if not due:
            return True
        try:
            with self._store.transaction():
                for key in due:
                    self._append_live(key)
        except self._store.StoreUnavailable as err:
            log.warning("database unavailable (%s)", err)
            return False
        except Exception:
            log.exception("live output of %d streams could not be stored (dropped: the "
                          "results carry the output)", len(due))
        for key in due:
            self._live.pop(key, None)
            self._live_due.pop(key, None)
        return True

    def _append_live(self, key: tuple[str, str, str, str]) -> None:
        pieces = self._live.get(key)
        if pieces:
            org_id, job_id, node, channel = key
            self._store.append_output(org_id, job_id, node, channel, pieces,
                                      self._output_max_bytes)

    def _run_housekeeping(self) -> None:
        assert self._housekeeping is not None
        try:
            delay = float(self._housekeeping())
        except Exception:
            log.exception("housekeeping failed; trying again in %.0f s", HOUSEKEEPING_RETRY)
            delay = HOUSEKEEPING_RETRY
        self._housekeeping_due = time.monotonic() + max(delay, 0.0)

    def _drain_inline(self) -> None:
        # No writer thread: the caller writes, one attempt per queued batch.
        while True:
            with self._cond:
                if not self._queue:
                    return
                batch = self._take()
            if not self._finish(batch, self._write_batch(batch)):
                return

    def _take(self) -> list[Transition]:
        batch: list[Transition] = []
        rows = 0
        queue = self._queue
        while queue and len(batch) < MAX_BATCH and rows < MAX_BATCH_ROWS:
            transition = queue.popleft()
            batch.append(transition)
            rows += 1 + len(transition.node_statuses) + len(transition.events)
        return batch

    def _finish(self, batch: list[Transition], unwritten: list[Transition]) -> bool:
        """Account for a written batch; requeue its unwritten tail. False if anything was."""
        with self._cond:
            if unwritten:
                self._queue.extendleft(reversed(unwritten))
                self._bound()
            self._done += len(batch) - len(unwritten)
            self._unavailable = bool(unwritten)
            self._cond.notify_all()
            if unwritten:
                log.warning("database unavailable; %d job transitions wait", len(self._queue))
        return not unwritten

    def _write_batch(self, batch: list[Transition]) -> list[Transition]:
        """Write and publish; returns the tail left unwritten because the database is down."""
        try:
            written = self._write(batch)
        except self._store.StoreUnavailable as err:
            log.warning("database unavailable (%s)", err)
            return batch
        except Exception:
            log.exception("a batch of %d job transitions failed; writing them one by one",
                          len(batch))
        else:
            self._announce(*written)
            return []
        for index, transition in enumerate(batch):
            try:
                written = self._write([transition])
            except self._store.StoreUnavailable as err:
                log.warning("database unavailable (%s)", err)
                return batch[index:]
            except Exception:
                log.exception("dropped the transition of job %s the store refused",
                              transition.job_id)
            else:
                self._announce(*written)
        return []

    def _write(
        self, batch: list[Transition]
    ) -> tuple[list[int], list[_Event], list[dict[str, Any]], dict[str, int]]:
        """One transaction; returns the events' ids, the events and their data as recorded,
        and the newest event id per feed topic, to announce after it."""
        store = self._store
        stamp = event_timestamp(utcnow())
        # Each event's data is JSON-encoded once, here; the timestamp's text once per batch.
        head = '{"timestamp":' + _ENCODE(stamp)
        events: list[_Event] = []
        sources: list[dict[str, Any]] = []  # the events' data as recorded, for the log lines
        # Merge the batch per job: a burst of 2,000 acks becomes one grouped node update per
        # job instead of 2,000 statements. Later transitions win; events keep their order.
        jobs: dict[tuple[str, str], _JobChanges] = {}
        for t in batch:
            changes = jobs.get((t.org_id, t.job_id))
            if changes is None:
                changes = jobs[(t.org_id, t.job_id)] = _JobChanges()
            changes.node_statuses.update(t.node_statuses)
            for chunk in t.live_output:
                changes.live.setdefault((chunk.node, chunk.channel), []).append(
                    (chunk.offset, chunk.data))
            if t.outputs:
                changes.outputs.update(t.outputs)
            if t.job_status is not None:
                changes.job_status = t.job_status
            for event in t.events:
                events.append((t.org_id, t.job_id, event.name, _encoded(head, stamp, event.data)))
                sources.append(event.data)
        live_now_all: list[tuple[str, str, str, str]] = []
        with store.transaction():
            for (org_id, job_id), changes in jobs.items():
                if changes.node_statuses:
                    store.set_node_statuses(org_id, job_id, changes.node_statuses)
                live_now = self._queue_live(org_id, job_id, changes)
                for key in live_now:
                    self._append_live(key)
                live_now_all.extend(live_now)
                for node, output in changes.outputs.items():
                    stdout, stdout_size, stdout_cut = self._capped(
                        output.stdout, output.stdout_dropped)
                    stderr, stderr_size, stderr_cut = self._capped(
                        output.stderr, output.stderr_dropped)
                    store.store_output(
                        org_id, job_id, node, stdout, stderr, stdout_size, stderr_size,
                        output.truncated or stdout_cut or stderr_cut,
                    )
                if changes.job_status is not None:
                    store.set_job_status(org_id, job_id, changes.job_status)
            ids = []
            newest: dict[str, int] = {}
            if events:
                if self._cluster is not None:
                    self._cluster.lock_events()
                ids = store.append_events(events)
                newest = _newest_by_topic(ids, events)
                if self._cluster is not None:
                    self._cluster.ring_events(newest)
        for key in live_now_all:
            self._live.pop(key, None)
            self._live_due[key] = time.monotonic() + LIVE_ROW_INTERVAL
        return ids, events, sources, newest

    def _queue_live(
        self, org_id: str, job_id: str, changes: _JobChanges
    ) -> list[tuple[str, str, str, str]]:
        """Add the batch's live chunks to their streams' pending pieces; the streams whose
        write is due now. A result in the batch drops its node's pending pieces."""
        now = time.monotonic()
        for node in changes.outputs:
            for channel in ("stdout", "stderr"):
                self._live.pop((org_id, job_id, node, channel), None)
                self._live_due.pop((org_id, job_id, node, channel), None)
        due = []
        for (node, channel), pieces in changes.live.items():
            if node in changes.outputs:
                continue
            key = (org_id, job_id, node, channel)
            self._live.setdefault(key, []).extend(pieces)
            if self._live_due.setdefault(key, now) <= now:
                due.append(key)
        return due

    def _capped(self, text: str | None, dropped: int) -> tuple[str | None, int | None, bool]:
        """(text to store, its original size or None to let the store measure, cut here)."""
        size = _size(text, dropped)
        if text is None or self._output_max_bytes is None:
            return text, size, False
        capped, cut, total = cap_text(text, self._output_max_bytes, size)
        return (capped, total, True) if cut else (text, size, False)

    def wake_remote(self, topics: list[str]) -> None:
        """Other cluster members committed events of these feed topics ("*": any): the
        writer publishes them (empty payload) so this server's feed readers look."""
        with self._cond:
            self._remote_topics.update(topics)
            self._cond.notify_all()

    def _wake_remote(self, topics: set[str]) -> None:
        for topic in sorted(topics):
            try:
                self._publish(topic, {})
            except Exception:
                log.exception("could not publish a wake-up for %s", topic)

    def _announce(
        self, ids: list[int], events: list[_Event], sources: list[dict[str, Any]],
        newest: dict[str, int],
    ) -> None:
        # Outside _write_batch's try: the rows are committed, a failing publish must not make
        # them be written again.
        node_debug = log.isEnabledFor(logging.DEBUG)
        for event_id, (_org_id, job_id, name, _text), data in zip(ids, events, sources,
                                                                   strict=True):
            if "node" not in data:
                log.info("event %d job %s %s %s", event_id, job_id, name, _brief(data))
            elif node_debug:
                # Three per node per job: at INFO they were a large part of a big job's cost.
                log.debug("event %d job %s %s %s", event_id, job_id, name, _brief(data))
        # One wake-up per feed topic per batch, naming the newest event id on it (all events
        # up to it are committed): streams read the events from the store, and one message
        # per event cost the writer and every API worker's reader 24,000 each per 8,000-node
        # job.
        for topic, event_id in newest.items():
            try:
                self._publish(topic, b'{"id":%d}' % event_id)
            except Exception:
                log.exception("could not publish a wake-up for %s (events are stored: "
                              "feeds replay them)", topic)


def _encoded(head: str, stamp: str, data: dict[str, Any]) -> EncodedJSON:
    """``{"timestamp": stamp, **data}`` as the column stores it (encode_data); `head` is its
    start, ``{"timestamp":"<stamp>"``, encoded once per batch."""
    if not data:
        return EncodedJSON(head + "}")
    if type(data) is not dict or "timestamp" in data:
        return encode_data({"timestamp": stamp, **data})
    return EncodedJSON(head + "," + _ENCODE(data)[1:])


def _newest_by_topic(ids: list[int], events: list[_Event]) -> dict[str, int]:
    """Feed topic (``job.<id>`` for every event, ``org.<id>`` for ORG_FEED_EVENTS) -> the
    newest of these events on it, in order of each topic's first event."""
    newest: dict[str, int] = {}
    topic_of_job: dict[str, str] = {}  # one f-string per job, not per event
    for event_id, (org_id, job_id, name, _) in zip(ids, events, strict=True):
        topic = topic_of_job.get(job_id)
        if topic is None:
            topic = topic_of_job[job_id] = f"job.{job_id}"
        newest[topic] = event_id
        if name in ORG_FEED_EVENTS:
            newest[f"org.{org_id}"] = event_id
    return newest


class _JobChanges:
    __slots__ = ("job_status", "live", "node_statuses", "outputs")

    def __init__(self) -> None:
        self.job_status: JobStatus | None = None
        self.node_statuses: dict[str, tuple[NodeStatus, str | None]] = {}
        self.outputs: dict[str, NodeOutput] = {}
        self.live: dict[tuple[str, str], list[tuple[int, str]]] = {}


def _size(text: str | None, dropped: int) -> int | None:
    """Size of the whole output in bytes when the node cut it (approximate: the dropped count
    is in characters), else None to let the store measure what it keeps."""
    if not dropped:
        return None
    return len((text or "").encode("utf-8", "surrogateescape")) + dropped


def _brief(data: dict[str, Any]) -> str:
    parts = [f"{k}={data[k]}" for k in ("node", "status") if k in data]
    return " ".join(parts)
