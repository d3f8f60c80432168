"""Jobs, their nodes, options and captured output. Every per-org query takes `org_id` first.

Views returned (frozen dataclasses):

    JobOptions(job_user=None, dir=None, env=None, capture=False, job_file=None,
               voting_timeout=None, max_concurrency=None, max_errors=None, rerun_of=None)
        max_concurrency / max_errors: an int or "N%" as the request gave it (pushd/rollout.py);
        rerun_of: the id of the job this one re-runs
    JobNodeState(name, status: NodeStatus, reason: str | None, updated_at)
    JobSummary(id, org_id, command, status: JobStatus, run_timeout, quorum, requested_by,
               last_updated_by, created_at, updated_at, options: JobOptions, file_specified)
        file_specified: the job has a data file (options.job_file, except in list_jobs'
        summaries, which do not read the file: there options.job_file is None)
    JobView(JobSummary) + nodes: tuple[JobNodeState, ...] (sorted by name) with
        .nodes_by_status() -> {"succeeded": ["a", "b"], ...}  only statuses with nodes
        .node_reasons() -> {"node": "reason"}               only nodes with a reason
        .node_status(name) -> NodeStatus | None
    OutputRecord(job_id, node_name, stdout, stderr: str | None, stdout_bytes, stderr_bytes,
                 truncated, created_at)

Writes (the API creates jobs; the broker is the only writer of job and node state):

    create_job(org_id, job_id, command, nodes, quorum, run_timeout, requested_by,
               options=None, *, created_at=None) -> None
        job (status NEW), every job node (NEW) and the options row in ONE transaction.
        Duplicate node names or an existing job id -> ConflictError, nothing written.
        Ids longer than 32 characters, NUL characters in any text, non-string env values ->
        InvalidValue before anything is written.
        `options` is a JobOptions or a mapping with its field names.
    set_job_status(org_id, job_id, status, updated_by=None) -> bool    (False: no such job)
        also sets updated_at; last_updated_by defaults to the job id, as the original does.
    set_node_statuses(org_id, job_id, changes, *, updated_at=None) -> int  rows changed
        changes: {node: NodeStatus | (NodeStatus, reason | None)}; one UPDATE per
        (status, reason) group (PostgreSQL: the names as one array; SQLite: per 500 names),
        all in one transaction.
    store_output(org_id, job_id, node, stdout, stderr, stdout_bytes=None, stderr_bytes=None,
                 truncated=False) -> None         insert or replace. Text is kept as UTF-8
        bytes; U+DC80..U+DCFF (surrogateescape) become the raw bytes they stand for, so a
        client's undecodable output comes back byte-exact; other lone surrogates become '?'.
    append_output(org_id, job_id, node, channel, pieces, max_bytes=None) -> int
        live output (the broker, while a node runs): `pieces` [(offset, text)] of one channel
        in stream order, offset = the stream's bytes before the piece. The stored channel stays
        "[TRUNCATION_MARKER +] the stream's bytes from some point up to its size": a piece
        overlapping what is stored keeps only its new bytes, a gap (a chunk that never came)
        drops what was kept (the marker then names everything before the piece), and with
        `max_bytes` only the last max_bytes bytes are kept. The row's `<channel>_bytes` is the
        stream's size so far. Returns that size. A later store_output (the result) replaces all.
    prune_jobs(older_than, *, limit=None) -> int
        delete finished jobs not updated since then (all orgs; cascades to nodes, options,
        output and events); with `limit`, at most that many, oldest first (one small batch:
        the broker's retention, pushd.broker.retention, calls it repeatedly)

Reads:

    get_job(org_id, job_id) -> JobView | None
    get_job_summary(org_id, job_id) -> JobSummary | None     (no node rows: cheap)
    job_node_names(org_id, job_id, *, after=None, limit=5000) -> list[str]
        a page of the job's node names in name order, those after `after` (keyset on the
        primary key): the broker loads a big job's nodes one page per loop turn
    list_jobs(org_id, *, limit=None, status=None, before=None) -> (list[JobSummary], str | None)
        newest first by (created_at, id); `status` a JobStatus or an iterable of them; `before`
        the opaque cursor a previous call returned (InvalidCursor if garbled); the second item
        is the cursor of the next page, None on the last page (always None when limit is None).
        The file of a job is not read (file_specified says whether it has one). Indexes
        (org_id, created_at, id) and, for one status, (org_id, status, created_at, id) give
        the rows in page order, however deep the cursor.
    incomplete_jobs(coordinator=None, *, job_ids=None) -> list[JobView]
        every job in NEW, VOTING or RUNNING of every org (of one coordinator, or those ids),
        oldest first (for broker start and a cluster take-over)
    get_output(org_id, job_id, node, channel) -> str | None      channel "stdout" | "stderr"
    get_output_bytes(org_id, job_id, node, channel) -> bytes | None  (what the REST body sends)
    get_output_record(org_id, job_id, node) -> OutputRecord | None
    get_output_from(org_id, job_id, node, channel, offset) -> (bytes, size) | None
        the stored bytes from stream offset `offset` on, and the stream's size (the offset to
        ask for next). When `offset` lies in what was dropped, the whole stored text (marker
        first) comes back.
"""

