"""Jobs, job nodes, options and output in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from pushd import store
from pushd.states import JobStatus, NodeStatus
from pushd.store.models import Job, JobNode, JobOption, JobOutput

ORG_A = "a" * 32
ORG_B = "b" * 32


def new_id() -> str:
    return uuid.uuid4().hex


def test_create_and_get_job_round_trips_everything(store_db: str) -> None:
    job_id = new_id()
    options = {
        "job_user": "deploy",
        "dir": "/srv/app",
        "env": {"A": "1", "UNICODE": "é\u2603"},
        "capture": True,
        "job_file": "raw:#!/bin/sh\necho hi\n",
        "voting_timeout": 7,
    }
    store.create_job(ORG_A, job_id, "chef-client", ["n2", "n1"], 2, 300, "alice", options)

    job = store.get_job(ORG_A, job_id)
    assert job is not None
    assert (job.id, job.org_id, job.command) == (job_id, ORG_A, "chef-client")
    assert job.status is JobStatus.NEW
    assert (job.quorum, job.run_timeout, job.requested_by) == (2, 300, "alice")
    assert job.last_updated_by == job_id
    assert job.options == store.JobOptions(**options)
    assert [node.name for node in job.nodes] == ["n1", "n2"]
    assert job.nodes_by_status() == {"new": ["n1", "n2"]}
    assert job.node_reasons() == {}
    assert job.created_at == job.updated_at
    assert job.created_at.tzinfo is None


def test_job_without_options_has_default_options(store_db: str) -> None:
    job_id = new_id()
    store.create_job(ORG_A, job_id, "uptime", ["n1"], 1, 3600, None)
    job = store.get_job(ORG_A, job_id)
    assert job is not None
    assert job.options == store.JobOptions()
    assert job.requested_by is None


def test_unknown_job_option_is_refused_before_writing(store_db: str) -> None:
    job_id = new_id()
    with pytest.raises(store.InvalidValue, match="bogus"):
        store.create_job(ORG_A, job_id, "uptime", ["n1"], 1, 60, None, {"bogus": 1})
    assert store.get_job(ORG_A, job_id) is None


def test_create_job_commits_while_every_cursor_it_made_is_still_referenced(
    store_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under SQLite a COMMIT fails ("cannot commit transaction - SQL statements in progress")
    while an INSERT ... RETURNING cursor is unread and still referenced. peewee hands back such a
    cursor from insert_many; when it is freed is not create_job's to decide (references held
    elsewhere, a tracer, a collector pass), so create_job must leave none unread. This keeps
    every cursor the database makes alive until the job is created."""
    database = store.get_database()
    made_cursor = database.cursor
    kept: list[Any] = []

    def keeping_cursor(*args: Any, **kwargs: Any) -> Any:
        kept.append(made_cursor(*args, **kwargs))
        return kept[-1]

    monkeypatch.setattr(database, "cursor", keeping_cursor)
    job_id = new_id()
    nodes = [f"node{i:02d}" for i in range(20)]
    store.create_job(ORG_A, job_id, "uptime", nodes, 15, 60, "alice", {"capture": True})
    assert kept
    monkeypatch.undo()
    job = store.get_job(ORG_A, job_id)
    assert job is not None and [n.name for n in job.nodes] == nodes


def test_create_job_is_atomic_when_a_late_node_is_a_duplicate(store_db: str) -> None:
    # 1,200 nodes span several INSERT batches; the duplicate is in the last one, so the job row
    # and earlier node batches were already written when the database refused it.
    nodes = [f"node-{i:04d}" for i in range(1200)] + ["node-0000"]
    job_id = new_id()
    with pytest.raises(store.ConflictError, match="duplicate node names: node-0000"):
        store.create_job(ORG_A, job_id, "uptime", nodes, 1, 60, "alice", {"capture": True})

    assert store.get_job(ORG_A, job_id) is None
    assert Job.select().count() == 0
    assert JobNode.select().count() == 0
    assert JobOption.select().count() == 0
    assert store.list_jobs(ORG_A) == ([], None)
    # The store is still usable afterwards.
    store.create_job(ORG_A, job_id, "uptime", nodes[:-1], 1, 60, "alice")
    job = store.get_job(ORG_A, job_id)
    assert job is not None and len(job.nodes) == 1200


