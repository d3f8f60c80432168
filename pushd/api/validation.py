"""Validation of a job request (``POST /organizations/ORG/pushy/jobs``), original-server.md 5.4.

    parse_job_request(body: bytes, *, default_run_timeout=3600, max_file_size=100_000)
        -> JobRequest
        Raises JobValidationError(message) for every malformed body; the API answers it as
        400 ``{"error": message}``. The messages of the original are kept word for word; pushd
        adds messages for what the original answered with a 500 (non-JSON bodies, text that is
        not valid UTF-8 such as a lone surrogate escape ``"\ud800"``) or accepted silently
        (negative or fractional quorum, run_timeout < 1, over-long user, a relative dir, env
        names and sizes the client refuses, a job whose commit message the client cannot read).
        The bounds shared with the node client live in pushd.protocol.limits.

    Duplicate node names are dropped (the job lists each node once). A quorum no larger than
    the list as sent is capped at the number of distinct nodes, so knife's "100%" still means
    every node; a larger quorum is kept (the job then ends `quorum_failed` at once).

    JobRequest: command, nodes, quorum, run_timeout, user, dir, env, file, capture,
        voting_timeout, max_concurrency, max_errors (None unless given), and ``options()``
        -> the dict of job options the store keeps (only the keys that were set).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from pushd.protocol.frames import encode_body
from pushd.protocol.limits import (
    MAX_JOB_FILE_BYTES,
    MAX_NAME_LENGTH,
    MAX_RUN_TIMEOUT,
    MAX_SERVER_MESSAGE_BYTES,
    MAX_USER_LENGTH,
    MIN_RUN_TIMEOUT,
    env_problem,
    is_absolute_dir,
    text_problem,
)
from pushd.protocol.messages import commit_message
from pushd.rollout import parse_limit

INVALID_COMMAND = "invalid command supplied"
NO_NODES = "at least one node must be supplied"
INVALID_KEY = "invalid key supplied"
QUORUM_TYPE = "invalid type supplied for quorum (expected a number)"
RUN_TIMEOUT_TYPE = "invalid type supplied for run_timeout (expected a number)"
CAPTURE_TYPE = "invalid type supplied for capture_output (expected a boolean)"
ENV_DUPLICATE = "invalid environment value (duplicate key)"
FILE_PREFIX = "invalid file contents (expected 'base64:...' or 'raw:...')"
FILE_BASE64 = "invalid file contents (couldn't decode base64 string)"
UNKNOWN = "an unknown validation error has occurred"
# pushd's own messages (the original answered these with a 500 or took them silently).
NOT_JSON = "request body is not valid JSON"
NOT_OBJECT = "request body must be a JSON object"
DUPLICATE_KEY = "duplicate key supplied"
QUORUM_RANGE = "invalid value supplied for quorum (expected a non-negative integer)"
RUN_TIMEOUT_RANGE = "invalid value supplied for run_timeout (expected a positive integer)"
VOTING_TIMEOUT_TYPE = "invalid type supplied for voting_timeout (expected a number)"
VOTING_TIMEOUT_RANGE = "invalid value supplied for voting_timeout (expected a positive integer)"
USER_INVALID = "invalid user supplied (expected a string of at most 32 characters)"
DIR_INVALID = "invalid dir supplied (expected an absolute path)"
ENV_INVALID = "invalid environment value (expected an object of strings)"
NODE_NAME_INVALID = "invalid node name supplied"
COMMIT_TOO_LARGE = (
    f"job too large (its commit message must be <= {MAX_SERVER_MESSAGE_BYTES} bytes)"
)


def text_invalid(key: str) -> str:
    """The message for a field holding a string that is not valid UTF-8 text."""
    return f"invalid text supplied for {key} (not valid UTF-8)"


ALLOWED_KEYS = frozenset(
    {
        "command",
        "nodes",
        "quorum",
        "run_timeout",
        "user",
        "dir",
        "env",
        "file",
        "capture_output",
        "voting_timeout",
        "max_concurrency",
        "max_errors",
    }
)
# Columns are 32-bit integers; anything larger is a typo, not a plan.
MAX_INT = MAX_RUN_TIMEOUT
# Room for what the broker adds to a commit: sequence, timestamp, job id and server name.
COMMIT_ENVELOPE_BYTES = 1024


class JobValidationError(ValueError):
    """A job request the API must refuse with 400 and this message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class JobRequest:
    command: str
    nodes: list[str]
    quorum: int
    run_timeout: int
    user: str | None = None
    dir: str | None = None
    env: dict[str, str] | None = None
    file: str | None = None
    capture: bool = False
    voting_timeout: int | None = None
    max_concurrency: int | str | None = None
    max_errors: int | str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def options(self) -> dict[str, Any]:
        """Job options as the store keeps them; unset ones are left out."""
        out: dict[str, Any] = {}
        if self.user is not None:
            out["job_user"] = self.user
        if self.dir is not None:
            out["dir"] = self.dir
        if self.env is not None:
            out["env"] = self.env
        if self.file is not None:
            out["job_file"] = self.file
        if self.capture:
            out["capture"] = True
        if self.voting_timeout is not None:
            out["voting_timeout"] = self.voting_timeout
        if self.max_concurrency is not None:
            out["max_concurrency"] = self.max_concurrency
        if self.max_errors is not None:
            out["max_errors"] = self.max_errors
        return out


