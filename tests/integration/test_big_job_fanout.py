"""A 100,000-node job does not stall the broker (issue 12 item 7): real server, real peer.

Before the change the broker loaded, started and fanned out such a job in one loop turn of
several seconds: node_states requests meanwhile got 503 and the API logged the broker, which
had started the job, as unavailable.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.support.server import running_server

NODES = 100_000
ACTIVE = ("new", "voting", "running")


@pytest.mark.slow
def test_node_states_keep_answering_during_a_big_jobs_fan_out() -> None:
    with running_server(nodes=("node1",), settings={"max_request_body": 4_000_000}) as srv:
        srv.peer("node1").wait_for("abort", timeout=10)
        deadline = time.monotonic() + 10
        while srv.request("GET", "node_states/node1").json().get("availability") != "available":
            assert time.monotonic() < deadline, "node1 never became available"
            time.sleep(0.05)
        statuses: list[int] = []
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                statuses.append(srv.request("GET", "node_states", timeout=30).status)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            ghosts = [f"ghost-{i:06d}" for i in range(NODES - 1)]  # never seen by the broker
            resp = srv.request("POST", "jobs", {"command": "true", "nodes": ["node1", *ghosts],
                                                "quorum": 1}, timeout=120)
            assert resp.status == 201, resp.body
            during_post = len(statuses)
            job_id = str(resp.json()["uri"]).rsplit("/", 1)[-1]
            deadline = time.monotonic() + 180
            while True:
                doc = srv.request("GET", f"jobs/{job_id}", timeout=60).json()
                if doc["status"] not in ACTIVE:
                    break
                assert time.monotonic() < deadline, f"job still {doc['status']}"
                time.sleep(0.2)
        finally:
            stop.set()
            poller.join(60)
        assert doc["status"] == "complete", doc["status"]
        assert doc["nodes"]["succeeded"] == ["node1"]
        assert len(doc["nodes"]["unavailable"]) == NODES - 1
        assert len(statuses) > during_post > 0  # polled while the job was created and after
        assert set(statuses) == {200}, sorted(set(statuses))
        assert "no answer yet from the broker" not in srv.log_text()
        assert "broker unavailable" not in srv.log_text()
