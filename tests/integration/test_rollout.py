"""Rollout control over the real server and stock-protocol peers (issue 17): max_concurrency
checked from the job feed, the error budget halting a job, waiting nodes that neither time out
nor look lost, re-running failed nodes, validation, and a job without options as before."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from pushd.rollout import MAX_CONCURRENCY_MESSAGE, MAX_ERRORS_MESSAGE
from tests.support.server import PushdServer, SseEvent, running_server

NODES = tuple(f"r{i}" for i in range(8))


@pytest.fixture(scope="module")
def server() -> Iterator[PushdServer]:
    with running_server(nodes=NODES) as srv:
        yield srv


@pytest.fixture
def peers(server: PushdServer) -> Iterator[dict[str, Any]]:
    made = {node: server.peer(node) for node in NODES}
    for node in NODES:
        server.wait_available(node)
    yield made
    server.stop_peers()


def start_job(server: PushdServer, **fields: Any) -> str:
    resp = server.request("POST", "jobs", fields)
    assert resp.status == 201, resp.body
    return resp.json()["uri"].rsplit("/", 1)[1]


def wait_finished(server: PushdServer, job_id: str, timeout: float = 40.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        doc = server.request("GET", f"jobs/{job_id}").json()
        if doc["status"] not in ("new", "voting", "running"):
            return doc
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {doc}\n{server.log_tail()}")


def feed(server: PushdServer, job_id: str) -> list[SseEvent]:
    """The finished job's whole feed, in the order the events happened (timestamp, then id)."""
    stream = server.stream(f"job_status_feed/{job_id}")
    try:
        events = [e for e in stream.rest(timeout=30) if e.name != "summary"]
    finally:
        stream.close()
    ordered = sorted(events, key=lambda e: (e.data["timestamp"], int(e.id)))
    assert [e.id for e in ordered] == [e.id for e in events], "ids follow the clock"
    return ordered


def most_running(events: list[SseEvent]) -> int:
    """The most nodes between their run_start and run_complete at any moment of the feed."""
    running, most = set(), 0
    for event in events:
        if event.name == "run_start":
            running.add(event.data["node"])
            most = max(most, len(running))
        elif event.name == "run_complete":
            running.discard(event.data["node"])
    return most


def test_never_more_than_max_concurrency_nodes_run(server: PushdServer, peers: dict) -> None:
    job_id = start_job(server, command="sleep 0.4", nodes=list(NODES), max_concurrency=3)
    doc = wait_finished(server, job_id)
    assert doc["status"] == "complete"
    assert doc["nodes"] == {"succeeded": list(NODES)}
    assert doc["max_concurrency"] == 3 and "max_errors" not in doc
    assert doc["node_counts"]["succeeded"] == 8
    assert doc["node_counts"]["skipped"] == doc["node_counts"]["waiting"] == 0
    events = feed(server, job_id)
    assert events[0].name == "start" and events[0].data["max_concurrency"] == 3
    # Every node voted before the first run started (quorum keeps its meaning).
    names = [e.name for e in events]
    assert names.index("quorum_succeeded") < names.index("run_start")
    assert names.count("quorum_vote") == 8
    assert most_running(events) == 3
    starts = [e.data["node"] for e in events if e.name == "run_start"]
    assert sorted(starts) == list(NODES)  # each node's start shows on the feed
    assert set(starts[:3]) == set(NODES[:3])  # the first wave: the first three, in job order


def test_percentage_concurrency_is_resolved_against_the_job(
    server: PushdServer, peers: dict
) -> None:
    nodes = list(NODES[:5])
    job_id = start_job(server, command="sleep 0.3", nodes=nodes, max_concurrency="30%")
    doc = wait_finished(server, job_id)
    assert doc["status"] == "complete" and doc["max_concurrency"] == "30%"
    events = feed(server, job_id)
    assert events[0].data["max_concurrency"] == 2  # 30% of 5 = 1.5, rounded up
    assert most_running(events) == 2


def test_error_budget_halts_the_job_and_skips_the_rest(server: PushdServer, peers: dict) -> None:
    for node in ("r0", "r1"):
        peers[node].answer_run = "nack"  # refuses to run: failed (nacked while running)
    org_feed = server.stream("job_status_feed")
    try:
        job_id = start_job(server, command="sleep 0.2", nodes=list(NODES[:6]),
                           max_concurrency=1, max_errors=1)
        doc = wait_finished(server, job_id)
        ends = [e for e in org_feed.events_until("job_complete", timeout=30)
                if e.name == "job_complete"]
    finally:
        org_feed.close()
    assert doc["status"] == "halted"
    assert doc["nodes"] == {"failed": ["r0", "r1"], "skipped": ["r2", "r3", "r4", "r5"]}
    assert doc["node_counts"]["skipped"] == 4 and doc["node_counts"]["failed"] == 2
    assert [(e.data["job"], e.data["status"]) for e in ends] == [(job_id, "halted")]
    events = feed(server, job_id)
    halted = [e.data for e in events if e.name == "halted"]
    assert halted and (halted[0]["failed"], halted[0]["max_errors"], halted[0]["skipped"]) == (
        2, 1, 4)
    for node in ("r2", "r3", "r4", "r5"):
        peer = peers[node]
        assert not peer.received("run"), f"{node} was skipped but got run"
        peer.wait_for("abort")  # released from `committed`
        deadline = time.monotonic() + 5
        while peer.state != "idle" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert peer.state == "idle"


