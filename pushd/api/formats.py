"""Small wire formats of the REST API: times, job ids and SSE frames.

    rfc1123(dt: datetime) -> str
        ``Tue, 04 Sep 2012 23:01:02 GMT``; naive datetimes are taken as UTC (the store keeps
        naive UTC), English names whatever the locale. This is `pushd.store.times.rfc1123`,
        which formats with `pushd.protocol.timestamps.format_timestamp`.
    feed_timestamp(dt: datetime) -> str
        ``2012-09-04 23:01:02.123456Z``, the feeds' timestamp format (original-server.md 6).
        This is `pushd.store.times.event_timestamp`.
    new_job_id(org_id: str) -> str
        32 lowercase hex: the last 12 hex digits of the org guid, then the first 80 bits of
        MD5(org guid + 32 random bytes + 6 random bytes) (original-server.md 5.4), so every job
        of an org shares a prefix.
    sse_event(name: str, event_id: str | int | None, data: dict) -> bytes
        ``event: NAME\\nid: ID\\ndata: <one-line JSON>\\n\\n``.
    SSE_KEEPALIVE: bytes
        The keepalive comment ``:keepalive\\n``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

# One implementation of each time format serves the store, the wire protocol and the API.
from pushd.store.times import event_timestamp as feed_timestamp
from pushd.store.times import rfc1123

__all__ = ["SSE_KEEPALIVE", "feed_timestamp", "new_job_id", "rfc1123", "sse_event"]

SSE_KEEPALIVE = b":keepalive\n"


def new_job_id(org_id: str) -> str:
    digest = hashlib.md5(
        org_id.encode("ascii") + secrets.token_bytes(32) + secrets.token_bytes(6),
        usedforsecurity=False,
    ).hexdigest()
    return (org_id[-12:].lower() + digest[:20]).rjust(32, "0")


def sse_event(name: str, event_id: str | int | None, data: dict[str, Any]) -> bytes:
    # ensure_ascii keeps the data on one line whatever the command contains.
    lines = [f"event: {name}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode("utf-8")
