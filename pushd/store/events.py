"""Feed events with stable integer ids (the SSE `id:` of both feeds survives restarts).

    ORG_FEED_EVENTS = {"start", "job_complete"}   job events that also appear in the org feed
    NewEvent(org_id, job_id | None, name, data: dict | EncodedJSON, org_feed: bool | None = None)
        what append_events takes (plain 4-tuples work too). org_feed None means: in the org
        feed when the name is in ORG_FEED_EVENTS or the event belongs to no job.
    EncodedJSON(text)    event data the caller already encoded exactly as the data column
        holds it (``encode_data``): stored as is, so a writer that also publishes the event
        encodes it once
    encode_data(data: Mapping) -> EncodedJSON    compact, ASCII-only JSON of an object
    Event(id, org_id, job_id, name, data, org_feed, created_at)   what the readers return

    append_events(events) -> list[int]
        insert all in ONE transaction (nested inside an outer `transaction()` if there is one)
        and return their ids in the same order: one statement on PostgreSQL (arrays), one per
        500 rows on SQLite (multi-row INSERT ... RETURNING; one per row before SQLite 3.35).
        Ids increase with insertion order and are never reused, even after pruning. The broker
        (its journal's one writer thread) is the only writer, so a reader that has seen id N
        will never later find a committed event with an id below N.
    job_events_after(org_id, job_id, after_id=None, *, limit=None) -> list[Event]   by id
    org_events_after(org_id, after_id=None, *, since=None, limit=None) -> list[Event]
        the org feed (org_feed rows) with id > after_id and created_at >= since
    last_event_id(org_id) -> int | None     newest org-feed id of the org
    prune_org_events(older_than) -> int
        delete org-level events (those of no job) created before `older_than`, every org. Events
        of a job live as long as the job (prune_jobs cascades), so job feeds can always replay.
        The org feed's retention window is applied on read with `since=`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import peewee

from pushd.store.db import InvalidValue, chunks, get_database, store_function, transaction
from pushd.store.models import JobEvent
from pushd.store.times import to_naive_utc, utcnow

ORG_FEED_EVENTS = frozenset({"start", "job_complete"})
MAX_EVENT_NAME = 64
INSERT_CHUNK = 500


class EncodedJSON(str):
    """A JSON object encoded as the data column stores it (JSONTextField: compact separators,
    ASCII only, keys in insertion order). Made by `encode_data`; append_events stores it as is."""

    __slots__ = ()


# Built once: json.dumps with keyword arguments builds a new JSONEncoder on every call. The
# same settings as JSONTextField.db_value, so the stored text is what it would have written.
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode


def encode_data(data: Mapping[str, Any]) -> EncodedJSON:
    """The column's JSON text of `data` (a mapping), ready for append_events and for a feed."""
    if not isinstance(data, Mapping):
        raise InvalidValue(f"event data must be a mapping, not {type(data).__name__}")
    return EncodedJSON(_ENCODE(data if type(data) is dict else dict(data)))


class NewEvent(NamedTuple):
    org_id: str
    job_id: str | None
    name: str
    data: Mapping[str, Any]
    org_feed: bool | None = None


@dataclass(frozen=True)
class Event:
    id: int
    org_id: str
    job_id: str | None
    name: str
    data: dict[str, Any]
    org_feed: bool
    created_at: datetime


def _row_of(raw: Any, now: datetime) -> dict[str, Any]:
    event = raw if isinstance(raw, NewEvent) else NewEvent(*raw)
    if not isinstance(event.name, str) or not 0 < len(event.name) <= MAX_EVENT_NAME:
        raise InvalidValue(f"event name must be 1..{MAX_EVENT_NAME} characters: {event.name!r}")
    data = event.data
    if isinstance(data, EncodedJSON):
        pass  # encoded by encode_data: stored as is
    elif isinstance(data, Mapping):
        data = dict(data)
    else:
        raise InvalidValue(f"event data must be a mapping, not {type(data).__name__}")
    org_feed = event.org_feed
    if org_feed is None:
        org_feed = event.job_id is None or event.name in ORG_FEED_EVENTS
    return {
        "org_id": event.org_id,
        "job_id": event.job_id,
        "name": event.name,
        "data": data,
        "org_feed": bool(org_feed),
        "created_at": now,
    }


