"""Property (issue 12): every job POST to a live server either gets a 4xx with a JSON error, or
a 201 whose job is terminal within its voting timeout + 5 s; and the server keeps answering.

Bodies come from tests/support/job_bodies.py: well-formed ones near every bound, hostile ones
(lone surrogates in every field, relative dirs, env names the client refuses, duplicate nodes,
quorum above the node count, junk types) and random bytes. node1 is an online scripted peer
that runs "true"/"false" at once and refuses other commands; node2 and "ghost" are offline."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings

from tests.support.job_bodies import job_bodies
from tests.support.server import PushdServer, running_server

SERVER_VOTING_TIMEOUT = 2
TERMINAL = {"complete", "quorum_failed", "aborted", "timed_out", "crashed"}


@pytest.fixture(scope="module")
def server() -> Iterator[PushdServer]:
    with running_server(nodes=("node1", "node2"),
                        settings={"voting_timeout": SERVER_VOTING_TIMEOUT}) as srv:
        srv.peer("node1")
        srv.wait_available("node1")
        yield srv


def voting_timeout_of(body: bytes) -> float:
    import json

    value = json.loads(body).get("voting_timeout")
    return float(value) if isinstance(value, int) else float(SERVER_VOTING_TIMEOUT)


def wait_terminal(server: PushdServer, job_id: str, within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        doc = server.request("GET", f"jobs/{job_id}").json()
        if doc["status"] in TERMINAL:
            return doc
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} not terminal within {within:g} s: {doc}")


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(body=job_bodies)
def test_every_post_is_refused_or_ends(server: PushdServer, body: bytes) -> None:
    resp = server.request("POST", "jobs", body)
    event(f"HTTP {resp.status}")
    if resp.status != 201:
        assert 400 <= resp.status < 500, (resp.status, resp.body)
        error = resp.json()
        assert isinstance(error, dict) and error.get("error"), resp.body
        return
    job_id = resp.json()["uri"].rsplit("/", 1)[1]
    doc = wait_terminal(server, job_id, voting_timeout_of(body) + 5)
    event(f"job {doc['status']}")
    # Duplicates ran once: the job lists each node once.
    listed = [name for names in doc["nodes"].values() for name in names]
    assert len(listed) == len(set(listed)), doc


def test_the_server_still_answers_after_the_property(server: PushdServer) -> None:
    assert server.request("GET", "/_status", sign=False).status == 200
    resp = server.request("POST", "jobs", {"command": "true", "nodes": ["node1"]})
    assert resp.status == 201
    doc = wait_terminal(server, resp.json()["uri"].rsplit("/", 1)[1], SERVER_VOTING_TIMEOUT + 5)
    assert doc["status"] == "complete" and doc["nodes"] == {"succeeded": ["node1"]}
