"""pushd's storage: peewee models on SQLite (embedded default) or PostgreSQL (psycopg 3).

Import what you need from here (`from pushd import store` then `store.create_job(...)`). Each
submodule's docstring details its part; this is the whole public API.

Opening (pushd.store.opening; connections and transactions: pushd.store.db)
    open_database(settings, *, migrate=False) -> peewee.Database
        PostgreSQL when settings.get("postgresql.enable"), else SQLite <data_dir>/pushd.sqlite3
    open_database_params(kind, params, *, pool_size=20, migrate=False) -> peewee.Database
        ("sqlite", {"path"}) or ("postgres", {"host","port","user","password","database"}),
        exactly what the tests' `db_backend` fixture yields
    close_database(); get_database(); dialect() -> "sqlite" | "postgres"
    transaction()   write transaction context manager; nests. Group several writes with it,
                    e.g. the broker: with store.transaction(): set_job_status(...);
                    set_node_statuses(...); ids = append_events([...])  -> then publish.
    connection()    hold one connection for a block (nests). Optional: a query function called
                    outside any block takes a connection and gives it back before returning,
                    so SSE greenlets and threads never strand a pooled connection.
    The open database is process-wide (one DatabaseProxy); open it once per process (after fork).

Schema (pushd.store.migrations)
    migrate(database=None) -> int; schema_version(database=None) -> int | None; LATEST_VERSION

Jobs (pushd.store.jobs)
    create_job(org_id, job_id, command, nodes, quorum, run_timeout, requested_by,
               options=None, *, created_at=None) -> None           one transaction
    get_job(org_id, job_id) -> JobView | None
    get_job_summary(org_id, job_id) -> JobSummary | None
    job_node_names(org_id, job_id, *, after=None, limit=5000) -> list[str]   a page, by name
    list_jobs(org_id, *, limit=None, status=None, before=None) -> (list[JobSummary], cursor|None)
        (the summaries say file_specified; they do not carry the file)
    set_job_status(org_id, job_id, status, updated_by=None) -> bool
    set_node_statuses(org_id, job_id, {node: status | (status, reason)}) -> int
    incomplete_jobs() -> list[JobView]                             NEW/VOTING/RUNNING, all orgs
    store_output(org_id, job_id, node, stdout, stderr, stdout_bytes=None, stderr_bytes=None,
                 truncated=False)
    get_output(org_id, job_id, node, channel) -> str | None
    get_output_bytes(...) -> bytes | None; get_output_record(org_id, job_id, node)
    append_output(org_id, job_id, node, channel, pieces, max_bytes=None) -> int   live output
    get_output_from(org_id, job_id, node, channel, offset) -> (bytes, size) | None
    prune_jobs(older_than, *, limit=None) -> int   oldest first, at most `limit`
    JobOptions, JobNodeState, JobSummary, JobView, OutputRecord, InvalidCursor

Events (pushd.store.events)
    append_events([(org_id, job_id|None, name, data_dict | EncodedJSON), ...]) -> list[int]
    encode_data(data) -> EncodedJSON   data as the column stores it, encoded once by a caller
                                       that also publishes it (the broker's journal)
    job_events_after(org_id, job_id, after_id=None, *, limit=None) -> list[Event]
    org_events_after(org_id, after_id=None, *, since=None, limit=None) -> list[Event]
    last_event_id(org_id) -> int | None; prune_org_events(older_than) -> int
    NewEvent, Event, ORG_FEED_EVENTS

Session keys and known nodes (pushd.store.sessions)
    get_or_create_session_key(org_id, org_name, node_name) -> bytes (32)
    get_session_key(org_id, node_name) -> bytes | None; delete_session_key(org_id, node_name)
    load_session_keys() -> {(org_name, node_name): (org_id, key)}
    touch_known_nodes(org_id, {node: last_seen}); known_nodes(org_id) -> {node: last_seen}

Local principals (pushd.store.principals)
    create_organization(name, full_name=None, *, org_id=None) -> Organization
    get_organization(name); get_organization_by_id(org_id); list_organizations();
    delete_organization(org_id)
    create_principal(org_id, name, kind, public_key, *, admin=False) -> Principal
    get_principal(org_id, name, kind); find_principals(org_id, name);
    list_principals(org_id, kind=None); update_principal(org_id, name, kind, *, public_key=None,
    admin=None); delete_principal(org_id, name, kind)
    create_group(org_id, name, *, exist_ok=False); get_group(org_id, name) -> Group | None;
    list_groups(org_id); delete_group(org_id, name);
    add_group_member(org_id, group, member_kind, member_name, *, create_group=False) -> bool;
    remove_group_member(org_id, group, member_kind, member_name) -> bool
    Organization, Principal, Group

Dashboard (pushd.store.dashboard)
    add_login_token(token_hash, org_id, org_name, user_name, expires_at)
    consume_login_token(token_hash, *, now=None) -> DashboardGrant | None   single use
    add_session(token_hash, org_id, org_name, user_name, csrf_token, expires_at)
    get_session(token_hash, *, now=None) -> DashboardSessionView | None; delete_session(hash)
    prune_dashboard(now=None) -> int; node_counts(org_id, job_ids) -> {job: {status: n}}
    job_outputs(org_id, job_id, *, limit) -> {node: ShownOutput}       one query, for display

Cluster (pushd.store.cluster; PostgreSQL only): members and leases, which member holds each
node, the mailbox between brokers, the cluster's keys: see that module's docstring.
    cluster  the submodule itself (`store.cluster.take_over(...)`)

Times (pushd.store.times): utcnow(), to_naive_utc(dt), rfc1123(dt), event_timestamp(dt).
Every stored time is a naive UTC datetime with microseconds.

Errors: only pushd.errors.StoreError and its subclasses ConflictError (constraint: duplicate
node, existing job id, taken name), StoreUnavailable (cannot connect / locked), InvalidValue
(also a ValueError; InvalidCursor is one), SchemaTooNew.
"""

