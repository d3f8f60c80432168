"""Two-frame messages ``[header, body]``: the header grammar, limits and the decode pipeline.

Header, as generated: ``Version:2.0;SigningMethod:hmac_sha256;Signature:<base64>``.
The parser accepts ``Signature:`` or ``SignedChecksum:``, ignores unknown clauses, accepts only
``Version:1.0`` / ``Version:2.0`` and the methods ``hmac_sha256`` (only with Version 2.0, as the
original) and ``rsa2048_sha1``. A known clause given twice is refused.

    MAX_HEADER_SIZE = 2048, DEFAULT_MAX_BODY_SIZE = 65536, DEFAULT_MAX_SKEW = 300.0
    Header(version, signing_method, signature)              frozen dataclass
    build_header(signing_method, signature, version="2.0") -> bytes
    parse_header(raw: bytes) -> Header
    encode_body(body: Mapping) -> bytes                     compact UTF-8 JSON, key order kept
    encode(body, *, hmac_key=None | rsa_private_key=None, max_body_size=None) -> list[bytes]
        Serialise and sign; exactly one key. Raises ProtocolError("bad_message") if the body
        is not JSON-serialisable, ("too_large") if it exceeds max_body_size when one is given.
    Envelope(header, raw_body, body)                        frozen dataclass
    open_frames(frames, *, max_body_size=65536) -> Envelope
        Steps 1-3 of the pipeline: frame count, sizes, header, JSON object.
    verify_signature(envelope, key) -> None
        Step 4. `key` is `bytes` (HMAC session key: only hmac_sha256 accepted) or an
        RSAPublicKey (only rsa2048_sha1 accepted).
    decode(frames, *, key, max_body_size=65536, max_skew=300.0, now=None) -> dict
        The whole pipeline in the original's order: size -> header -> JSON -> signature ->
        timestamp. `key` is a verify key or a callable ``key(body) -> key | None`` (typically a
        lookup by body["org"], body["node"]); None means "no such sender". Returns the body.

Every malformed input raises ProtocolError(reason, detail) and nothing else (exceptions raised
by a caller-supplied key callable pass through unchanged). Reasons:

    bad_frames      not exactly two frames supporting the buffer protocol (bytes, zmq.Frame)
    too_large       header > 2048 bytes or body > max_body_size
    bad_header      unparseable header, unknown version or signing method, missing signature
    bad_json        body not UTF-8, not JSON (NaN/Infinity/huge floats included), not an object
    unknown_sender  the key callable returned None
    bad_signature   signature does not verify, or the method does not match the key's kind
    bad_message     `timestamp` missing or not an RFC 1123 date
    stale           timestamp outside the skew window
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from pushd.errors import ProtocolError
from pushd.protocol.signing import (
    HMAC_SHA256,
    RSA2048_SHA1,
    SIGNING_METHODS,
    hmac_sign,
    hmac_verify,
    rsa_sign,
    rsa_verify,
)
from pushd.protocol.timestamps import check_skew

MAX_HEADER_SIZE = 2048
DEFAULT_MAX_BODY_SIZE = 65536
DEFAULT_MAX_SKEW = 300.0
PROTOCOL_VERSIONS = frozenset({"1.0", "2.0"})

VerifyKey = bytes | RSAPublicKey
KeySource = VerifyKey | Callable[[dict[str, Any]], VerifyKey | None]

@dataclass(frozen=True, slots=True)
class Header:
    """A parsed header. `signature` is the base64 text as received."""

    version: str
    signing_method: str
    signature: str


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message that passed the size, header and JSON checks but is not yet verified."""

    header: Header
    raw_body: bytes
    body: dict[str, Any]


def build_header(signing_method: str, signature: str, version: str = "2.0") -> bytes:
    """The header frame, clauses in the original's order."""
    return f"Version:{version};SigningMethod:{signing_method};Signature:{signature}".encode(
        "ascii"
    )


def parse_header(raw: bytes) -> Header:
    """Parse a header frame; ProtocolError("bad_header" | "too_large") when unacceptable."""
    if len(raw) > MAX_HEADER_SIZE:
        raise ProtocolError("too_large", f"header of {len(raw)} bytes (max {MAX_HEADER_SIZE})")
    # Fast path for the one form every current peer sends (every heartbeat takes it).
    if isinstance(raw, bytes) and raw.startswith(_CANONICAL_HMAC_PREFIX):
        raw_signature = raw[len(_CANONICAL_HMAC_PREFIX) :].strip()
        if raw_signature and raw_signature.isascii() and b";" not in raw_signature:
            return Header("2.0", HMAC_SHA256, raw_signature.decode("ascii"))
    try:
        text = bytes(raw).decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError("bad_header", "header is not ASCII") from None
    fields: dict[str, str] = {}
    for clause in text.split(";"):
        name, colon, value = clause.partition(":")
        name = name.strip()
        if not colon or name not in _HEADER_FIELDS:
            continue  # unknown clauses are ignored, as the original does
        field = _HEADER_FIELDS[name]
        if field in fields:
            raise ProtocolError("bad_header", f"clause {name!r} given twice")
        fields[field] = value.strip()
    version = fields.get("version")
    if version not in PROTOCOL_VERSIONS:
        raise ProtocolError("bad_header", f"unsupported version {version!r}")
    method = fields.get("method")
    if method not in SIGNING_METHODS:
        raise ProtocolError("bad_header", f"unsupported signing method {method!r}")
    if method == HMAC_SHA256 and version != "2.0":
        raise ProtocolError("bad_header", "hmac_sha256 requires Version:2.0")
    signature = fields.get("signature")
    if not signature:
        raise ProtocolError("bad_header", "no signature")
    return Header(version=version, signing_method=method, signature=signature)


