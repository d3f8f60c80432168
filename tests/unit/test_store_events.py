"""Feed events with stable ids, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest

from pushd import store
from pushd.states import JobStatus
from pushd.store.models import JobEvent

ORG_A = "a" * 32
ORG_B = "b" * 32


def make_job(org_id: str = ORG_A) -> str:
    job_id = uuid.uuid4().hex
    store.create_job(org_id, job_id, "uptime", ["n1", "n2"], 2, 60, "alice")
    return job_id


def test_append_events_returns_increasing_ids_in_input_order(store_db: str) -> None:
    job_id = make_job()
    ids = store.append_events(
        [
            (ORG_A, job_id, "start", {"command": "uptime", "quorum": 2}),
            store.NewEvent(ORG_A, job_id, "quorum_vote", {"node": "n1", "status": "success"}),
            (ORG_A, job_id, "quorum_vote", {"node": "n2", "status": "success"}),
        ]
    )
    assert len(ids) == 3 and ids == sorted(ids) and len(set(ids)) == 3
    more = store.append_events([(ORG_A, job_id, "quorum_succeeded", {})])
    assert more[0] > ids[-1]

    events = store.job_events_after(ORG_A, job_id)
    assert [event.id for event in events] == [*ids, *more]
    assert [event.name for event in events] == [
        "start",
        "quorum_vote",
        "quorum_vote",
        "quorum_succeeded",
    ]
    assert events[1].data == {"node": "n1", "status": "success"}
    assert events[0].job_id == job_id and events[0].org_id == ORG_A
    assert store.append_events([]) == []


def test_a_large_batch_keeps_order_across_insert_chunks(store_db: str) -> None:
    job_id = make_job()
    batch = [(ORG_A, job_id, "quorum_vote", {"node": f"n{i:04d}"}) for i in range(1234)]
    ids = store.append_events(batch)
    assert ids == sorted(ids) and len(set(ids)) == 1234
    events = store.job_events_after(ORG_A, job_id)
    assert [event.data["node"] for event in events] == [f"n{i:04d}" for i in range(1234)]
    assert [event.id for event in events] == ids


def test_job_events_after_resumes_exactly_after_the_given_id(store_db: str) -> None:
    job_id = make_job()
    other_job = make_job()
    ids = store.append_events(
        [(ORG_A, job_id, "start", {}), (ORG_A, other_job, "start", {})]
        + [(ORG_A, job_id, "run_start", {"node": f"n{i}"}) for i in range(5)]
    )
    mine = [ids[0], *ids[2:]]
    assert [e.id for e in store.job_events_after(ORG_A, job_id)] == mine
    assert [e.id for e in store.job_events_after(ORG_A, job_id, mine[2])] == mine[3:]
    assert [e.id for e in store.job_events_after(ORG_A, job_id, mine[2], limit=2)] == mine[3:5]
    assert store.job_events_after(ORG_A, job_id, mine[-1]) == []
    # An id from another job's stream simply means "after that point".
    assert [e.id for e in store.job_events_after(ORG_A, job_id, ids[1])] == mine[1:]


def test_org_feed_holds_start_and_job_complete_and_org_level_events(store_db: str) -> None:
    job_id = make_job()
    ids = store.append_events(
        [
            (ORG_A, job_id, "start", {"job": job_id}),
            (ORG_A, job_id, "quorum_vote", {"node": "n1"}),
            (ORG_A, job_id, "rehab", {"node": "n2"}),
            (ORG_A, job_id, "job_complete", {"job": job_id, "status": "complete"}),
            (ORG_A, None, "maintenance", {"note": "org-level"}),
            store.NewEvent(ORG_A, job_id, "custom", {}, org_feed=True),
            store.NewEvent(ORG_A, job_id, "start", {}, org_feed=False),
        ]
    )
    feed = store.org_events_after(ORG_A)
    assert [event.id for event in feed] == [ids[0], ids[3], ids[4], ids[5]]
    assert [event.name for event in feed] == ["start", "job_complete", "maintenance", "custom"]
    assert all(event.org_feed for event in feed)
    assert [event.id for event in store.org_events_after(ORG_A, ids[0])] == ids[3:6]
    assert store.last_event_id(ORG_A) == ids[5]
    assert store.last_event_id(ORG_B) is None
    assert store.org_events_after(ORG_B) == []


def test_org_feed_since_applies_a_retention_window(store_db: str) -> None:
    job_id = make_job()
    old_id, new_id = store.append_events(
        [(ORG_A, job_id, "start", {}), (ORG_A, job_id, "job_complete", {})]
    )
    JobEvent.update(created_at=datetime(2000, 1, 1)).where(JobEvent.id == old_id).execute()
    recent = store.org_events_after(ORG_A, since=store.utcnow() - timedelta(hours=1))
    assert [event.id for event in recent] == [new_id]
    assert [e.id for e in store.org_events_after(ORG_A, since=datetime(1999, 1, 1))] == [
        old_id,
        new_id,
    ]


def test_append_events_is_all_or_nothing(store_db: str) -> None:
    job_id = make_job()
    before = JobEvent.select().count()
    # A bad event at the end is refused before anything is written.
    with pytest.raises(store.InvalidValue):
        store.append_events([(ORG_A, job_id, "start", {}), (ORG_A, job_id, "", {})])
    # An event of a job that does not exist fails in the database, in the second insert chunk,
    # after the first 500 rows went in: they must be rolled back.
    batch = [(ORG_A, job_id, "quorum_vote", {"i": i}) for i in range(700)]
    batch.append((ORG_A, "f" * 32, "start", {}))
    with pytest.raises(store.ConflictError):
        store.append_events(batch)
    assert JobEvent.select().count() == before


def test_events_written_in_an_outer_transaction_roll_back_with_it(store_db: str) -> None:
    job_id = make_job()
    with pytest.raises(RuntimeError), store.transaction():
        store.set_job_status(ORG_A, job_id, JobStatus.VOTING)
        store.append_events([(ORG_A, job_id, "start", {})])
        raise RuntimeError("broker failed before publishing")
    assert store.job_events_after(ORG_A, job_id) == []
    job = store.get_job(ORG_A, job_id)
    assert job is not None and job.status is JobStatus.NEW


def test_ids_are_never_reused_after_pruning(store_db: str) -> None:
    ids = store.append_events([(ORG_A, None, "note", {"n": n}) for n in range(3)])
    assert store.prune_org_events(store.utcnow() + timedelta(seconds=1)) == 3
    assert store.org_events_after(ORG_A) == []
    (next_id,) = store.append_events([(ORG_A, None, "note", {})])
    assert next_id > ids[-1]


def test_prune_org_events_keeps_job_events(store_db: str) -> None:
    job_id = make_job()
    store.append_events([(ORG_A, job_id, "start", {}), (ORG_A, None, "note", {})])
    assert store.prune_org_events(store.utcnow() + timedelta(seconds=1)) == 1
    assert [event.name for event in store.job_events_after(ORG_A, job_id)] == ["start"]


def test_event_data_keeps_any_string(store_db: str) -> None:
    job_id = make_job()
    # Quotes, backslashes, braces and commas: what an array literal would have to escape.
    data = {"command": "echo \u2603 \x00 \udcff", "nested": {"list": [1, 2.5, None, True]},
            "quoted": 'say "hi" \\ {a,b} NULL', "": ["'", "\\\""]}
    store.append_events([(ORG_A, job_id, "start", data)])
    (event,) = store.job_events_after(ORG_A, job_id)
    assert event.data == data