from __future__ import annotations

import functools
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import peewee

from pushd.protocol.output import TRUNCATION_MARKER, split_marker, tail_bytes
from pushd.rollout import from_stored, to_stored
from pushd.states import ACTIVE_JOB_STATUSES, JobStatus, NodeStatus
from pushd.store.db import (
    ARRAY_CHUNK,
    ConflictError,
    InvalidValue,
    chunks,
    get_database,
    store_function,
    transaction,
)
from pushd.store.models import Job, JobNode, JobOption, JobOutput
from pushd.store.times import to_naive_utc, utcnow

ID_LENGTH = 32
UPDATE_CHUNK = 500
OUTPUT_CHANNELS = ("stdout", "stderr")


class InvalidCursor(InvalidValue):
    """A pagination cursor that this store did not produce."""


@dataclass(frozen=True)
class JobOptions:
    job_user: str | None = None
    dir: str | None = None
    env: dict[str, str] | None = None
    capture: bool = False
    job_file: str | None = None
    voting_timeout: int | None = None
    max_concurrency: int | str | None = None
    max_errors: int | str | None = None
    rerun_of: str | None = None

    @classmethod
    def coerce(cls, value: JobOptions | Mapping[str, Any] | None) -> JobOptions:
        if value is None:
            return cls()
        if isinstance(value, JobOptions):
            return value
        unknown = set(value) - _OPTION_FIELDS
        if unknown:
            raise InvalidValue(f"unknown job options: {', '.join(sorted(unknown))}")
        return cls(**value)


_OPTION_FIELDS = frozenset(JobOptions.__dataclass_fields__)


@dataclass(frozen=True)
class JobNodeState:
    name: str
    status: NodeStatus
    reason: str | None
    updated_at: datetime


@dataclass(frozen=True)
class JobSummary:
    id: str
    org_id: str
    command: str
    status: JobStatus
    run_timeout: int
    quorum: int
    requested_by: str | None
    last_updated_by: str
    created_at: datetime
    updated_at: datetime
    options: JobOptions
    # Whether the job has a data file; listed jobs (list_jobs) have options.job_file None.
    file_specified: bool = False


