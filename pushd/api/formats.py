"""Small wire formats of the REST API: times, job ids and SSE frames.

    rfc1123(dt: datetime) -> str
        ``Tue, 04 Sep 2012 23:01:02 GMT``; naive datetimes are taken as UTC (the store keeps
        naive UTC), English names whatever the locale.
    feed_timestamp(dt: datetime) -> str
        ``2012-09-04 23:01:02.123456Z``, the feeds' timestamp format (original-server.md 6).
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
from datetime import UTC, datetime
from typing import Any

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

SSE_KEEPALIVE = b":keepalive\n"


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def rfc1123(dt: datetime) -> str:
    dt = _utc(dt)
    return (
        f"{_DAYS[dt.weekday()]}, {dt.day:02d} {_MONTHS[dt.month - 1]} {dt.year:04d} "
        f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d} GMT"
    )


def feed_timestamp(dt: datetime) -> str:
    return _utc(dt).strftime("%Y-%m-%d %H:%M:%S.%fZ")


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
