"""Job feeds over the real server (gunicorn + gevent workers + broker), nodes played by the
scripted protocol peer configured through the REST config endpoint like the stock client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.server import PushdServer, SseEvent, running_server

NODES = ("node1", "node2", "node3", "node4")


@pytest.fixture(scope="module")
def server() -> Iterator[PushdServer]:
    with running_server(nodes=NODES, settings={"voting_timeout": 3}) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh_peers(server: PushdServer) -> Iterator[None]:
    yield
    server.stop_peers()


def start_job(server: PushdServer, **fields: Any) -> str:
    resp = server.request("POST", "jobs", fields)
    assert resp.status == 201, resp.body
    return resp.json()["uri"].rsplit("/", 1)[1]


def names(events: list[SseEvent]) -> list[str | None]:
    return [event.name for event in events]


def check_common(events: list[SseEvent]) -> None:
    ids = [int(e.id) for e in events if e.name != "summary"]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), "ids unique and increasing"
    stamps = [e.data["timestamp"] for e in events]
    assert all(len(s) == 27 and s.endswith("Z") for s in stamps), stamps


def full_feed(server: PushdServer, job_id: str, **kw: Any) -> list[SseEvent]:
    stream = server.stream(f"job_status_feed/{job_id}", **kw)
    try:
        assert stream.status == 200
        assert stream.headers.get("x-accel-buffering") == "no"
        events = stream.rest(timeout=30)
    finally:
        stream.close()
    check_common(events)
    return events


@pytest.fixture
def peer(server: PushdServer) -> Iterator[Any]:
    node = server_peer_node = "node1"
    p = server.peer(server_peer_node)
    server.wait_available(node)
    yield p
    p.stop()


def test_succeeded_job_streams_live_then_summary(server: PushdServer, peer: Any) -> None:
    job_id = start_job(server, command="sleep 0.5", nodes=["node1"])
    events = full_feed(server, job_id)
    assert names(events) == [
        "start",
        "quorum_vote",
        "quorum_succeeded",
        "run_start",
        "run_complete",
        "job_complete",
        "summary",
    ]
    start = events[0].data
    assert start["command"] == "sleep 0.5" and start["node_count"] == 1
    assert start["quorum"] == 1 and start["user"] == server.admin_user
    assert "file" not in start
    assert events[1].data["node"] == "node1" and events[1].data["status"] == "success"
    assert events[4].data == {**events[4].data, "node": "node1", "status": "success"}
    assert events[5].data["status"] == "complete"
    summary = events[6].data
    assert summary["status"] == "complete" and summary["nodes"] == {"succeeded": ["node1"]}


def test_failed_job(server: PushdServer, peer: Any) -> None:
    job_id = start_job(server, command="false", nodes=["node1"])
    events = full_feed(server, job_id)
    assert names(events)[-3:] == ["run_complete", "job_complete", "summary"]
    assert events[-3].data["status"] == "failure"
    assert events[-2].data["status"] == "complete"
    assert events[-1].data["nodes"] == {"failed": ["node1"]}


def test_nacked_job(server: PushdServer, peer: Any) -> None:
    peer.answer_commit = "nack"
    job_id = start_job(server, command="true", nodes=["node1"])
    events = full_feed(server, job_id)
    assert names(events)[:2] == ["start", "quorum_vote"]
    assert events[1].data["status"] == "failure"
    assert events[-2].name == "job_complete" and events[-2].data["status"] == "quorum_failed"
    assert events[-1].data["nodes"] == {"nacked": ["node1"]}


def test_quorum_failed_on_an_offline_node(server: PushdServer) -> None:
    job_id = start_job(server, command="true", nodes=["node4"])
    events = full_feed(server, job_id)
    assert names(events)[0] == "start"
    votes = [e.data for e in events if e.name == "quorum_vote"]
    assert votes == [{**votes[0], "node": "node4", "status": "down"}]
    assert events[-2].data["status"] == "quorum_failed"
    doc = server.request("GET", f"jobs/{job_id}").json()
    assert doc["status"] == "quorum_failed" and doc["nodes"] == {"unavailable": ["node4"]}


def test_timed_out_job(server: PushdServer, peer: Any) -> None:
    job_id = start_job(server, command="sleep 5", nodes=["node1"], run_timeout=1)
    events = full_feed(server, job_id)
    assert "run_start" in names(events)
    assert events[-2].name == "job_complete" and events[-2].data["status"] == "timed_out"
    assert events[-1].data["nodes"] == {"timed_out": ["node1"]}


def test_finished_job_replays_history_and_resumes_by_id(server: PushdServer, peer: Any) -> None:
    job_id = start_job(server, command="true", nodes=["node1"])
    live = full_feed(server, job_id)
    replay = full_feed(server, job_id)
    assert [(e.name, e.id) for e in replay[:-1]] == [(e.name, e.id) for e in live[:-1]]
    resumed = full_feed(server, job_id, last_event_id=live[2].id)
    assert [e.id for e in resumed[:-1]] == [e.id for e in live[3:-1]]
    bogus = full_feed(server, job_id, last_event_id="not-an-id")
    assert len(bogus) == len(live)


def test_two_concurrent_streams(server: PushdServer, peer: Any) -> None:
    job_id = start_job(server, command="sleep 1", nodes=["node1"])
    first = server.stream(f"job_status_feed/{job_id}")
    second = server.stream(f"job_status_feed/{job_id}")
    try:
        a = first.rest(timeout=30)
        b = second.rest(timeout=30)
    finally:
        first.close()
        second.close()
    assert names(a) == names(b) and [e.id for e in a[:-1]] == [e.id for e in b[:-1]]
    assert a[-2].name == "job_complete"


def test_keepalive_comments_while_a_job_runs(server: PushdServer, peer: Any) -> None:
    job_id = start_job(server, command="sleep 2.5", nodes=["node1"])
    stream = server.stream(f"job_status_feed/{job_id}")
    try:
        events = stream.rest(timeout=30)
    finally:
        stream.close()
    assert ":keepalive" in stream.comments
    assert events[-2].name == "job_complete" and events[-2].data["status"] == "complete"


def test_feed_refusals(server: PushdServer) -> None:
    job_id = start_job(server, command="true", nodes=["node4"])
    wrong = server.stream(f"job_status_feed/{job_id}", accept="application/json")
    assert wrong.status == 406
    wrong.close()
    missing = server.stream("job_status_feed/" + "0" * 32)
    assert missing.status == 404
    missing.close()
    assert server.request("POST", f"job_status_feed/{job_id}").status == 405
    unsigned = server.request("GET", f"job_status_feed/{job_id}", sign=False)
    assert unsigned.status == 400


def test_non_ascii_command_is_encoded_cleanly(server: PushdServer) -> None:
    command = "echo ünïcødé ✓ \"quoted\"\nsecond line"
    job_id = start_job(server, command=command, nodes=["node4"])
    events = full_feed(server, job_id)
    assert events[0].name == "start" and events[0].data["command"] == command
    assert "\n" not in events[0].raw_data
    assert events[-1].data["command"] == command
    assert server.request("GET", f"jobs/{job_id}").json()["command"] == command
