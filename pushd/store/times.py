"""Time helpers for the store and its callers.

The store keeps every time as a *naive* UTC ``datetime`` with microseconds.

    utcnow() -> datetime                      naive UTC, microsecond precision
    to_naive_utc(dt) -> datetime              aware -> naive UTC; naive is taken as UTC already
    rfc1123(dt) -> str                        "Tue, 04 Sep 2012 23:01:02 GMT" (REST bodies)
    event_timestamp(dt) -> str                "2012-09-04 23:01:02.123456Z" (feed event data)
"""

from __future__ import annotations

from datetime import UTC, datetime

from pushd.protocol.timestamps import DAY_NAMES, MONTH_NAMES


def utcnow() -> datetime:
    """The current time as a naive UTC datetime (what every store column holds)."""
    return datetime.now(UTC).replace(tzinfo=None)


def to_naive_utc(value: datetime) -> datetime:
    """Normalise `value` to naive UTC; a naive value is assumed to be UTC already."""
    if value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def rfc1123(value: datetime) -> str:
    """Render as the original's REST bodies do: second precision, always GMT."""
    # The names of the wire protocol's formatter (locale-independent), from the datetime's own
    # fields: a page of 1,000 jobs has 2,000 of these, and going through a POSIX time
    # (timetuple, timegm, gmtime) cost three times as much.
    value = to_naive_utc(value)
    return (
        f"{DAY_NAMES[value.weekday()]}, {value.day:02d} {MONTH_NAMES[value.month - 1]} "
        f"{value.year:04d} {value.hour:02d}:{value.minute:02d}:{value.second:02d} GMT"
    )


def event_timestamp(value: datetime) -> str:
    """Render as the original's feed events do: ``YYYY-MM-DD HH:MM:SS.uuuuuuZ``."""
    return to_naive_utc(value).strftime("%Y-%m-%d %H:%M:%S.%fZ")
