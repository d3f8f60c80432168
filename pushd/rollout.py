"""Rollout limits of a job: `max_concurrency` and `max_errors` (issue 17).

Stdlib only: the server validates and resolves them, the CLI checks its flags with them.

    parse_limit(value, name) -> int | str      an integer or "N%" as given; raises ValueError
                                                with the message the API and CLI show
    resolve_concurrency(value, node_count) -> int | None
    resolve_errors(value, node_count) -> int | None
    from_stored(text) -> int | str | None      the column text back to the JSON value

Rounding (documented in docs/cli.md): `max_concurrency` "N%" is N% of the job's nodes rounded
UP, at least 1 (10% of 15 nodes -> 2), so a percentage never stalls a job. `max_errors` "N%"
is N% of the job's nodes rounded DOWN (10% of 15 nodes -> 1): the job halts once more than
that many nodes failed, i.e. once the failed share exceeds N% (Ansible's
`max_fail_percentage` reads the same way). Both use integer arithmetic, no float rounding.
"""

from __future__ import annotations

import re

MAX_CONCURRENCY_MESSAGE = "max_concurrency must be a positive integer or a percentage like '10%'"
MAX_ERRORS_MESSAGE = "max_errors must be a non-negative integer or a percentage like '10%'"
MESSAGES = {"max_concurrency": MAX_CONCURRENCY_MESSAGE, "max_errors": MAX_ERRORS_MESSAGE}
MAX_INT = 2**31 - 1
_PERCENT = re.compile(r"^(\d{1,3})%$")


def parse_limit(value: object, name: str) -> int | str:
    """`value` (JSON or a CLI string) checked: an int (>= 1 for max_concurrency, >= 0 for
    max_errors) or "N%" with N in 1..100 (0..100 for max_errors). Strings of digits from the
    CLI become ints."""
    minimum = 1 if name == "max_concurrency" else 0
    message = MESSAGES[name]
    if isinstance(value, str):
        match = _PERCENT.match(value)
        if match is not None:
            percent = int(match.group(1))
            if minimum <= percent <= 100:
                return f"{percent}%"
            raise ValueError(message)
        if value.isascii() and value.isdigit():
            value = int(value)
        else:
            raise ValueError(message)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(message)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(message)
        value = int(value)
    if not minimum <= value <= MAX_INT:
        raise ValueError(message)
    return value


def _percent_of(value: int | str) -> int | None:
    if isinstance(value, str) and value.endswith("%"):
        return int(value[:-1])
    return None


def resolve_concurrency(value: int | str | None, node_count: int) -> int | None:
    """How many nodes may run at once; None: no limit."""
    if value is None:
        return None
    percent = _percent_of(value)
    if percent is None:
        return int(value)
    return max(1, -(-node_count * percent // 100))


def resolve_errors(value: int | str | None, node_count: int) -> int | None:
    """How many failed nodes the job tolerates; None: no budget."""
    if value is None:
        return None
    percent = _percent_of(value)
    if percent is None:
        return int(value)
    return node_count * percent // 100


def to_stored(value: int | str | None) -> str | None:
    return None if value is None else str(value)


def from_stored(text: str | None) -> int | str | None:
    if text is None:
        return None
    return text if text.endswith("%") else int(text)
