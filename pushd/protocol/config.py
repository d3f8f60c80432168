"""The node config document (``GET /organizations/ORG/pushy/config/NODE``) and session keys.

    build_config(*, host, heartbeat_port, command_port, interval, node, organization,
                 public_key_pem, encoded_session_key, lifetime, max_message_skew,
                 max_body_size, incarnation_id, curve_public_key=None,
                 offline_threshold=3, online_threshold=2, output=None) -> dict
        The response body with the original's key names, nesting and order. `interval` is in
        seconds (float: heartbeat_interval ms / 1000). `curve_public_key` (40-char Z85) is
        omitted when None (for 1.x-protocol clients). An IPv6 `host` is bracketed in the
        ``tcp://`` addresses. `output` (an OutputCapability; pushd servers, never for 1.x
        clients) adds ``"capabilities": {"output": {"interval", "chunk_bytes", "max_bytes",
        "rate_bytes"}}``: this server takes live `output` messages, within these bounds. Stock
        clients ignore the key; pushd's client sends `output` only when it is there.
    parse_config(document: Mapping | bytes | str) -> NodeConfig
        Client side: validates every field (types, ranges, RSA public key PEM, Z85 curve key,
        session key method) and raises ProtocolError("bad_config", detail) on anything wrong.
        ``max_body_size`` and ``curve_public_key`` may be absent (older servers).
    NodeConfig                                             frozen dataclass (fields below)
    encrypt_session_key(client_public_key: RSAPublicKey, key: bytes) -> str
        base64 of RSA PKCS#1 v1.5 encryption of the 32-byte HMAC session key.
    decrypt_session_key(client_private_key: RSAPrivateKey, text: str) -> bytes
        The 32-byte key; ProtocolError("bad_config") if it does not decrypt to 32 bytes.
        (OpenSSL's implicit rejection turns a wrong key into random bytes of random length,
        so a wrong key is caught by the length check with overwhelming probability.)
    new_session_key() -> bytes                             32 random bytes
    OutputCapability(interval=0.25, chunk_bytes=16384, max_bytes, rate_bytes)
        the live-output bounds a server advertises: a chunk at most every `interval` seconds
        or when `chunk_bytes` are waiting, at most `max_bytes` sent per stream of a job
        (output_max_bytes) and at most `rate_bytes` per second per stream (a backlog beyond it
        is coalesced: the oldest unsent bytes are skipped, the chunk's offset says how many).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from pushd.chefauth import load_public_key
from pushd.errors import ProtocolError
from pushd.protocol.signing import HMAC_SHA256

SESSION_KEY_BYTES = 32
MAX_CONFIG_DOCUMENT = 64 * 1024
_Z85_ALPHABET = frozenset(
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
)
_MAX_TEXT = 255


@dataclass(frozen=True, slots=True)
class OutputCapability:
    """Live-output bounds advertised in the config document (see the module doc)."""

    max_bytes: int
    interval: float = 0.25
    chunk_bytes: int = 16 * 1024
    rate_bytes: int = 64 * 1024

    def document(self) -> dict[str, Any]:
        return {"interval": self.interval, "chunk_bytes": self.chunk_bytes,
                "max_bytes": self.max_bytes, "rate_bytes": self.rate_bytes}


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """A validated config document as the node client uses it."""

    host: str
    out_addr: str
    command_addr: str
    interval: float  # seconds between heartbeats
    offline_threshold: int
    online_threshold: int
    node: str
    organization: str
    public_key_pem: str
    public_key: RSAPublicKey  # the server's heartbeat-signing key, loaded
    curve_public_key: str | None  # Z85; None: server offers no Curve (1.x protocol)
    session_key_method: str
    encoded_session_key: str
    lifetime: int
    max_message_skew: int
    max_body_size: int | None  # None: not sent by the server (older than 2.2.10)
    incarnation_id: str
    output: OutputCapability | None = None  # None: the server takes no `output` messages


def _tcp_address(host: str, port: int) -> str:
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


def build_config(
    *,
    host: str,
    heartbeat_port: int,
    command_port: int,
    interval: float,
    node: str,
    organization: str,
    public_key_pem: str,
    encoded_session_key: str,
    lifetime: int,
    max_message_skew: int,
    max_body_size: int,
    incarnation_id: str,
    curve_public_key: str | None = None,
    offline_threshold: int = 3,
    online_threshold: int = 2,
    output: OutputCapability | None = None,
) -> dict[str, Any]:
    """The config response body, keys in the original's order."""
    document: dict[str, Any] = {
        "type": "config",
        "host": host,
        "push_jobs": {
            "heartbeat": {
                "out_addr": _tcp_address(host, heartbeat_port),
                "command_addr": _tcp_address(host, command_port),
                "interval": float(interval),
                "offline_threshold": offline_threshold,
                "online_threshold": online_threshold,
            }
        },
        "node": node,
        "organization": organization,
        "public_key": public_key_pem,
    }
    if curve_public_key is not None:
        document["curve_public_key"] = curve_public_key
    document["encoded_session_key"] = {"method": HMAC_SHA256, "key": encoded_session_key}
    document["lifetime"] = lifetime
    document["max_message_skew"] = max_message_skew
    document["max_body_size"] = max_body_size
    document["incarnation_id"] = incarnation_id
    if output is not None:
        document["capabilities"] = {"output": output.document()}
    return document