@dataclass(frozen=True)
class JobView(JobSummary):
    nodes: tuple[JobNodeState, ...] = field(default=())

    def nodes_by_status(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for node in self.nodes:
            grouped.setdefault(node.status.wire, []).append(node.name)
        return grouped

    def node_reasons(self) -> dict[str, str]:
        return {node.name: node.reason for node in self.nodes if node.reason is not None}

    def node_status(self, name: str) -> NodeStatus | None:
        for node in self.nodes:
            if node.name == name:
                return node.status
        return None


@dataclass(frozen=True)
class OutputRecord:
    job_id: str
    node_name: str
    stdout: str | None
    stderr: str | None
    stdout_bytes: int | None
    stderr_bytes: int | None
    truncated: bool
    created_at: datetime


# --------------------------------------------------------------------------------------------
# Writes


def _check_id(what: str, value: str) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= ID_LENGTH:
        raise InvalidValue(f"{what} must be 1..{ID_LENGTH} characters: {value!r:.80}")


def _check_text(what: str, value: str | None) -> None:
    # PostgreSQL text cannot hold NUL; refuse it on both backends so they behave alike.
    if value is not None and (not isinstance(value, str) or "\x00" in value):
        raise InvalidValue(f"{what} must be text without NUL characters")


def _check_job_values(
    org_id: str, job_id: str, command: str, nodes: list[str], opts: JobOptions
) -> None:
    _check_id("org_id", org_id)
    _check_id("job id", job_id)
    _check_text("command", command)
    for name in nodes:
        if not name:
            raise InvalidValue("node names must not be empty")
        _check_text("node name", name)
    for what in ("job_user", "dir", "job_file", "rerun_of"):
        _check_text(what, getattr(opts, what))
    if opts.env is not None:
        if not isinstance(opts.env, Mapping):
            raise InvalidValue("env must be a mapping of strings to strings")
        for key, value in opts.env.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise InvalidValue("env must be a mapping of strings to strings")


@store_function
def create_job(
    org_id: str,
    job_id: str,
    command: str,
    nodes: Iterable[str],
    quorum: int,
    run_timeout: int,
    requested_by: str | None,
    options: JobOptions | Mapping[str, Any] | None = None,
    *,
    created_at: datetime | None = None,
    coordinator: str | None = None,
) -> None:
    """Write a new job in one transaction (see module docstring); `coordinator` is the cluster
    member whose broker is to run it (None: whichever broker finds it)."""
    node_names = list(nodes)
    opts = JobOptions.coerce(options)
    _check_job_values(org_id, job_id, command, node_names, opts)
    now = to_naive_utc(created_at) if created_at else utcnow()
    try:
        with transaction():
            Job.insert(
                id=job_id,
                org_id=org_id,
                command=command,
                status=int(JobStatus.NEW),
                run_timeout=int(run_timeout),
                quorum=int(quorum),
                last_updated_by=job_id,
                requested_by=requested_by,
                created_at=now,
                updated_at=now,
                coordinator=coordinator,
            ).execute()
            _insert_job_nodes(job_id, org_id, node_names, now)
            JobOption.insert(
                job_id=job_id,
                job_user=opts.job_user,
                dir=opts.dir,
                env=opts.env,
                capture=bool(opts.capture),
                job_file=opts.job_file,
                voting_timeout=opts.voting_timeout,
                max_concurrency=to_stored(opts.max_concurrency),
                max_errors=to_stored(opts.max_errors),
                rerun_of=opts.rerun_of,
            ).execute()
    except peewee.IntegrityError as exc:
        duplicates = sorted(name for name, n in Counter(node_names).items() if n > 1)
        if duplicates:
            raise ConflictError(
                f"job {job_id}: duplicate node names: {', '.join(duplicates[:10])}"
            ) from exc
        raise ConflictError(f"job {job_id} could not be created: {exc}") from exc


# peewee's own translation of driver errors (what its execute_sql uses), for a raw cursor.
_EXCEPTION_WRAPPER: Any = vars(peewee)["__exception_wrapper__"]

_INSERT_JOB_NODE = (
    "INSERT INTO job_nodes (job_id, org_id, node_name, status, reason, created_at, updated_at)"
    " VALUES ({0}, {0}, {0}, {0}, NULL, {0}, {0})"
)


_INSERT_JOB_NODES_POSTGRES = (
    "INSERT INTO job_nodes (job_id, org_id, node_name, status, reason, created_at, updated_at)"
    " SELECT %s, %s, u.name, %s, NULL, %s, %s FROM unnest(%b::text[]) AS u(name)"
)


def _insert_job_nodes(job_id: str, org_id: str, names: list[str], now: datetime) -> None:
    """Every node row of a new job (inside the caller's transaction): on PostgreSQL one
    INSERT ... SELECT over an array of names (ARRAY_CHUNK a statement), on SQLite one
    driver-level executemany.
    peewee building 500-row INSERTs in Python took an API worker's gevent loop 4.9 s (SQLite) /
    19.9 s (PostgreSQL) for 100,000 nodes on a loaded two-core machine, where executemany took
    0.8 s / 5.1 s: long enough, under load, for gunicorn to kill the worker (30 s)."""
    database = get_database()
    stamp = JobNode.created_at.db_value(now)
    new = int(NodeStatus.NEW)
    postgres = not isinstance(database, peewee.SqliteDatabase)
    # peewee's wrapper: driver errors become peewee's (IntegrityError for duplicates).
    cursor = database.cursor()
    try:
        with _EXCEPTION_WRAPPER:
            if postgres:
                # One statement over an array of names: executemany still executes a
                # statement per row (8,000 rows: ~0.2 s of the API worker's CPU, 0.03 s so).
                for chunk in chunks(names, ARRAY_CHUNK):
                    cursor.execute(_INSERT_JOB_NODES_POSTGRES,
                                   [job_id, org_id, new, stamp, stamp, chunk])
            else:
                rows = [(job_id, org_id, name, new, stamp, stamp) for name in names]
                cursor.executemany(_INSERT_JOB_NODE.format(database.param), rows)
    finally:
        # A live cursor makes SQLite refuse the COMMIT ("SQL statements in progress").
        cursor.close()


@store_function
def set_job_status(
    org_id: str, job_id: str, status: JobStatus, updated_by: str | None = None
) -> bool:
    """Set a job's status and updated_at; False when the org has no such job."""
    changed = (
        Job.update(
            status=int(JobStatus(status)),
            updated_at=utcnow(),
            last_updated_by=updated_by or job_id,
        )
        .where((Job.org_id == org_id) & (Job.id == job_id))
        .execute()
    )
    return changed > 0


def _normalise_change(change: Any) -> tuple[NodeStatus, str | None]:
    if isinstance(change, tuple):
        status, reason = change
        return NodeStatus(status), reason
    return NodeStatus(change), None


@store_function
def set_node_statuses(
    org_id: str,
    job_id: str,
    changes: Mapping[str, NodeStatus | tuple[NodeStatus, str | None]],
    *,
    updated_at: datetime | None = None,
) -> int:
    """Batch-update node statuses (and reasons) of one job; returns how many rows changed."""
    groups: dict[tuple[NodeStatus, str | None], list[str]] = defaultdict(list)
    for name, change in changes.items():
        groups[_normalise_change(change)].append(name)
    now = JobNode.updated_at.db_value(to_naive_utc(updated_at) if updated_at else utcnow())
    database = get_database()
    postgres = not isinstance(database, peewee.SqliteDatabase)
    changed = 0
    # Hand-written SQL: composing it with peewee cost more than running it (1,000-node jobs).
    with transaction():
        for (status, reason), names in groups.items():
            head = (int(status), reason, now, org_id, job_id)
            if postgres:
                # One statement of constant text per group: an array, not 1,000 parameters.
                cursor = database.execute_sql(_UPDATE_NODES_POSTGRES, [*head[:3], names,
                                                                       *head[3:]])
                changed += cursor.rowcount
                continue
            for chunk in chunks(names, UPDATE_CHUNK):
                cursor = database.execute_sql(_update_nodes_sqlite(len(chunk)), [*head, *chunk])
                changed += cursor.rowcount
    return changed


_UPDATE_NODES_HEAD = (
    "UPDATE job_nodes SET status = {p}, reason = {p}, updated_at = {p} "
    "WHERE org_id = {p} AND job_id = {p} AND node_name "
)
# The names joined as a set, not `node_name = ANY(array)`: with statistics that do not know the
# job yet (a job just written; a fresh or small table), PostgreSQL scans every node of the job
# through the primary key and compares each with the whole array, O(job x batch) per statement:
# 2.1 s of database CPU for one wave of an 8,000-node job in batches of 500, 0.7 s as a join
# (0.5 s either way once the table is analyzed; bench/bench_journal.py).
_UPDATE_NODES_POSTGRES = (
    "UPDATE job_nodes AS n SET status = %s, reason = %s, updated_at = %s "
    "FROM unnest(%b::text[]) AS u(name) "  # binary: no per-name quoting (events.py)
    "WHERE n.org_id = %s AND n.job_id = %s AND n.node_name = u.name"
)


@functools.lru_cache(maxsize=8)
def _update_nodes_sqlite(count: int) -> str:
    return _UPDATE_NODES_HEAD.format(p="?") + f"IN ({', '.join(['?'] * count)})"


def _encode_output(text: str | None) -> bytes | None:
    if text is None:
        return None
    # surrogateescape: a client that escaped undecodable bytes as U+DC80..U+DCFF gets its raw
    # bytes back; any other lone surrogate is unrepresentable and replaced.
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def _decode_output(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "surrogateescape")


@store_function
def store_output(
    org_id: str,
    job_id: str,
    node: str,
    stdout: str | None,
    stderr: str | None,
    stdout_bytes: int | None = None,
    stderr_bytes: int | None = None,
    truncated: bool = False,
) -> None:
    """Insert or replace a node's captured output (the job must belong to the org)."""
    out, err = _encode_output(stdout), _encode_output(stderr)
    with transaction():
        if not Job.select().where((Job.org_id == org_id) & (Job.id == job_id)).exists():
            raise ConflictError(f"no job {job_id} in this organization")
        JobOutput.insert(
            job_id=job_id,
            org_id=org_id,
            node_name=node,
            stdout=out,
            stderr=err,
            stdout_bytes=stdout_bytes if stdout_bytes is not None else _len(out),
            stderr_bytes=stderr_bytes if stderr_bytes is not None else _len(err),
            truncated=bool(truncated),
            created_at=utcnow(),
        ).on_conflict(
            conflict_target=[JobOutput.job_id, JobOutput.node_name],
            preserve=[
                JobOutput.stdout,
                JobOutput.stderr,
                JobOutput.stdout_bytes,
                JobOutput.stderr_bytes,
                JobOutput.truncated,
                JobOutput.created_at,
            ],
        ).execute()


@store_function
def append_output(
    org_id: str,
    job_id: str,
    node: str,
    channel: str,
    pieces: list[tuple[int, str]],
    max_bytes: int | None = None,
) -> int:
    """Append live output to one channel of a node's stored output (module docstring)."""
    _check_channel(channel)
    size_field = f"{channel}_bytes"
    with transaction():
        row = _output_row(org_id, job_id, node)
        if row is None:
            if not Job.select().where((Job.org_id == org_id) & (Job.id == job_id)).exists():
                raise ConflictError(f"no job {job_id} in this organization")
            stored, size = b"", 0
        else:
            stored = bytes(getattr(row, channel) or b"")
            size = getattr(row, size_field) or len(stored)
        marker_length, _dropped = split_marker(stored)
        kept = bytearray(stored[marker_length:])
        for offset, text in pieces:
            data = _encode_output(text) or b""
            if offset > size:  # a gap: what is kept no longer joins up with what follows
                kept.clear()
                size = offset
            new = data[size - offset:]
            kept += new
            size += len(new)
        if max_bytes is not None and len(kept) > max_bytes:
            kept = bytearray(tail_bytes(bytes(kept), max_bytes))
        dropped = size - len(kept)
        value = bytes(kept)
        if dropped:
            value = TRUNCATION_MARKER.format(dropped=dropped, total=size).encode() + value
        fields = {channel: value, size_field: size}
        if row is None:
            JobOutput.insert(job_id=job_id, org_id=org_id, node_name=node, created_at=utcnow(),
                             truncated=bool(dropped), **fields).on_conflict_ignore().execute()
        else:
            JobOutput.update(truncated=row.truncated or bool(dropped), **fields).where(
                (JobOutput.org_id == org_id) & (JobOutput.job_id == job_id)
                & (JobOutput.node_name == node)
            ).execute()
    return size


def _len(data: bytes | None) -> int | None:
    return None if data is None else len(data)


@store_function
def prune_jobs(older_than: datetime, *, limit: int | None = None) -> int:
    """Delete finished jobs (of every org) whose last status change is before `older_than`,
    at most `limit` of them (the oldest first), in one transaction; returns how many."""
    active = [int(status) for status in ACTIVE_JOB_STATUSES]
    old = (Job.updated_at < to_naive_utc(older_than)) & (Job.status.not_in(active))
    if limit is None:
        with transaction():
            return Job.delete().where(old).execute()
    # Ids first, outside the write transaction (the scan holds no write lock), then delete by
    # id: SQLite has no DELETE ... LIMIT in every build, and a small batch keeps SQLite's one
    # write lock short for the journal writer that shares it. The delete checks `old` again.
    ids = [row.id for row in Job.select(Job.id).where(old).order_by(Job.updated_at)
           .limit(max(0, limit))]  # fmt: skip
    if not ids:
        return 0
    with transaction():
        return Job.delete().where(Job.id.in_(ids) & old).execute()


# --------------------------------------------------------------------------------------------
# Reads


# Job summaries are read as the driver's plain rows and converted here, column by column as
# each needs it: peewee's per-row conversion of every column (its .tuples()) and building a Job
# and a joined JobOption instance per row cost more than the query in a page of 1,000 jobs.
_JOB_COLUMNS = (
    Job.id, Job.org_id, Job.command, Job.status, Job.run_timeout, Job.quorum,
    Job.requested_by, Job.last_updated_by, Job.created_at, Job.updated_at,
)
_OPTION_COLUMNS = (
    JobOption.job_id, JobOption.job_user, JobOption.dir, JobOption.env, JobOption.capture,
    JobOption.job_file, JobOption.voting_timeout, JobOption.max_concurrency,
    JobOption.max_errors, JobOption.rerun_of,
)
_NO_OPTIONS = JobOptions()
_JOB_STATUSES = {int(status): status for status in JobStatus}
# Naive UTC datetimes from either backend (PostgreSQL gives datetimes, SQLite text).
_time_value = Job.created_at.python_value
_env_value = JobOption.env.python_value


def _summary_query() -> peewee.ModelSelect[Any]:
    return Job.select(*_JOB_COLUMNS, *_OPTION_COLUMNS).join(
        JobOption, peewee.JOIN.LEFT_OUTER, on=(JobOption.job_id == Job.id)
    )


def _summaries(query: peewee.SelectBase) -> list[JobSummary]:
    """Run a query of _JOB_COLUMNS and _OPTION_COLUMNS; its rows as JobSummary views."""
    rows = get_database().execute(query).fetchall()
    return [_summary_of(row, False) for row in rows]


def _summary_of(row: tuple[Any, ...], listed: bool) -> JobSummary:
    """A row of _JOB_COLUMNS and _OPTION_COLUMNS (`listed`: of _list_sql) as a JobSummary."""
    (job_id, org_id, command, status, run_timeout, quorum, requested_by, last_updated_by,
     created_at, updated_at, options_job_id, job_user, dir_, env, capture, job_file,
     voting_timeout, max_concurrency, max_errors, rerun_of) = row
    if listed:  # the column holds `job_file IS NOT NULL`
        file_specified, job_file = bool(job_file), None
    else:
        file_specified = job_file is not None
    if options_job_id is None or (
        not capture and job_user is None and dir_ is None and env is None and job_file is None
        and voting_timeout is None and max_concurrency is None and max_errors is None
        and rerun_of is None
    ):
        options = _NO_OPTIONS  # most jobs: one shared, immutable value
    else:
        options = JobOptions(
            job_user=job_user,
            dir=dir_,
            env=None if env is None else _env_value(env),
            capture=bool(capture),
            job_file=job_file,
            voting_timeout=voting_timeout,
            max_concurrency=from_stored(max_concurrency),
            max_errors=from_stored(max_errors),
            rerun_of=rerun_of,
        )
    return JobSummary(
        id=job_id,
        org_id=org_id,
        command=command,
        status=_JOB_STATUSES[status],
        run_timeout=run_timeout,
        quorum=quorum,
        requested_by=requested_by,
        last_updated_by=last_updated_by,
        created_at=_time_value(created_at),
        updated_at=_time_value(updated_at),
        options=options,
        file_specified=file_specified,
    )


def _view_of(summary: JobSummary, nodes: Iterable[JobNodeState]) -> JobView:
    ordered = tuple(sorted(nodes, key=lambda node: node.name))
    return JobView(**{name: getattr(summary, name) for name in _SUMMARY_FIELDS}, nodes=ordered)


_SUMMARY_FIELDS = tuple(JobSummary.__dataclass_fields__)


def _node_state(row: JobNode) -> JobNodeState:
    return JobNodeState(
        name=row.node_name,
        status=NodeStatus(row.status),
        reason=row.reason,
        updated_at=row.updated_at,
    )


def _node_states_of_job(org_id: str, job_id: str) -> list[JobNodeState]:
    # Tuples, not model instances: a job may have thousands of nodes. (Annotated: peewee's stubs
    # type the rows of .tuples() as model instances.)
    rows: peewee.ModelSelect[Any] = (
        JobNode.select(JobNode.node_name, JobNode.status, JobNode.reason, JobNode.updated_at)
        .where((JobNode.org_id == org_id) & (JobNode.job_id == job_id))
        .tuples()
    )
    return [
        JobNodeState(name=name, status=NodeStatus(status), reason=reason, updated_at=updated)
        for name, status, reason, updated in rows
    ]


@store_function
def get_job_summary(org_id: str, job_id: str) -> JobSummary | None:
    """The job and its options without node rows, or None."""
    found = _summaries(_summary_query().where((Job.org_id == org_id) & (Job.id == job_id)))
    return found[0] if found else None


@store_function
def job_node_names(
    org_id: str, job_id: str, *, after: str | None = None, limit: int = 5000
) -> list[str]:
    """A page of the job's node names, in name order, after `after` (see module docstring)."""
    query = JobNode.select(JobNode.node_name).where(
        (JobNode.job_id == job_id) & (JobNode.org_id == org_id)
    )
    if after is not None:
        query = query.where(JobNode.node_name > after)
    rows: Any = query.order_by(JobNode.node_name).limit(limit).tuples()
    return [name for (name,) in rows]


@store_function
def get_job(org_id: str, job_id: str) -> JobView | None:
    """The job with options and every node's status and reason, or None."""
    summary = get_job_summary(org_id, job_id)
    if summary is None:
        return None
    return _view_of(summary, _node_states_of_job(org_id, job_id))


_CURSOR = re.compile(r"^(\d{8}T\d{12})\.([A-Za-z0-9_-]{1,64})$")


def encode_cursor(created_at: datetime, job_id: str) -> str:
    return f"{created_at:%Y%m%dT%H%M%S%f}.{job_id}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    match = _CURSOR.match(cursor) if isinstance(cursor, str) else None
    if match is None:
        raise InvalidCursor(f"invalid page cursor: {str(cursor)[:80]!r}")
    try:
        created_at = datetime.strptime(match.group(1), "%Y%m%dT%H%M%S%f")
    except ValueError:
        raise InvalidCursor(f"invalid page cursor: {cursor[:80]!r}") from None
    return created_at, match.group(2)


# The job list's SQL, written out: composing it with peewee took as long as running it for a
# page of 100 (1.5-4.5 ms on a loaded machine). The page of jobs first, in index order, then
# one options lookup per job of it. Joined under the LIMIT, PostgreSQL priced the lookups for
# every job of a status (15,000 for 1.5% of a million) and chose a parallel plan whose start
# alone took 35 ms on a loaded machine; joined to the page as a plain join, it hashed the whole
# job_options table whenever that looked cheaper than 1,000 lookups (a page of 1,000 of 100,000
# jobs: 38 ms, against 5 ms). LATERAL with LIMIT 1 (so that it is not flattened into a plain
# join) leaves it the lookups only; SQLite, which has no LATERAL, looks each job up anyway.
# Of the file, only whether there is one: a file may be max_job_file_size bytes, and a page of
# 1,000 jobs could pull 100 MB out of the database to say "file_specified".
_LIST_JOB_COLUMNS = (
    "id, org_id, command, status, run_timeout, quorum, requested_by, last_updated_by,"
    " created_at, updated_at"
)
_LIST_OPTION_COLUMNS = (
    "job_id, job_user, dir, env, capture, job_file IS NOT NULL AS has_file, voting_timeout,"
    " max_concurrency, max_errors, rerun_of"
)
_LIST_SQL = (
    "SELECT page.*, options.* FROM (SELECT " + _LIST_JOB_COLUMNS + " FROM jobs"
    " WHERE {where} ORDER BY created_at DESC, id DESC{limit}) AS page {join}"
    " ORDER BY page.created_at DESC, page.id DESC"
)
_LIST_JOIN = {
    "postgres": "LEFT JOIN LATERAL (SELECT " + _LIST_OPTION_COLUMNS + " FROM job_options"
    " WHERE job_options.job_id = page.id LIMIT 1) AS options ON TRUE",
    "sqlite": "LEFT JOIN (SELECT " + _LIST_OPTION_COLUMNS + " FROM job_options) AS options"
    " ON options.job_id = page.id",
}


@functools.lru_cache(maxsize=64)
def _list_sql(dialect: str, statuses: int, after_cursor: bool, limited: bool) -> str:
    """The list query for `statuses` statuses (0: any), a cursor or not, a LIMIT or not; its
    parameters: org_id, the statuses, the cursor's created_at and id, the limit."""
    p = "%s" if dialect == "postgres" else "?"
    where = f"org_id = {p}"
    if statuses == 1:  # an equality: (org_id, status, created_at, id) gives page order
        where += f" AND status = {p}"
    elif statuses:
        where += f" AND status IN ({', '.join([p] * statuses)})"
    if after_cursor:  # a row value: both backends walk the index from the cursor on
        where += f" AND (created_at, id) < ({p}, {p})"
    limit = f" LIMIT {p}" if limited else ""
    return _LIST_SQL.format(where=where, limit=limit, join=_LIST_JOIN[dialect])


@store_function
def list_jobs(
    org_id: str,
    *,
    limit: int | None = None,
    status: JobStatus | Iterable[JobStatus] | None = None,
    before: str | None = None,
) -> tuple[list[JobSummary], str | None]:
    """A page of the org's jobs, newest first (see module docstring)."""
    if limit is not None and limit < 1:
        raise InvalidValue(f"limit must be at least 1, not {limit}")
    params: list[Any] = [org_id]
    if status is not None:
        params += [int(status)] if isinstance(status, int) else [int(s) for s in status]
        if len(params) == 1:
            return [], None  # no status wanted: no job
    statuses = len(params) - 1
    if before is not None:
        created_at, job_id = decode_cursor(before)
        params += [Job.created_at.db_value(created_at), job_id]
    if limit is not None:
        params.append(limit + 1)
    database = get_database()
    dialect = "sqlite" if isinstance(database, peewee.SqliteDatabase) else "postgres"
    sql = _list_sql(dialect, statuses, before is not None, limit is not None)
    rows = database.execute_sql(sql, params).fetchall()
    jobs = [_summary_of(row, True) for row in rows]
    next_cursor = None
    if limit is not None and len(jobs) > limit:
        jobs = jobs[:limit]
        next_cursor = encode_cursor(jobs[-1].created_at, jobs[-1].id)
    return jobs, next_cursor


@store_function
def incomplete_jobs(
    coordinator: str | None = None, *, job_ids: Iterable[str] | None = None
) -> list[JobView]:
    """Every job of every org still in NEW, VOTING or RUNNING, with its nodes, oldest first.
    With `coordinator`: only that cluster member's jobs and those of no member (made before
    the cluster schema); with `job_ids`: only those."""
    active = [int(status) for status in ACTIVE_JOB_STATUSES]
    where = Job.status.in_(active)
    if coordinator is not None:
        where &= (Job.coordinator == coordinator) | Job.coordinator.is_null()
    if job_ids is not None:
        where &= Job.id.in_(list(job_ids))
    summaries = _summaries(_summary_query().where(where).order_by(Job.created_at, Job.id))
    nodes: dict[str, list[JobNodeState]] = defaultdict(list)
    for chunk in chunks([summary.id for summary in summaries], UPDATE_CHUNK):
        for row in JobNode.select().where(JobNode.job_id.in_(chunk)):
            nodes[row.job_id].append(_node_state(row))
    return [_view_of(summary, nodes[summary.id]) for summary in summaries]


def _output_row(org_id: str, job_id: str, node: str) -> JobOutput | None:
    return (
        JobOutput.select()
        .where(
            (JobOutput.org_id == org_id)
            & (JobOutput.job_id == job_id)
            & (JobOutput.node_name == node)
        )
        .first()
    )


def _check_channel(channel: str) -> None:
    if channel not in OUTPUT_CHANNELS:
        raise InvalidValue(f"output channel must be 'stdout' or 'stderr', not {channel!r}")


@store_function
def get_output_bytes(org_id: str, job_id: str, node: str, channel: str) -> bytes | None:
    """The stored bytes of one channel, or None (no row, or the channel was not captured)."""
    _check_channel(channel)
    row = _output_row(org_id, job_id, node)
    return None if row is None else getattr(row, channel)


def get_output(org_id: str, job_id: str, node: str, channel: str) -> str | None:
    """The stored text of one channel (raw bytes surrogate-escaped), or None."""
    return _decode_output(get_output_bytes(org_id, job_id, node, channel))


@store_function
def get_output_from(
    org_id: str, job_id: str, node: str, channel: str, offset: int
) -> tuple[bytes, int] | None:
    """Stored bytes of one channel from stream offset `offset` on, and its size (docstring)."""
    _check_channel(channel)
    row = _output_row(org_id, job_id, node)
    stored = None if row is None else getattr(row, channel)
    if stored is None:
        return None
    stored = bytes(stored)
    marker_length, _dropped = split_marker(stored)
    kept = len(stored) - marker_length
    size = max(getattr(row, f"{channel}_bytes") or 0, kept)
    first = size - kept  # stream offset of the first kept byte
    if offset < first:
        return stored, size
    return stored[marker_length + min(offset, size) - first:], size


@store_function
def get_output_record(org_id: str, job_id: str, node: str) -> OutputRecord | None:
    row = _output_row(org_id, job_id, node)
    if row is None:
        return None
    return OutputRecord(
        job_id=row.job_id,
        node_name=row.node_name,
        stdout=_decode_output(row.stdout),
        stderr=_decode_output(row.stderr),
        stdout_bytes=row.stdout_bytes,
        stderr_bytes=row.stderr_bytes,
        truncated=bool(row.truncated),
        created_at=row.created_at,
    )
