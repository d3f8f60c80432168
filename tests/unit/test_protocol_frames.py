"""Header grammar, size limits and the decode pipeline; fuzzing proves decode only raises
ProtocolError."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
import zmq
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pushd.errors import ProtocolError
from pushd.protocol import (
    REASONS,
    build_header,
    decode,
    encode,
    encode_body,
    format_timestamp,
    open_frames,
    parse_header,
    parse_node_message,
    parse_server_message,
    sender_of,
)

KEY = b"K" * 32
NOW = 1_700_000_000.0
STAMP = format_timestamp(NOW)


@pytest.fixture(scope="module")
def server_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def body(**extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"node": "n1", "org": "o1", "type": "heartbeat", "sequence": 1}
    out["timestamp"] = STAMP
    out.update(extra)
    return out


def reason_of(frames: Any, **kwargs: Any) -> str:
    kwargs.setdefault("key", KEY)
    kwargs.setdefault("now", NOW)
    with pytest.raises(ProtocolError) as caught:
        decode(frames, **kwargs)
    return caught.value.reason


def signed(raw: bytes, key: bytes = KEY, prefix: bytes = b"Version:2.0;SigningMethod:hmac_sha256;"
           ) -> list[bytes]:
    signature = base64.b64encode(hmac.new(key, raw, hashlib.sha256).digest())
    return [prefix + b"Signature:" + signature, raw]


# --------------------------------------------------------------------------- header


def test_header_is_generated_in_the_original_order() -> None:
    assert build_header("hmac_sha256", "abc=") == (
        b"Version:2.0;SigningMethod:hmac_sha256;Signature:abc="
    )
    frames = encode({"type": "abort"}, hmac_key=KEY)
    expected = base64.b64encode(hmac.new(KEY, frames[1], hashlib.sha256).digest()).decode()
    assert frames[0] == f"Version:2.0;SigningMethod:hmac_sha256;Signature:{expected}".encode()
    assert frames[1] == b'{"type":"abort"}'


def test_header_parser_accepts_old_spellings_and_ignores_unknown_clauses() -> None:
    header = parse_header(b"Version:1.0;SigningMethod:rsa2048_sha1;SignedChecksum:abc=")
    assert (header.version, header.signing_method, header.signature) == (
        "1.0", "rsa2048_sha1", "abc="
    )
    header = parse_header(b"Foo:bar;SigningMethod:hmac_sha256;Version:2.0;Signature:xy==;Z")
    assert (header.version, header.signing_method, header.signature) == (
        "2.0", "hmac_sha256", "xy=="
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"garbage",
        b"Version:3.0;SigningMethod:hmac_sha256;Signature:abc=",
        b"SigningMethod:hmac_sha256;Signature:abc=",  # no version
        b"Version:2.0;SigningMethod:md5;Signature:abc=",
        b"Version:2.0;Signature:abc=",  # no method
        b"Version:2.0;SigningMethod:hmac_sha256",  # no signature
        b"Version:2.0;SigningMethod:hmac_sha256;Signature:",
        b"Version:1.0;SigningMethod:hmac_sha256;Signature:abc=",  # HMAC needs 2.0
        b"Version:2.0;SigningMethod:hmac_sha256;Signature:a=;SignedChecksum:b=",  # two sigs
        b"Version:2.0;Version:1.0;SigningMethod:rsa2048_sha1;Signature:a=",
        "Version:2.0;SigningMethod:hmac_sha256;Signature:\u00e9".encode(),
    ],
)
def test_bad_headers_are_refused(raw: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_header(raw)
    assert caught.value.reason == "bad_header"


def test_header_limit_is_2048_bytes() -> None:
    prefix = b"Version:2.0;SigningMethod:hmac_sha256;Signature:"
    parse_header(prefix + b"A" * (2048 - len(prefix)))
    with pytest.raises(ProtocolError) as caught:
        parse_header(prefix + b"A" * (2049 - len(prefix)))
    assert caught.value.reason == "too_large"


# --------------------------------------------------------------------------- pipeline


def test_decode_returns_the_verified_body() -> None:
    frames = encode(body(job_id=None), hmac_key=KEY)
    assert decode(frames, key=KEY, now=NOW) == body(job_id=None)


def test_decode_accepts_bytearray_memoryview_and_zmq_frames() -> None:
    header, raw = encode(body(), hmac_key=KEY)
    assert decode([bytearray(header), memoryview(raw)], key=KEY, now=NOW) == body()
    # What a pyzmq socket returns from recv_multipart(copy=False).
    assert decode([zmq.Frame(header), zmq.Frame(raw)], key=KEY, now=NOW) == body()
    assert decode((header, memoryview(raw)[::1]), key=KEY, now=NOW) == body()


def test_sender_of_is_a_safe_lookup_key() -> None:
    assert sender_of(body()) == ("o1", "n1")
    assert sender_of({"org": ["o1"], "node": "n1"}) is None
    assert sender_of({"node": "n1"}) is None
    # An unhashable org/node cannot crash a dict lookup done through sender_of.
    keys = {("o1", "n1"): KEY}
    frames = encode(body(org={"a": 1}), hmac_key=KEY)
    assert reason_of(frames, key=lambda b: keys.get(sender_of(b))) == "unknown_sender"


def test_key_callable_sees_the_body_and_none_means_unknown_sender() -> None:
    seen: list[dict[str, Any]] = []
    keys = {("o1", "n1"): KEY}

    def lookup(decoded: dict[str, Any]) -> bytes | None:
        seen.append(decoded)
        return keys.get((decoded.get("org"), decoded.get("node")))

    decode(encode(body(), hmac_key=KEY), key=lookup, now=NOW)
    assert seen[0]["node"] == "n1"
    assert reason_of(encode(body(node="n2"), hmac_key=KEY), key=lookup) == "unknown_sender"


def test_wrong_key_or_tampered_body_is_bad_signature() -> None:
    frames = encode(body(), hmac_key=KEY)
    assert reason_of(frames, key=b"X" * 32) == "bad_signature"
    tampered = [frames[0], frames[1].replace(b'"n1"', b'"n9"')]
    assert reason_of(tampered) == "bad_signature"


def test_signing_method_must_match_the_kind_of_key(server_key: rsa.RSAPrivateKey) -> None:
    rsa_frames = encode(body(), rsa_private_key=server_key)
    assert rsa_frames[0].startswith(b"Version:2.0;SigningMethod:rsa2048_sha1;Signature:")
    assert decode(rsa_frames, key=server_key.public_key(), now=NOW) == body()
    # An RSA-signed message is not accepted where an HMAC key is expected, and vice versa.
    assert reason_of(rsa_frames, key=KEY) == "bad_signature"
    assert reason_of(encode(body(), hmac_key=KEY), key=server_key.public_key()) == (
        "bad_signature"
    )


def test_rsa_heartbeat_fails_with_another_public_key(server_key: rsa.RSAPrivateKey) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    frames = encode(body(), rsa_private_key=server_key)
    assert reason_of(frames, key=other.public_key()) == "bad_signature"


def test_old_header_spelling_is_verified_too() -> None:
    raw = encode_body(body())
    frames = signed(raw)
    frames[0] = frames[0].replace(b"Signature:", b"SignedChecksum:")
    assert decode(frames, key=KEY, now=NOW) == body()


def test_body_size_limit_is_a_parameter() -> None:
    raw = encode_body(body(pad="x" * 1000))
    frames = signed(raw)
    assert decode(frames, key=KEY, now=NOW, max_body_size=len(raw))["pad"] == "x" * 1000
    assert reason_of(frames, max_body_size=len(raw) - 1) == "too_large"


def test_default_body_limit_is_65536_bytes() -> None:
    filler = "x" * 65536
    raw = encode_body(body(pad=filler))
    assert reason_of(signed(raw)) == "too_large"
    raw = encode_body(body(pad=filler[: 65536 - len(encode_body(body(pad="")))]))
    assert len(raw) == 65536
    assert decode(signed(raw), key=KEY, now=NOW)["type"] == "heartbeat"


def test_encode_refuses_bodies_over_a_given_limit() -> None:
    with pytest.raises(ProtocolError) as caught:
        encode(body(pad="x" * 100), hmac_key=KEY, max_body_size=100)
    assert caught.value.reason == "too_large"


@pytest.mark.parametrize(
    "bad", [{"x": float("nan")}, {"x": object()}, {"x": "\ud800"}, {"x": b"bytes"}]
)
def test_encode_refuses_unserialisable_bodies(bad: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as caught:
        encode(bad, hmac_key=KEY)
    assert caught.value.reason == "bad_message"


def test_encode_needs_exactly_one_key(server_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError):
        encode(body())
    with pytest.raises(ValueError):
        encode(body(), hmac_key=KEY, rsa_private_key=server_key)


@pytest.mark.parametrize(
    "frames",
    [[], [b"only one"], [b"a", b"b", b"c"], None, b"ab", "ab", ["str", "str"], [1, 2],
     [None, b"{}"], {b"h": b"b"}],
)
def test_wrong_frame_shapes_are_bad_frames(frames: Any) -> None:
    assert reason_of(frames) == "bad_frames"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'"a string"',
        b"null",
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": 1e999}',
        b"\xff\xfe{}",
        '{"a": "é"}'.encode("latin-1"),
        '{"a": 1}'.encode("utf-16"),
        b"[" * 30000 + b"]" * 30000,
        b'{"a": ' + b"9" * 5000 + b"}",
    ],
    ids=lambda raw: repr(raw[:12]),
)
def test_bodies_that_are_not_json_objects_are_bad_json(raw: bytes) -> None:
    assert reason_of(signed(raw)) == "bad_json"


def test_size_is_checked_before_the_header() -> None:
    assert reason_of([b"nonsense", b"{}" * 40000]) == "too_large"


def test_header_is_checked_before_the_json() -> None:
    assert reason_of([b"nonsense", b"not json"]) == "bad_header"


def test_json_is_checked_before_the_signature() -> None:
    assert reason_of([b"Version:2.0;SigningMethod:hmac_sha256;Signature:AAAA", b"{"]) == (
        "bad_json"
    )


def test_signature_is_checked_before_the_timestamp() -> None:
    frames = encode(body(timestamp="not a date"), hmac_key=KEY)
    assert reason_of([frames[0], frames[1] + b" "]) == "bad_signature"


@pytest.mark.parametrize("offset", [-400, 400])
def test_stale_messages_are_refused_after_verification(offset: int) -> None:
    frames = encode(body(timestamp=format_timestamp(NOW + offset)), hmac_key=KEY)
    assert reason_of(frames) == "stale"
    assert decode(frames, key=KEY, now=NOW, max_skew=500)["type"] == "heartbeat"


@pytest.mark.parametrize("stamp", [None, 5, "soon"])
def test_missing_or_malformed_timestamp_is_bad_message(stamp: Any) -> None:
    fields = body()
    if stamp is None:
        del fields["timestamp"]
    else:
        fields["timestamp"] = stamp
    assert reason_of(encode(fields, hmac_key=KEY)) == "bad_message"


def test_open_frames_does_not_need_a_key() -> None:
    envelope = open_frames(encode(body(), hmac_key=KEY))
    assert envelope.header.signing_method == "hmac_sha256"
    assert envelope.body["node"] == "n1"
    assert json.loads(envelope.raw_body) == body()


# --------------------------------------------------------------------------- fuzzing

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_only_protocol_errors(frames: Any, key: Any = KEY) -> None:
    try:
        decoded = decode(frames, key=key, now=NOW)
    except ProtocolError as exc:
        assert exc.reason in REASONS
        return
    assert isinstance(decoded, dict)


@FUZZ
@given(st.lists(st.binary(max_size=300), max_size=4))
def test_random_frames_raise_only_protocol_error(frames: list[bytes]) -> None:
    assert_only_protocol_errors(frames)


@FUZZ
@given(st.binary(max_size=200), st.binary(max_size=400))
def test_random_header_and_body_raise_only_protocol_error(header: bytes, raw: bytes) -> None:
    assert_only_protocol_errors([b"Version:2.0;SigningMethod:hmac_sha256;" + header, raw])
    assert_only_protocol_errors(signed(raw))


@FUZZ
@given(
    st.binary(max_size=400),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3).map(
        lambda fields: json.dumps(fields).encode()
    ),
)
def test_random_rsa_signatures_raise_only_protocol_error(
    server_key: rsa.RSAPrivateKey, signature: bytes, raw: bytes
) -> None:
    # The body is a JSON object so every example reaches the RSA verification step.
    header = b"Version:2.0;SigningMethod:rsa2048_sha1;Signature:" + base64.b64encode(signature)
    assert_only_protocol_errors([header, raw], key=server_key.public_key())


@FUZZ
@given(
    st.integers(min_value=0, max_value=1),
    st.lists(
        st.tuples(st.sampled_from(["flip", "insert", "delete", "truncate"]),
                  st.integers(min_value=0), st.integers(min_value=0, max_value=255)),
        min_size=1, max_size=6,
    ),
)
def test_mutated_valid_frames_raise_only_protocol_error(
    which: int, mutations: list[tuple[str, int, int]]
) -> None:
    frames = encode(body(job_id="a" * 32, job_state="idle"), hmac_key=KEY)
    target = bytearray(frames[which])
    for op, position, value in mutations:
        index = position % (len(target) + 1)
        if op == "flip" and target:
            target[index % len(target)] ^= value or 1
        elif op == "insert":
            target.insert(index, value)
        elif op == "delete" and target:
            del target[index % len(target)]
        elif op == "truncate":
            del target[index:]
    frames[which] = bytes(target)
    assert_only_protocol_errors(frames)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
FIELD_NAMES = st.sampled_from(
    ["node", "org", "client", "type", "sequence", "timestamp", "incarnation_id", "job_id",
     "job_state", "reason", "stdout", "stderr", "truncated", "server", "command", "user", "dir",
     "env", "file", "capture", "run_timeout", "protocol_version"]
)
MESSAGE_TYPES = st.sampled_from(
    ["heartbeat", "abort", "ack", "commit", "run", "ack_commit", "nack_commit", "ack_run",
     "nack_run", "succeeded", "failed", "aborted", "bogus"]
)


@FUZZ
@given(JSON_VALUES)
def test_signed_random_json_values_raise_only_protocol_error(value: Any) -> None:
    assert_only_protocol_errors(signed(json.dumps(value).encode()))


VALID_BODIES = [
    body(client="n1", incarnation_id="i-1", job_id=None, job_state="idle"),
    body(type="succeeded", incarnation_id="i-1", job_id="j", stdout="o", stderr="e",
         truncated={"stdout": 1, "stderr": 0}),
    body(type="nack_commit", incarnation_id="i-1", job_id="j", reason="busy"),
    {"sequence": 1, "timestamp": STAMP, "type": "commit", "job_id": "j", "server": "s",
     "command": "c", "user": "u", "dir": "/", "env": {"A": "b"}, "file": "raw:x",
     "capture": True, "run_timeout": 5},
    {"sequence": 1, "timestamp": STAMP, "server": "s", "type": "heartbeat",
     "incarnation_id": "i"},
    {"sequence": 1, "timestamp": STAMP, "type": "run", "job_id": "j"},
]


@FUZZ
@given(
    st.sampled_from(VALID_BODIES),
    st.one_of(st.none(), MESSAGE_TYPES),
    st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=4),
)
def test_parsers_raise_only_protocol_error_on_random_fields(
    base: dict[str, Any], type_: str | None, fields: dict[str, Any]
) -> None:
    candidate = {**base, **fields}
    if type_ is not None:
        candidate["type"] = type_
    for parse in (parse_node_message, parse_server_message):
        try:
            parse(candidate)
        except ProtocolError as exc:
            assert exc.reason == "bad_message"