# --------------------------------------------------------------------------- parsing


def _bad(detail: str) -> ProtocolError:
    return ProtocolError("bad_config", detail)


def _text(doc: Mapping[str, Any], name: str, max_length: int | None = _MAX_TEXT) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value:
        raise _bad(f"{name} must be a non-empty string")
    if max_length is not None and len(value) > max_length:
        raise _bad(f"{name} is longer than {max_length} characters")
    return value


def _int(doc: Mapping[str, Any], name: str, *, minimum: int = 1, required: bool = True) -> Any:
    value = doc.get(name)
    if value is None and not required:
        return None
    if type(value) is not int or not minimum <= value < 2**63:
        raise _bad(f"{name} must be an integer >= {minimum}")
    return value


def _address(doc: Mapping[str, Any], name: str) -> str:
    value = _text(doc, name)
    if not value.startswith("tcp://") or ":" not in value[len("tcp://") :]:
        raise _bad(f"{name} must look like tcp://HOST:PORT, not {value!r}")
    return value


def _public_key(doc: Mapping[str, Any]) -> tuple[str, RSAPublicKey]:
    pem = _text(doc, "public_key", 16 * 1024)
    try:
        return pem, load_public_key(pem)
    except ValueError as exc:
        raise _bad(f"public_key: {exc}") from None


def _curve_key(doc: Mapping[str, Any]) -> str | None:
    value = doc.get("curve_public_key")
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 40 or not set(value) <= _Z85_ALPHABET:
        raise _bad("curve_public_key must be 40 Z85 characters")
    return value


