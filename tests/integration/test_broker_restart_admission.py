"""A broker restart costs new jobs no waiting (issue 12 item 3), real broker + protocol peers.

The recovery grace is made long (60 s) so that a job waiting for it could not finish within
the tests' timeouts: every test here fails if a new job waits for the grace.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pushd import store
from pushd.states import JobStatus, NodeStatus
from tests.support.broker_runner import BrokerEnv, wait_until

GRACE_INTERVALS = 600  # x 0.1 s heartbeat interval: a 60 s recovery grace
SOON = 10.0  # seconds: far less than the grace


@pytest.fixture
def env(tmp_path: Path) -> Iterator[BrokerEnv]:
    env = BrokerEnv(
        tmp_path, ("sqlite", {"path": str(tmp_path / "pushd.sqlite3")}),
        recovery_grace_intervals=GRACE_INTERVALS,
    ).start()
    try:
        yield env
    finally:
        env.close()


def test_job_posted_after_a_restart_starts_once_its_nodes_are_available(env: BrokerEnv) -> None:
    busy = env.peer("busy")
    env.peer("idle")
    running = env.create_job(["busy"], "sleep 2")
    wait_until(lambda: env.job(running).node_status("busy") == NodeStatus.RUNNING, 5, "running")
    env.restart()
    assert env.broker is not None and env.broker.config.recovery_grace >= 60
    env.wait_available("idle", timeout=SOON)
    job = env.create_job(["idle"], "true")
    view = env.wait_job(job, timeout=SOON)
    assert view.status == JobStatus.COMPLETE
    assert view.nodes_by_status() == {"succeeded": ["idle"]}
    # The node that was running a job when the broker went away is re-attached, not aborted.
    view = env.wait_job(running, timeout=SOON)
    assert view.status == JobStatus.COMPLETE
    assert view.nodes_by_status() == {"succeeded": ["busy"]}
    assert busy.received("abort")[1:] == []


def test_new_job_found_at_start_runs_as_soon_as_its_nodes_are_back(env: BrokerEnv) -> None:
    env.peer("n1")
    env.stop()
    # Accepted by the API while the broker was down; "ghost" was never seen: not waited for.
    store.open_database_params(*env.config.database)
    job = env.create_job(["n1", "ghost"], "true", quorum=1, start=False)
    env.start()
    view = env.wait_job(job, timeout=SOON)
    assert view.status == JobStatus.COMPLETE
    assert view.nodes_by_status() == {"succeeded": ["n1"], "unavailable": ["ghost"]}


def test_job_during_the_grace_naming_an_unknown_node_is_not_held(env: BrokerEnv) -> None:
    env.peer("n1")
    env.restart()
    job = env.create_job(["ghost"], "true")
    view = env.wait_job(job, timeout=SOON)
    assert view.status == JobStatus.QUORUM_FAILED
