"""RFC 1123 timestamps and the symmetric skew window."""

from __future__ import annotations

import calendar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pushd.errors import ProtocolError
from pushd.protocol.timestamps import check_skew, format_timestamp, parse_timestamp

# 2012-05-12 20:33:15 UTC, the example used throughout the original's documentation.
EXAMPLE = "Sat, 12 May 2012 20:33:15 GMT"
EXAMPLE_SECONDS = calendar.timegm((2012, 5, 12, 20, 33, 15, 0, 0, 0))


def test_format_matches_the_documented_example() -> None:
    assert format_timestamp(EXAMPLE_SECONDS) == EXAMPLE
    assert format_timestamp(EXAMPLE_SECONDS + 0.999) == EXAMPLE


def test_format_pads_single_digit_days_and_uses_english_names() -> None:
    # 2020-08-01 was a Saturday; 2021-01-04 a Monday.
    assert format_timestamp(calendar.timegm((2020, 8, 1, 1, 2, 3, 0, 0, 0))) == (
        "Sat, 01 Aug 2020 01:02:03 GMT"
    )
    assert format_timestamp(calendar.timegm((2021, 1, 4, 23, 59, 59, 0, 0, 0))) == (
        "Mon, 04 Jan 2021 23:59:59 GMT"
    )


def test_parse_example_and_accepted_variants() -> None:
    assert parse_timestamp(EXAMPLE) == EXAMPLE_SECONDS
    assert parse_timestamp("Sat, 12 May 2012 20:33:15 UTC") == EXAMPLE_SECONDS
    assert parse_timestamp("Sat, 12 May 2012 20:33:15 +0000") == EXAMPLE_SECONDS
    assert parse_timestamp("Tue, 1 May 2012 00:00:00 GMT") == calendar.timegm(
        (2012, 5, 1, 0, 0, 0, 0, 0, 0)
    )


@given(st.integers(min_value=0, max_value=calendar.timegm((9999, 12, 31, 23, 59, 59))))
def test_format_then_parse_round_trips(seconds: int) -> None:
    assert parse_timestamp(format_timestamp(seconds)) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2012-05-12T20:33:15Z",
        "Sat, 12 May 2012 20:33:15",  # no zone
        "Sat, 12 May 2012 20:33:15 CET",  # not GMT
        "Sat, 12 Foo 2012 20:33:15 GMT",
        "Xyz, 12 May 2012 20:33:15 GMT",
        "Sat, 31 Feb 2012 20:33:15 GMT",  # impossible day
        "Sat, 12 May 2012 24:00:00 GMT",
        "Sat, 12 May 2012 20:60:00 GMT",
        "Sat, 12 May 0000 20:33:15 GMT",
        "Sat, 12 May 2012 20:33:15 GMT ",
        "Sat, 12 May 2012 20:33:15 GMT" + "x" * 100,
        "Sat, 12 May 2012 \uff120:33:15 GMT",  # non-ASCII digit
    ],
)
def test_malformed_timestamps_are_bad_message(text: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_timestamp(text)
    assert caught.value.reason == "bad_message"


@pytest.mark.parametrize("value", [None, 1336854795, b"Sat, 12 May 2012 20:33:15 GMT", ["x"]])
def test_non_string_timestamps_are_bad_message(value: object) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_timestamp(value)  # type: ignore[arg-type]
    assert caught.value.reason == "bad_message"


@pytest.mark.parametrize("offset", [-299, -1, 0, 1, 299])
def test_skew_inside_the_window_is_accepted(offset: int) -> None:
    assert check_skew(EXAMPLE, max_skew=300, now=EXAMPLE_SECONDS + offset) == EXAMPLE_SECONDS


@pytest.mark.parametrize("offset", [300, 301, 86400, -300, -301, -86400])
def test_skew_outside_the_window_is_stale_in_both_directions(offset: int) -> None:
    # offset > 0: the message is from the past (a replay); < 0: from the future.
    with pytest.raises(ProtocolError) as caught:
        check_skew(EXAMPLE, max_skew=300, now=EXAMPLE_SECONDS + offset)
    assert caught.value.reason == "stale"


def test_skew_window_is_a_parameter() -> None:
    check_skew(EXAMPLE, max_skew=10, now=EXAMPLE_SECONDS + 9)
    with pytest.raises(ProtocolError):
        check_skew(EXAMPLE, max_skew=10, now=EXAMPLE_SECONDS + 10)


def test_skew_defaults_to_the_current_time() -> None:
    check_skew(format_timestamp(), max_skew=5)
    with pytest.raises(ProtocolError):
        check_skew(EXAMPLE, max_skew=300)
