"""Fast node-side message encoding and decoding for the emulator's hot path.

    HeartbeatEncoder(who: NodeIdentity, session_key: bytes)
        encoder.frames(sequence, job_id, job_state, timestamp) -> list[bytes]
            ``[header, body]`` byte-identical to
            ``pushd.protocol.encode(node_heartbeat(who, ...), hmac_key=session_key)``
            (tests/integration/test_emulator.py checks this), but built from precomputed JSON
            pieces: an emulator process sends thousands of these per second and
            ``json.dumps`` of the whole dict would be most of its cost.
    ReplyEncoder(who: NodeIdentity, session_key: bytes)
        encoder.frames(type, sequence, job_id, timestamp) -> list[bytes]
            ``[header, body]`` byte-identical to ``encode(node_reply(who, type, ...))`` (and to
            ``node_result`` without output: ``succeeded``/``failed``), the same way: a job's
            replies are most of what an emulator sends while it runs.
    CommandDecoder()                  one per worker process, shared by its nodes
        decoder.decode(frames, key, *, max_skew, max_body_size) -> Command | None
            a server -> node command verified as ``frames.decode`` does (HMAC over the body,
            the timestamp's skew, the size bound) and parsed as ``parse_server_message`` does,
            None when any check fails. The broker encodes a job's commit/run once and only
            the sequence and timestamp differ per node, so the rest of the body (its "tail")
            is parsed once per worker and looked up afterwards; a body not in that shape goes
            through the full decode.
    Command(type, job_id, capture)    what a node reads of a command
    TimestampCache().now() -> str     the RFC 1123 timestamp, formatted once per second
    TIMESTAMPS                        one TimestampCache per process (what the nodes share)
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import time
from typing import NamedTuple

from pushd.errors import ProtocolError
from pushd.protocol.frames import decode
from pushd.protocol.messages import PROTOCOL_VERSION, NodeIdentity, parse_server_message
from pushd.protocol.timestamps import check_skew, format_timestamp

_HEADER_PREFIX = b"Version:2.0;SigningMethod:hmac_sha256;Signature:"


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_JOB_IDS: dict[str, str] = {}  # job id -> its JSON text (a job's id is sent many times)


def _json(value: object) -> str:
    return _ENCODER.encode(value)


def _job_json(job_id: str | None) -> str:
    if job_id is None:
        return "null"
    text = _JOB_IDS.get(job_id)
    if text is None:
        if len(_JOB_IDS) >= 256:
            _JOB_IDS.clear()
        text = _JOB_IDS[job_id] = _json(job_id)
    return text


# HMACs below name their digest ("sha256"): cheaper per call than the hashlib constructor
# (see pushd/protocol/signing.py).


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
            f',"job_id":{_job_json(job_id)}}}'
        ).encode()
        mac = hmac.digest(self._key, body, "sha256")
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


class ReplyEncoder:
    def __init__(self, who: NodeIdentity, session_key: bytes) -> None:
        self._key = session_key
        self._head = (
            '{"node":' + _json(who.node) + ',"client":' + _json(who.client)
            + ',"protocol_version":' + _json(PROTOCOL_VERSION) + ',"org":' + _json(who.org)
            + ',"type":"'
        )
        self._incarnation = ',"incarnation_id":' + _json(who.incarnation_id) + ',"job_id":'

    def frames(self, type_: str, sequence: int, job_id: str | None,
               timestamp: str) -> list[bytes]:
        body = (
            f'{self._head}{type_}","sequence":{sequence},"timestamp":"{timestamp}"'
            f'{self._incarnation}{_job_json(job_id)}}}'
        ).encode()
        mac = hmac.digest(self._key, body, "sha256")
        return [_HEADER_PREFIX + base64.b64encode(mac), body]


class Command(NamedTuple):
    type: str
    job_id: str | None
    capture: bool


_SEQUENCE_PREFIX = b'{"sequence":'
_TIMESTAMP_MARK = b',"timestamp":"'
TAIL_CACHE = 64  # distinct command tails kept per worker (a job has two: commit, run)


class CommandDecoder:
    def __init__(self) -> None:
        self._tails: dict[bytes, Command] = {}

    def decode(self, frames: list[bytes], key: bytes, *, max_skew: float,
               max_body_size: int) -> Command | None:
        if len(frames) != 2:
            return None
        header, body = bytes(frames[0]), bytes(frames[1])
        if len(body) > max_body_size:
            return None
        tail = self._tail(body)
        if tail is None or not header.startswith(_HEADER_PREFIX):
            return self._full(frames, key, max_skew, max_body_size, None)
        try:
            received = base64.b64decode(header[len(_HEADER_PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(received, hmac.digest(key, body, "sha256")):
            return None
        rest, timestamp = tail
        try:
            check_skew(timestamp, max_skew=max_skew)
        except ProtocolError:
            return None
        found = self._tails.get(rest)
        if found is None:
            return self._full(frames, key, max_skew, max_body_size, rest)
        return found

    @staticmethod
    def _tail(body: bytes) -> tuple[bytes, str] | None:
        """(the body after its timestamp, the timestamp) for ``{"sequence":N,"timestamp":..``"""
        if not body.startswith(_SEQUENCE_PREFIX):
            return None
        mark = body.find(_TIMESTAMP_MARK, len(_SEQUENCE_PREFIX))
        if mark < 0 or not body[len(_SEQUENCE_PREFIX):mark].isdigit():
            return None
        start = mark + len(_TIMESTAMP_MARK)
        end = body.find(b'"', start)
        if end < 0 or end - start > 40:
            return None
        try:
            return body[end + 1:], body[start:end].decode("ascii")
        except UnicodeDecodeError:
            return None

    def _full(self, frames: list[bytes], key: bytes, max_skew: float, max_body_size: int,
              rest: bytes | None) -> Command | None:
        try:
            message = parse_server_message(decode(frames, key=key, max_skew=max_skew,
                                                  max_body_size=max_body_size))
        except ProtocolError:
            return None
        command = Command(message.type, message.job_id, message.capture)
        if rest is not None:
            if len(self._tails) >= TAIL_CACHE:
                self._tails.clear()
            self._tails[rest] = command
        return command


TIMESTAMPS = TimestampCache()
