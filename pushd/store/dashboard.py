"""Dashboard login tokens, browser sessions and the job-list node counts.

Tokens are never stored: callers pass the SHA-256 hex of the token (`token_hash`), so a leaked
database does not let anyone log in. Every API worker reads the same rows, so a login URL minted
by one worker is accepted by any other.

    DashboardGrant(org_id, org_name, user_name)                 what a token or session names
    DashboardSessionView(org_id, org_name, user_name, csrf_token, expires_at)
    add_login_token(token_hash, org_id, org_name, user_name, expires_at) -> None
    consume_login_token(token_hash, *, now=None) -> DashboardGrant | None
        Deletes the token and returns what it named; None when unknown, already used or
        expired. Two workers racing for one token: exactly one gets the grant (the DELETE
        decides). Expired login tokens are deleted on the way.
    add_session(token_hash, org_id, org_name, user_name, csrf_token, expires_at) -> None
    get_session(token_hash, *, now=None) -> DashboardSessionView | None   (None when expired)
    delete_session(token_hash) -> bool
    prune_dashboard(now=None) -> int                            expired logins and sessions
    node_counts(org_id, job_ids) -> {job_id: {node status wire name: count}}   one query
    job_outputs(org_id, job_id, *, limit) -> {node: ShownOutput(stdout, stderr, truncated)}
        the captured output of up to `limit` nodes (by name) in one query, decoded for display
        (undecodable bytes become U+FFFD)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee

from pushd.states import NodeStatus
from pushd.store.db import chunks, store_function, transaction
from pushd.store.models import DashboardLogin, DashboardSession, JobNode, JobOutput
from pushd.store.times import to_naive_utc, utcnow

COUNT_CHUNK = 500


@dataclass(frozen=True)
class DashboardGrant:
    org_id: str
    org_name: str
    user_name: str


@dataclass(frozen=True)
class DashboardSessionView:
    org_id: str
    org_name: str
    user_name: str
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class ShownOutput:
    stdout: str | None
    stderr: str | None
    truncated: bool


def _now(now: datetime | None) -> datetime:
    return utcnow() if now is None else to_naive_utc(now)


@store_function
def add_login_token(
    token_hash: str, org_id: str, org_name: str, user_name: str, expires_at: datetime
) -> None:
    with transaction():
        DashboardLogin.insert(
            token_hash=token_hash,
            org_id=org_id,
            org_name=org_name,
            user_name=user_name,
            expires_at=expires_at,
        ).execute()


@store_function
def consume_login_token(token_hash: str, *, now: datetime | None = None) -> DashboardGrant | None:
    moment = _now(now)
    with transaction():
        row = DashboardLogin.select().where(DashboardLogin.token_hash == token_hash).first()
        DashboardLogin.delete().where(DashboardLogin.expires_at <= moment).execute()
        if row is None:
            return None
        # The DELETE decides: of two workers that both read the row, one deletes it.
        deleted = DashboardLogin.delete().where(DashboardLogin.token_hash == token_hash).execute()
        if deleted != 1 or row.expires_at <= moment:
            return None
        return DashboardGrant(row.org_id, row.org_name, row.user_name)


@store_function
def add_session(
    token_hash: str,
    org_id: str,
    org_name: str,
    user_name: str,
    csrf_token: str,
    expires_at: datetime,
) -> None:
    with transaction():
        DashboardSession.insert(
            token_hash=token_hash,
            org_id=org_id,
            org_name=org_name,
            user_name=user_name,
            csrf_token=csrf_token,
            expires_at=expires_at,
        ).execute()


@store_function
def get_session(token_hash: str, *, now: datetime | None = None) -> DashboardSessionView | None:
    row = DashboardSession.select().where(DashboardSession.token_hash == token_hash).first()
    if row is None or row.expires_at <= _now(now):
        return None
    return DashboardSessionView(
        row.org_id, row.org_name, row.user_name, row.csrf_token, row.expires_at
    )


@store_function
def delete_session(token_hash: str) -> bool:
    with transaction():
        deleted = (
            DashboardSession.delete().where(DashboardSession.token_hash == token_hash).execute()
        )
    return deleted > 0


@store_function
def prune_dashboard(now: datetime | None = None) -> int:
    moment = _now(now)
    with transaction():
        logins = DashboardLogin.delete().where(DashboardLogin.expires_at <= moment).execute()
        sessions = DashboardSession.delete().where(DashboardSession.expires_at <= moment).execute()
    return int(logins) + int(sessions)


@store_function
def node_counts(org_id: str, job_ids: Iterable[str]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for chunk in chunks(list(job_ids), COUNT_CHUNK):
        # Annotated: peewee's stubs type the rows of .tuples() as model instances.
        rows: peewee.ModelSelect[Any] = (
            JobNode.select(JobNode.job_id, JobNode.status, peewee.fn.COUNT(JobNode.node_name))
            .where((JobNode.org_id == org_id) & (JobNode.job_id.in_(chunk)))
            .group_by(JobNode.job_id, JobNode.status)
            .tuples()
        )
        for job_id, status, count in rows:
            counts[job_id][NodeStatus(status).wire] = int(count)
    return dict(counts)


def _shown(data: bytes | None) -> str | None:
    return None if data is None else bytes(data).decode("utf-8", "replace")


@store_function
def job_outputs(org_id: str, job_id: str, *, limit: int) -> dict[str, ShownOutput]:
    rows: peewee.ModelSelect[Any] = (
        JobOutput.select(JobOutput.node_name, JobOutput.stdout, JobOutput.stderr,
                         JobOutput.truncated)
        .where((JobOutput.org_id == org_id) & (JobOutput.job_id == job_id))
        .order_by(JobOutput.node_name)
        .limit(limit)
        .tuples()
    )
    return {
        node: ShownOutput(_shown(stdout), _shown(stderr), bool(truncated))
        for node, stdout, stderr, truncated in rows
    }
