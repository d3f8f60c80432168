"""Forward-only schema migrations.

    LATEST_VERSION: int                 the schema version this code writes and reads
    migrate(database=None) -> int       apply every missing migration in order, each in its own
                                        transaction, and return the resulting version. A no-op on
                                        an up-to-date database; raises SchemaTooNew when the
                                        database was migrated by a newer pushd (nothing touched).
    schema_version(database=None) -> int | None   None when the database has no schema yet

Migrations are numbered functions in `MIGRATIONS` (index 0 is version 1). Each one is written
once and never edited afterwards: it uses hand-written DDL (with a small per-dialect
substitution), not the current models, so an old database and a fresh one end up identical.
Several processes may call `migrate` at once (API workers, broker, reconfigure): on PostgreSQL an
advisory lock and on SQLite the write lock serialise them, and the version is re-read under it.
"""

from __future__ import annotations

from collections.abc import Callable

import peewee

from pushd.states import JobStatus
from pushd.store.db import SchemaTooNew, StoreError, get_database, translate_errors

# Arbitrary constant naming pushd's migration lock among PostgreSQL advisory locks.
_PG_ADVISORY_LOCK_KEY = 0x70757368  # "push"

_DIALECT_TYPES = {
    "sqlite": {
        "serial_pk": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "bigint": "INTEGER",
        "bytes": "BLOB",
        "timestamp": "TEXT",
    },
    "postgres": {
        "serial_pk": "BIGSERIAL PRIMARY KEY",
        "bigint": "BIGINT",
        "bytes": "BYTEA",
        "timestamp": "TIMESTAMP WITHOUT TIME ZONE",
    },
}

_V1_DDL = """
CREATE TABLE job_status (
    id INTEGER PRIMARY KEY,
    description TEXT NOT NULL
);
CREATE TABLE jobs (
    id VARCHAR(32) PRIMARY KEY,
    org_id VARCHAR(32) NOT NULL,
    command TEXT NOT NULL,
    status INTEGER NOT NULL REFERENCES job_status (id),
    run_timeout INTEGER NOT NULL,
    quorum INTEGER NOT NULL,
    last_updated_by TEXT NOT NULL,
    requested_by TEXT,
    created_at {timestamp} NOT NULL,
    updated_at {timestamp} NOT NULL
);
CREATE INDEX jobs_org_created_id ON jobs (org_id, created_at DESC, id DESC);
CREATE INDEX jobs_org_status ON jobs (org_id, status);
CREATE INDEX jobs_status ON jobs (status);
CREATE TABLE job_nodes (
    job_id VARCHAR(32) NOT NULL REFERENCES jobs (id) ON UPDATE CASCADE ON DELETE CASCADE,
    org_id VARCHAR(32) NOT NULL,
    node_name TEXT NOT NULL,
    status INTEGER NOT NULL,
    reason TEXT,
    created_at {timestamp} NOT NULL,
    updated_at {timestamp} NOT NULL,
    PRIMARY KEY (job_id, org_id, node_name)
);
CREATE TABLE job_options (
    job_id VARCHAR(32) PRIMARY KEY REFERENCES jobs (id) ON UPDATE CASCADE ON DELETE CASCADE,
    job_user TEXT,
    dir TEXT,
    env TEXT,
    capture BOOLEAN NOT NULL DEFAULT FALSE,
    job_file TEXT
);
CREATE TABLE job_output (
    job_id VARCHAR(32) NOT NULL REFERENCES jobs (id) ON UPDATE CASCADE ON DELETE CASCADE,
    org_id VARCHAR(32) NOT NULL,
    node_name TEXT NOT NULL,
    stdout {bytes},
    stderr {bytes},
    stdout_bytes {bigint},
    stderr_bytes {bigint},
    truncated BOOLEAN NOT NULL DEFAULT FALSE,
    created_at {timestamp} NOT NULL,
    PRIMARY KEY (job_id, node_name)
);
CREATE TABLE job_events (
    id {serial_pk},
    org_id VARCHAR(32) NOT NULL,
    job_id VARCHAR(32) REFERENCES jobs (id) ON UPDATE CASCADE ON DELETE CASCADE,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    org_feed BOOLEAN NOT NULL DEFAULT FALSE,
    created_at {timestamp} NOT NULL
);
CREATE INDEX job_events_job_id ON job_events (job_id, id);
CREATE INDEX job_events_org_feed_id ON job_events (org_id, org_feed, id);
CREATE INDEX job_events_created ON job_events (created_at);
CREATE TABLE node_session_keys (
    org_id VARCHAR(32) NOT NULL,
    org_name TEXT NOT NULL,
    node_name TEXT NOT NULL,
    key {bytes} NOT NULL,
    created_at {timestamp} NOT NULL,
    PRIMARY KEY (org_id, node_name)
);
CREATE TABLE known_nodes (
    org_id VARCHAR(32) NOT NULL,
    node_name TEXT NOT NULL,
    last_seen {timestamp} NOT NULL,
    PRIMARY KEY (org_id, node_name)
);
CREATE TABLE organizations (
    id VARCHAR(32) PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    full_name TEXT,
    created_at {timestamp} NOT NULL
);
CREATE TABLE principals (
    org_id VARCHAR(32) NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    kind VARCHAR(8) NOT NULL CHECK (kind IN ('user', 'client')),
    public_key TEXT NOT NULL,
    admin BOOLEAN NOT NULL DEFAULT FALSE,
    created_at {timestamp} NOT NULL,
    PRIMARY KEY (org_id, name, kind)
);
CREATE TABLE groups (
    id {serial_pk},
    org_id VARCHAR(32) NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    created_at {timestamp} NOT NULL,
    UNIQUE (org_id, name)
);
CREATE TABLE group_members (
    group_id {bigint} NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    member_kind VARCHAR(8) NOT NULL CHECK (member_kind IN ('user', 'client', 'group')),
    member_name TEXT NOT NULL,
    PRIMARY KEY (group_id, member_kind, member_name)
);
CREATE INDEX group_members_member ON group_members (member_kind, member_name);
"""


