"""max_concurrency / max_errors values (issue 17): what is accepted, the 400 messages, and how
percentages round (docs/cli.md: concurrency up and at least 1, errors down)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pushd.api.validation import JobValidationError, parse_job_request
from pushd.rollout import (
    MAX_CONCURRENCY_MESSAGE,
    MAX_ERRORS_MESSAGE,
    from_stored,
    parse_limit,
    resolve_concurrency,
    resolve_errors,
    to_stored,
)


def request(**fields: Any) -> bytes:
    return json.dumps({"command": "x", "nodes": ["a", "b"], **fields}).encode()


@pytest.mark.parametrize(
    ("value", "nodes", "expected"),
    [
        ("10%", 15, 2),     # 1.5 -> 2: rounded up
        ("10%", 10, 1),
        ("10%", 11, 2),     # 1.1 -> 2
        ("1%", 3, 1),       # 0.03 -> at least 1
        ("100%", 8000, 8000),
        ("33%", 100, 33),
        ("34%", 200, 68),
        (5, 3, 5),          # a count larger than the job is simply no limit in practice
        (None, 10, None),
    ],
)
def test_max_concurrency_percentages_round_up_to_at_least_one(
    value: Any, nodes: int, expected: int | None
) -> None:
    assert resolve_concurrency(value, nodes) == expected


@pytest.mark.parametrize(
    ("value", "nodes", "expected"),
    [
        ("10%", 15, 1),     # 1.5 -> 1: rounded down ("more than 10% failed" halts)
        ("10%", 9, 0),      # 0.9 -> 0: the first failure halts
        ("10%", 10, 1),
        ("0%", 50, 0),
        ("50%", 7, 3),
        ("100%", 4, 4),     # never halts: at most every node can fail
        (0, 10, 0),
        (None, 10, None),
    ],
)
def test_max_errors_percentages_round_down(value: Any, nodes: int, expected: int | None) -> None:
    assert resolve_errors(value, nodes) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, 1), (500, 500), (2.0, 2), ("7", 7), ("10%", "10%"), ("100%", "100%"), ("1%", "1%")],
)
def test_accepted_concurrency_values(value: Any, expected: Any) -> None:
    assert parse_limit(value, "max_concurrency") == expected


@pytest.mark.parametrize(
    "value", [0, -1, 1.5, True, "0%", "101%", "10.5%", "%", "ten", "", " 5", [], {}, 2**31]
)
def test_refused_concurrency_values(value: Any) -> None:
    with pytest.raises(ValueError, match="max_concurrency must be a positive integer"):
        parse_limit(value, "max_concurrency")


def test_max_errors_admits_zero_and_refuses_the_rest() -> None:
    assert parse_limit(0, "max_errors") == 0
    assert parse_limit("0%", "max_errors") == "0%"
    for value in (-1, "101%", "x", 0.5, False):
        with pytest.raises(ValueError, match="max_errors must be a non-negative integer"):
            parse_limit(value, "max_errors")


def test_stored_text_round_trips() -> None:
    for value in (1, 500, "10%"):
        assert from_stored(to_stored(value)) == value
    assert from_stored(None) is None and to_stored(None) is None


def test_job_request_carries_the_limits_as_given() -> None:
    job = parse_job_request(request(max_concurrency="50%", max_errors=2))
    assert (job.max_concurrency, job.max_errors) == ("50%", 2)
    assert job.options()["max_concurrency"] == "50%" and job.options()["max_errors"] == 2


def test_job_request_without_limits_has_the_same_options_as_before() -> None:
    job = parse_job_request(request())
    assert job.options() == {}
    assert parse_job_request(request(max_concurrency=None)).options() == {}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_concurrency": 0}, MAX_CONCURRENCY_MESSAGE),
        ({"max_concurrency": "abc"}, MAX_CONCURRENCY_MESSAGE),
        ({"max_concurrency": "0%"}, MAX_CONCURRENCY_MESSAGE),
        ({"max_errors": -1}, MAX_ERRORS_MESSAGE),
        ({"max_errors": "5 %"}, MAX_ERRORS_MESSAGE),
    ],
)
def test_bad_limits_are_validation_errors(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(JobValidationError) as info:
        parse_job_request(request(**fields))
    assert info.value.message == message
    assert MAX_CONCURRENCY_MESSAGE == (
        "max_concurrency must be a positive integer or a percentage like '10%'"
    )
