"""The broker's journal on both real databases: persist first, then publish with stable ids."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pushd import store
from pushd.broker.contracts import FeedEvent, NodeOutput, Transition
from pushd.broker.journal import StoreJournal
from pushd.states import JobStatus, NodeStatus

ORG = "c" * 32
JOB = "d" * 32


@pytest.fixture
def db(db_backend: tuple[str, dict]) -> Iterator[None]:
    kind, params = db_backend
    store.open_database_params(kind, params, migrate=True)
    store.create_job(ORG, JOB, "true", ["a", "b"], 2, 60, "alice")
    try:
        yield
    finally:
        store.close_database()


def stored_ids() -> set[int]:
    database = store.get_database()
    return {row[0] for row in database.execute_sql("SELECT id FROM job_events").fetchall()}


class Published:
    """The feed wake-ups: (topic, the newest event id named)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, int]] = []

    def __call__(self, topic: str, payload: bytes | dict[str, Any]) -> None:
        assert isinstance(payload, bytes)  # a feed wake-up: {"id": N}
        newest = json.loads(payload)["id"]
        # Whatever a wake-up names must already be readable from the database.
        assert newest in stored_ids()
        self.items.append((topic, newest))


def names(job: str = JOB) -> list[str]:
    return [e.name for e in store.job_events_after(ORG, job)]


def test_sync_persists_then_publishes_in_order(db: None) -> None:
    published = Published()
    journal = StoreJournal(store, published)
    journal.record(Transition(JOB, ORG, JobStatus.VOTING, events=[FeedEvent("start", {"x": 1})]))
    journal.record(Transition(
        JOB, ORG, node_statuses={"a": (NodeStatus.READY, None), "b": (NodeStatus.NACKED, "busy")},
        events=[FeedEvent("quorum_vote", {"node": "a", "status": "success"})],
    ))
    journal.record(Transition(
        JOB, ORG, JobStatus.COMPLETE,
        node_statuses={"a": (NodeStatus.SUCCEEDED, None)},
        outputs={"a": NodeOutput("hi\n", None, 5, 0)},
        events=[FeedEvent("job_complete", {"status": "complete"})],
    ))
    assert published.items == []  # nothing before the sync
    assert journal.sync()
    assert journal.pending == 0
    view = store.get_job(ORG, JOB)
    assert view.status == JobStatus.COMPLETE
    assert view.nodes_by_status() == {"nacked": ["b"], "succeeded": ["a"]}
    assert view.node_reasons() == {"b": "busy"}
    record = store.get_output_record(ORG, JOB, "a")
    assert (record.stdout, record.stderr, record.truncated) == ("hi\n", None, True)
    # One batch: one wake-up per feed, naming its newest event.
    events = store.job_events_after(ORG, JOB)
    assert [e.name for e in events] == ["start", "quorum_vote", "job_complete"]
    assert published.items == [(f"job.{JOB}", events[-1].id), (f"org.{ORG}", events[-1].id)]
    assert list(events[0].data) == ["timestamp", "x"]


def test_a_refused_transition_does_not_lose_the_others(db: None) -> None:
    published = Published()
    journal = StoreJournal(store, published)
    journal.record(Transition("e" * 32, ORG, outputs={"a": NodeOutput("x", "y")},
                              events=[FeedEvent("run_complete", {"node": "a"})]))
    journal.record(Transition(JOB, ORG, JobStatus.VOTING, events=[FeedEvent("start", {})]))
    assert journal.sync()
    assert store.get_job(ORG, JOB).status == JobStatus.VOTING
    assert names() == ["start"]
    assert [t for t, _ in published.items] == [f"job.{JOB}", f"org.{ORG}"]


class OutageStore:
    """Stands in for a database server that is down for the next `failures` transactions."""

    def __init__(self, failures: int) -> None:
        self.failures = failures

    def __getattr__(self, name: str) -> Any:
        return getattr(store, name)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self.failures:
            self.failures -= 1
            raise store.StoreUnavailable("connection refused")
        with store.transaction():
            yield


