"""Settings the broker applies off its loop, with a real broker, real Curve and a stock-protocol
peer, on SQLite and PostgreSQL: output_max_bytes caps what is stored of a node's output, and
job_retention_days purges old finished jobs while the broker keeps running jobs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pushd import store
from pushd.protocol.output import TRUNCATION_MARKER
from pushd.states import JobStatus
from pushd.store.models import Job
from tests.support.broker_runner import ORG_ID, BrokerEnv, wait_until

pytestmark = pytest.mark.postgres


@pytest.fixture
def broker_env(db_backend: tuple[str, dict], tmp_path: Path) -> Iterator[Any]:
    envs: list[BrokerEnv] = []

    def start(**overrides: Any) -> BrokerEnv:
        env = BrokerEnv(tmp_path, db_backend, **overrides).start()
        envs.append(env)
        return env

    try:
        yield start
    finally:
        for env in envs:
            env.close()
        store.close_database()


def test_output_over_output_max_bytes_is_stored_cut_with_the_clients_marker(
    broker_env: Any,
) -> None:
    env = broker_env(output_max_bytes=1000)
    peer = env.peer("n1")
    big = "".join(f"line {i:05d}\n" for i in range(800))  # 9,600 bytes, well under a message
    peer.output = (big, "short\n")
    job = env.create_job(["n1"], "true", capture=True)
    env.wait_job(job, JobStatus.COMPLETE)
    wait_until(lambda: store.get_output_record(ORG_ID, job, "n1") is not None, 5, "output")

    record = store.get_output_record(ORG_ID, job, "n1")
    marker = TRUNCATION_MARKER.format(dropped=len(big) - 1000, total=len(big))
    assert record.stdout == marker + big[-1000:]
    assert (record.stdout_bytes, record.truncated) == (len(big), True)
    assert record.stderr == "short\n"  # under the cap: whole


def test_job_retention_days_purges_old_finished_jobs_in_batches(broker_env: Any) -> None:
    env = broker_env(job_retention_days=2, retention_batch=2, retention_interval=0.2)
    peer = env.peer("n1")
    peer.output = ("kept\n", "")
    finished = [env.create_job(["n1"], "true", capture=True) for _ in range(1)]
    for job in finished:
        env.wait_job(job, JobStatus.COMPLETE)
    # Five more finished jobs, then age all six past the retention; a voting one stays.
    for _ in range(5):
        job = env.create_job(["n1"], "true", start=False)
        store.set_job_status(ORG_ID, job, JobStatus.ABORTED)
        finished.append(job)
    stuck = env.create_job(["n1"], "true", start=False)
    store.set_job_status(ORG_ID, stuck, JobStatus.VOTING)
    recent = env.create_job(["n1"], "true", start=False)
    store.set_job_status(ORG_ID, recent, JobStatus.COMPLETE)
    long_ago = store.utcnow() - timedelta(days=3)
    Job.update(updated_at=long_ago).where(Job.id.in_([*finished, stuck])).execute()

    wait_until(lambda: all(env.job(j) is None for j in finished), 15, "old jobs purged")
    assert store.get_output(ORG_ID, finished[0], "n1", "stdout") is None
    assert store.job_events_after(ORG_ID, finished[0]) == []
    assert env.job(stuck) is not None and env.job(recent) is not None
    # The broker still runs jobs and records them.
    job = env.create_job(["n1"], "true")
    assert env.wait_job(job).status is JobStatus.COMPLETE
