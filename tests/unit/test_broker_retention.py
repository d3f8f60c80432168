"""job_retention_days: finished jobs purged in bounded batches, on SQLite and PostgreSQL; and the
server's output cap (output_max_bytes) as a pure function."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest

from pushd import store
from pushd.broker.retention import JobRetention
from pushd.protocol.output import TRUNCATION_MARKER, cap_text
from pushd.states import ACTIVE_JOB_STATUSES, JobStatus
from pushd.store.models import Job, JobEvent, JobNode, JobOption, JobOutput

ORG = "e" * 32
NOW = datetime(2030, 6, 1, 12, 0, 0)
OLD = NOW - timedelta(days=40)
FINISHED = (JobStatus.COMPLETE, JobStatus.QUORUM_FAILED, JobStatus.ABORTED,
            JobStatus.TIMED_OUT, JobStatus.CRASHED)  # fmt: skip


def job_with_everything(status: JobStatus, updated_at: datetime) -> str:
    """A job with two nodes, options, output and events, last changed at `updated_at`."""
    job_id = uuid.uuid4().hex
    store.create_job(ORG, job_id, "uptime", ["n1", "n2"], 1, 60, "alice",
                     {"env": {"A": "1"}, "capture": True})
    store.store_output(ORG, job_id, "n1", "out", "err")
    store.append_events([(ORG, job_id, "start", {}), (ORG, job_id, "job_complete", {})])
    store.set_job_status(ORG, job_id, status)
    Job.update(updated_at=updated_at).where(Job.id == job_id).execute()
    return job_id


def rows_of(job_id: str) -> int:
    return sum(
        model.select().where(model.job_id == job_id).count()
        for model in (JobNode, JobOption, JobOutput, JobEvent)
    )


@pytest.mark.postgres
def test_purge_is_batched_oldest_first_and_never_touches_unfinished_jobs(store_db: str) -> None:
    finished = [job_with_everything(status, OLD + timedelta(minutes=i))
                for i, status in enumerate(FINISHED * 2)]  # fmt: skip
    unfinished = [job_with_everything(status, OLD - timedelta(days=365))
                  for status in ACTIVE_JOB_STATUSES]  # fmt: skip
    recent = job_with_everything(JobStatus.COMPLETE, NOW - timedelta(days=1))
    retention = JobRetention(store, 30, batch=4, interval=600.0, pause=0.5, now=lambda: NOW)

    assert retention() == 0.5  # a full batch: more may wait, come back soon
    assert [store.get_job(ORG, j) is None for j in finished] == [True] * 4 + [False] * 6
    assert retention() == 0.5
    assert retention() == 600.0  # the last 2: nothing left, look again later
    assert retention.purged == len(finished)
    assert retention() == 600.0 and retention.purged == len(finished)

    for job_id in finished:
        assert store.get_job(ORG, job_id) is None
        assert rows_of(job_id) == 0  # nodes, options, output and events went with it
    for job_id in [*unfinished, recent]:
        assert store.get_job(ORG, job_id) is not None
        assert rows_of(job_id) == 2 + 1 + 1 + 2


@pytest.mark.postgres
def test_prune_jobs_limit_bounds_one_transaction(store_db: str) -> None:
    jobs = [job_with_everything(JobStatus.COMPLETE, OLD) for _ in range(3)]
    assert store.prune_jobs(NOW, limit=2) == 2
    assert sum(store.get_job(ORG, j) is not None for j in jobs) == 1
    assert store.prune_jobs(NOW, limit=0) == 0
    assert store.prune_jobs(NOW, limit=2) == 1


def test_retention_refuses_zero_days() -> None:
    with pytest.raises(ValueError):
        JobRetention(store, 0)


def test_cap_text_keeps_the_tail_behind_the_clients_marker() -> None:
    text = "".join(f"{i:04d}\n" for i in range(1000))  # 5,000 bytes
    capped, dropped, total = cap_text(text, 100)
    assert (dropped, total) == (4900, 5000)
    assert capped == TRUNCATION_MARKER.format(dropped=4900, total=5000) + text[-100:]
    assert cap_text(text, 5000) == (text, 0, 5000)


def test_cap_text_counts_what_the_node_already_dropped_and_never_splits_a_character() -> None:
    capped, dropped, total = cap_text("é" * 100, 51, total=10_000)  # 200 bytes of 10,000
    assert capped.endswith("é" * 25) and "\ufffd" not in capped
    assert (dropped, total) == (10_000 - 50, 10_000)
    raw = "\udcff" * 10  # undecodable bytes a node sent, one byte each
    assert cap_text(raw, 4)[0].endswith("\udcff" * 4)