def test_existing_job_id_is_a_conflict_and_leaves_the_first_job_alone(store_db: str) -> None:
    job_id = new_id()
    store.create_job(ORG_A, job_id, "first", ["n1"], 1, 60, "alice")
    with pytest.raises(store.ConflictError):
        store.create_job(ORG_A, job_id, "second", ["n2", "n3"], 1, 60, "bob")
    job = store.get_job(ORG_A, job_id)
    assert job is not None
    assert job.command == "first"
    assert [node.name for node in job.nodes] == ["n1"]


def test_a_job_of_one_org_is_invisible_and_untouchable_from_another(store_db: str) -> None:
    job_id = new_id()
    store.create_job(ORG_A, job_id, "uptime", ["n1"], 1, 60, "alice")
    store.store_output(ORG_A, job_id, "n1", "secret", "")
    store.append_events([(ORG_A, job_id, "start", {"command": "uptime"})])

    assert store.get_job(ORG_B, job_id) is None
    assert store.get_job_summary(ORG_B, job_id) is None
    assert store.list_jobs(ORG_B) == ([], None)
    assert store.set_job_status(ORG_B, job_id, JobStatus.ABORTED, "mallory") is False
    assert store.set_node_statuses(ORG_B, job_id, {"n1": NodeStatus.FAILED}) == 0
    assert store.get_output(ORG_B, job_id, "n1", "stdout") is None
    assert store.job_events_after(ORG_B, job_id) == []
    assert store.org_events_after(ORG_B) == []
    with pytest.raises(store.ConflictError):
        store.store_output(ORG_B, job_id, "n1", "overwritten", "")

    job = store.get_job(ORG_A, job_id)
    assert job is not None
    assert job.status is JobStatus.NEW
    assert job.nodes_by_status() == {"new": ["n1"]}
    assert store.get_output(ORG_A, job_id, "n1", "stdout") == "secret"


def test_set_job_status_changes_updated_at_but_node_changes_do_not(store_db: str) -> None:
    job_id = new_id()
    created = datetime(2020, 1, 2, 3, 4, 5, 678901)
    store.create_job(ORG_A, job_id, "uptime", ["n1"], 1, 60, "alice", created_at=created)

    assert store.set_node_statuses(ORG_A, job_id, {"n1": NodeStatus.READY}) == 1
    job = store.get_job(ORG_A, job_id)
    assert job is not None and job.updated_at == created
    assert job.nodes[0].updated_at > created

    assert store.set_job_status(ORG_A, job_id, JobStatus.VOTING) is True
    job = store.get_job(ORG_A, job_id)
    assert job is not None
    assert job.status is JobStatus.VOTING
    assert job.updated_at > created
    assert job.created_at == created
    assert job.last_updated_by == job_id

    store.set_job_status(ORG_A, job_id, JobStatus.CRASHED, "0" * 32)
    job = store.get_job(ORG_A, job_id)
    assert job is not None and job.last_updated_by == "0" * 32