@store_function
def append_events(events: Iterable[NewEvent | tuple[Any, ...]]) -> list[int]:
    """Persist events in one transaction and return their ids in order."""
    now = utcnow()
    rows = [_row_of(raw, now) for raw in events]
    if not rows:
        return []
    database = get_database()
    # Hand-written SQL with the fields' own conversions: peewee's query builder spent more
    # time composing a 1,000-row insert than the database spent running it.
    stamp = JobEvent.created_at.db_value(now)
    to_json = _to_json
    with transaction():
        if not isinstance(database, peewee.SqliteDatabase):
            return _insert_postgres(database, rows, stamp, to_json)
        ids: list[int] = []
        for chunk in chunks(rows, INSERT_CHUNK):
            params = [
                value
                for row in chunk
                for value in (row["org_id"], row["job_id"], row["name"], to_json(row["data"]),
                              row["org_feed"], stamp)
            ]
            if database.returning_clause:
                cursor = database.execute_sql(_sqlite_insert(len(chunk), True), params)
                # One statement: ids come from the same increasing sequence in row order, so
                # sorting restores the input order whatever order RETURNING uses.
                ids.extend(sorted(row[0] for row in cursor.fetchall()))
            else:
                for start in range(0, len(params), len(_COLUMNS)):
                    cursor = database.execute_sql(
                        _sqlite_insert(1, False), params[start : start + len(_COLUMNS)]
                    )
                    ids.append(cursor.lastrowid)
    return ids


_COLUMNS = ("org_id", "job_id", "name", "data", "org_feed", "created_at")
_INSERT_HEAD = f"INSERT INTO job_events ({', '.join(_COLUMNS)}) VALUES "
# PostgreSQL: one statement of constant text whatever the number of rows (arrays, unnest), so
# the driver parses it once; WITH ORDINALITY ... ORDER BY draws the ids in input order. The
# arrays go in binary (%b): psycopg's text format quotes every element holding a quote or a
# backslash with a regular-expression substitution, and every event's JSON holds quotes
# (11 ms of the journal writer's CPU per 1,000 rows, against 0.5 ms in binary).
_POSTGRES_INSERT = (
    f"INSERT INTO job_events ({', '.join(_COLUMNS)}) "
    "SELECT o, j, n, d, f, %s FROM unnest(%b::varchar[], %b::varchar[], %b::text[], "
    "%b::text[], %b::boolean[]) WITH ORDINALITY AS u(o, j, n, d, f, k) ORDER BY k "
    "RETURNING id"
)


def _to_json(data: Any) -> str:
    return data if isinstance(data, EncodedJSON) else JobEvent.data.db_value(data)


@functools.lru_cache(maxsize=8)
def _sqlite_insert(count: int, returning: bool) -> str:
    values = ", ".join(["(?, ?, ?, ?, ?, ?)"] * count)
    return f"{_INSERT_HEAD}{values}" + (" RETURNING id" if returning else "")


def _insert_postgres(
    database: peewee.Database, rows: list[dict[str, Any]], stamp: Any, to_json: Any
) -> list[int]:
    params = [
        stamp,
        [row["org_id"] for row in rows],
        [row["job_id"] for row in rows],
        [row["name"] for row in rows],
        [to_json(row["data"]) for row in rows],
        [row["org_feed"] for row in rows],
    ]
    cursor = database.execute_sql(_POSTGRES_INSERT, params)
    return sorted(row[0] for row in cursor.fetchall())


def _event_of(row: JobEvent) -> Event:
    return Event(
        id=row.id,
        org_id=row.org_id,
        job_id=row.job_id,
        name=row.name,
        data=row.data,
        org_feed=bool(row.org_feed),
        created_at=row.created_at,
    )


@store_function
def job_events_after(
    org_id: str, job_id: str, after_id: int | None = None, *, limit: int | None = None
) -> list[Event]:
    """Events of one job with id > after_id (all when None), in id order."""
    query = JobEvent.select().where((JobEvent.org_id == org_id) & (JobEvent.job_id == job_id))
    if after_id is not None:
        query = query.where(JobEvent.id > int(after_id))
    query = query.order_by(JobEvent.id)
    if limit is not None:
        query = query.limit(int(limit))
    return [_event_of(row) for row in query]


@store_function
def org_events_after(
    org_id: str,
    after_id: int | None = None,
    *,
    since: datetime | None = None,
    limit: int | None = None,
) -> list[Event]:
    """Org-feed events of one org with id > after_id and created_at >= since, in id order."""
    query = JobEvent.select().where((JobEvent.org_id == org_id) & (JobEvent.org_feed == True))  # noqa: E712
    if after_id is not None:
        query = query.where(JobEvent.id > int(after_id))
    if since is not None:
        query = query.where(JobEvent.created_at >= to_naive_utc(since))
    query = query.order_by(JobEvent.id)
    if limit is not None:
        query = query.limit(int(limit))
    return [_event_of(row) for row in query]


@store_function
def last_event_id(org_id: str) -> int | None:
    """The newest org-feed event id of the org (None if it has none)."""
    row = (
        JobEvent.select(JobEvent.id)
        .where((JobEvent.org_id == org_id) & (JobEvent.org_feed == True))  # noqa: E712
        .order_by(JobEvent.id.desc())
        .first()
    )
    return None if row is None else row.id


@store_function
def prune_org_events(older_than: datetime) -> int:
    """Delete events of no job created before `older_than` (every org); returns the count."""
    with transaction():
        return (
            JobEvent.delete()
            .where(JobEvent.job_id.is_null() & (JobEvent.created_at < to_naive_utc(older_than)))
            .execute()
        )