def _dialect_of(database: peewee.Database) -> str:
    return "sqlite" if isinstance(database, peewee.SqliteDatabase) else "postgres"


def _run_script(database: peewee.Database, script: str) -> None:
    types = _DIALECT_TYPES[_dialect_of(database)]
    for statement in script.format(**types).split(";"):
        if statement.strip():
            database.execute_sql(statement)


def _migration_1(database: peewee.Database) -> None:
    """The initial schema: the original's job tables plus events, keys and principals."""
    _run_script(database, _V1_DDL)
    # The original's statuses only (ids 0..7): later statuses come with their migration.
    for status in JobStatus:
        if status <= JobStatus.CRASHED:
            _insert_status(database, status)


def _insert_status(database: peewee.Database, status: JobStatus) -> None:
    database.execute_sql(
        "INSERT INTO job_status (id, description) VALUES (%s, %s)"
        if _dialect_of(database) == "postgres"
        else "INSERT INTO job_status (id, description) VALUES (?, ?)",
        (int(status), status.wire),
    )


def _migration_2(database: peewee.Database) -> None:
    """Per-job voting timeout (seconds; NULL = the server's `voting_timeout` setting)."""
    _run_script(database, "ALTER TABLE job_options ADD COLUMN voting_timeout INTEGER")


_V3_DDL = """
CREATE TABLE dashboard_logins (
    token_hash VARCHAR(64) PRIMARY KEY,
    org_id VARCHAR(32) NOT NULL,
    org_name TEXT NOT NULL,
    user_name TEXT NOT NULL,
    expires_at {timestamp} NOT NULL
);
CREATE TABLE dashboard_sessions (
    token_hash VARCHAR(64) PRIMARY KEY,
    org_id VARCHAR(32) NOT NULL,
    org_name TEXT NOT NULL,
    user_name TEXT NOT NULL,
    csrf_token VARCHAR(64) NOT NULL,
    expires_at {timestamp} NOT NULL
);
CREATE INDEX dashboard_sessions_expires ON dashboard_sessions (expires_at);
"""


def _migration_3(database: peewee.Database) -> None:
    """Dashboard one-time login tokens and browser sessions (hashes only, never the tokens)."""
    _run_script(database, _V3_DDL)


def _migration_4(database: peewee.Database) -> None:
    """Rollout control (issue 17): the job status `halted`; per-job `max_concurrency` and
    `max_errors` as given (an integer or "N%", as text; NULL = no limit); `rerun_of`, the job a
    re-run was made from."""
    _insert_status(database, JobStatus.HALTED)
    _run_script(
        database,
        "ALTER TABLE job_options ADD COLUMN max_concurrency TEXT;"
        "ALTER TABLE job_options ADD COLUMN max_errors TEXT;"
        "ALTER TABLE job_options ADD COLUMN rerun_of VARCHAR(32)",
    )


_V5_DDL = """
CREATE TABLE cluster_members (
    member TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    api_port INTEGER NOT NULL,
    heartbeat_port INTEGER NOT NULL,
    command_port INTEGER NOT NULL,
    started_at {timestamp} NOT NULL,
    renewed_at {timestamp} NOT NULL,
    lease_expires_at {timestamp} NOT NULL
);
CREATE TABLE cluster_keys (
    name VARCHAR(64) PRIMARY KEY,
    value {bytes} NOT NULL,
    created_at {timestamp} NOT NULL
);
CREATE TABLE cluster_nodes (
    org_id VARCHAR(32) NOT NULL,
    node_name TEXT NOT NULL,
    member TEXT NOT NULL,
    available BOOLEAN NOT NULL,
    updated_at {timestamp} NOT NULL,
    PRIMARY KEY (org_id, node_name)
);
CREATE INDEX cluster_nodes_member ON cluster_nodes (member);
CREATE TABLE cluster_mailbox (
    id {serial_pk},
    recipient TEXT NOT NULL,
    sender TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at {timestamp} NOT NULL
);
CREATE INDEX cluster_mailbox_recipient ON cluster_mailbox (recipient, id);
ALTER TABLE jobs ADD COLUMN coordinator TEXT;
CREATE INDEX jobs_coordinator_status ON jobs (coordinator, status)
"""


