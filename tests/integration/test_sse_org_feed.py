"""The org feed, and resuming feeds with Last-Event-ID across a server restart (real server)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.server import PushdServer, SseEvent, running_server


@pytest.fixture(scope="module")
def server() -> Iterator[PushdServer]:
    with running_server(nodes=("node1", "node2", "node3")) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh_peers(server: PushdServer) -> Iterator[None]:
    yield
    server.stop_peers()


def org_path(org: str | None, path: str) -> str:
    return path if org is None else f"/organizations/{org}/pushy/{path}"


def start_job(server: PushdServer, org: str | None = None, **fields: Any) -> str:
    resp = server.request("POST", org_path(org, "jobs"), fields)
    assert resp.status == 201, resp.body
    return resp.json()["uri"].rsplit("/", 1)[1]


def wait_finished(
    server: PushdServer, job_id: str, org: str | None = None, timeout: float = 20.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        doc = server.request("GET", org_path(org, f"jobs/{job_id}")).json()
        if doc["status"] not in ("new", "voting", "running"):
            return doc
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {doc}")


def org_events(stream: Any, count: int, timeout: float = 20.0) -> list[SseEvent]:
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        event = stream.next_event(max(0.1, deadline - time.monotonic()))
        assert event is not None, f"org feed closed after {out}"
        out.append(event)
    return out


def test_org_feed_interleaves_two_jobs(server: PushdServer) -> None:
    server.peer("node1")
    server.peer("node2")
    server.wait_available("node1")
    server.wait_available("node2")
    stream = server.stream("job_status_feed")
    try:
        assert stream.status == 200
        assert stream.headers["content-type"] == "text/event-stream"
        first = start_job(server, command="sleep 3", nodes=["node1"])
        second = start_job(server, command="true", nodes=["node2"])
        events = org_events(stream, 4)
    finally:
        stream.close()
    seen = [(e.name, e.data["job"]) for e in events]
    assert sorted(seen) == sorted(
        [("start", first), ("start", second), ("job_complete", first), ("job_complete", second)]
    )
    assert seen[0] == ("start", first)
    # the second job starts and ends while the first still runs: the feed interleaves them
    assert seen.index(("start", second)) < seen.index(("job_complete", first))
    assert seen[-1] == ("job_complete", first)
    for event in events:
        assert list(event.data)[:2] == ["timestamp", "job"]
    assert [int(e.id) for e in events] == sorted(int(e.id) for e in events)


def test_org_feed_history_and_resume_after_a_server_restart(server: PushdServer) -> None:
    org = "history"  # an organization of its own, so its feed holds only this test's jobs
    server.add_org(org)
    feed = org_path(org, "job_status_feed")
    first = start_job(server, org, command="true", nodes=["node3"])
    wait_finished(server, first, org)

    # No Last-Event-ID: no history, only what happens from now on.
    fresh = server.stream(feed)
    # An unknown id: start_of_history, then every retained event.
    history = server.stream(feed, last_event_id="org-1")
    try:
        replay = org_events(history, 3)
        assert replay[0].name == "start_of_history" and replay[0].id == "start_id"
        assert [(e.name, e.data["job"]) for e in replay[1:]] == [
            ("start", first),
            ("job_complete", first),
        ]
        second = start_job(server, org, command="true", nodes=["node3"])
        live = org_events(fresh, 2)
        assert [(e.name, e.data["job"]) for e in live] == [
            ("start", second),
            ("job_complete", second),
        ]
    finally:
        fresh.close()
        history.close()
    wait_finished(server, second, org)

    server.restart()
    third = start_job(server, org, command="true", nodes=["node3"])
    wait_finished(server, third, org)
    resumed = server.stream(feed, last_event_id=replay[-1].id)
    try:
        after = org_events(resumed, 4)
    finally:
        resumed.close()
    assert [(e.name, e.data["job"]) for e in after] == [
        ("start", second),
        ("job_complete", second),
        ("start", third),
        ("job_complete", third),
    ]
    assert [e.id for e in after[:2]] == [e.id for e in live]


def test_job_feed_resumes_after_a_server_restart(server: PushdServer) -> None:
    server.peer("node1")
    server.wait_available("node1")
    job_id = start_job(server, command="true", nodes=["node1"])
    wait_finished(server, job_id)
    before = server.stream(f"job_status_feed/{job_id}").rest(timeout=20)
    assert before[-2].name == "job_complete"

    server.restart()
    again = server.stream(f"job_status_feed/{job_id}", last_event_id=before[1].id).rest(timeout=20)
    assert [(e.name, e.id) for e in again[:-1]] == [(e.name, e.id) for e in before[2:-1]]
    assert again[-1].name == "summary"
    assert again[-1].data["status"] == "complete"


def test_a_slow_reader_blocks_neither_the_broker_nor_other_readers(server: PushdServer) -> None:
    slow = server.stream("job_status_feed", recv_buffer=4096)
    fast = server.stream("job_status_feed")
    try:
        command = "x" * 60_000  # each start event carries it: megabytes the slow reader ignores
        jobs = [start_job(server, command=f"{command}{i}", nodes=["node3"]) for i in range(30)]
        seen = org_events(fast, 60, timeout=60)
        assert sorted(e.data["job"] for e in seen if e.name == "job_complete") == sorted(jobs)
        for job_id in jobs:  # the broker finished every job meanwhile
            assert wait_finished(server, job_id)["status"] == "quorum_failed"
        late = org_events(slow, 60, timeout=60)
    finally:
        slow.close()
        fast.close()
    assert [(e.name, e.id) for e in late] == [(e.name, e.id) for e in seen]


def test_many_readers_in_both_workers_each_get_every_event_once_in_order(
    server: PushdServer,
) -> None:
    # Streams of one worker share their store reads; each must still see every event of its
    # feed exactly once, in id order, whichever worker serves it and whenever it was opened.
    server.peer("node1")
    server.peer("node2")
    server.wait_available("node1")
    server.wait_available("node2")
    orgs = [server.stream("job_status_feed") for _ in range(12)]
    try:
        time.sleep(0.5)  # every org stream has sent its head
        job_id = start_job(server, command="sleep 1", nodes=["node1", "node2"])
        jobs = [server.stream(f"job_status_feed/{job_id}") for _ in range(12)]
        try:
            job_feeds = [stream.rest(timeout=30) for stream in jobs]
        finally:
            for stream in jobs:
                stream.close()
        org_feeds = [org_events(stream, 2, timeout=30) for stream in orgs]
    finally:
        for stream in orgs:
            stream.close()
    first = [(e.name, e.id) for e in job_feeds[0][:-1]]
    assert first[0][0] == "start" and first[-1][0] == "job_complete"
    ids = [int(str(event_id)) for _, event_id in first]
    assert ids == sorted(set(ids))
    for feed in job_feeds:
        assert [(e.name, e.id) for e in feed[:-1]] == first
        assert feed[-1].name == "summary"
    for feed in org_feeds:
        assert [(e.name, e.data["job"]) for e in feed] == [
            ("start", job_id), ("job_complete", job_id)]
    # Resuming from the middle replays exactly the rest, then the summary.
    middle = first[len(first) // 2][1]
    resumed = server.stream(f"job_status_feed/{job_id}", last_event_id=str(middle))
    try:
        rest = resumed.rest(timeout=30)
    finally:
        resumed.close()
    assert [(e.name, e.id) for e in rest[:-1]] == first[len(first) // 2 + 1 :]
    assert rest[-1].name == "summary"
