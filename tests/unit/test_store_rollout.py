"""Rollout control in the store (issue 17), on SQLite and PostgreSQL: the options round-trip,
`halted` and `skipped` persist, and a version-2 database gains them through migration 4."""

from __future__ import annotations

import uuid

from pushd import store
from pushd.states import JobStatus, NodeStatus

ORG = "a" * 32


def test_rollout_options_round_trip_and_new_states_persist(store_db: str) -> None:
    job_id = uuid.uuid4().hex
    original = uuid.uuid4().hex
    options = {"max_concurrency": "10%", "max_errors": 3, "rerun_of": original}
    store.create_job(ORG, job_id, "chef-client", ["n1", "n2"], 2, 300, "alice", options)
    job = store.get_job(ORG, job_id)
    assert job is not None
    assert job.options == store.JobOptions(**options)
    assert store.set_job_status(ORG, job_id, JobStatus.HALTED)
    store.set_node_statuses(ORG, job_id, {"n1": NodeStatus.FAILED, "n2": NodeStatus.SKIPPED})
    job = store.get_job(ORG, job_id)
    assert job is not None and job.status is JobStatus.HALTED
    assert job.nodes_by_status() == {"failed": ["n1"], "skipped": ["n2"]}
    listed, _ = store.list_jobs(ORG, status=JobStatus.HALTED)
    assert [summary.id for summary in listed] == [job_id]
    assert listed[0].options.max_errors == 3


def test_a_job_without_limits_has_none(store_db: str) -> None:
    job_id = uuid.uuid4().hex
    store.create_job(ORG, job_id, "uptime", ["n1"], 1, 60, None, {"capture": True})
    job = store.get_job(ORG, job_id)
    assert job is not None
    assert (job.options.max_concurrency, job.options.max_errors, job.options.rerun_of) == (
        None, None, None)


def test_version_2_database_gains_halted_and_the_columns(db_backend: tuple[str, dict]) -> None:
    from pushd.store import migrations

    kind, params = db_backend
    database = store.open_database_params(kind, params)
    try:
        with database.connection_context():
            database.execute_sql("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            database.execute_sql("INSERT INTO schema_version (version) VALUES (2)")
            migrations.MIGRATIONS[0](database)
            migrations.MIGRATIONS[1](database)
            job_id = "d" * 32
            database.execute_sql(
                "INSERT INTO jobs (id, org_id, command, status, run_timeout, quorum,"
                " last_updated_by, created_at, updated_at) VALUES"
                f" ('{job_id}', '{ORG}', 'uptime', 2, 60, 1, '{job_id}',"
                " '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
            database.execute_sql(
                f"INSERT INTO job_options (job_id, capture) VALUES ('{job_id}', TRUE)"
            )
            statuses = database.execute_sql("SELECT id FROM job_status").fetchall()
            assert sorted(row[0] for row in statuses) == list(range(8))  # the original's
        assert store.migrate() == store.LATEST_VERSION
        job = store.get_job(ORG, job_id)
        assert job is not None and job.options.capture is True
        assert job.options.max_concurrency is None and job.options.rerun_of is None
        # The job_status row exists now: a job can be halted (jobs.status references it).
        assert store.set_job_status(ORG, job_id, JobStatus.HALTED)
        with database.connection_context():
            rows = database.execute_sql("SELECT description FROM job_status WHERE id = 8")
            assert rows.fetchall() == [("halted",)]
    finally:
        store.close_database()