_CANONICAL_HMAC_PREFIX = b"Version:2.0;SigningMethod:hmac_sha256;Signature:"

# Both signature spellings map to one field, so giving both counts as a duplicate.
_HEADER_FIELDS = {
    "Version": "version",
    "SigningMethod": "method",
    "Signature": "signature",
    "SignedChecksum": "signature",
}


def encode_body(body: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON of `body`, keys in insertion order; ProtocolError("bad_message")."""
    try:
        return json.dumps(
            body, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        ).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        # UnicodeEncodeError (a lone surrogate) is a ValueError.
        raise ProtocolError("bad_message", f"body is not serialisable: {exc}") from None


def encode(
    body: Mapping[str, Any],
    *,
    hmac_key: bytes | None = None,
    rsa_private_key: RSAPrivateKey | None = None,
    max_body_size: int | None = None,
) -> list[bytes]:
    """``[header, body]`` frames for `body`, signed with exactly one of the two keys."""
    if (hmac_key is None) == (rsa_private_key is None):
        raise ValueError("encode() needs exactly one of hmac_key and rsa_private_key")
    raw = encode_body(body)
    if max_body_size is not None and len(raw) > max_body_size:
        raise ProtocolError("too_large", f"body of {len(raw)} bytes (max {max_body_size})")
    if hmac_key is not None:
        header = build_header(HMAC_SHA256, hmac_sign(hmac_key, raw))
    else:
        assert rsa_private_key is not None
        header = build_header(RSA2048_SHA1, rsa_sign(rsa_private_key, raw))
    return [header, raw]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]!r} is out of range")
    return value


# Built once: json.loads with keyword arguments builds a new JSONDecoder on every call, which
# cost ~9 us of every heartbeat (bench/results-2026-11-24/RESULTS-shared-cores.md).
_JSON_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def _decode_json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = _JSON_DECODER.decode(raw.decode("utf-8"))
    except RecursionError:
        raise ProtocolError("bad_json", "body nests too deeply") from None
    except ValueError as exc:  # also UnicodeDecodeError and JSONDecodeError
        raise ProtocolError("bad_json", str(exc)[:200]) from None
    if not isinstance(body, dict):
        raise ProtocolError("bad_json", f"body is a JSON {type(body).__name__}, not an object")
    return body


def _as_bytes(frame: Any) -> bytes:
    if type(frame) is bytes:
        return frame
    try:
        # Anything with the buffer protocol: bytearray, memoryview, zmq.Frame (copy=False).
        view = memoryview(frame)
    except TypeError:
        raise ProtocolError("bad_frames", "frames must be bytes") from None
    return view.tobytes()


def open_frames(
    frames: Sequence[bytes], *, max_body_size: int = DEFAULT_MAX_BODY_SIZE
) -> Envelope:
    """Check frame count and sizes, parse the header and the JSON body (no signature check)."""
    # The broker's hot path passes a list of two bytes: check that exactly first, cheaply.
    if (type(frames) is not list or len(frames) != 2) and (
        not isinstance(frames, Sequence) or len(frames) != 2
    ):
        count = len(frames) if isinstance(frames, Sequence) else "?"
        raise ProtocolError("bad_frames", f"expected [header, body], got {count} frames")
    raw_header, raw_body = frames
    if type(raw_header) is not bytes:
        raw_header = _as_bytes(raw_header)
    if type(raw_body) is not bytes:
        raw_body = _as_bytes(raw_body)
    if len(raw_body) > max_body_size:
        raise ProtocolError("too_large", f"body of {len(raw_body)} bytes (max {max_body_size})")
    header = parse_header(raw_header)
    return Envelope(header=header, raw_body=raw_body, body=_decode_json_object(raw_body))


def verify_signature(envelope: Envelope, key: VerifyKey) -> None:
    """Raise ProtocolError("bad_signature") unless `envelope` is signed by `key`."""
    method = envelope.header.signing_method
    if isinstance(key, bytes):
        if method != HMAC_SHA256:
            raise ProtocolError("bad_signature", f"expected hmac_sha256, got {method}")
        valid = hmac_verify(key, envelope.raw_body, envelope.header.signature)
    elif isinstance(key, RSAPublicKey):
        if method != RSA2048_SHA1:
            raise ProtocolError("bad_signature", f"expected rsa2048_sha1, got {method}")
        valid = rsa_verify(key, envelope.raw_body, envelope.header.signature)
    else:
        raise TypeError(f"verify key must be bytes or RSAPublicKey, not {type(key).__name__}")
    if not valid:
        raise ProtocolError("bad_signature", f"{method} signature does not match the body")


def decode(
    frames: Sequence[bytes],
    *,
    key: KeySource,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    max_skew: float = DEFAULT_MAX_SKEW,
    now: float | None = None,
) -> dict[str, Any]:
    """Validate `frames` completely and return the body (see the module docstring)."""
    envelope = open_frames(frames, max_body_size=max_body_size)
    verify_key = key(envelope.body) if callable(key) else key
    if verify_key is None:
        raise ProtocolError("unknown_sender", "no key for this sender")
    verify_signature(envelope, verify_key)
    timestamp = envelope.body.get("timestamp")
    if timestamp is None:
        raise ProtocolError("bad_message", "no timestamp")
    check_skew(timestamp, max_skew=max_skew, now=now)
    return envelope.body