def test_a_node_waiting_its_turn_neither_times_out_nor_looks_lost(
    server: PushdServer, peers: dict
) -> None:
    # Each node runs 1.5 s of a 2 s run_timeout; the second waits 1.5 s in `committed`, longer
    # than the server's keep-alive (1 s), and the job takes longer than run_timeout.
    job_id = start_job(server, command="sleep 1.5", nodes=["r6", "r7"], max_concurrency=1,
                       run_timeout=2)
    time.sleep(0.8)
    doc = server.request("GET", f"jobs/{job_id}").json()
    assert doc["status"] == "running"
    assert doc["nodes"]["ready"] == ["r7"] and doc["node_counts"]["waiting"] == 1
    assert peers["r7"].state == "committed"
    state = server.request("GET", "node_states/r7").json()
    assert state["status"] == "online", state  # heartbeating `committed`: not lost
    doc = wait_finished(server, job_id)
    assert doc["status"] == "complete"
    assert doc["nodes"] == {"succeeded": ["r6", "r7"]}


def test_rerun_of_the_failed_nodes(server: PushdServer, peers: dict) -> None:
    peers["r1"].answer_run = "nack"
    first = start_job(server, command="true", nodes=["r0", "r1", "r2"], max_errors="50%",
                      quorum=2)
    doc = wait_finished(server, first)
    assert doc["status"] == "complete" and doc["nodes"] == {
        "failed": ["r1"], "succeeded": ["r0", "r2"]}
    peers["r1"].answer_run = "ack"
    resp = server.request("POST", f"jobs/{first}/rerun", {"nodes": "failed"})
    assert resp.status == 201, resp.body
    answer = resp.json()
    assert answer["rerun_of"] == first and answer["uri"].endswith(answer["id"])
    again = wait_finished(server, answer["id"])
    assert again["status"] == "complete"
    assert again["nodes"] == {"succeeded": ["r1"]}
    assert again["rerun_of"] == first and again["max_errors"] == "50%"
    assert again["command"] == "true"

    every = server.request("POST", f"jobs/{first}/rerun", {"nodes": "all"}).json()
    assert sorted(wait_finished(server, every["id"])["nodes"]["succeeded"]) == ["r0", "r1", "r2"]
    named = server.request("POST", f"jobs/{first}/rerun", {"nodes": ["r2"]}).json()
    assert wait_finished(server, named["id"])["nodes"] == {"succeeded": ["r2"]}


def test_rerun_refusals(server: PushdServer, peers: dict) -> None:
    done = start_job(server, command="true", nodes=["r3"])
    wait_finished(server, done)
    before = len(server.request("GET", "jobs").json())
    for body, status, message in [
        ({"nodes": "failed"}, 400, f"job '{done}' has no failed nodes to re-run"),
        ({"nodes": ["r4"]}, 400, f"node 'r4' is not a node of job '{done}'"),
        ({"nodes": "some"}, 400, 'nodes must be "failed", "all" or a list of node names'),
        ({"nodes": []}, 400, 'nodes must be "failed", "all" or a list of node names'),
        ({"nodes": "all", "x": 1}, 400, 'invalid key supplied (expected only "nodes")'),
    ]:
        resp = server.request("POST", f"jobs/{done}/rerun", body)
        assert (resp.status, resp.json()) == (status, {"error": message}), body
    missing = server.request("POST", f"jobs/{'0' * 32}/rerun", {"nodes": "all"})
    assert missing.status == 404
    running = start_job(server, command="sleep 2", nodes=["r5"])
    resp = server.request("POST", f"jobs/{running}/rerun", {"nodes": "failed"})
    assert resp.status == 409 and "has not finished" in resp.json()["error"]
    wait_finished(server, running)
    assert len(server.request("GET", "jobs").json()) == before + 1  # only `running` was made


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_concurrency": 0}, MAX_CONCURRENCY_MESSAGE),
        ({"max_concurrency": "10"}, None),
        ({"max_concurrency": "10 %"}, MAX_CONCURRENCY_MESSAGE),
        ({"max_concurrency": -3}, MAX_CONCURRENCY_MESSAGE),
        ({"max_concurrency": 1.5}, MAX_CONCURRENCY_MESSAGE),
        ({"max_concurrency": "150%"}, MAX_CONCURRENCY_MESSAGE),
        ({"max_errors": -1}, MAX_ERRORS_MESSAGE),
        ({"max_errors": "lots"}, MAX_ERRORS_MESSAGE),
        ({"max_errors": True}, MAX_ERRORS_MESSAGE),
    ],
)
def test_bad_limits_are_400_and_nothing_is_stored(
    server: PushdServer, fields: dict[str, Any], message: str | None
) -> None:
    before = len(server.request("GET", "jobs").json())
    resp = server.request("POST", "jobs", {"command": "true", "nodes": ["r0"], **fields})
    if message is None:
        assert resp.status == 201  # digits in a string are a count
        return
    assert resp.status == 400
    assert resp.json() == {"error": message}
    assert len(server.request("GET", "jobs").json()) == before


def test_a_job_without_the_options_runs_as_before(server: PushdServer, peers: dict) -> None:
    job_id = start_job(server, command="sleep 0.5", nodes=list(NODES[:4]))
    doc = wait_finished(server, job_id)
    assert doc["status"] == "complete"
    assert set(doc) == {"id", "command", "status", "run_timeout", "created_at", "updated_at",
                        "nodes"}
    events = feed(server, job_id)
    assert "max_concurrency" not in events[0].data and "max_errors" not in events[0].data
    assert set(events[0].data) == {"timestamp", "command", "run_timeout", "quorum",
                                   "node_count", "user", "capture"}
    names = [e.name for e in events]
    assert names[:1] + names[-1:] == ["start", "job_complete"]
    assert names.count("run_start") == names.count("run_complete") == 4
    assert "halted" not in names
    # All nodes were sent `run` at once: every run started before the first one ended.
    assert most_running(events) == 4
