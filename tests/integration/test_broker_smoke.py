"""A real broker over real Curve sockets: the basic happy path and the control socket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pushd.states import JobStatus
from tests.support.broker_runner import BrokerEnv, wait_until


@pytest.fixture
def env(tmp_path: Path) -> Iterator[BrokerEnv]:
    env = BrokerEnv(tmp_path, ("sqlite", {"path": str(tmp_path / "pushd.sqlite3")})).start()
    try:
        yield env
    finally:
        env.close()


def test_node_comes_online_and_runs_a_job(env: BrokerEnv) -> None:
    peer = env.peer("n1")
    assert env.node_state("n1")["status"] == "online"
    job = env.create_job(["n1"], "true")
    view = env.wait_job(job, JobStatus.COMPLETE)
    assert view.nodes_by_status() == {"succeeded": ["n1"]}
    assert env.event_names(job) == [
        "start", "quorum_vote", "quorum_succeeded", "run_start", "run_complete", "job_complete"
    ]
    wait_until(lambda: peer.server_heartbeats > 0, 3, "a verified server heartbeat")
    status = env.client.status()
    assert status["node_fsm_count"] == 1
    assert status["job_processes"] == []