def test_set_node_statuses_updates_thousands_of_nodes_with_reasons(store_db: str) -> None:
    nodes = [f"n{i:05d}" for i in range(8000)]
    job_id = new_id()
    store.create_job(ORG_A, job_id, "uptime", nodes, 8000, 60, "alice")
    changes: dict[str, NodeStatus | tuple[NodeStatus, str | None]] = {}
    for index, name in enumerate(nodes):
        if index % 4 == 0:
            changes[name] = NodeStatus.READY
        elif index % 4 == 1:
            changes[name] = (NodeStatus.NACKED, "busy")
        elif index % 4 == 2:
            changes[name] = (NodeStatus.UNAVAILABLE, None)
        # every fourth node is left alone
    changed = store.set_node_statuses(ORG_A, job_id, changes)
    assert changed == 6000

    job = store.get_job(ORG_A, job_id)
    assert job is not None
    grouped = job.nodes_by_status()
    assert len(grouped["ready"]) == len(grouped["nacked"]) == len(grouped["unavailable"]) == 2000
    assert len(grouped["new"]) == 2000
    assert grouped["nacked"][0] == "n00001"
    reasons = job.node_reasons()
    assert len(reasons) == 2000 and set(reasons.values()) == {"busy"}

    # A later change clears a reason when none is given.
    store.set_node_statuses(ORG_A, job_id, {"n00001": NodeStatus.UNAVAILABLE})
    job = store.get_job(ORG_A, job_id)
    assert job is not None
    assert "n00001" not in job.node_reasons()
    assert job.node_status("n00001") is NodeStatus.UNAVAILABLE
    # Unknown node names change nothing.
    assert store.set_node_statuses(ORG_A, job_id, {"ghost": NodeStatus.FAILED}) == 0


def test_incomplete_jobs_lists_active_jobs_of_every_org_with_their_nodes(store_db: str) -> None:
    ids = {}
    for org, status in [
        (ORG_A, JobStatus.NEW),
        (ORG_B, JobStatus.VOTING),
        (ORG_A, JobStatus.RUNNING),
        (ORG_B, JobStatus.COMPLETE),
        (ORG_A, JobStatus.CRASHED),
        (ORG_A, JobStatus.QUORUM_FAILED),
    ]:
        job_id = new_id()
        store.create_job(org, job_id, status.wire, ["x", "y"], 2, 60, "alice")
        if status is not JobStatus.NEW:
            store.set_job_status(org, job_id, status)
        ids[status] = job_id
    store.set_node_statuses(ORG_A, ids[JobStatus.RUNNING], {"x": NodeStatus.RUNNING})

    jobs = store.incomplete_jobs()
    assert [job.id for job in jobs] == [
        ids[JobStatus.NEW],
        ids[JobStatus.VOTING],
        ids[JobStatus.RUNNING],
    ]
    running = jobs[2]
    assert running.org_id == ORG_A
    assert running.nodes_by_status() == {"running": ["x"], "new": ["y"]}


