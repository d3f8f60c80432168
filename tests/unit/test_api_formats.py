"""Wire formats of the REST API: RFC 1123 times, feed timestamps, job ids, SSE frames."""

from __future__ import annotations

import json
import locale
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

from pushd.api.formats import SSE_KEEPALIVE, feed_timestamp, new_job_id, rfc1123, sse_event

ORG_ID = "0123456789abcdef0123456789abcdef"


def test_rfc1123_matches_the_original_example() -> None:
    assert rfc1123(datetime(2012, 9, 4, 23, 1, 2, 999_999)) == "Tue, 04 Sep 2012 23:01:02 GMT"


def test_rfc1123_converts_aware_times_to_gmt_and_parses_back() -> None:
    local = datetime(2026, 1, 1, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    text = rfc1123(local)
    assert text == "Wed, 31 Dec 2025 23:30:00 GMT"
    assert parsedate_to_datetime(text) == local


def test_rfc1123_ignores_the_locale() -> None:
    try:
        locale.setlocale(locale.LC_TIME, "de_DE.UTF-8")
    except locale.Error:
        pass
    try:
        assert rfc1123(datetime(2012, 5, 12, 20, 33, 15)) == "Sat, 12 May 2012 20:33:15 GMT"
    finally:
        locale.setlocale(locale.LC_TIME, "C")


def test_feed_timestamp_has_microseconds_and_a_space() -> None:
    stamp = feed_timestamp(datetime(2026, 11, 24, 4, 5, 6, 7, tzinfo=UTC))
    assert stamp == "2026-11-24 04:05:06.000007Z"


def test_job_ids_share_the_org_prefix_and_are_unique() -> None:
    ids = {new_job_id(ORG_ID) for _ in range(2000)}
    assert len(ids) == 2000
    for job_id in ids:
        assert len(job_id) == 32
        assert job_id.startswith(ORG_ID[-12:])
        int(job_id, 16)
        assert job_id == job_id.lower()


def test_sse_event_framing() -> None:
    frame = sse_event("start", 42, {"timestamp": "t", "command": "echo ünïcødé\nsecond line"})
    text = frame.decode("utf-8")
    assert text.endswith("\n\n")
    lines = text[:-2].split("\n")
    assert lines[0] == "event: start"
    assert lines[1] == "id: 42"
    assert lines[2].startswith("data: ")
    assert len(lines) == 3, "data must stay on one line"
    assert json.loads(lines[2][6:])["command"] == "echo ünïcødé\nsecond line"


def test_keepalive_is_a_comment() -> None:
    assert SSE_KEEPALIVE.startswith(b":")
