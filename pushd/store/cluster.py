"""What the members of a pushd cluster share in PostgreSQL (schema 5; see docs/architecture.md,
"Cluster"). Every time compared here is the database's own clock (`now()`), so the members'
clocks never decide whether a lease ran out.

Members and leases
    register_member(member, host, api_port, heartbeat_port, command_port, lease_seconds)
        insert or refresh this member's row with a fresh lease
    renew_lease(member, lease_seconds) -> bool     False when the row is gone (another member
                                                   took this one's duties: it must stop)
    expired_members() -> list[str]
    take_over(dead, me) -> list[(org_id, job_id)] | None
        in one transaction: the dead member's row is removed (only if its lease is still over;
        None when another member got there first or it renewed), its active jobs become `me`'s
        (returned), its node rows and unread mail are dropped
    leave(member)                                  a clean stop: its nodes dropped, its lease
                                                   ended now (another member takes its jobs)
    members() -> list[MemberView]                  with node counts and jobs coordinated
    live_members() -> set[str]

Nodes held by members
    set_presence(member, {(org_id, node): True | False | None})
        available / held but not available / no longer held by this member (a row another
        member has since taken is left alone)
    clear_presence(member)                         every row of the member (it holds none yet)
    presence(org_id, names=None) -> {node: (member, available)}   rows of live members only

Mailbox between brokers (the data; NOTIFY only rings)
    post_mail(sender, {recipient: [message, ...]}) -> None   one row per recipient, then
                                                   pg_notify(mail_channel(recipient)) at commit
    take_mail(member, limit=200) -> list[(sender, [message, ...])]   claimed and deleted
    mail_channel(member) -> str

Jobs
    coordinator_of(job_id) -> str | None           an active job's coordinator

Keys
    shared_keys(candidates: {name: bytes}) -> {name: bytes}
        the cluster's keys: the stored ones, and for a name not stored yet the candidate
        (stored first; the first member to ask wins a race)

Notifications
    notify(channel, payload="")
    lock_events()                 inside the journal's transaction, before its events get ids:
                                  members' event transactions then commit in id order, so a
                                  feed reading "ids after N" never skips one committed late
    ring_events(topics)           inside that transaction: NOTIFY EVENTS_CHANNEL with the feed
                                  topics (several notifications when they exceed the payload
                                  limit), delivered at commit
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pushd.states import ACTIVE_JOB_STATUSES
from pushd.store.db import ARRAY_CHUNK, chunks, get_database, store_function, transaction

ACTIVE = tuple(int(status) for status in ACTIVE_JOB_STATUSES)
_ACTIVE_SQL = ", ".join(str(status) for status in ACTIVE)
UPSERT_CHUNK = 500
# NOTIFY channels are identifiers (at most 63 bytes): a member's name can be anything.
IDENTITY_CHANNEL = "pushd_identity"
_EVENTS_LOCK_KEY = 0x70757368_65766E74  # "pushevnt": pushd's event-order advisory lock
NOTIFY_PAYLOAD_MAX = 7000  # bytes; PostgreSQL refuses payloads of 8000 and more
EVENTS_CHANNEL = "pushd_events"


@dataclass(frozen=True)
class MemberView:
    member: str
    host: str
    api_port: int
    heartbeat_port: int
    command_port: int
    started_at: datetime
    renewed_at: datetime
    lease_expires_at: datetime
    lease_left: float  # seconds; negative once expired
    nodes: int
    available_nodes: int
    jobs: int

    @property
    def alive(self) -> bool:
        return self.lease_left > 0


def mail_channel(member: str) -> str:
    return "pushd_mail_" + hashlib.sha1(member.encode("utf-8")).hexdigest()[:20]


def _execute(sql: str, params: Iterable[Any] = ()) -> Any:
    return get_database().execute_sql(sql, tuple(params))


def _transient() -> None:
    # Mail and held-node rows live for seconds and are rebuilt after any failure (a member's
    # nodes reconnect, a job's rules end what a lost message leaves): not worth a WAL flush
    # per transaction, which was a third of the mailbox reader's time (bench_cluster profile).
    _execute("SET LOCAL synchronous_commit TO OFF")


@store_function
def register_member(
    member: str, host: str, api_port: int, heartbeat_port: int, command_port: int,
    lease_seconds: float,
) -> None:
    with transaction():
        _execute(
            "INSERT INTO cluster_members (member, host, api_port, heartbeat_port, command_port,"
            " started_at, renewed_at, lease_expires_at)"
            " VALUES (%s, %s, %s, %s, %s, timezone('utc', now()), timezone('utc', now()),"
            " timezone('utc', now()) + make_interval(secs => %s))"
            " ON CONFLICT (member) DO UPDATE SET host = EXCLUDED.host,"
            " api_port = EXCLUDED.api_port, heartbeat_port = EXCLUDED.heartbeat_port,"
            " command_port = EXCLUDED.command_port, started_at = EXCLUDED.started_at,"
            " renewed_at = EXCLUDED.renewed_at, lease_expires_at = EXCLUDED.lease_expires_at",
            (member, host, api_port, heartbeat_port, command_port, float(lease_seconds)),
        )


@store_function
def renew_lease(member: str, lease_seconds: float) -> bool:
    with transaction():
        row = _execute(
            "UPDATE cluster_members SET renewed_at = timezone('utc', now()),"
            " lease_expires_at = timezone('utc', now()) + make_interval(secs => %s)"
            " WHERE member = %s RETURNING 1",
            (float(lease_seconds), member),
        ).fetchone()
    return row is not None


@store_function
def expired_members() -> list[str]:
    rows = _execute(
        "SELECT member FROM cluster_members WHERE lease_expires_at < timezone('utc', now())"
        " ORDER BY member"
    ).fetchall()
    return [row[0] for row in rows]


@store_function
def live_members() -> set[str]:
    rows = _execute(
        "SELECT member FROM cluster_members WHERE lease_expires_at >= timezone('utc', now())"
    ).fetchall()
    return {row[0] for row in rows}


@store_function
def take_over(dead: str, me: str) -> list[tuple[str, str]] | None:
    with transaction():
        gone = _execute(
            "DELETE FROM cluster_members WHERE member = %s"
            " AND lease_expires_at < timezone('utc', now()) RETURNING 1",
            (dead,),
        ).fetchone()
        if gone is None:
            return None
        jobs = _execute(
            f"UPDATE jobs SET coordinator = %s WHERE coordinator = %s"
            f" AND status IN ({_ACTIVE_SQL}) RETURNING org_id, id",
            (me, dead),
        ).fetchall()
        _execute("DELETE FROM cluster_nodes WHERE member = %s", (dead,))
        _execute("DELETE FROM cluster_mailbox WHERE recipient = %s", (dead,))
    return [(row[0], row[1]) for row in jobs]


@store_function
def leave(member: str) -> None:
    with transaction():
        _execute("DELETE FROM cluster_nodes WHERE member = %s", (member,))
        # Expired, not deleted: the next look of another member takes over its active jobs
        # (a deleted row would leave them to nobody until this member came back).
        _execute(
            "UPDATE cluster_members SET lease_expires_at = timezone('utc', now())"
            " - interval '1 second' WHERE member = %s",
            (member,),
        )


@store_function
def members() -> list[MemberView]:
    rows = _execute(
        "SELECT m.member, m.host, m.api_port, m.heartbeat_port, m.command_port, m.started_at,"
        " m.renewed_at, m.lease_expires_at,"
        " EXTRACT(EPOCH FROM (m.lease_expires_at - timezone('utc', now()))),"
        " (SELECT count(*) FROM cluster_nodes n WHERE n.member = m.member),"
        " (SELECT count(*) FROM cluster_nodes n WHERE n.member = m.member AND n.available),"
        f" (SELECT count(*) FROM jobs j WHERE j.coordinator = m.member"
        f"  AND j.status IN ({_ACTIVE_SQL}))"
        " FROM cluster_members m ORDER BY m.member"
    ).fetchall()
    return [
        MemberView(
            member=row[0], host=row[1], api_port=row[2], heartbeat_port=row[3],
            command_port=row[4], started_at=row[5], renewed_at=row[6],
            lease_expires_at=row[7], lease_left=float(row[8]), nodes=int(row[9]),
            available_nodes=int(row[10]), jobs=int(row[11]),
        )
        for row in rows
    ]


@store_function
def set_presence(member: str, changes: Mapping[tuple[str, str], bool | None]) -> None:
    held = [(org, node, bool(up)) for (org, node), up in changes.items() if up is not None]
    gone = [(org, node) for (org, node), up in changes.items() if up is None]
    database = get_database()
    with transaction():
        _transient()
        cursor = database.cursor()
        # One statement per chunk over arrays, not a statement per row: a reconnect herd or a
        # mass offline changes thousands of nodes at once, and executemany's 8,000 upserts cost
        # the broker's interpreter ~0.22 s of CPU (0.02 s so; bench/RESULTS.md, fifth session).
        for chunk in chunks(held, ARRAY_CHUNK):
            cursor.execute(_UPSERT_PRESENCE, [member, [row[0] for row in chunk],
                                              [row[1] for row in chunk],
                                              [row[2] for row in chunk]])
        for chunk in chunks(gone, ARRAY_CHUNK):
            cursor.execute(_DELETE_PRESENCE, [[row[0] for row in chunk],
                                              [row[1] for row in chunk], member])


# Binary arrays (%b): no per-element quoting (see events.py). A change set is a dict, so no
# key repeats within a statement (ON CONFLICT could not update a row twice).
_UPSERT_PRESENCE = (
    "INSERT INTO cluster_nodes (org_id, node_name, member, available, updated_at)"
    " SELECT u.o, u.n, %s, u.a, timezone('utc', now())"
    " FROM unnest(%b::varchar[], %b::text[], %b::boolean[]) AS u(o, n, a)"
    " ON CONFLICT (org_id, node_name) DO UPDATE SET member = EXCLUDED.member,"
    " available = EXCLUDED.available, updated_at = EXCLUDED.updated_at"
)
_DELETE_PRESENCE = (
    "DELETE FROM cluster_nodes AS c USING unnest(%b::varchar[], %b::text[]) AS u(o, n)"
    " WHERE c.org_id = u.o AND c.node_name = u.n AND c.member = %s"
)


@store_function
def clear_presence(member: str) -> None:
    with transaction():
        _execute("DELETE FROM cluster_nodes WHERE member = %s", (member,))


@store_function
def presence(org_id: str, names: Iterable[str] | None = None) -> dict[str, tuple[str, bool]]:
    sql = (
        "SELECT n.node_name, n.member, n.available FROM cluster_nodes n"
        " JOIN cluster_members m ON m.member = n.member"
        " WHERE n.org_id = %s AND m.lease_expires_at >= timezone('utc', now())"
    )
    if names is None:
        rows = _execute(sql, (org_id,)).fetchall()
    else:
        rows = []
        for chunk in chunks(list(names), UPSERT_CHUNK):
            rows.extend(
                _execute(sql + " AND n.node_name = ANY(%s)", (org_id, chunk)).fetchall()
            )
    return {row[0]: (row[1], bool(row[2])) for row in rows}


@store_function
def post_mail(sender: str, mail: Mapping[str, list[dict[str, Any]]]) -> None:
    with transaction():
        _transient()
        for recipient, messages in mail.items():
            if not messages:
                continue
            _execute(
                "INSERT INTO cluster_mailbox (recipient, sender, body, created_at)"
                " VALUES (%s, %s, %s, timezone('utc', now()))",
                (recipient, sender, json.dumps(messages, separators=(",", ":"))),
            )
            # Delivered at commit, after the row is visible: the recipient never looks early.
            _execute("SELECT pg_notify(%s, '')", (mail_channel(recipient),))


@store_function
def take_mail(member: str, limit: int = 200) -> list[tuple[str, list[dict[str, Any]]]]:
    with transaction():
        _transient()
        rows = _execute(
            "DELETE FROM cluster_mailbox WHERE id IN (SELECT id FROM cluster_mailbox"
            " WHERE recipient = %s ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)"
            " RETURNING id, sender, body",
            (member, int(limit)),
        ).fetchall()
    rows.sort(key=lambda row: row[0])  # RETURNING has no order; the senders' order matters
    return [(row[1], json.loads(row[2])) for row in rows]


@store_function
def coordinator_of(job_id: str) -> str | None:
    row = _execute(
        f"SELECT coordinator FROM jobs WHERE id = %s AND status IN ({_ACTIVE_SQL})", (job_id,)
    ).fetchone()
    return None if row is None else row[0]


@store_function
def shared_keys(candidates: Mapping[str, bytes]) -> dict[str, bytes]:
    with transaction():
        for name, value in candidates.items():
            _execute(
                "INSERT INTO cluster_keys (name, value, created_at)"
                " VALUES (%s, %s, timezone('utc', now())) ON CONFLICT (name) DO NOTHING",
                (name, value),
            )
        rows = _execute("SELECT name, value FROM cluster_keys").fetchall()
    return {row[0]: bytes(row[1]) for row in rows}


@store_function
def notify(channel: str, payload: str = "") -> None:
    with transaction():
        _execute("SELECT pg_notify(%s, %s)", (channel, payload))


def lock_events() -> None:
    _execute("SELECT pg_advisory_xact_lock(%s)", (_EVENTS_LOCK_KEY,))


def ring_events(topics: Iterable[str]) -> None:
    payload: list[str] = []
    size = 0
    for topic in sorted(topics):
        if payload and size + len(topic) + 1 > NOTIFY_PAYLOAD_MAX:
            _execute("SELECT pg_notify(%s, %s)", (EVENTS_CHANNEL, " ".join(payload)))
            payload, size = [], 0
        payload.append(topic)
        size += len(topic) + 1
    if payload:
        _execute("SELECT pg_notify(%s, %s)", (EVENTS_CHANNEL, " ".join(payload)))
