"""peewee models of every table (bound to `pushd.store.db.database_proxy`).

The tables themselves are created by `pushd.store.migrations` (hand-written DDL per schema
version); these classes only map them. Prefer the query functions of `pushd.store` over using
the models directly: those keep every query scoped by organization and translate errors.

    JobStatusRow    job_status(id, description)
    Job             jobs(id, org_id, command, status, run_timeout, quorum, last_updated_by,
                         requested_by, created_at, updated_at)
    JobNode         job_nodes(job_id, org_id, node_name, status, reason, created_at, updated_at)
    JobOption       job_options(job_id, job_user, dir, env (JSON text), capture, job_file)
    JobOutput       job_output(job_id, org_id, node_name, stdout, stderr (bytes), stdout_bytes,
                               stderr_bytes, truncated, created_at)
    JobEvent        job_events(id, org_id, job_id, name, data (JSON text), org_feed, created_at)
    NodeSessionKey  node_session_keys(org_id, org_name, node_name, key, created_at)
    KnownNode       known_nodes(org_id, node_name, last_seen)
    OrganizationRow organizations(id, name, full_name, created_at)
    PrincipalRow    principals(org_id, name, kind, public_key, admin, created_at)
    GroupRow        groups(id, org_id, name, created_at)
    GroupMember     group_members(group_id, member_kind, member_name)
    SchemaVersion   schema_version(version)
    DashboardLogin  dashboard_logins(token_hash, org_id, org_name, user_name, expires_at)
    DashboardSession dashboard_sessions(token_hash, org_id, org_name, user_name, csrf_token,
                               expires_at)

Custom fields: `UtcDateTimeField` (naive UTC with microseconds; on SQLite a fixed-width text so
that text order is time order), `JSONTextField` (JSON in a TEXT column, ASCII-only so any string
survives PostgreSQL's text type).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import peewee

from pushd.store.db import database_proxy
from pushd.store.times import to_naive_utc

SQLITE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


class UtcDateTimeField(peewee.DateTimeField):
    """Naive UTC datetimes with microseconds on both backends."""

    formats = [SQLITE_TIME_FORMAT, "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"]

    def db_value(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, datetime):
            value = to_naive_utc(value)
            if isinstance(database_proxy.obj, peewee.SqliteDatabase):
                return value.strftime(SQLITE_TIME_FORMAT)
            return value
        return super().db_value(value)

    def python_value(self, value: Any) -> Any:
        if isinstance(value, datetime):
            return to_naive_utc(value)
        return super().python_value(value)


class JSONTextField(peewee.TextField):
    """A JSON document in a TEXT column (ensure_ascii: NULs and lone surrogates stay escaped)."""

    def db_value(self, value: Any) -> Any:
        if value is None:
            return None
        return json.dumps(value, separators=(",", ":"), ensure_ascii=True, sort_keys=False)

    def python_value(self, value: Any) -> Any:
        if value is None:
            return None
        return json.loads(value)


class BytesField(peewee.BlobField):
    """BLOB/BYTEA that always reads back as `bytes` (psycopg may give memoryview)."""

    def python_value(self, value: Any) -> Any:
        if value is None:
            return None
        return bytes(value)


class BaseModel(peewee.Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


class JobStatusRow(BaseModel):
    id = peewee.IntegerField(primary_key=True)
    description = peewee.TextField()

    class Meta:
        table_name = "job_status"


class Job(BaseModel):
    id = peewee.CharField(max_length=32, primary_key=True)
    org_id = peewee.CharField(max_length=32)
    command = peewee.TextField()
    status = peewee.IntegerField()
    run_timeout = peewee.IntegerField()
    quorum = peewee.IntegerField()
    last_updated_by = peewee.TextField()
    requested_by = peewee.TextField(null=True)
    created_at = UtcDateTimeField()
    updated_at = UtcDateTimeField()
    # The cluster member whose broker runs the job (schema 5; NULL: made before, any member's).
    coordinator = peewee.TextField(null=True)

    class Meta:
        table_name = "jobs"


class JobNode(BaseModel):
    job_id = peewee.CharField(max_length=32)
    org_id = peewee.CharField(max_length=32)
    node_name = peewee.TextField()
    status = peewee.IntegerField()
    reason = peewee.TextField(null=True)
    created_at = UtcDateTimeField()
    updated_at = UtcDateTimeField()

    class Meta:
        table_name = "job_nodes"
        primary_key = peewee.CompositeKey("job_id", "org_id", "node_name")


class JobOption(BaseModel):
    job_id = peewee.CharField(max_length=32, primary_key=True)
    job_user = peewee.TextField(null=True)
    dir = peewee.TextField(null=True)
    env = JSONTextField(null=True)
    capture = peewee.BooleanField(default=False)
    job_file = peewee.TextField(null=True)
    voting_timeout = peewee.IntegerField(null=True)
    max_concurrency = peewee.TextField(null=True)  # "5" or "10%" as given (pushd/rollout.py)
    max_errors = peewee.TextField(null=True)
    rerun_of = peewee.CharField(max_length=32, null=True)

    class Meta:
        table_name = "job_options"


class JobOutput(BaseModel):
    job_id = peewee.CharField(max_length=32)
    org_id = peewee.CharField(max_length=32)
    node_name = peewee.TextField()
    stdout = BytesField(null=True)
    stderr = BytesField(null=True)
    stdout_bytes = peewee.BigIntegerField(null=True)
    stderr_bytes = peewee.BigIntegerField(null=True)
    truncated = peewee.BooleanField(default=False)
    created_at = UtcDateTimeField()

    class Meta:
        table_name = "job_output"
        primary_key = peewee.CompositeKey("job_id", "node_name")


class JobEvent(BaseModel):
    id = peewee.BigAutoField()
    org_id = peewee.CharField(max_length=32)
    job_id = peewee.CharField(max_length=32, null=True)
    name = peewee.TextField()
    data = JSONTextField()
    org_feed = peewee.BooleanField(default=False)
    created_at = UtcDateTimeField()

    class Meta:
        table_name = "job_events"


class NodeSessionKey(BaseModel):
    org_id = peewee.CharField(max_length=32)
    org_name = peewee.TextField()
    node_name = peewee.TextField()
    key = BytesField()
    created_at = UtcDateTimeField()

    class Meta:
        table_name = "node_session_keys"
        primary_key = peewee.CompositeKey("org_id", "node_name")


class KnownNode(BaseModel):
    org_id = peewee.CharField(max_length=32)
    node_name = peewee.TextField()
    last_seen = UtcDateTimeField()

    class Meta:
        table_name = "known_nodes"
        primary_key = peewee.CompositeKey("org_id", "node_name")


class OrganizationRow(BaseModel):
    id = peewee.CharField(max_length=32, primary_key=True)
    name = peewee.TextField(unique=True)
    full_name = peewee.TextField(null=True)
    created_at = UtcDateTimeField()

    class Meta:
        table_name = "organizations"


class PrincipalRow(BaseModel):
    org_id = peewee.CharField(max_length=32)
    name = peewee.TextField()
    kind = peewee.CharField(max_length=8)
    public_key = peewee.TextField()
    admin = peewee.BooleanField(default=False)
    created_at = UtcDateTimeField()

    class Meta:
        table_name = "principals"
        primary_key = peewee.CompositeKey("org_id", "name", "kind")


class GroupRow(BaseModel):
    id = peewee.BigAutoField()
    org_id = peewee.CharField(max_length=32)
    name = peewee.TextField()
    created_at = UtcDateTimeField()

    class Meta:
        table_name = "groups"


class GroupMember(BaseModel):
    group_id = peewee.BigIntegerField()
    member_kind = peewee.CharField(max_length=8)
    member_name = peewee.TextField()

    class Meta:
        table_name = "group_members"
        primary_key = peewee.CompositeKey("group_id", "member_kind", "member_name")


class SchemaVersion(BaseModel):
    version = peewee.IntegerField()

    class Meta:
        table_name = "schema_version"
        primary_key = False


ALL_MODELS: tuple[type[BaseModel], ...] = (
    JobStatusRow,
    Job,
    JobNode,
    JobOption,
    JobOutput,
    JobEvent,
    NodeSessionKey,
    KnownNode,
    OrganizationRow,
    PrincipalRow,
    GroupRow,
    GroupMember,
    SchemaVersion,
)


class DashboardLogin(BaseModel):
    token_hash = peewee.CharField(max_length=64, primary_key=True)
    org_id = peewee.CharField(max_length=32)
    org_name = peewee.TextField()
    user_name = peewee.TextField()
    expires_at = UtcDateTimeField()

    class Meta:
        table_name = "dashboard_logins"


class DashboardSession(BaseModel):
    token_hash = peewee.CharField(max_length=64, primary_key=True)
    org_id = peewee.CharField(max_length=32)
    org_name = peewee.TextField()
    user_name = peewee.TextField()
    csrf_token = peewee.CharField(max_length=64)
    expires_at = UtcDateTimeField()

    class Meta:
        table_name = "dashboard_sessions"