def _bulk_insert_jobs(
    org_id: str, count: int, base: datetime
) -> list[tuple[datetime, str, JobStatus]]:
    """Insert `count` jobs directly (fast); runs of three jobs share one created_at."""
    rows = []
    for index in range(count):
        created = base + timedelta(microseconds=(index // 3) * 1000)
        # ids deliberately not in creation order; the org's first digit keeps them unique
        job_id = (f"{index:031x}" + org_id[0])[::-1]
        status = JobStatus.COMPLETE if index % 2 else JobStatus.QUORUM_FAILED
        rows.append(
            {
                "id": job_id,
                "org_id": org_id,
                "command": f"cmd {index}",
                "status": int(status),
                "run_timeout": 60,
                "quorum": 1,
                "last_updated_by": job_id,
                "requested_by": "bulk",
                "created_at": created,
                "updated_at": created,
            }
        )
    # Seed with one executemany (much faster than building 20,000-row INSERTs in peewee).
    columns = list(rows[0])
    database = store.get_database()
    sql = 'INSERT INTO jobs ({}) VALUES ({})'.format(
        ", ".join(columns), ", ".join([database.param] * len(columns))
    )
    params = [
        [Job._meta.fields[name].db_value(row[name]) for name in columns] for row in rows
    ]
    with store.transaction():
        database.cursor().executemany(sql, params)
    return [(row["created_at"], row["id"], JobStatus(row["status"])) for row in rows]


def test_list_jobs_pages_through_twenty_thousand_jobs_newest_first(store_db: str) -> None:
    keys = _bulk_insert_jobs(ORG_A, 20_000, datetime(2024, 5, 1, 12, 0, 0))
    _bulk_insert_jobs(ORG_B, 50, datetime(2024, 5, 1, 12, 0, 0, 500))  # must never show up
    newest_first = sorted(keys, reverse=True)
    expected = [job_id for _, job_id, _ in newest_first]

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page, cursor = store.list_jobs(ORG_A, limit=1500, before=cursor)
        pages += 1
        assert len(page) <= 1500
        seen.extend(job.id for job in page)
        assert all(job.org_id == ORG_A for job in page)
        if cursor is None:
            break
    assert pages == 14
    assert seen == expected

    everything, no_cursor = store.list_jobs(ORG_A)
    assert no_cursor is None
    assert [job.id for job in everything] == expected

    # With a status filter the pages hold only that status, still in order.
    complete: list[str] = []
    cursor = None
    while True:
        page, cursor = store.list_jobs(
            ORG_A, limit=4000, status=JobStatus.COMPLETE, before=cursor
        )
        assert {job.status for job in page} <= {JobStatus.COMPLETE}
        complete.extend(job.id for job in page)
        if cursor is None:
            break
    assert complete == [
        job_id for _, job_id, status in newest_first if status is JobStatus.COMPLETE
    ]
    assert len(complete) == 10_000


def test_listed_jobs_say_they_have_a_file_without_carrying_it(store_db: str) -> None:
    # A job file may be max_job_file_size bytes; a page of 1,000 listed jobs must not pull
    # every file out of the database only to say file_specified.
    with_file, without = new_id(), new_id()
    options = {"job_user": "deploy", "dir": "/srv", "env": {"K": "v"}, "capture": True,
               "job_file": "raw:" + "x" * 50_000, "max_concurrency": "10%", "max_errors": 2}
    store.create_job(ORG_A, with_file, "deploy", ["n1"], 1, 60, "alice", options,
                     created_at=datetime(2024, 1, 1, 0, 0, 1))
    store.create_job(ORG_A, without, "uptime", ["n1"], 1, 60, "alice",
                     created_at=datetime(2024, 1, 1, 0, 0, 0))

    listed, _ = store.list_jobs(ORG_A, limit=10)
    assert [job.id for job in listed] == [with_file, without]
    assert [job.file_specified for job in listed] == [True, False]
    assert listed[0].options == store.JobOptions(**{**options, "job_file": None})
    assert listed[1].options == store.JobOptions()
    # The job itself still has its file.
    job = store.get_job(ORG_A, with_file)
    assert job is not None and job.file_specified and job.options == store.JobOptions(**options)


def test_list_jobs_with_one_status_reads_its_index_in_page_order(store_db: str) -> None:
    """A status filter is served from (org_id, status, created_at, id) in page order: no sort
    of every job of that status, and no walk past the other statuses' jobs. What makes a page
    of a rare status among a million jobs as quick as any other page."""
    _bulk_insert_jobs(ORG_A, 2_000, datetime(2024, 5, 1, 12, 0, 0))
    database = store.get_database()
    database.execute_sql("ANALYZE")
    with _captured_queries() as queries:
        page, cursor = store.list_jobs(ORG_A, limit=10, status=JobStatus.COMPLETE)
        store.list_jobs(ORG_A, limit=10, status=JobStatus.COMPLETE, before=cursor)
    assert len(page) == 10 and {job.status for job in page} == {JobStatus.COMPLETE}
    assert len(queries) == 2
    for sql, params in queries:
        plan = _plan(database, sql, params)
        assert "jobs_org_status_created_id" in plan, plan
        assert "TEMP B-TREE" not in plan.upper() and "Sort" not in plan, plan


def test_list_jobs_looks_up_the_options_of_the_page_only(store_db: str) -> None:
    """The options of a page come from one lookup per listed job, never from reading the whole
    job_options table (PostgreSQL's choice for a plain join when the page is a large share of
    the jobs: 38 ms instead of 5 for 1,000 of 100,000)."""
    _bulk_insert_jobs(ORG_A, 2_000, datetime(2024, 5, 1, 12, 0, 0))
    database = store.get_database()
    with store.transaction():
        database.execute_sql(
            "INSERT INTO job_options (job_id, capture) SELECT id, {} FROM jobs".format(
                "TRUE" if store.dialect() == "postgres" else "1"))
    database.execute_sql("ANALYZE")
    with _captured_queries() as queries:
        page, _ = store.list_jobs(ORG_A, limit=1000)
    assert len(page) == 1000 and all(job.options.capture for job in page)
    assert len(queries) == 1
    for sql, params in queries:
        plan = _plan(database, sql, params, whole=True)
        assert "job_options_pkey" in plan or "sqlite_autoindex_job_options" in plan, plan
        assert "Seq Scan on job_options" not in plan and "Hash" not in plan, plan


@contextlib.contextmanager
def _captured_queries() -> Iterator[list[tuple[str, Any]]]:
    """The job queries peewee runs meanwhile (from its debug log)."""
    queries: list[tuple[str, Any]] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if isinstance(record.msg, tuple) and re.search(r'\bFROM "?jobs\b', record.msg[0]):
                queries.append(record.msg)

    logger = logging.getLogger("peewee")
    handler, level = Capture(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield queries
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _plan(database: Any, sql: str, params: Any, *, whole: bool = False) -> str:
    """How the query reads the page's jobs, as the planner would on a large table (SQLite: the
    plan up to the scan of that page, whose own few rows may be sorted afterwards); `whole`:
    the whole plan with the planner's own choices."""
    if store.dialect() == "sqlite":
        rows = database.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall()
        lines = [str(row[-1]) for row in rows]
        if not whole and "SCAN page" in lines:
            lines = lines[: lines.index("SCAN page")]
        return "\n".join(lines)
    with store.transaction():
        if not whole:  # a table this small is cheaper to read whole; the index is for more
            database.execute_sql("SET LOCAL enable_seqscan = off")
        rows = database.execute_sql("EXPLAIN " + sql, params).fetchall()
    return "\n".join(row[0] for row in rows)


def test_list_jobs_exact_page_boundary_has_no_empty_extra_page(store_db: str) -> None:
    for index in range(4):
        store.create_job(
            ORG_A, new_id(), f"c{index}", ["n"], 1, 60, None,
            created_at=datetime(2024, 1, 1) + timedelta(seconds=index),
        )
    page, cursor = store.list_jobs(ORG_A, limit=2)
    assert [job.command for job in page] == ["c3", "c2"]
    page, cursor = store.list_jobs(ORG_A, limit=2, before=cursor)
    assert [job.command for job in page] == ["c1", "c0"]
    assert cursor is None
    page, _ = store.list_jobs(ORG_A, status=[JobStatus.NEW, JobStatus.RUNNING], limit=10)
    assert len(page) == 4
    assert store.list_jobs(ORG_A, status=[], limit=10) == ([], None)


@pytest.mark.parametrize(
    "cursor", ["", "garbage", "20240101T000000000000", "99999999T999999999999.x"]
)
def test_list_jobs_rejects_a_cursor_it_did_not_make(store_db: str, cursor: str) -> None:
    with pytest.raises(store.InvalidCursor) as info:
        store.list_jobs(ORG_A, limit=10, before=cursor)
    assert isinstance(info.value, ValueError)


def test_list_jobs_rejects_a_non_positive_limit(store_db: str) -> None:
    with pytest.raises(store.InvalidValue):
        store.list_jobs(ORG_A, limit=0)


def test_output_is_stored_replaced_and_read_per_channel(store_db: str) -> None:
    job_id = new_id()
    store.create_job(ORG_A, job_id, "uptime", ["n1", "n2"], 2, 60, "alice")
    assert store.get_output(ORG_A, job_id, "n1", "stdout") is None

    # NUL, non-ASCII and a surrogate-escaped raw byte (0xff) all survive both backends.
    tricky = "line\x00two é \udcff"
    store.store_output(ORG_A, job_id, "n1", tricky, "", stdout_bytes=5_000_000, truncated=True)
    assert store.get_output(ORG_A, job_id, "n1", "stdout") == tricky
    assert store.get_output_bytes(ORG_A, job_id, "n1", "stdout") == (
        b"line\x00two \xc3\xa9 \xff"
    )
    assert store.get_output(ORG_A, job_id, "n1", "stderr") == ""
    record = store.get_output_record(ORG_A, job_id, "n1")
    assert record is not None
    assert record.stdout_bytes == 5_000_000
    assert record.stderr_bytes == 0
    assert record.truncated is True

    store.store_output(ORG_A, job_id, "n1", "again", None)
    assert store.get_output(ORG_A, job_id, "n1", "stdout") == "again"
    assert store.get_output(ORG_A, job_id, "n1", "stderr") is None
    record = store.get_output_record(ORG_A, job_id, "n1")
    assert record is not None and record.truncated is False and record.stdout_bytes == 5
    assert store.get_output(ORG_A, job_id, "n2", "stdout") is None

    with pytest.raises(store.InvalidValue):
        store.get_output(ORG_A, job_id, "n1", "stdin")


def test_output_for_a_missing_job_is_refused(store_db: str) -> None:
    with pytest.raises(store.ConflictError):
        store.store_output(ORG_A, new_id(), "n1", "x", "y")
    assert JobOutput.select().count() == 0


def test_prune_jobs_deletes_only_old_finished_jobs_and_everything_they_own(
    store_db: str,
) -> None:
    old, recent, active = new_id(), new_id(), new_id()
    for job_id in (old, recent, active):
        store.create_job(ORG_A, job_id, "uptime", ["n1"], 1, 60, "alice")
        store.store_output(ORG_A, job_id, "n1", "out", "err")
        store.append_events([(ORG_A, job_id, "start", {})])
    store.set_job_status(ORG_A, old, JobStatus.COMPLETE)
    store.set_job_status(ORG_A, recent, JobStatus.COMPLETE)
    Job.update(updated_at=datetime(2001, 1, 1)).where(Job.id.in_([old, active])).execute()

    assert store.prune_jobs(datetime(2010, 1, 1)) == 1
    assert store.get_job(ORG_A, old) is None
    assert store.get_output(ORG_A, old, "n1", "stdout") is None
    assert store.job_events_after(ORG_A, old) == []
    assert JobNode.select().where(JobNode.job_id == old).count() == 0
    assert store.get_job(ORG_A, recent) is not None
    assert store.get_job(ORG_A, active) is not None  # still NEW: never pruned


def test_times_keep_microseconds_and_order(store_db: str) -> None:
    first, second = new_id(), new_id()
    base = datetime(2024, 2, 29, 23, 59, 59)  # microsecond 0 must still sort before .000001
    store.create_job(ORG_A, first, "a", ["n"], 1, 60, None, created_at=base)
    store.create_job(
        ORG_A, second, "b", ["n"], 1, 60, None, created_at=base.replace(microsecond=1)
    )
    jobs, _ = store.list_jobs(ORG_A)
    assert [job.id for job in jobs] == [second, first]
    assert jobs[0].created_at == base.replace(microsecond=1)
    assert jobs[1].created_at == base


def test_time_rendering_helpers() -> None:
    moment = datetime(2012, 9, 4, 23, 1, 2, 345678)
    assert store.rfc1123(moment) == "Tue, 04 Sep 2012 23:01:02 GMT"
    assert store.event_timestamp(moment) == "2012-09-04 23:01:02.345678Z"
    assert store.utcnow().tzinfo is None