from __future__ import annotations

from pushd.errors import StoreError
from pushd.store import cluster
from pushd.store.dashboard import (
    DashboardGrant,
    DashboardSessionView,
    ShownOutput,
    add_login_token,
    add_session,
    consume_login_token,
    delete_session,
    get_session,
    job_outputs,
    node_counts,
    prune_dashboard,
)
from pushd.store.db import (
    ConflictError,
    InvalidValue,
    SchemaTooNew,
    StoreUnavailable,
    close_database,
    connection,
    database_params_from_settings,
    database_proxy,
    dialect,
    get_database,
    transaction,
)
from pushd.store.events import (
    ORG_FEED_EVENTS,
    EncodedJSON,
    Event,
    NewEvent,
    append_events,
    encode_data,
    job_events_after,
    last_event_id,
    org_events_after,
    prune_org_events,
)
from pushd.store.jobs import (
    InvalidCursor,
    JobNodeState,
    JobOptions,
    JobSummary,
    JobView,
    OutputRecord,
    append_output,
    create_job,
    get_job,
    get_job_summary,
    get_output,
    get_output_bytes,
    get_output_from,
    get_output_record,
    incomplete_jobs,
    job_node_names,
    list_jobs,
    prune_jobs,
    set_job_status,
    set_node_statuses,
    store_output,
)
from pushd.store.migrations import LATEST_VERSION, migrate, schema_version
from pushd.store.opening import open_database, open_database_params
from pushd.store.principals import (
    Group,
    Organization,
    Principal,
    add_group_member,
    create_group,
    create_organization,
    create_principal,
    delete_group,
    delete_organization,
    delete_principal,
    find_principals,
    get_group,
    get_organization,
    get_organization_by_id,
    get_principal,
    list_groups,
    list_organizations,
    list_principals,
    remove_group_member,
    update_principal,
)
from pushd.store.sessions import (
    delete_session_key,
    get_or_create_session_key,
    get_session_key,
    known_nodes,
    load_session_keys,
    touch_known_nodes,
)
from pushd.store.times import event_timestamp, rfc1123, to_naive_utc, utcnow

__all__ = [
    "LATEST_VERSION",
    "ORG_FEED_EVENTS",
    "ConflictError",
    "DashboardGrant",
    "DashboardSessionView",
    "EncodedJSON",
    "Event",
    "Group",
    "InvalidCursor",
    "InvalidValue",
    "JobNodeState",
    "JobOptions",
    "JobSummary",
    "JobView",
    "NewEvent",
    "Organization",
    "OutputRecord",
    "Principal",
    "SchemaTooNew",
    "ShownOutput",
    "StoreError",
    "StoreUnavailable",
    "add_group_member",
    "add_login_token",
    "add_session",
    "append_events",
    "append_output",
    "close_database",
    "cluster",
    "connection",
    "consume_login_token",
    "create_group",
    "create_job",
    "create_organization",
    "create_principal",
    "database_params_from_settings",
    "database_proxy",
    "delete_group",
    "delete_organization",
    "delete_principal",
    "delete_session",
    "delete_session_key",
    "dialect",
    "encode_data",
    "event_timestamp",
    "find_principals",
    "get_database",
    "get_group",
    "get_job",
    "get_job_summary",
    "get_or_create_session_key",
    "get_organization",
    "get_organization_by_id",
    "get_output",
    "get_output_bytes",
    "get_output_from",
    "get_output_record",
    "get_principal",
    "get_session",
    "get_session_key",
    "incomplete_jobs",
    "job_events_after",
    "job_node_names",
    "job_outputs",
    "known_nodes",
    "last_event_id",
    "list_groups",
    "list_jobs",
    "list_organizations",
    "list_principals",
    "load_session_keys",
    "migrate",
    "node_counts",
    "open_database",
    "open_database_params",
    "org_events_after",
    "prune_dashboard",
    "prune_jobs",
    "prune_org_events",
    "remove_group_member",
    "rfc1123",
    "schema_version",
    "set_job_status",
    "set_node_statuses",
    "store_output",
    "to_naive_utc",
    "touch_known_nodes",
    "transaction",
    "update_principal",
    "utcnow",
]
