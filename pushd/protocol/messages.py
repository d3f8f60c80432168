"""Message bodies of both directions: builders (dicts in the original's key order) and
validators (decoded dict -> frozen dataclass, or ProtocolError("bad_message")).

Server -> node (the server puts ``sequence`` and ``timestamp`` first; `timestamp` defaults to now):

    server_heartbeat(*, sequence, server, incarnation_id, timestamp=None) -> dict   (PUB, RSA)
    abort_message(*, sequence, timestamp=None) -> dict
    ack_message(*, sequence, timestamp=None) -> dict
    commit_message(*, sequence, job_id, server, command, user=None, directory=None, env=None,
                   file=None, capture=False, run_timeout=None, timestamp=None) -> dict
        Optional keys are omitted when None; ``capture`` is always present; ``directory`` is
        sent as ``dir``. ``run_timeout`` (seconds) is a pushd addition old clients ignore.
    run_message(*, sequence, job_id, run_timeout=None, timestamp=None) -> dict
    parse_server_message(body: Mapping) -> ServerMessage

Node -> server (common fields first, in the original client's order: node, client,
protocol_version, org, type, sequence, timestamp, incarnation_id, then job_id):

    NodeIdentity(node, client, org, incarnation_id)        what stays fixed for a process
    node_heartbeat(who, *, sequence, job_id, job_state, timestamp=None) -> dict
    node_reply(who, type, *, sequence, job_id, reason=None, timestamp=None) -> dict
        type in REPLY_TYPES (ack_commit, nack_commit, ack_run, nack_run, aborted); `reason`
        (pushd addition) only on nack_commit / nack_run / aborted.
    node_result(who, *, succeeded, sequence, job_id, stdout=None, stderr=None,
                stdout_dropped=0, stderr_dropped=0, timestamp=None) -> dict
        ``succeeded`` / ``failed``. stdout/stderr are sent only when given. When output was cut
        to fit the body limit the numbers of bytes left out of each stream are sent as
        ``"truncated": {"stdout": N, "stderr": M}`` (pushd addition, only when non-zero).
    node_output(who, *, sequence, job_id, channel, offset, data, timestamp=None) -> dict
        ``output`` (pushd addition, sent only to a server whose config document advertises
        OUTPUT_CAPABILITY): `data` is what the job printed on `channel` ("stdout" | "stderr")
        starting `offset` bytes into that stream (bytes before it; a gap after the previous
        chunk means bytes were left out). At most MAX_OUTPUT_CHUNK_BYTES bytes of UTF-8.
    parse_node_message(body: Mapping) -> NodeMessage
    heartbeat_sequence(body: Mapping) -> int
        The broker's per-heartbeat fast path: checks only the fields it reads (sequence,
        incarnation_id, node, org, job_id, job_state) against parse_node_message's limits and
        returns the sequence; also requires a non-negative sequence and a non-empty
        incarnation id. Text is not checked for lone surrogates (node and org matched a stored
        key; the others are only compared). Expects node and org to be strings (the broker
        looked the key up by them) and type "heartbeat".
    reply_sequence(body: Mapping) -> int | None
        The broker's fast path for job replies (ack_commit, ack_run, nack_*, aborted,
        succeeded, failed) that carry only the common fields: the sequence when
        parse_node_message would accept the body (same checks; ASCII text only), None when the
        body must go through parse_node_message (it holds reason/stdout/stderr/truncated, or
        anything the quick checks do not settle). Never raises.
    sender_of(body: Mapping) -> tuple[str, str] | None
        (org, node) when both are strings, else None: a safe key for looking up the session
        key before the body is verified (never raises, whatever the body holds).

Validation rules: unknown ``type`` or a wrong type for a known field -> bad_message; unknown
extra fields are ignored (compatibility both ways); a JSON null for an optional field means
"absent"; ``job_id`` is a string of at most 64 UTF-8 bytes or null; names (node, org, client,
server, incarnation id) are at most 255 characters; every string must be encodable as UTF-8
(no lone surrogates) so it can be stored and re-sent. The timestamp is only checked to be a
string here: its value is checked by the decode pipeline (frames.decode).

A client that wants to ``nack_commit`` a malformed commit (as the original does) catches the
ProtocolError and reads ``job_id`` from the raw body itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pushd.errors import ProtocolError
from pushd.protocol.limits import MAX_NAME_LENGTH, MAX_RUN_TIMEOUT, MIN_RUN_TIMEOUT
from pushd.protocol.timestamps import format_timestamp

PROTOCOL_VERSION = "2.0"
MAX_JOB_ID_BYTES = 64
MAX_REASON_LENGTH = 1024
MAX_JOB_STATE_LENGTH = 32

SERVER_MESSAGE_TYPES = frozenset({"heartbeat", "abort", "ack", "commit", "run"})
REPLY_TYPES = frozenset({"ack_commit", "nack_commit", "ack_run", "nack_run", "aborted"})
RESULT_TYPES = frozenset({"succeeded", "failed"})
# `output` is a pushd addition: live chunks of a running job's output (never sent to a
# server that does not advertise OUTPUT_CAPABILITY in its config document).
NODE_MESSAGE_TYPES = frozenset({"heartbeat", "output"}) | REPLY_TYPES | RESULT_TYPES
OUTPUT_CHANNELS = ("stdout", "stderr")
# One chunk's text, in UTF-8 bytes: 16 KiB of output plus room for a split multi-byte sequence.
MAX_OUTPUT_CHUNK_BYTES = 16 * 1024 + 4
# Node messages that carry an explanation when pushd clients send them.
REASON_TYPES = frozenset({"nack_commit", "nack_run", "aborted"})
# Node messages the original forwards to the job by job_id (`aborted` also goes to the node).
JOB_MESSAGE_TYPES = frozenset(
    {"ack_commit", "nack_commit", "ack_run", "nack_run", "succeeded", "failed", "aborted"}
)

_INT64 = 2**63


# --------------------------------------------------------------------------- server -> node


@dataclass(frozen=True, slots=True)
class ServerMessage:
    """A validated server -> node body. Fields not used by `type` are None/defaults."""

    type: str
    sequence: int
    timestamp: str
    server: str | None = None  # heartbeat, commit
    incarnation_id: str | None = None  # heartbeat
    job_id: str | None = None  # commit, run
    command: str | None = None  # commit
    user: str | None = None  # commit
    directory: str | None = None  # commit (wire name "dir")
    env: dict[str, str] | None = None  # commit
    file: str | None = None  # commit ("raw:..." or "base64:...", checked by the client)
    capture: bool = False  # commit
    run_timeout: int | None = None  # commit, run (pushd addition)


def _stamped(sequence: int, timestamp: str | None, type_: str) -> dict[str, Any]:
    return {
        "sequence": sequence,
        "timestamp": format_timestamp() if timestamp is None else timestamp,
        "type": type_,
    }


def server_heartbeat(
    *, sequence: int, server: str, incarnation_id: str, timestamp: str | None = None
) -> dict[str, Any]:
    """The PUB heartbeat body (sign it with the server's RSA key)."""
    return {
        "sequence": sequence,
        "timestamp": format_timestamp() if timestamp is None else timestamp,
        "server": server,
        "type": "heartbeat",
        "incarnation_id": incarnation_id,
    }


def abort_message(*, sequence: int, timestamp: str | None = None) -> dict[str, Any]:
    """Tell a node to drop whatever it is doing and answer ``aborted``."""
    return _stamped(sequence, timestamp, "abort")


def ack_message(*, sequence: int, timestamp: str | None = None) -> dict[str, Any]:
    """Confirm a node's new address (clients ignore it; it proves the channel works)."""
    return _stamped(sequence, timestamp, "ack")


def commit_message(
    *,
    sequence: int,
    job_id: str,
    server: str,
    command: str,
    user: str | None = None,
    directory: str | None = None,
    env: Mapping[str, str] | None = None,
    file: str | None = None,
    capture: bool = False,
    run_timeout: int | None = None,
    timestamp: str | None = None,
) -> dict[str, Any]:
    """Ask a node to commit to a job."""
    body = _stamped(sequence, timestamp, "commit")
    body["job_id"] = job_id
    body["server"] = server
    body["command"] = command
    if user is not None:
        body["user"] = user
    if directory is not None:
        body["dir"] = directory
    if env is not None:
        body["env"] = dict(env)
    if file is not None:
        body["file"] = file
    body["capture"] = bool(capture)
    if run_timeout is not None:
        body["run_timeout"] = run_timeout
    return body


def run_message(
    *, sequence: int, job_id: str, run_timeout: int | None = None, timestamp: str | None = None
) -> dict[str, Any]:
    """Tell a committed node to start the job's command."""
    body = _stamped(sequence, timestamp, "run")
    body["job_id"] = job_id
    if run_timeout is not None:
        body["run_timeout"] = run_timeout
    return body


# --------------------------------------------------------------------------- field checks


def _bad(detail: str) -> ProtocolError:
    return ProtocolError("bad_message", detail)


def _check_text(name: str, value: str, max_length: int | None) -> str:
    if max_length is not None and len(value) > max_length:
        raise _bad(f"{name} longer than {max_length} characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _bad(f"{name} is not valid Unicode") from None
    return value


def _required_str(
    body: Mapping[str, Any], name: str, max_length: int | None = MAX_NAME_LENGTH
) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise _bad(f"{name} must be a string" if name in body else f"{name} is missing")
    return _check_text(name, value, max_length)


def _optional_str(
    body: Mapping[str, Any], name: str, max_length: int | None = MAX_NAME_LENGTH
) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad(f"{name} must be a string")
    return _check_text(name, value, max_length)


def _sequence(body: Mapping[str, Any]) -> int:
    value = body.get("sequence")
    # bool is an int subclass; a JSON true is not a sequence number.
    if type(value) is not int or not -_INT64 <= value < _INT64:
        raise _bad("sequence must be a 64-bit integer")
    return value


def _job_id(body: Mapping[str, Any], *, required: bool) -> str | None:
    value = body.get("job_id")
    if value is None:
        if required:
            raise _bad("job_id is missing")
        return None
    if not isinstance(value, str):
        raise _bad("job_id must be a string or null")
    encoded_length = len(value) if value.isascii() else len(_utf8(value, "job_id"))
    if encoded_length > MAX_JOB_ID_BYTES:
        raise _bad(f"job_id longer than {MAX_JOB_ID_BYTES} bytes")
    return value


def _utf8(value: str, name: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(f"{name} is not valid Unicode") from None


def _run_timeout(body: Mapping[str, Any]) -> int | None:
    value = body.get("run_timeout")
    if value is None:
        return None
    if type(value) is not int or not MIN_RUN_TIMEOUT <= value <= MAX_RUN_TIMEOUT:
        raise _bad(f"run_timeout must be an integer from {MIN_RUN_TIMEOUT} to {MAX_RUN_TIMEOUT}")
    return value


def _env(body: Mapping[str, Any]) -> dict[str, str] | None:
    value = body.get("env")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad("env must be an object")
    for key, item in value.items():
        if not isinstance(item, str):
            raise _bad(f"env value for {key!r} must be a string")
        _check_text("env key", key, None)
        _check_text("env value", item, None)
    return dict(value)


def _type(body: Mapping[str, Any], allowed: frozenset[str]) -> str:
    value = body.get("type")
    if not isinstance(value, str) or value not in allowed:
        raise _bad(f"unknown message type {value!r}"[:200])
    return value


def _require_mapping(body: Any) -> None:
    if not isinstance(body, Mapping):
        raise _bad("body must be a JSON object")


def parse_server_message(body: Mapping[str, Any]) -> ServerMessage:
    """Validate a decoded server -> node body."""
    _require_mapping(body)
    type_ = _type(body, SERVER_MESSAGE_TYPES)
    sequence = _sequence(body)
    timestamp = _required_str(body, "timestamp", 64)
    if type_ == "heartbeat":
        return ServerMessage(
            type_,
            sequence,
            timestamp,
            server=_required_str(body, "server"),
            incarnation_id=_required_str(body, "incarnation_id"),
        )
    if type_ == "commit":
        capture = body.get("capture")
        if capture is not None and not isinstance(capture, bool):
            raise _bad("capture must be a boolean")
        return ServerMessage(
            type_,
            sequence,
            timestamp,
            server=_optional_str(body, "server"),
            job_id=_job_id(body, required=True),
            command=_required_str(body, "command", None),
            user=_optional_str(body, "user"),
            directory=_optional_str(body, "dir", None),
            env=_env(body),
            file=_optional_str(body, "file", None),
            capture=bool(capture),
            run_timeout=_run_timeout(body),
        )
    if type_ == "run":
        return ServerMessage(
            type_,
            sequence,
            timestamp,
            job_id=_job_id(body, required=True),
            run_timeout=_run_timeout(body),
        )
    return ServerMessage(type_, sequence, timestamp)  # abort, ack


# --------------------------------------------------------------------------- node -> server


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """The fields a node process puts in every message it sends."""

    node: str
    client: str
    org: str
    incarnation_id: str


@dataclass(frozen=True, slots=True)
class NodeMessage:
    """A validated node -> server body. Fields not used by `type` are None/defaults."""

    type: str
    node: str
    org: str
    sequence: int
    timestamp: str
    incarnation_id: str
    job_id: str | None
    client: str = ""
    protocol_version: str | None = None  # absent from 1.x clients
    job_state: str | None = None  # heartbeat
    reason: str | None = None  # nack_commit, nack_run, aborted (pushd addition)
    stdout: str | None = None  # succeeded, failed
    stderr: str | None = None  # succeeded, failed
    stdout_dropped: int = 0  # succeeded, failed: bytes of output left out (pushd addition)
    stderr_dropped: int = 0
    channel: str | None = None  # output (pushd addition)
    offset: int = 0  # output: bytes of the stream before this chunk
    data: str | None = None  # output


def _node_common(
    who: NodeIdentity, type_: str, sequence: int, timestamp: str | None, job_id: str | None
) -> dict[str, Any]:
    return {
        "node": who.node,
        "client": who.client,
        "protocol_version": PROTOCOL_VERSION,
        "org": who.org,
        "type": type_,
        "sequence": sequence,
        "timestamp": format_timestamp() if timestamp is None else timestamp,
        "incarnation_id": who.incarnation_id,
        "job_id": job_id,
    }


def node_heartbeat(
    who: NodeIdentity,
    *,
    sequence: int,
    job_id: str | None,
    job_state: str,
    timestamp: str | None = None,
) -> dict[str, Any]:
    """A node's heartbeat; `job_state` is idle, committed or running."""
    body = _node_common(who, "heartbeat", sequence, timestamp, None)
    # The original puts job_state before job_id in heartbeats; keep that order.
    del body["job_id"]
    body["job_state"] = job_state
    body["job_id"] = job_id
    return body


def node_reply(
    who: NodeIdentity,
    type_: str,
    *,
    sequence: int,
    job_id: str | None,
    reason: str | None = None,
    timestamp: str | None = None,
) -> dict[str, Any]:
    """ack_commit / nack_commit / ack_run / nack_run / aborted."""
    if type_ not in REPLY_TYPES:
        raise ValueError(f"not a reply type: {type_!r}")
    body = _node_common(who, type_, sequence, timestamp, job_id)
    if reason is not None and type_ in REASON_TYPES:
        body["reason"] = reason[:MAX_REASON_LENGTH]
    return body


def node_result(
    who: NodeIdentity,
    *,
    succeeded: bool,
    sequence: int,
    job_id: str | None,
    stdout: str | None = None,
    stderr: str | None = None,
    stdout_dropped: int = 0,
    stderr_dropped: int = 0,
    timestamp: str | None = None,
) -> dict[str, Any]:
    """``succeeded`` or ``failed``, with captured output when given."""
    body = _node_common(
        who, "succeeded" if succeeded else "failed", sequence, timestamp, job_id
    )
    if stdout is not None:
        body["stdout"] = stdout
    if stderr is not None:
        body["stderr"] = stderr
    if stdout_dropped or stderr_dropped:
        body["truncated"] = {"stdout": stdout_dropped, "stderr": stderr_dropped}
    return body


def node_output(
    who: NodeIdentity,
    *,
    sequence: int,
    job_id: str,
    channel: str,
    offset: int,
    data: str,
    timestamp: str | None = None,
) -> dict[str, Any]:
    """One live chunk of a running job's output (pushd addition; see the module doc)."""
    if channel not in OUTPUT_CHANNELS:
        raise ValueError(f"not an output channel: {channel!r}")
    body = _node_common(who, "output", sequence, timestamp, job_id)
    body["channel"] = channel
    body["offset"] = offset
    body["data"] = data
    return body


def heartbeat_sequence(body: Mapping[str, Any]) -> int:
    """Validate the heartbeat fields the broker reads; return the sequence (see module doc)."""
    # One boolean expression instead of parse_node_message's dataclass: heartbeats are nearly
    # all the broker's traffic.
    sequence = body.get("sequence")
    incarnation = body.get("incarnation_id")
    job_id = body.get("job_id")
    job_state = body.get("job_state")
    if (
        type(sequence) is not int
        or not 0 <= sequence < _INT64
        or type(incarnation) is not str
        or not 0 < len(incarnation) <= MAX_NAME_LENGTH
        or not 0 < len(body["node"]) <= MAX_NAME_LENGTH
        or not 0 < len(body["org"]) <= MAX_NAME_LENGTH
        or (job_id is not None and (
            type(job_id) is not str
            or len(job_id) > MAX_JOB_ID_BYTES
            or (not job_id.isascii()
                and len(job_id.encode("utf-8", "replace")) > MAX_JOB_ID_BYTES)))
        or (job_state is not None
            and (type(job_state) is not str or len(job_state) > MAX_JOB_STATE_LENGTH))
    ):
        raise _bad("malformed heartbeat")
    return sequence


# Replies the broker can take without building a NodeMessage: their bodies carry the common
# fields only. A reply carrying anything the broker stores or shows (`reason`, output, the
# truncation counts) or a field the fast checks cannot settle goes through parse_node_message.
FAST_REPLY_TYPES = REPLY_TYPES | RESULT_TYPES
_FULL_CHECK_FIELDS = ("reason", "stdout", "stderr", "truncated")


def reply_sequence(body: Mapping[str, Any]) -> int | None:
    """The sequence of a plain job reply, or None: validate it with parse_node_message.

    The broker's fast path for ``ack_commit``, ``ack_run``, ``succeeded``... (a big job's
    replies are most of its messages). It accepts only bodies parse_node_message accepts, with
    the same sequence: every field parse_node_message checks is checked here by the same
    rules, with ASCII standing in for the Unicode check (a non-ASCII name, job id or
    incarnation goes the long way); a body that also holds `reason`, `stdout`, `stderr` or
    `truncated`, or anything this function cannot settle, gets None, never an exception."""
    get = body.get
    type_ = get("type")
    sequence = get("sequence")
    node = get("node")
    org = get("org")
    incarnation = get("incarnation_id")
    timestamp = get("timestamp")
    job_id = get("job_id")
    client = get("client")
    version = get("protocol_version")
    if (
        type(type_) is not str
        or type_ not in FAST_REPLY_TYPES
        or type(sequence) is not int
        or not -_INT64 <= sequence < _INT64
        or type(node) is not str
        or not 0 < len(node) <= MAX_NAME_LENGTH
        or not node.isascii()
        or type(org) is not str
        or not 0 < len(org) <= MAX_NAME_LENGTH
        or not org.isascii()
        or type(incarnation) is not str
        or len(incarnation) > MAX_NAME_LENGTH
        or not incarnation.isascii()
        or type(timestamp) is not str
        or len(timestamp) > 64
        or not timestamp.isascii()
        or (job_id is not None and (
            type(job_id) is not str or len(job_id) > MAX_JOB_ID_BYTES or not job_id.isascii()))
        or (client is not None and (
            type(client) is not str or len(client) > MAX_NAME_LENGTH or not client.isascii()))
        or (version is not None and (
            type(version) is not str or len(version) > 16 or not version.isascii()))
    ):
        return None
    for name in _FULL_CHECK_FIELDS:
        if get(name) is not None:
            return None
    return sequence


def sender_of(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """(org, node) of an unverified body when both are strings, else None."""
    org, node = body.get("org"), body.get("node")
    if isinstance(org, str) and isinstance(node, str):
        return org, node
    return None


def _dropped(body: Mapping[str, Any]) -> tuple[int, int]:
    truncated = body.get("truncated")
    if truncated is None:
        return 0, 0
    if not isinstance(truncated, dict):
        raise _bad("truncated must be an object")
    counts = []
    for stream in ("stdout", "stderr"):
        value = truncated.get(stream, 0)
        if type(value) is not int or not 0 <= value < _INT64:
            raise _bad(f"truncated.{stream} must be a non-negative integer")
        counts.append(value)
    return counts[0], counts[1]


def parse_node_message(body: Mapping[str, Any]) -> NodeMessage:
    """Validate a decoded node -> server body."""
    _require_mapping(body)
    type_ = _type(body, NODE_MESSAGE_TYPES)
    common: dict[str, Any] = {
        "type": type_,
        "node": _required_str(body, "node"),
        "org": _required_str(body, "org"),
        "sequence": _sequence(body),
        "timestamp": _required_str(body, "timestamp", 64),
        "incarnation_id": _required_str(body, "incarnation_id"),
        "job_id": _job_id(body, required=False),
        "client": _optional_str(body, "client") or "",
        "protocol_version": _optional_str(body, "protocol_version", 16),
    }
    if not common["node"] or not common["org"]:
        raise _bad("node and org must not be empty")
    if type_ == "heartbeat":
        return NodeMessage(
            **common, job_state=_optional_str(body, "job_state", MAX_JOB_STATE_LENGTH)
        )
    if type_ in RESULT_TYPES:
        stdout_dropped, stderr_dropped = _dropped(body)
        return NodeMessage(
            **common,
            stdout=_optional_str(body, "stdout", None),
            stderr=_optional_str(body, "stderr", None),
            stdout_dropped=stdout_dropped,
            stderr_dropped=stderr_dropped,
        )
    if type_ == "output":
        return _output_message(body, common)
    if type_ in REASON_TYPES:
        return NodeMessage(**common, reason=_optional_str(body, "reason", MAX_REASON_LENGTH))
    return NodeMessage(**common)


def _output_message(body: Mapping[str, Any], common: dict[str, Any]) -> NodeMessage:
    if common["job_id"] is None:
        raise _bad("output needs a job_id")
    channel = body.get("channel")
    if channel not in OUTPUT_CHANNELS:
        raise _bad("channel must be 'stdout' or 'stderr'")
    offset = body.get("offset")
    if type(offset) is not int or not 0 <= offset < _INT64:
        raise _bad("offset must be a non-negative integer")
    data = _required_str(body, "data", None)
    if len(data) * 4 > MAX_OUTPUT_CHUNK_BYTES and len(data.encode("utf-8")) > (
        MAX_OUTPUT_CHUNK_BYTES
    ):
        raise _bad(f"data longer than {MAX_OUTPUT_CHUNK_BYTES} bytes")
    return NodeMessage(**common, channel=channel, offset=offset, data=data)