def test_transitions_wait_while_the_database_is_down(db: None) -> None:
    published = Published()
    journal = StoreJournal(OutageStore(failures=2), published)
    journal.record(Transition(JOB, ORG, JobStatus.VOTING, events=[FeedEvent("start", {})]))
    assert not journal.sync()
    journal.record(Transition(JOB, ORG, JobStatus.RUNNING))
    assert not journal.sync()
    assert journal.pending == 2
    assert journal.sync()
    assert journal.pending == 0
    assert store.get_job(ORG, JOB).status == JobStatus.RUNNING
    assert [t for t, _ in published.items] == [f"job.{JOB}", f"org.{ORG}"]  # once, when stored


class ThreadRecorder(Published):
    """Also records which thread published: the writer, never the test's (the loop's) thread."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[str] = set()

    def __call__(self, topic: str, payload: dict[str, Any]) -> None:
        super().__call__(topic, payload)
        self.threads.add(threading.current_thread().name)


def test_the_writer_thread_persists_and_publishes(db: None) -> None:
    published = ThreadRecorder()
    journal = StoreJournal(store, published)
    journal.start()
    try:
        journal.record(Transition(JOB, ORG, JobStatus.VOTING, events=[FeedEvent("start", {})]))
        for node in ("a", "b"):
            journal.record(Transition(
                JOB, ORG, node_statuses={node: (NodeStatus.READY, None)},
                events=[FeedEvent("quorum_vote", {"node": node, "status": "success"})],
            ))
            assert journal.flush() == (2 if node == "a" else 1)  # hand-off, no waiting
        assert journal.sync(10)
        assert store.get_job(ORG, JOB).nodes_by_status() == {"ready": ["a", "b"]}
        assert names() == ["start", "quorum_vote", "quorum_vote"]
        job_wakes = [newest for topic, newest in published.items if topic == f"job.{JOB}"]
        assert job_wakes[-1] == store.job_events_after(ORG, JOB)[-1].id
        assert published.threads == {"journal-writer"}
        journal.record(Transition(JOB, ORG, JobStatus.COMPLETE,
                                  events=[FeedEvent("job_complete", {"status": "complete"})]))
    finally:
        assert journal.close(10)  # writes what was still recorded
    assert store.get_job(ORG, JOB).status == JobStatus.COMPLETE
    assert published.items[-1][0] == f"org.{ORG}"


def test_the_writer_waits_out_an_outage_and_sync_does_not(db: None) -> None:
    published = Published()
    journal = StoreJournal(OutageStore(failures=3), published)
    journal.start()
    try:
        journal.record(Transition(JOB, ORG, JobStatus.VOTING, events=[FeedEvent("start", {})]))
        # The database is down: a control request must not hang on it.
        assert not journal.sync(10)
        assert journal.pending == 1
    finally:
        assert journal.close(10)  # retries every RETRY_DELAY until the database is back
    assert journal.pending == 0
    assert store.get_job(ORG, JOB).status == JobStatus.VOTING
    assert [t for t, _ in published.items] == [f"job.{JOB}", f"org.{ORG}"]


def test_a_long_outage_keeps_only_the_newest_transitions(db: None) -> None:
    published = Published()
    journal = StoreJournal(OutageStore(failures=2), published, max_retained=3)
    for status in (JobStatus.VOTING, JobStatus.RUNNING, JobStatus.COMPLETE):
        journal.record(Transition(JOB, ORG, status))
    journal.record(Transition(JOB, ORG, events=[FeedEvent("job_complete", {"status": "x"})]))
    assert not journal.sync()
    assert journal.pending == 3  # the oldest (voting) was dropped
    assert not journal.sync()
    assert journal.sync()
    assert store.get_job(ORG, JOB).status == JobStatus.COMPLETE
    assert names() == ["job_complete"]
    assert [t for t, _ in published.items] == [f"job.{JOB}", f"org.{ORG}"]


def test_a_failing_publish_does_not_write_the_events_twice(db: None) -> None:
    def publish(topic: str, payload: dict[str, Any]) -> None:
        raise RuntimeError("socket closed")

    journal = StoreJournal(store, publish)
    journal.record(Transition(JOB, ORG, JobStatus.VOTING, events=[FeedEvent("start", {})]))
    assert journal.sync()
    assert [e.name for e in store.job_events_after(ORG, JOB)] == ["start"]


def _chunk(node: str, offset: int, data: str) -> Transition:
    from pushd.broker.contracts import LiveChunk

    return Transition(JOB, ORG, live_output=[LiveChunk(node, "stdout", offset, data)], events=[
        FeedEvent("output", {"node": node, "channel": "stdout", "offset": offset, "data": data})])


def test_live_output_is_an_event_per_chunk_and_stored_at_most_once_a_second(db: None) -> None:
    published = Published()
    journal = StoreJournal(store, published, output_max_bytes=1000)
    journal.start()
    try:
        journal.record(_chunk("a", 0, "one\n"))
        assert journal.sync(10)
        # The first chunk of a stream is stored with its event.
        assert store.get_output_bytes(ORG, JOB, "a", "stdout") == b"one\n"
        journal.record(_chunk("a", 4, "two\n"))
        journal.record(_chunk("a", 8, "three\n"))
        assert journal.sync(10)
        assert [e.data["data"] for e in store.job_events_after(ORG, JOB)] == [
            "one\n", "two\n", "three\n"]
        assert {t for t, _ in published.items} == {f"job.{JOB}"}  # never the org feed
        # The others wait for the stream's next write (LIVE_ROW_INTERVAL), then come together.
        deadline = threading.Event()
        for _ in range(100):
            if store.get_output_bytes(ORG, JOB, "a", "stdout") == b"one\ntwo\nthree\n":
                break
            deadline.wait(0.05)
        assert store.get_output_bytes(ORG, JOB, "a", "stdout") == b"one\ntwo\nthree\n"
        # A result replaces the live copy, and drops what was still pending.
        journal.record(_chunk("a", 14, "four\n"))
        journal.record(Transition(JOB, ORG, outputs={"a": NodeOutput("all\n", None)}))
        assert journal.sync(10)
    finally:
        journal.close()
    assert store.get_output_bytes(ORG, JOB, "a", "stdout") == b"all\n"


def test_events_keep_their_data_as_recorded(db: None) -> None:
    journal = StoreJournal(store, Published())
    odd = {"node": "a", "status": "ok", "text": "é\u2028\x00\ud800", "n": [1, 2.5, None]}
    journal.record(Transition(JOB, ORG, JobStatus.VOTING, events=[
        FeedEvent("start", {}), FeedEvent("quorum_vote", odd),
        FeedEvent("odd", {"timestamp": "given", "x": 1}),
    ]))
    assert journal.sync()
    by_event = {e.name: e.data for e in store.job_events_after(ORG, JOB)}
    assert list(by_event["start"]) == ["timestamp"]
    assert {k: v for k, v in by_event["quorum_vote"].items() if k != "timestamp"} == odd
    assert by_event["odd"] == {"timestamp": "given", "x": 1}


def test_a_big_batch_wakes_each_feed_once(db: None) -> None:
    """8,000-node jobs: one wake-up per topic per batch, not one message per event."""
    published = Published()
    journal = StoreJournal(store, published)
    journal.record(Transition(JOB, ORG, JobStatus.VOTING, events=[FeedEvent("start", {})]))
    for node in ("a", "b"):
        journal.record(Transition(
            JOB, ORG, node_statuses={node: (NodeStatus.READY, None)},
            events=[FeedEvent("quorum_vote", {"node": node, "status": "success"})]))
    assert journal.sync()
    events = store.job_events_after(ORG, JOB)
    assert published.items == [(f"job.{JOB}", events[-1].id), (f"org.{ORG}", events[0].id)]
