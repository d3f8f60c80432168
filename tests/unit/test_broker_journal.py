"""The broker's journal on both real databases: persist first, then publish with stable ids."""

from __future__ import annotations

import contextlib
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


class Published:
    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, topic: str, payload: dict[str, Any]) -> None:
        # Whatever is published must already be readable from the database.
        stored = {e.id for e in store.job_events_after(ORG, payload["job"])}
        assert payload["id"] in stored
        self.items.append((topic, payload))


def test_flush_persists_then_publishes_in_order(db: None) -> None:
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
    assert published.items == []  # nothing before the flush
    assert journal.flush() == 3
    view = store.get_job(ORG, JOB)
    assert view.status == JobStatus.COMPLETE
    assert view.nodes_by_status() == {"nacked": ["b"], "succeeded": ["a"]}
    assert view.node_reasons() == {"b": "busy"}
    record = store.get_output_record(ORG, JOB, "a")
    assert (record.stdout, record.stderr, record.truncated) == ("hi\n", None, True)
    topics = [t for t, _ in published.items]
    assert topics == [f"job.{JOB}", f"org.{ORG}", f"job.{JOB}", f"job.{JOB}", f"org.{ORG}"]
    ids = [p["id"] for t, p in published.items if t.startswith("job.")]
    assert ids == sorted(ids) and len(set(ids)) == 3
    first = published.items[0][1]
    assert first["event"] == "start" and first["job"] == JOB
    assert list(first["data"]) == ["timestamp", "x"]


def test_a_refused_transition_does_not_lose_the_others(db: None) -> None:
    published = Published()
    journal = StoreJournal(store, published)
    journal.record(Transition("e" * 32, ORG, outputs={"a": NodeOutput("x", "y")},
                              events=[FeedEvent("run_complete", {"node": "a"})]))
    journal.record(Transition(JOB, ORG, JobStatus.VOTING, events=[FeedEvent("start", {})]))
    journal.flush()
    assert store.get_job(ORG, JOB).status == JobStatus.VOTING
    assert [p["event"] for _, p in published.items] == ["start", "start"]


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
    assert journal.flush() == 0
    journal.record(Transition(JOB, ORG, JobStatus.RUNNING))
    assert journal.flush() == 0
    assert journal.pending == 2
    assert journal.flush() == 1
    assert journal.pending == 0
    assert store.get_job(ORG, JOB).status == JobStatus.RUNNING
