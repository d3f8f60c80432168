"""Opening databases and migrating schemas, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Any

import peewee
import pytest

from pushd import store
from pushd.settings import Settings
from pushd.states import JobStatus, NodeStatus
from pushd.store import migrations
from pushd.store.models import ALL_MODELS, JobStatusRow
from tests.support.databases import postgres_database


@pytest.fixture
def opened(db_backend: tuple[str, dict]) -> Any:
    kind, params = db_backend
    database = store.open_database_params(kind, params)
    yield kind, params, database
    store.close_database()


def test_migrate_creates_the_schema_and_is_a_no_op_when_run_again(opened: Any) -> None:
    _, _, database = opened
    assert store.schema_version() is None
    assert store.migrate() == store.LATEST_VERSION
    tables_after_first = sorted(database.get_tables())

    store.create_job("a" * 32, "1" * 32, "uptime", ["n1"], 1, 60, "alice")
    assert store.migrate() == store.LATEST_VERSION
    assert store.migrate(database) == store.LATEST_VERSION
    assert sorted(database.get_tables()) == tables_after_first
    assert store.schema_version() == store.LATEST_VERSION
    job = store.get_job("a" * 32, "1" * 32)
    assert job is not None and job.command == "uptime"
    assert {row.id: row.description for row in JobStatusRow.select()} == {
        int(status): status.wire for status in JobStatus
    }


def test_every_model_field_has_its_column(opened: Any) -> None:
    _, _, database = opened
    store.migrate()
    for model in ALL_MODELS:
        table = model._meta.table_name
        columns = {column.name for column in database.get_columns(table)}
        fields = {field.column_name for field in model._meta.sorted_fields}
        assert fields <= columns, (table, fields - columns)


def test_a_database_from_a_newer_pushd_is_refused_untouched(opened: Any) -> None:
    _, _, database = opened
    store.migrate()
    database.execute_sql(f"UPDATE schema_version SET version = {store.LATEST_VERSION + 1}")
    with pytest.raises(store.SchemaTooNew, match="newer than this pushd"):
        store.migrate()
    assert store.schema_version() == store.LATEST_VERSION + 1


def test_concurrent_migrations_apply_once(opened: Any) -> None:
    _, _, database = opened
    results: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        try:
            barrier.wait()
            results.append(store.migrate(database))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert results == [store.LATEST_VERSION] * 4
    rows = database.execute_sql("SELECT version FROM schema_version").fetchall()
    assert [row[0] for row in rows] == [store.LATEST_VERSION]
    assert JobStatusRow.select().count() == len(JobStatus)


def test_schema_6_indexes_jobs_by_status_and_update_time_keeping_them(
    opened: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, database = opened
    with monkeypatch.context() as patch:  # a database of the pushd before schema 6
        patch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:5])
        patch.setattr(migrations, "LATEST_VERSION", 5)
        assert store.migrate() == 5
    for index in range(3):
        store.create_job("a" * 32, f"{index:032d}", f"c{index}", ["n1"], 1, 60, "alice")
    store.set_job_status("a" * 32, "0" * 32, JobStatus.COMPLETE)
    assert "jobs_org_status" in {index.name for index in database.get_indexes("jobs")}

    assert store.migrate() == store.LATEST_VERSION
    indexes = {index.name: index.columns for index in database.get_indexes("jobs")}
    assert indexes["jobs_org_status_created_id"] == ["org_id", "status", "created_at", "id"]
    assert indexes["jobs_updated_at"] == ["updated_at"]
    assert "jobs_org_status" not in indexes  # the new index's prefix: it does the same work
    jobs, _ = store.list_jobs("a" * 32, status=JobStatus.NEW)
    assert [job.command for job in jobs] == ["c2", "c1"]


def test_sqlite_file_is_private_and_uses_wal_and_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "pushd.sqlite3"
    database = store.open_database_params("sqlite", {"path": str(path)}, migrate=True)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert database.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
        assert database.execute_sql("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert database.execute_sql("PRAGMA busy_timeout").fetchone()[0] > 0
        assert store.dialect() == "sqlite"
    finally:
        store.close_database()


def test_open_database_from_settings_uses_sqlite_path(tmp_path: Path) -> None:
    settings = Settings.from_values({"dir": str(tmp_path / "appliance")})
    kind, params = store.database_params_from_settings(settings)
    assert kind == "sqlite"
    assert Path(params["path"]) == Path(settings.get("sqlite_path"))
    store.open_database(settings, migrate=True)
    try:
        assert Path(settings.get("sqlite_path")).exists()
        assert store.schema_version() == store.LATEST_VERSION
    finally:
        store.close_database()


def test_open_database_from_settings_uses_postgresql_when_enabled() -> None:
    with postgres_database() as params:
        _open_postgres_from_settings(params)


def _open_postgres_from_settings(params: dict[str, Any]) -> None:
    settings = Settings.from_values(
        {
            "postgresql.enable": True,
            "postgresql.vip": params["host"],
            "postgresql.port": params["port"],
            "postgresql.database_name": params["database"],
            "postgresql.sql_user": params["user"],
            "db_pool_size": 3,
        }
    )
    assert store.database_params_from_settings(settings) == (
        "postgres",
        {
            "host": params["host"],
            "port": params["port"],
            "user": params["user"],
            "password": "",
            "database": params["database"],
        },
    )
    store.open_database(settings, migrate=True)
    try:
        assert store.dialect() == "postgres"
        assert store.schema_version() == store.LATEST_VERSION
    finally:
        store.close_database()


def test_unreachable_postgresql_is_a_clear_store_error() -> None:
    from tests.support.ports import free_port

    with pytest.raises(store.StoreUnavailable, match="database unavailable"):
        store.open_database_params(
            "postgres",
            {"host": "127.0.0.1", "port": free_port(), "user": "x", "database": "nope"},
        )
    store.close_database()


def test_unknown_database_kind_is_refused() -> None:
    with pytest.raises(store.StoreError, match="unknown database kind"):
        store.open_database_params("mysql", {})


@pytest.mark.parametrize(
    ("job_id", "command", "options"),
    [
        ("x" * 33, "uptime", None),
        ("1" * 32, "echo \x00", None),
        ("1" * 32, "uptime", {"dir": "/tmp/\x00"}),
        ("1" * 32, "uptime", {"env": {"A": 1}}),
    ],
)
def test_values_a_backend_cannot_hold_are_refused_on_both(
    store_db: str, job_id: str, command: str, options: dict | None
) -> None:
    with pytest.raises(store.InvalidValue):
        store.create_job("a" * 32, job_id, command, ["n"], 1, 60, None, options)
    assert store.list_jobs("a" * 32) == ([], None)


def test_database_errors_surface_as_store_errors_not_peewee_ones(store_db: str) -> None:
    # Only the database's primary key can notice this one (same id, different name).
    store.create_organization("first", org_id="c" * 32)
    with pytest.raises(store.ConflictError) as info:
        store.create_organization("second", org_id="c" * 32)
    assert not isinstance(info.value, peewee.PeeweeException)
    assert isinstance(info.value.__cause__, peewee.IntegrityError)
    assert [org.name for org in store.list_organizations()] == ["first"]


def test_version_1_database_keeps_its_jobs_through_migration_2(
    db_backend: tuple[str, dict],
) -> None:
    """A database written by the first release gains per-job voting timeouts without losing jobs."""
    from pushd.store import migrations

    kind, params = db_backend
    database = store.open_database_params(kind, params)
    try:
        with database.connection_context():
            database.execute_sql("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            database.execute_sql("INSERT INTO schema_version (version) VALUES (1)")
            migrations.MIGRATIONS[0](database)
        job_id = "c" * 32
        with database.connection_context():
            database.execute_sql(
                "INSERT INTO jobs (id, org_id, command, status, run_timeout, quorum,"
                " last_updated_by, created_at, updated_at) VALUES"
                f" ('{job_id}', '{'a' * 32}', 'uptime', 5, 60, 1, '{job_id}',"
                " '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
            database.execute_sql(
                f"INSERT INTO job_options (job_id, capture) VALUES ('{job_id}', TRUE)"
            )
        assert store.schema_version() == 1
        assert store.migrate() == store.LATEST_VERSION
        job = store.get_job("a" * 32, job_id)
        assert job is not None and job.command == "uptime"
        assert job.options.capture is True and job.options.voting_timeout is None
    finally:
        store.close_database()


def test_job_node_status_updates_stay_in_their_page_on_postgresql() -> None:
    """A job's node rows change status about three times within seconds: on PostgreSQL the
    table keeps room in each page so those are heap-only updates (no new primary-key entry
    per status change: a quarter of the database's CPU per big job)."""
    with postgres_database() as params:
        database = store.open_database_params("postgres", params, migrate=True)
        try:
            names = [f"n{i}" for i in range(2000)]
            store.create_job("a" * 32, "1" * 32, "uptime", names, 1, 60, "alice")
            for status in (NodeStatus.READY, NodeStatus.RUNNING, NodeStatus.SUCCEEDED):
                store.set_node_statuses("a" * 32, "1" * 32, {name: status for name in names})
            database.execute_sql("SELECT pg_stat_force_next_flush()")  # this session's counts
            updated, hot = database.execute_sql(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
                " WHERE relname = 'job_nodes'").fetchone()
            assert updated == 3 * len(names)
            assert hot >= 0.9 * updated, (updated, hot)
        finally:
            store.close_database()
