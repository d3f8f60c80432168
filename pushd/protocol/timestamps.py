"""RFC 1123 timestamps as carried in every message body, and the clock-skew check.

    format_timestamp(when: float | None = None) -> str
        ``"Sat, 12 May 2012 20:33:15 GMT"`` for a POSIX time (default: now). Always GMT, always
        English day and month names whatever the process locale is.
    parse_timestamp(text: str) -> int
        POSIX seconds for an RFC 1123 date. Accepts the zone written ``GMT``, ``UTC`` or ``+0000``
        and a one- or two-digit day; the day name must be a real day name but is not checked
        against the date (as the original's parser). Raises ProtocolError("bad_message").
    check_skew(text: str, *, max_skew: float, now: float | None = None) -> int
        Parses `text` and requires ``|now - ts| < max_skew`` (symmetric: replays from the past
        and messages from the future are both refused). Returns the parsed time.
        Raises ProtocolError("stale") when outside the window, ("bad_message") when unparseable.
    DAY_NAMES, MONTH_NAMES    the English abbreviations ("Mon".., "Jan"..) both use

Stdlib only; no locale-dependent call (`time.strftime`, `email.utils`) is used on purpose.
"""

from __future__ import annotations

import calendar
import functools
import re
import time

from pushd.errors import ProtocolError

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTH_NAMES = (
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
)
_MONTH_NUMBER = {name: number for number, name in enumerate(MONTH_NAMES, start=1)}

# A strict pattern: a hand-written format is much faster than email.utils on the hot path
# (every heartbeat) and refuses the many loose forms email.utils would guess at.
_RFC1123 = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), "
    r"(\d{1,2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{4}) "
    r"(\d{2}):(\d{2}):(\d{2}) (?:GMT|UTC|\+0000)",
    re.ASCII,
)

# Longest accepted form is 29 characters; anything much longer is not worth a regex run.
_MAX_TIMESTAMP_LENGTH = 40


def format_timestamp(when: float | None = None) -> str:
    """Format POSIX time `when` (default: now) as an RFC 1123 GMT date."""
    t = time.gmtime(time.time() if when is None else when)
    return (
        f"{DAY_NAMES[t.tm_wday]}, {t.tm_mday:02d} {MONTH_NAMES[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def parse_timestamp(text: str) -> int:
    """Parse an RFC 1123 date into POSIX seconds; ProtocolError("bad_message") if malformed."""
    if not isinstance(text, str) or len(text) > _MAX_TIMESTAMP_LENGTH:
        raise ProtocolError("bad_message", "timestamp is not an RFC 1123 date string")
    return _parse_cached(text)


# Thousands of nodes stamp their heartbeats with the same few seconds, so a small cache turns
# the parse into a dict lookup on the broker's hot path. Failures raise and are not cached.
@functools.lru_cache(maxsize=512)
def _parse_cached(text: str) -> int:
    match = _RFC1123.fullmatch(text)
    if match is None:
        raise ProtocolError("bad_message", f"unparseable timestamp {text!r}")
    day, month_name, year, hour, minute, second = match.groups()
    month = _MONTH_NUMBER[month_name]
    year_number, day_number = int(year), int(day)
    hours, minutes, seconds = int(hour), int(minute), int(second)
    # Reject impossible dates rather than letting timegm roll them over (31 Feb -> 3 Mar).
    if (
        year_number < 1970
        or not 1 <= day_number <= calendar.monthrange(year_number, month)[1]
        or hours > 23
        or minutes > 59
        or seconds > 60  # 60: a leap second is a legal RFC 1123 value
    ):
        raise ProtocolError("bad_message", f"impossible date in timestamp {text!r}")
    return calendar.timegm((year_number, month, day_number, hours, minutes, seconds, 0, 0, 0))


def check_skew(text: str, *, max_skew: float, now: float | None = None) -> int:
    """Parse `text` and require it within `max_skew` seconds of `now` (either direction)."""
    stamp = parse_timestamp(text)
    current = time.time() if now is None else now
    if not abs(current - stamp) < max_skew:
        raise ProtocolError(
            "stale", f"timestamp {text!r} is {current - stamp:+.0f}s from now (max {max_skew}s)"
        )
    return stamp
