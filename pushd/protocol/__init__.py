"""The ZeroMQ wire protocol shared by the broker and the node client: bytes in, bytes out.

No sockets here, no pyzmq, no server-only library: `client/` imports this package.

Frames (pushd.protocol.frames)
    encode(body, *, hmac_key=None | rsa_private_key=None, max_body_size=None) -> [header, body]
    decode(frames, *, key, max_body_size=65536, max_skew=300.0, now=None) -> dict
        size -> header -> JSON object -> signature -> timestamp, like the original. `key` is the
        HMAC session key (bytes), the server's RSAPublicKey, or ``callable(body) -> key | None``
        (look it up from body["org"] and body["node"]). Returns the verified body.
    open_frames(frames, *, max_body_size) -> Envelope(header, raw_body, body)   steps 1-3 only
    verify_signature(envelope, key) -> None                                     step 4 only
    parse_header(raw) -> Header(version, signing_method, signature); build_header(...)
    encode_body(body) -> bytes; MAX_HEADER_SIZE, DEFAULT_MAX_BODY_SIZE, DEFAULT_MAX_SKEW

Errors: every malformed input raises pushd.errors.ProtocolError(reason, detail), never anything
else. `reason` is one of REASONS:
    bad_frames, too_large, bad_header, bad_json, unknown_sender, bad_signature, bad_message,
    stale (from decode / parse_*_message) and bad_config (from parse_config and the session
    key helpers).

Signing (pushd.protocol.signing)
    hmac_sign(key, body) -> str; hmac_verify(key, body, signature) -> bool (constant time)
    rsa_sign(private_key, body) -> str; rsa_verify(public_key, body, signature) -> bool
    HMAC_SHA256, RSA2048_SHA1

Timestamps (pushd.protocol.timestamps)
    format_timestamp(when=None) -> "Sat, 12 May 2012 20:33:15 GMT"
    parse_timestamp(text) -> int; check_skew(text, *, max_skew, now=None) -> int

Messages (pushd.protocol.messages)
    server -> node builders: server_heartbeat, abort_message, ack_message, commit_message,
        run_message; validator parse_server_message(body) -> ServerMessage
    node -> server builders: NodeIdentity, node_heartbeat, node_reply, node_result;
        validator parse_node_message(body) -> NodeMessage; heartbeat_sequence(body) -> int and
        reply_sequence(body) -> int | None (the broker's fast paths); sender_of(body) ->
        (org, node) | None
    Type sets: SERVER_MESSAGE_TYPES, NODE_MESSAGE_TYPES, REPLY_TYPES, RESULT_TYPES,
        REASON_TYPES, JOB_MESSAGE_TYPES; PROTOCOL_VERSION = "2.0"; MAX_JOB_ID_BYTES = 64

Config document (pushd.protocol.config)
    build_config(...) -> dict; parse_config(document) -> NodeConfig
    new_session_key() -> bytes; encrypt_session_key(client_public_key, key) -> str;
    decrypt_session_key(client_private_key, text) -> bytes

Output (pushd.protocol.output)
    TRUNCATION_MARKER; tail_bytes(data, keep); cap_text(text, max_bytes, total=None) -> (text,
    dropped): a cut stream looks the same whether the node or the server cut it

Typical use, broker side::

    body = decode(frames, key=lambda b: session_keys.get(sender_of(b)),
                  max_body_size=settings.max_body_size)
    message = parse_node_message(body)

Node side::

    frames = encode(node_heartbeat(me, sequence=n, job_id=None, job_state="idle"),
                    hmac_key=session_key)
    body = decode(sub_frames, key=config.public_key, max_skew=config.max_message_skew)
    heartbeat = parse_server_message(body)

Each submodule's docstring has the details.
"""

from __future__ import annotations

from pushd.protocol.config import (
    NodeConfig,
    OutputCapability,
    build_config,
    decrypt_session_key,
    encrypt_session_key,
    new_session_key,
    parse_config,
)
from pushd.protocol.frames import (
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_MAX_SKEW,
    MAX_HEADER_SIZE,
    Envelope,
    Header,
    build_header,
    decode,
    encode,
    encode_body,
    open_frames,
    parse_header,
    verify_signature,
)
from pushd.protocol.messages import (
    JOB_MESSAGE_TYPES,
    MAX_JOB_ID_BYTES,
    NODE_MESSAGE_TYPES,
    PROTOCOL_VERSION,
    REASON_TYPES,
    REPLY_TYPES,
    RESULT_TYPES,
    SERVER_MESSAGE_TYPES,
    NodeIdentity,
    NodeMessage,
    ServerMessage,
    abort_message,
    ack_message,
    commit_message,
    heartbeat_sequence,
    node_heartbeat,
    node_output,
    node_reply,
    node_result,
    parse_node_message,
    parse_server_message,
    reply_sequence,
    run_message,
    sender_of,
    server_heartbeat,
)
from pushd.protocol.signing import (
    HMAC_SHA256,
    RSA2048_SHA1,
    hmac_sign,
    hmac_verify,
    rsa_sign,
    rsa_verify,
)
from pushd.protocol.timestamps import check_skew, format_timestamp, parse_timestamp

REASONS = frozenset(
    {
        "bad_frames",
        "too_large",
        "bad_header",
        "bad_json",
        "unknown_sender",
        "bad_signature",
        "bad_message",
        "stale",
        "bad_config",
    }
)

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_MAX_SKEW",
    "HMAC_SHA256",
    "JOB_MESSAGE_TYPES",
    "MAX_HEADER_SIZE",
    "MAX_JOB_ID_BYTES",
    "NODE_MESSAGE_TYPES",
    "PROTOCOL_VERSION",
    "REASONS",
    "REASON_TYPES",
    "REPLY_TYPES",
    "RESULT_TYPES",
    "RSA2048_SHA1",
    "SERVER_MESSAGE_TYPES",
    "Envelope",
    "Header",
    "NodeConfig",
    "NodeIdentity",
    "NodeMessage",
    "OutputCapability",
    "ServerMessage",
    "abort_message",
    "ack_message",
    "build_config",
    "build_header",
    "check_skew",
    "commit_message",
    "decode",
    "decrypt_session_key",
    "encode",
    "encode_body",
    "encrypt_session_key",
    "format_timestamp",
    "heartbeat_sequence",
    "hmac_sign",
    "hmac_verify",
    "new_session_key",
    "node_heartbeat",
    "node_output",
    "node_reply",
    "node_result",
    "open_frames",
    "parse_config",
    "parse_header",
    "parse_node_message",
    "parse_server_message",
    "parse_timestamp",
    "reply_sequence",
    "rsa_sign",
    "rsa_verify",
    "run_message",
    "sender_of",
    "server_heartbeat",
    "verify_signature",
]
