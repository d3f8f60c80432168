"""Fast node-side message encoding for the emulator's hot path (heartbeats).

    HeartbeatEncoder(who: NodeIdentity, session_key: bytes)
        encoder.frames(sequence, job_id, job_state, timestamp) -> list[bytes]
            ``[header, body]`` byte-identical to
            ``pushd.protocol.encode(node_heartbeat(who, ...), hmac_key=session_key)``
            (tests/integration/test_emulator.py checks this), but built from precomputed JSON
            pieces: an emulator process sends thousands of these per second and
            ``json.dumps`` of the whole dict would be most of its cost.
    TimestampCache().now() -> str     the RFC 1123 timestamp, formatted once per second
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

from pushd.protocol.messages import PROTOCOL_VERSION, NodeIdentity
from pushd.protocol.timestamps import format_timestamp

_HEADER_PREFIX = b"Version:2.0;SigningMethod:hmac_sha256;Signature:"


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class HeartbeatEncoder:
    def __init__(self, who: NodeIdentity, session_key: bytes) -> None:
        self._key = session_key
        self._head = (
            '{"node":' + _json(who.node) + ',"client":' + _json(who.client)
            + ',"protocol_version":' + _json(PROTOCOL_VERSION) + ',"org":' + _json(who.org)
            + ',"type":"heartbeat","sequence":'
        )
        self._middle = ',"incarnation_id":' + _json(who.incarnation_id) + ',"job_state":'

    def frames(
        self, sequence: int, job_id: str | None, job_state: str, timestamp: str
    ) -> list[bytes]:
        body = (
            f'{self._head}{sequence},"timestamp":"{timestamp}"{self._middle}"{job_state}"'
            f',"job_id":{_json(job_id) if job_id is not None else "null"}}}'
        ).encode()
        mac = hmac.new(self._key, body, hashlib.sha256).digest()
        return [_HEADER_PREFIX + base64.b64encode(mac), body]


class TimestampCache:
    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._text = format_timestamp(second)
        return self._text