def _decode(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise JobValidationError(NOT_JSON) from None
    # json keeps the last of duplicate keys; remember which objects had any.
    with_duplicates: list[dict[str, Any]] = []

    def remember_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            with_duplicates.append(obj)
        return obj

    try:
        doc = json.loads(text, object_pairs_hook=remember_duplicates)
    except (ValueError, RecursionError):
        raise JobValidationError(NOT_JSON) from None
    if not isinstance(doc, dict):
        raise JobValidationError(NOT_OBJECT)
    if any(obj is doc for obj in with_duplicates):
        raise JobValidationError(DUPLICATE_KEY)
    if any(obj is doc.get("env") for obj in with_duplicates):
        raise JobValidationError(ENV_DUPLICATE)
    # json accepts "\ud800" escapes, but no UTF-8 encoder (store, broker, client) takes the
    # lone surrogate they make.
    # (Unknown keys, surrogates in a key included, are `invalid key supplied` later.)
    for key, value in doc.items():
        if key in ALLOWED_KEYS and text_problem(value) is not None:
            raise JobValidationError(text_invalid(key))
    return doc


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _count(value: Any, type_message: str, range_message: str, *, minimum: int = 0) -> int:
    if not _is_number(value):
        raise JobValidationError(type_message)
    if isinstance(value, float):
        if not value.is_integer():
            raise JobValidationError(range_message)
        value = int(value)
    if value < minimum or value > MAX_INT:
        raise JobValidationError(range_message)
    return value


def _check_file(value: Any, max_file_size: int) -> str:
    if not isinstance(value, str):
        raise JobValidationError(FILE_PREFIX)
    if value.startswith("raw:"):
        size = len(value[4:].encode("utf-8"))
    elif value.startswith("base64:"):
        try:
            size = len(base64.b64decode(value[7:], validate=True))
        except (binascii.Error, ValueError):
            raise JobValidationError(FILE_BASE64) from None
    else:
        raise JobValidationError(FILE_PREFIX)
    # The setting may only lower the client's own limit.
    max_file_size = min(max_file_size, MAX_JOB_FILE_BYTES)
    if size > max_file_size:
        raise JobValidationError(f"invalid file size (must be <= {max_file_size} bytes)")
    return value


def _check_nodes(value: Any) -> list[str]:
    """The distinct node names, in the order first given."""
    if not isinstance(value, list) or not value:
        raise JobValidationError(NO_NODES)
    for name in value:
        if not isinstance(name, str):
            raise JobValidationError(NO_NODES)
        if not name or len(name) > MAX_NAME_LENGTH or any(ch in name for ch in "/\x00"):
            raise JobValidationError(NODE_NAME_INVALID)
    # knife-push reads any 400 as a 1.x server and falls back: duplicates run once instead.
    return list(dict.fromkeys(value))


def _check_env(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise JobValidationError(ENV_INVALID)
    for key, item in value.items():
        # NUL cannot reach a process environment (execve takes C strings).
        if not isinstance(item, str) or not key or "\x00" in key or "\x00" in item:
            raise JobValidationError(ENV_INVALID)
    # The node client's own rules (names, count, size): refused here, not nacked there.
    problem = env_problem(value)
    if problem is not None:
        raise JobValidationError(f"invalid environment value ({problem})")
    return dict(value)


def _check_commit_size(job: JobRequest) -> None:
    """The commit the broker will send must fit what the client reads (escapes included)."""
    body = commit_message(
        sequence=0, job_id="", server="", command=job.command, user=job.user,
        directory=job.dir, env=job.env, file=job.file, capture=job.capture,
        run_timeout=job.run_timeout, timestamp="",
    )
    if len(encode_body(body)) + COMMIT_ENVELOPE_BYTES > MAX_SERVER_MESSAGE_BYTES:
        raise JobValidationError(COMMIT_TOO_LARGE)


def parse_job_request(
    body: bytes, *, default_run_timeout: int = 3600, max_file_size: int = 100_000
) -> JobRequest:
    doc = _decode(body)
    if any(key not in ALLOWED_KEYS for key in doc):
        raise JobValidationError(INVALID_KEY)
    command = doc.get("command")
    if not isinstance(command, str):
        raise JobValidationError(INVALID_COMMAND)
    nodes = _check_nodes(doc.get("nodes"))
    quorum = len(nodes)
    if "quorum" in doc:
        quorum = _count(doc["quorum"], QUORUM_TYPE, QUORUM_RANGE)
        if quorum <= len(doc["nodes"]):
            quorum = min(quorum, len(nodes))
    run_timeout = default_run_timeout
    if "run_timeout" in doc:
        run_timeout = _count(
            doc["run_timeout"], RUN_TIMEOUT_TYPE, RUN_TIMEOUT_RANGE, minimum=MIN_RUN_TIMEOUT
        )
    voting_timeout = None
    if "voting_timeout" in doc:
        voting_timeout = _count(
            doc["voting_timeout"], VOTING_TIMEOUT_TYPE, VOTING_TIMEOUT_RANGE, minimum=1
        )
    user = doc.get("user")
    if user is not None and (not isinstance(user, str) or not user or len(user) > MAX_USER_LENGTH):
        raise JobValidationError(USER_INVALID)
    directory = doc.get("dir")
    if directory is not None and (
        not isinstance(directory, str) or not is_absolute_dir(directory)
    ):
        # A relative dir would run relative to wherever the node's client was started.
        raise JobValidationError(DIR_INVALID)
    env = _check_env(doc["env"]) if doc.get("env") is not None else None
    job_file = _check_file(doc["file"], max_file_size) if doc.get("file") is not None else None
    capture = doc.get("capture_output", False)
    if not isinstance(capture, bool):
        raise JobValidationError(CAPTURE_TYPE)
    limits: dict[str, int | str | None] = {}
    for name in ("max_concurrency", "max_errors"):
        # Rollout control (issue 17): an int or "N%"; absent (or null) means no limit.
        try:
            limits[name] = parse_limit(doc[name], name) if doc.get(name) is not None else None
        except ValueError as err:
            raise JobValidationError(str(err)) from None
    job = JobRequest(
        command=command,
        nodes=nodes,
        quorum=quorum,
        run_timeout=run_timeout,
        user=user,
        dir=directory,
        env=env,
        file=job_file,
        capture=capture,
        voting_timeout=voting_timeout,
        max_concurrency=limits["max_concurrency"],
        max_errors=limits["max_errors"],
    )
    _check_commit_size(job)
    return job
