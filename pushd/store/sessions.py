"""Per-node HMAC session keys and the last-seen time of known nodes.

    SESSION_KEY_BYTES = 32
    get_or_create_session_key(org_id, org_name, node_name) -> bytes
        the node's persisted key, or a new one (32 bytes from `secrets`) stored first. Safe
        when several processes ask at once: all of them get the same key.
    get_session_key(org_id, node_name) -> bytes | None
    delete_session_key(org_id, node_name) -> bool        (the node re-keys on its next config)
    load_session_keys() -> {(org_name, node_name): (org_id, key)}   every org (broker start)
    touch_known_nodes(org_id, last_seen: {node_name: datetime}) -> None
        upsert in one transaction (the broker flushes these periodically, never per heartbeat)
    known_nodes(org_id) -> {node_name: last_seen}
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import peewee

from pushd.store.db import ARRAY_CHUNK, chunks, get_database, store_function, transaction
from pushd.store.models import KnownNode, NodeSessionKey
from pushd.store.times import to_naive_utc, utcnow

SESSION_KEY_BYTES = 32
UPSERT_CHUNK = 500


@store_function
def get_session_key(org_id: str, node_name: str) -> bytes | None:
    row = (
        NodeSessionKey.select(NodeSessionKey.key)
        .where((NodeSessionKey.org_id == org_id) & (NodeSessionKey.node_name == node_name))
        .first()
    )
    return None if row is None else row.key


@store_function
def get_or_create_session_key(org_id: str, org_name: str, node_name: str) -> bytes:
    """The node's session key, created (and persisted) on first use."""
    existing = get_session_key(org_id, node_name)
    if existing is not None:
        return existing
    with transaction():
        # DO NOTHING on conflict: if another process won the race, its key is the key.
        NodeSessionKey.insert(
            org_id=org_id,
            org_name=org_name,
            node_name=node_name,
            key=secrets.token_bytes(SESSION_KEY_BYTES),
            created_at=utcnow(),
        ).on_conflict_ignore().execute()
    key = get_session_key(org_id, node_name)
    assert key is not None  # just inserted or inserted by the winner of the race
    return key


@store_function
def delete_session_key(org_id: str, node_name: str) -> bool:
    with transaction():
        deleted = (
            NodeSessionKey.delete()
            .where((NodeSessionKey.org_id == org_id) & (NodeSessionKey.node_name == node_name))
            .execute()
        )
    return deleted > 0


@store_function
def load_session_keys() -> dict[tuple[str, str], tuple[str, bytes]]:
    """Every stored session key, keyed by (org_name, node_name)."""
    return {
        (row.org_name, row.node_name): (row.org_id, row.key)
        for row in NodeSessionKey.select()
    }


_TOUCH_POSTGRES = (
    "INSERT INTO known_nodes (org_id, node_name, last_seen)"
    " SELECT %s, u.n, u.t FROM unnest(%b::text[], %b::timestamp[]) AS u(n, t)"
    " ON CONFLICT (org_id, node_name) DO UPDATE SET last_seen = EXCLUDED.last_seen"
)


@store_function
def touch_known_nodes(org_id: str, last_seen: Mapping[str, datetime]) -> None:
    database = get_database()
    if not isinstance(database, peewee.SqliteDatabase):
        # One statement over arrays: peewee composing 500-row upserts cost the broker's
        # interpreter ~0.2 s per 8,000 nodes, every flush (0.01 s so).
        names = list(last_seen)
        with transaction():
            for chunk in chunks(names, ARRAY_CHUNK):
                database.execute_sql(_TOUCH_POSTGRES, [
                    org_id, chunk, [to_naive_utc(last_seen[name]) for name in chunk]])
        return
    rows = [
        {"org_id": org_id, "node_name": name, "last_seen": to_naive_utc(seen)}
        for name, seen in last_seen.items()
    ]
    with transaction():
        for chunk in chunks(rows, UPSERT_CHUNK):
            # as_rowcount: no RETURNING cursor left unread in the transaction (see create_job).
            KnownNode.insert_many(chunk).on_conflict(
                conflict_target=[KnownNode.org_id, KnownNode.node_name],
                preserve=[KnownNode.last_seen],
            ).as_rowcount().execute()


@store_function
def known_nodes(org_id: str) -> dict[str, datetime]:
    # Tuples, not model rows: node_states without a node list reads every known node of the
    # org on each poll (5,000 model instances took a tenth of the broker during a storm).
    rows: Any = (
        KnownNode.select(KnownNode.node_name, KnownNode.last_seen)
        .where(KnownNode.org_id == org_id)
        .tuples()
    )
    return dict(rows)
