"""Message builders (exact fields and key order) and validators, both directions."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pushd.errors import ProtocolError
from pushd.protocol import (
    NodeIdentity,
    abort_message,
    ack_message,
    commit_message,
    decode,
    encode,
    format_timestamp,
    heartbeat_sequence,
    node_heartbeat,
    node_reply,
    node_result,
    parse_node_message,
    parse_server_message,
    reply_sequence,
    run_message,
    server_heartbeat,
)

NOW = 1_700_000_000.0
STAMP = format_timestamp(NOW)
KEY = b"s" * 32
ME = NodeIdentity(node="n1", client="host1", org="myorg", incarnation_id="inc-1")
JOB = "aaaaaaaaaaaa25fd67fa8715fd547d3d"
NODE_COMMON = ["node", "client", "protocol_version", "org", "type", "sequence", "timestamp",
               "incarnation_id", "job_id"]


def wire(body: dict[str, Any], **keys: Any) -> dict[str, Any]:
    """Send `body` through encode/decode, as it would cross the network."""
    if not keys:
        keys = {"hmac_key": KEY}
    frames = encode(body, **keys)
    verify = KEY if "hmac_key" in keys else keys["rsa_private_key"].public_key()
    return decode(frames, key=verify, now=NOW)


def bad_message(parse: Any, body: dict[str, Any]) -> str:
    with pytest.raises(ProtocolError) as caught:
        parse(body)
    assert caught.value.reason == "bad_message"
    return caught.value.detail


# --------------------------------------------------------------------------- server -> node


def test_server_heartbeat_fields_and_order() -> None:
    body = server_heartbeat(sequence=0, server="push.example", incarnation_id="srv-1",
                            timestamp=STAMP)
    assert list(body) == ["sequence", "timestamp", "server", "type", "incarnation_id"]
    assert json.dumps(body, separators=(",", ":")) == (
        '{"sequence":0,"timestamp":"' + STAMP + '","server":"push.example",'
        '"type":"heartbeat","incarnation_id":"srv-1"}'
    )


def test_server_heartbeat_round_trips_rsa_signed() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    body = server_heartbeat(sequence=7, server="s", incarnation_id="srv-1", timestamp=STAMP)
    message = parse_server_message(wire(body, rsa_private_key=key))
    assert (message.type, message.sequence, message.server, message.incarnation_id) == (
        "heartbeat", 7, "s", "srv-1"
    )


@pytest.mark.parametrize(("build", "type_"), [(abort_message, "abort"), (ack_message, "ack")])
def test_abort_and_ack_are_three_fields(build: Any, type_: str) -> None:
    body = build(sequence=3, timestamp=STAMP)
    assert body == {"sequence": 3, "timestamp": STAMP, "type": type_}
    assert list(body) == ["sequence", "timestamp", "type"]
    message = parse_server_message(wire(body))
    assert (message.type, message.sequence, message.job_id) == (type_, 3, None)


def test_minimal_commit_has_capture_and_no_optional_keys() -> None:
    body = commit_message(sequence=1, job_id=JOB, server="s", command="chef-client",
                          timestamp=STAMP)
    assert list(body) == ["sequence", "timestamp", "type", "job_id", "server", "command",
                          "capture"]
    assert body["capture"] is False
    message = parse_server_message(wire(body))
    assert (message.command, message.user, message.directory, message.env, message.file,
            message.capture, message.run_timeout) == ("chef-client", None, None, None, None,
                                                      False, None)


def test_full_commit_fields_order_and_round_trip() -> None:
    body = commit_message(
        sequence=2, job_id=JOB, server="s", command="deploy", user="daemon", directory="/tmp",
        env={"A": "1", "B": "ü"}, file="base64:aGk=", capture=True, run_timeout=600,
        timestamp=STAMP,
    )
    assert list(body) == ["sequence", "timestamp", "type", "job_id", "server", "command",
                          "user", "dir", "env", "file", "capture", "run_timeout"]
    message = parse_server_message(wire(body))
    assert message.type == "commit"
    assert (message.job_id, message.server, message.command, message.user, message.directory,
            message.env, message.file, message.capture, message.run_timeout) == (
        JOB, "s", "deploy", "daemon", "/tmp", {"A": "1", "B": "ü"}, "base64:aGk=", True, 600
    )


def test_run_round_trips_with_and_without_timeout() -> None:
    body = run_message(sequence=4, job_id=JOB, timestamp=STAMP)
    assert list(body) == ["sequence", "timestamp", "type", "job_id"]
    assert parse_server_message(wire(body)).job_id == JOB
    timed = parse_server_message(wire(run_message(sequence=5, job_id=JOB, run_timeout=30,
                                                  timestamp=STAMP)))
    assert timed.run_timeout == 30


def test_builders_default_the_timestamp_to_now() -> None:
    parsed = decode(encode(abort_message(sequence=1), hmac_key=KEY), key=KEY, max_skew=5)
    assert parsed["type"] == "abort"


def test_unknown_extra_fields_are_ignored_both_ways() -> None:
    server = {**run_message(sequence=1, job_id=JOB, timestamp=STAMP), "future": [1, 2]}
    assert parse_server_message(server).job_id == JOB
    node = {**node_reply(ME, "ack_run", sequence=1, job_id=JOB, timestamp=STAMP), "x": {}}
    assert parse_node_message(node).type == "ack_run"


def test_commit_from_an_older_server_without_capture_or_server_is_accepted() -> None:
    body = {"sequence": 1, "timestamp": STAMP, "type": "commit", "job_id": JOB,
            "command": "chef-client"}
    message = parse_server_message(body)
    assert (message.capture, message.server) == (False, None)


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"type": "explode"}, "unknown message type"),
        ({"type": None}, "unknown message type"),
        ({"sequence": "1"}, "sequence"),
        ({"sequence": True}, "sequence"),
        ({"sequence": 2**63}, "sequence"),
        ({"timestamp": 5}, "timestamp"),
        ({"job_id": None}, "job_id"),
        ({"job_id": 12}, "job_id"),
        ({"job_id": "x" * 65}, "job_id"),
        ({"job_id": "é" * 33}, "job_id"),  # 66 UTF-8 bytes
        ({"command": None}, "command"),
        ({"command": ["ls"]}, "command"),
        ({"capture": "yes"}, "capture"),
        ({"env": ["A=1"]}, "env"),
        ({"env": {"A": 1}}, "env"),
        ({"env": {"A": "\ud800"}}, "Unicode"),
        ({"user": 0}, "user"),
        ({"run_timeout": 0}, "run_timeout"),
        ({"run_timeout": 1.5}, "run_timeout"),
        ({"run_timeout": "60"}, "run_timeout"),
    ],
)
def test_malformed_commits_are_bad_message(change: dict[str, Any], complaint: str) -> None:
    body = commit_message(sequence=1, job_id=JOB, server="s", command="c", timestamp=STAMP)
    body.update(change)
    assert complaint in bad_message(parse_server_message, body)


def test_job_id_of_exactly_64_bytes_is_accepted() -> None:
    body = run_message(sequence=1, job_id="é" * 32, timestamp=STAMP)
    assert parse_server_message(body).job_id == "é" * 32


@pytest.mark.parametrize("missing", ["server", "incarnation_id", "sequence", "timestamp"])
def test_server_heartbeat_needs_its_fields(missing: str) -> None:
    body = server_heartbeat(sequence=1, server="s", incarnation_id="i", timestamp=STAMP)
    del body[missing]
    assert missing in bad_message(parse_server_message, body)


def test_parsers_refuse_non_objects() -> None:
    for parse in (parse_server_message, parse_node_message):
        bad_message(parse, ["not", "a", "dict"])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- node -> server


def test_node_heartbeat_fields_and_order_match_the_original_client() -> None:
    body = node_heartbeat(ME, sequence=42, job_id=JOB, job_state="running", timestamp=STAMP)
    assert list(body) == ["node", "client", "protocol_version", "org", "type", "sequence",
                          "timestamp", "incarnation_id", "job_state", "job_id"]
    assert body["protocol_version"] == "2.0"
    message = parse_node_message(wire(body))
    assert (message.type, message.node, message.client, message.org, message.sequence,
            message.incarnation_id, message.job_state, message.job_id,
            message.protocol_version) == (
        "heartbeat", "n1", "host1", "myorg", 42, "inc-1", "running", JOB, "2.0"
    )


def test_idle_heartbeat_sends_a_null_job_id() -> None:
    body = node_heartbeat(ME, sequence=1, job_id=None, job_state="idle", timestamp=STAMP)
    assert '"job_id":null' in json.dumps(body, separators=(",", ":"))
    assert parse_node_message(wire(body)).job_id is None


@pytest.mark.parametrize("type_", ["ack_commit", "nack_commit", "ack_run", "nack_run", "aborted"])
def test_every_reply_type_round_trips(type_: str) -> None:
    body = node_reply(ME, type_, sequence=9, job_id=JOB, timestamp=STAMP)
    assert list(body) == NODE_COMMON
    message = parse_node_message(wire(body))
    assert (message.type, message.job_id, message.sequence, message.reason) == (
        type_, JOB, 9, None
    )


@pytest.mark.parametrize("type_", ["nack_commit", "nack_run", "aborted"])
def test_reason_travels_on_nacks_and_aborted(type_: str) -> None:
    body = node_reply(ME, type_, sequence=1, job_id=JOB, reason="not whitelisted",
                      timestamp=STAMP)
    assert list(body) == [*NODE_COMMON, "reason"]
    assert parse_node_message(wire(body)).reason == "not whitelisted"


def test_reason_is_not_sent_on_acks() -> None:
    body = node_reply(ME, "ack_commit", sequence=1, job_id=JOB, reason="x", timestamp=STAMP)
    assert "reason" not in body


def test_node_reply_refuses_non_reply_types() -> None:
    with pytest.raises(ValueError):
        node_reply(ME, "succeeded", sequence=1, job_id=JOB)


@pytest.mark.parametrize("succeeded", [True, False])
def test_results_round_trip_with_output_and_truncation(succeeded: bool) -> None:
    body = node_result(ME, succeeded=succeeded, sequence=3, job_id=JOB, stdout="out\n",
                       stderr="", stdout_dropped=1000, timestamp=STAMP)
    assert list(body) == [*NODE_COMMON, "stdout", "stderr", "truncated"]
    assert body["truncated"] == {"stdout": 1000, "stderr": 0}
    message = parse_node_message(wire(body))
    assert message.type == ("succeeded" if succeeded else "failed")
    assert (message.stdout, message.stderr, message.stdout_dropped, message.stderr_dropped) == (
        "out\n", "", 1000, 0
    )


def test_results_without_capture_have_no_output_keys() -> None:
    body = node_result(ME, succeeded=True, sequence=3, job_id=JOB, timestamp=STAMP)
    assert list(body) == NODE_COMMON
    message = parse_node_message(wire(body))
    assert (message.stdout, message.stderr, message.stdout_dropped) == (None, None, 0)


def test_message_from_a_1x_client_without_protocol_version_is_accepted() -> None:
    body = node_heartbeat(ME, sequence=1, job_id=None, job_state="idle", timestamp=STAMP)
    del body["protocol_version"], body["client"]
    message = parse_node_message(body)
    assert (message.protocol_version, message.client) == (None, "")


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"type": "commit"}, "unknown message type"),
        ({"type": "HEARTBEAT"}, "unknown message type"),
        ({"node": None}, "node"),
        ({"node": ""}, "node"),
        ({"node": "n" * 256}, "node"),
        ({"org": 5}, "org"),
        ({"incarnation_id": None}, "incarnation_id"),
        ({"sequence": 1.0}, "sequence"),
        ({"job_id": "j" * 65}, "job_id"),
        ({"job_id": ["j"]}, "job_id"),
        ({"job_state": 3}, "job_state"),
        ({"client": {}}, "client"),
        ({"node": "n\udc80"}, "Unicode"),
    ],
)
def test_malformed_node_heartbeats_are_bad_message(
    change: dict[str, Any], complaint: str
) -> None:
    body = node_heartbeat(ME, sequence=1, job_id=None, job_state="idle", timestamp=STAMP)
    body.update(change)
    assert complaint in bad_message(parse_node_message, body)


@pytest.mark.parametrize(
    "change",
    [
        {"stdout": 5},
        {"stderr": ["e"]},
        {"stdout": "\ud800"},
        {"truncated": 5},
        {"truncated": {"stdout": -1}},
        {"truncated": {"stderr": "9"}},
        {"truncated": {"stdout": True}},
    ],
)
def test_malformed_results_are_bad_message(change: dict[str, Any]) -> None:
    body = node_result(ME, succeeded=False, sequence=1, job_id=JOB, timestamp=STAMP)
    body.update(change)
    bad_message(parse_node_message, body)


def test_overlong_reason_is_refused_on_parse_and_cut_on_build() -> None:
    body = node_reply(ME, "aborted", sequence=1, job_id=None, reason="r" * 5000,
                      timestamp=STAMP)
    assert len(body["reason"]) == 1024
    body["reason"] = "r" * 1025
    assert "reason" in bad_message(parse_node_message, body)


# The broker's fast path must not drift from the full validator on the fields it reads.
# Each field is mostly of its own type (so most bodies get past the other fields), sometimes
# anything else.
_TEXT = st.text(max_size=70) | st.text(alphabet="aé€", max_size=70)
_OTHER = st.none() | st.integers() | st.booleans() | _TEXT


@settings(max_examples=300, deadline=None)
@given(
    sequence=st.integers(min_value=-(2**64), max_value=2**64) | _OTHER,
    incarnation=_TEXT | _OTHER,
    job_id=st.none() | _TEXT | _OTHER,
    job_state=st.none() | _TEXT | _OTHER,
    node=st.text(min_size=0, max_size=260),
    org=st.text(min_size=0, max_size=260),
)
@example(sequence=2**63, incarnation="i", job_id=None, job_state=None, node="n", org="o")
@example(sequence=1, incarnation="i", job_id="é" * 33, job_state=None, node="n", org="o")
def test_heartbeat_fast_path_never_accepts_what_the_validator_refuses(
    sequence: Any, incarnation: Any, job_id: Any, job_state: Any, node: str, org: str
) -> None:
    body = {"type": "heartbeat", "node": node, "org": org, "sequence": sequence,
            "timestamp": STAMP, "incarnation_id": incarnation, "job_id": job_id,
            "job_state": job_state}
    try:
        fast = heartbeat_sequence(body)
    except ProtocolError as exc:
        assert exc.reason == "bad_message"
        return
    assert parse_node_message(body).sequence == fast


def test_heartbeat_fast_path_accepts_the_stock_heartbeat() -> None:
    body = node_heartbeat(ME, sequence=7, job_id=JOB, job_state="running")
    assert heartbeat_sequence(body) == 7
    for bad in ({"sequence": -1}, {"sequence": 2**63}, {"incarnation_id": ""},
                {"job_id": "é" * 33}, {"job_state": "x" * 33}, {"sequence": True}):
        with pytest.raises(ProtocolError, match="malformed heartbeat"):
            heartbeat_sequence({**body, **bad})


_REPLY_TYPES = ["ack_commit", "nack_commit", "ack_run", "nack_run", "aborted", "succeeded",
                "failed"]


@settings(max_examples=400, deadline=None)
@given(
    type_=st.sampled_from([*_REPLY_TYPES, "heartbeat", "output", "commit"]) | _OTHER,
    sequence=st.integers(min_value=-(2**64), max_value=2**64) | _OTHER,
    incarnation=_TEXT | _OTHER,
    job_id=st.none() | _TEXT | _OTHER,
    node=st.text(min_size=0, max_size=260) | _OTHER,
    org=st.text(min_size=0, max_size=260) | _OTHER,
    client=st.none() | st.text(max_size=260) | _OTHER,
    version=st.none() | st.text(max_size=20) | _OTHER,
    timestamp=st.just(STAMP) | _TEXT | _OTHER,
    extra=st.dictionaries(st.sampled_from(["reason", "stdout", "stderr", "truncated", "x"]),
                          _OTHER | st.dictionaries(st.text(max_size=6), _OTHER), max_size=2),
)
@example(type_="ack_run", sequence=2**63, incarnation="i", job_id=None, node="n", org="o",
         client=None, version=None, timestamp=STAMP, extra={})
@example(type_="ack_run", sequence=1, incarnation="i", job_id="\ud800", node="n", org="o",
         client="\udfff", version=None, timestamp=STAMP, extra={})
@example(type_="succeeded", sequence=1, incarnation="i", job_id=JOB, node="n", org="o",
         client=None, version=None, timestamp=STAMP, extra={"truncated": "x"})
def test_reply_fast_path_accepts_only_what_the_validator_accepts(
    type_: Any, sequence: Any, incarnation: Any, job_id: Any, node: Any, org: Any, client: Any,
    version: Any, timestamp: Any, extra: dict[str, Any],
) -> None:
    body = {"type": type_, "node": node, "org": org, "sequence": sequence,
            "timestamp": timestamp, "incarnation_id": incarnation, "job_id": job_id,
            "client": client, "protocol_version": version, **extra}
    fast = reply_sequence(body)  # never raises
    if fast is not None:
        assert parse_node_message(body).sequence == fast


def test_reply_fast_path_takes_stock_replies_and_leaves_the_rest_to_the_validator() -> None:
    for kind in ("ack_commit", "ack_run", "nack_commit", "nack_run", "aborted"):
        assert reply_sequence(node_reply(ME, kind, sequence=9, job_id=JOB)) == 9
    for succeeded in (True, False):
        assert reply_sequence(node_result(ME, succeeded=succeeded, sequence=3, job_id=JOB)) == 3
    # What the broker stores or shows, and text it cannot settle with isascii, take the long way
    long_way = [
        node_reply(ME, "nack_commit", sequence=1, job_id=JOB, reason="busy"),
        node_result(ME, succeeded=True, sequence=1, job_id=JOB, stdout="hi"),
        node_result(ME, succeeded=False, sequence=1, job_id=JOB, stderr="", stdout_dropped=3),
        {**node_reply(ME, "ack_run", sequence=1, job_id=JOB), "client": "hôte"},
        {**node_reply(ME, "ack_run", sequence=1, job_id=JOB), "client": "\ud800"},
        node_heartbeat(ME, sequence=1, job_id=None, job_state="idle"),
    ]
    for body in long_way:
        assert reply_sequence(body) is None
    with pytest.raises(ProtocolError):  # the validator still refuses the lone surrogate
        parse_node_message(long_way[4])