def _migration_5(database: peewee.Database) -> None:
    """The cluster (issue 16): members and their leases, the cluster's server keys, which member
    holds each connected node, the mailbox between brokers, and each job's coordinator (the
    member whose broker runs it; NULL for jobs made before this version: any member's)."""
    _run_script(database, _V5_DDL)


_V6_DDL = """
CREATE INDEX jobs_org_status_created_id ON jobs (org_id, status, created_at DESC, id DESC);
DROP INDEX jobs_org_status;
CREATE INDEX jobs_updated_at ON jobs (updated_at)
"""


def _migration_6(database: peewee.Database) -> None:
    """Job indexes for a long history (issue 19). The job list filtered by status walks
    (org_id, status, created_at, id) in page order: with (org_id, status) alone PostgreSQL
    walked the org's whole (created_at, id) index and dropped the other statuses' rows (70 ms
    for a page of a 1.5% status among 1,000,000 jobs). It replaces (org_id, status), its prefix.
    Retention (store.prune_jobs) takes the oldest finished jobs by updated_at, which read the
    whole table every batch without an index on it (0.8 s at 1,000,000 jobs)."""
    _run_script(database, _V6_DDL)


def _migration_7(database: peewee.Database) -> None:
    """Room for a job's node rows to be updated in place (issue 19, PostgreSQL): each row of
    a job changes status about three times within seconds (ready, running, result). With full
    pages every new row version went to another page and into the primary key's index; with
    half of each page free they are heap-only updates (HOT), and the next wave reuses the space
    of the last one. Database CPU per 8,000-node job's journal writes: 0.96-0.99 -> 0.71-0.73 s
    (bench/bench_journal.py). The cost: the table's pages hold half as many new rows. Pages
    written before this version keep their layout. SQLite has no such setting."""
    if _dialect_of(database) == "postgres":
        database.execute_sql(f"ALTER TABLE job_nodes SET (fillfactor = {JOB_NODES_FILLFACTOR})")


JOB_NODES_FILLFACTOR = 50

MIGRATIONS: tuple[Callable[[peewee.Database], None], ...] = (
    _migration_1,
    _migration_2,
    _migration_3,
    _migration_4,
    _migration_5,
    _migration_6,
    _migration_7,
)
LATEST_VERSION = len(MIGRATIONS)


def _placeholder(database: peewee.Database) -> str:
    return "%s" if _dialect_of(database) == "postgres" else "?"


def _read_version(database: peewee.Database) -> int | None:
    if "schema_version" not in database.get_tables():
        return None
    row = database.execute_sql("SELECT version FROM schema_version").fetchone()
    return None if row is None else int(row[0])


@translate_errors
def schema_version(database: peewee.Database | None = None) -> int | None:
    """The schema version of `database` (default: the open one); None if it has no schema."""
    database = database or get_database()
    with database.connection_context():
        return _read_version(database)


def _refuse_if_too_new(version: int | None) -> None:
    if version is not None and version > LATEST_VERSION:
        raise SchemaTooNew(
            f"database schema version {version} is newer than this pushd supports "
            f"({LATEST_VERSION}); upgrade pushd or point it at another database"
        )


@translate_errors
def migrate(database: peewee.Database | None = None) -> int:
    """Bring the schema up to LATEST_VERSION; return the version (see module docstring)."""
    database = database or get_database()
    with database.connection_context():
        version = _read_version(database)
        _refuse_if_too_new(version)
        if version == LATEST_VERSION:
            return version
        while True:
            lock = "IMMEDIATE" if isinstance(database, peewee.SqliteDatabase) else None
            with database.atomic(lock_type=lock) if lock else database.atomic():
                if not isinstance(database, peewee.SqliteDatabase):
                    database.execute_sql(
                        "SELECT pg_advisory_xact_lock(%s)", (_PG_ADVISORY_LOCK_KEY,)
                    )
                version = _read_version(database)  # again, under the lock
                _refuse_if_too_new(version)
                if version == LATEST_VERSION:
                    return version
                if version is None:
                    database.execute_sql("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                    database.execute_sql(
                        f"INSERT INTO schema_version (version) VALUES ({_placeholder(database)})",
                        (0,),
                    )
                    version = 0
                next_version = version + 1
                try:
                    MIGRATIONS[next_version - 1](database)
                except peewee.DatabaseError as exc:
                    raise StoreError(f"migration {next_version} failed: {exc}") from exc
                database.execute_sql(
                    f"UPDATE schema_version SET version = {_placeholder(database)}",
                    (next_version,),
                )