def _object(doc: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = doc.get(name)
    if not isinstance(value, dict):
        raise _bad(f"{name} must be an object")
    return value


def _load_document(document: Mapping[str, Any] | bytes | str) -> Mapping[str, Any]:
    if isinstance(document, Mapping):
        return document
    if not isinstance(document, (bytes, str)):
        raise _bad("config must be a JSON object")
    if len(document) > MAX_CONFIG_DOCUMENT:
        raise _bad(f"config document larger than {MAX_CONFIG_DOCUMENT} bytes")
    try:
        text = document.decode("utf-8") if isinstance(document, bytes) else document
        loaded = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _bad(f"config is not JSON: {str(exc)[:200]}") from None
    if not isinstance(loaded, dict):
        raise _bad("config must be a JSON object")
    return loaded


def parse_config(document: Mapping[str, Any] | bytes | str) -> NodeConfig:
    """Validate a config document (already decoded, or raw JSON)."""
    doc = _load_document(document)
    if doc.get("type") != "config":
        raise _bad("type must be 'config'")
    heartbeat = _object(_object(doc, "push_jobs"), "heartbeat")
    interval = heartbeat.get("interval")
    if (
        isinstance(interval, bool)
        or not isinstance(interval, (int, float))
        or not math.isfinite(interval)
        or not 0 < interval <= 86400
    ):
        raise _bad("push_jobs.heartbeat.interval must be a number of seconds in (0, 86400]")
    session = _object(doc, "encoded_session_key")
    method = session.get("method")
    if method != HMAC_SHA256:
        raise _bad(f"encoded_session_key.method must be hmac_sha256, not {method!r}"[:200])
    pem, key = _public_key(doc)
    return NodeConfig(
        host=_text(doc, "host"),
        out_addr=_address(heartbeat, "out_addr"),
        command_addr=_address(heartbeat, "command_addr"),
        interval=float(interval),
        offline_threshold=_int(heartbeat, "offline_threshold"),
        online_threshold=_int(heartbeat, "online_threshold"),
        node=_text(doc, "node"),
        organization=_text(doc, "organization"),
        public_key_pem=pem,
        public_key=key,
        curve_public_key=_curve_key(doc),
        session_key_method=method,
        encoded_session_key=_text(session, "key", 4096),
        lifetime=_int(doc, "lifetime"),
        max_message_skew=_int(doc, "max_message_skew"),
        max_body_size=_int(doc, "max_body_size", minimum=1024, required=False),
        incarnation_id=_text(doc, "incarnation_id"),
        output=_output_capability(doc),
    )


def _output_capability(doc: Mapping[str, Any]) -> OutputCapability | None:
    """The server's live-output bounds; None when it advertises none (or nothing usable:
    a capability this client cannot read is treated as absent, never as a broken config)."""
    capabilities = doc.get("capabilities")
    if not isinstance(capabilities, dict) or not isinstance(capabilities.get("output"), dict):
        return None
    spec = capabilities["output"]
    interval = spec.get("interval", 0.25)
    numbers = [spec.get(k) for k in ("max_bytes", "chunk_bytes", "rate_bytes")]
    if (
        isinstance(interval, bool) or not isinstance(interval, (int, float))
        or not math.isfinite(interval) or not 0.05 <= interval <= 60
        or any(type(n) is not int or not 0 <= n < 2**63 for n in numbers)
    ):
        return None
    max_bytes, chunk_bytes, rate_bytes = numbers
    return OutputCapability(max_bytes=max_bytes, interval=float(interval),
                            chunk_bytes=max(1024, min(chunk_bytes, 16 * 1024)),
                            rate_bytes=rate_bytes)


# --------------------------------------------------------------------------- session keys


def new_session_key() -> bytes:
    """A fresh 32-byte HMAC session key."""
    return secrets.token_bytes(SESSION_KEY_BYTES)


def encrypt_session_key(client_public_key: RSAPublicKey, key: bytes) -> str:
    """base64(RSA-PKCS#1-v1.5-encrypt(client_public_key, key)) for ``encoded_session_key``."""
    if len(key) != SESSION_KEY_BYTES:
        raise ValueError(f"a session key is {SESSION_KEY_BYTES} bytes, not {len(key)}")
    return base64.b64encode(client_public_key.encrypt(key, padding.PKCS1v15())).decode("ascii")


def decrypt_session_key(client_private_key: RSAPrivateKey, text: str) -> bytes:
    """The 32-byte session key from ``encoded_session_key.key``."""
    try:
        ciphertext = base64.b64decode(text, validate=False)
        key = client_private_key.decrypt(ciphertext, padding.PKCS1v15())
    except (binascii.Error, ValueError, TypeError) as exc:
        raise _bad(f"session key does not decrypt: {exc}") from None
    if len(key) != SESSION_KEY_BYTES:
        raise _bad("session key does not decrypt to 32 bytes (wrong client key?)")
    return key
