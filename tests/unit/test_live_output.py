"""Live output (issue 18): the `output` message, the config capability, the client's LiveStream
bounds, the broker's OutputGate, the store's append_output/get_output_from (SQLite and
PostgreSQL) and the CLI's OutputPrinter."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import pytest
from pushd_client.output import LiveStream, TailBuffer
from pushd_knife.liveoutput import OutputPrinter
from pushd_knife.sse import Event

from pushd import store
from pushd.broker.live_output import OutputGate
from pushd.errors import ProtocolError
from pushd.protocol.config import OutputCapability, build_config, parse_config
from pushd.protocol.messages import NodeIdentity, node_output, parse_node_message
from pushd.protocol.output import TRUNCATION_MARKER

WHO = NodeIdentity(node="n1", client="n1", org="acme", incarnation_id="inc")
ORG = "a" * 32


# ------------------------------------------------------------------ message


def test_output_message_round_trips() -> None:
    body = node_output(WHO, sequence=7, job_id="j1", channel="stderr", offset=12, data="é\n")
    assert list(body)[:9] == ["node", "client", "protocol_version", "org", "type", "sequence",
                              "timestamp", "incarnation_id", "job_id"]
    message = parse_node_message(body)
    assert (message.type, message.job_id, message.channel, message.offset, message.data) == (
        "output", "j1", "stderr", 12, "é\n")


@pytest.mark.parametrize("change", [
    {"channel": "stdin"}, {"channel": None}, {"offset": -1}, {"offset": True},
    {"offset": "3"}, {"data": 5}, {"data": None}, {"job_id": None},
    {"data": "x" * (16 * 1024 + 5)}, {"data": "é" * (8 * 1024 + 3)},
])
def test_bad_output_messages_are_refused(change: dict[str, Any]) -> None:
    body = node_output(WHO, sequence=1, job_id="j1", channel="stdout", offset=0, data="x")
    body.update(change)
    with pytest.raises(ProtocolError, match="bad_message"):
        parse_node_message(body)


# ------------------------------------------------------------------ config capability


def _config(**kw: Any) -> dict[str, Any]:
    return build_config(
        host="h", heartbeat_port=1, command_port=2, interval=1.0, node="n1", organization="o",
        public_key_pem=PEM, encoded_session_key="k", lifetime=3600, max_message_skew=300,
        max_body_size=63000, incarnation_id="i", **kw)


def _pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


PEM = _pem()


def test_config_advertises_live_output_only_when_given() -> None:
    plain = _config()
    assert "capabilities" not in plain
    assert parse_config(plain).output is None
    document = _config(output=OutputCapability(max_bytes=1000))
    assert document["capabilities"] == {"output": {
        "interval": 0.25, "chunk_bytes": 16384, "max_bytes": 1000, "rate_bytes": 65536}}
    assert parse_config(json.dumps(document)).output == OutputCapability(max_bytes=1000)


@pytest.mark.parametrize("spec", [[], {"max_bytes": "1"}, {"max_bytes": 1, "chunk_bytes": 1,
                                                            "rate_bytes": -1}])
def test_an_unreadable_capability_means_none(spec: Any) -> None:
    document = _config()
    document["capabilities"] = {"output": spec}
    assert parse_config(document).output is None


# ------------------------------------------------------------------ client bounds


def cap(**kw: Any) -> OutputCapability:
    return OutputCapability(**{"max_bytes": 1 << 20, **kw})


def test_a_first_line_goes_at_once_then_at_most_every_interval() -> None:
    buffer = TailBuffer(1 << 20)
    live = LiveStream(cap(), now=100.0)
    buffer.feed(b"one\n")
    assert live.take(buffer, 100.0) == (0, "one\n")
    buffer.feed(b"two\n")
    assert live.next_due(buffer, 100.1) == pytest.approx(0.15)
    assert live.take(buffer, 100.1) is None
    assert live.take(buffer, 100.25) == (4, "two\n")
    assert live.take(buffer, 101.0) is None  # nothing new


def test_a_full_chunk_goes_before_the_interval() -> None:
    buffer = TailBuffer(1 << 20)
    live = LiveStream(cap(chunk_bytes=1024), now=0.0)
    live.take(buffer, 0.0)
    buffer.feed(b"a" * 10)
    assert live.take(buffer, 0.0) == (0, "a" * 10)
    buffer.feed(b"b" * 3000)
    assert live.next_due(buffer, 0.01) == 0.0
    offset, data = live.take(buffer, 0.01) or (None, "")
    assert (offset, data) == (10, "b" * 1024)


def test_chunks_never_split_a_utf8_sequence() -> None:
    buffer = TailBuffer(1 << 20)
    live = LiveStream(cap(chunk_bytes=1024), now=0.0)
    buffer.feed(b"x" + "é".encode() * 1000)  # the 1024th byte is the first half of an é
    first = live.take(buffer, 0.0)
    assert first is not None and first[1] == "x" + "é" * 511
    second = live.take(buffer, 1.0)
    assert second is not None and second[0] == 1023 and second[1].startswith("é")


def test_at_most_max_bytes_are_sent_per_stream() -> None:
    buffer = TailBuffer(1 << 20)
    live = LiveStream(cap(max_bytes=100, chunk_bytes=1024), now=0.0)
    buffer.feed(b"z" * 300)
    assert live.take(buffer, 0.0) == (0, "z" * 100)
    buffer.feed(b"more\n")
    assert live.take(buffer, 5.0, final=True) is None
    assert live.next_due(buffer, 5.0) is None


def test_a_backlog_beyond_the_rate_is_coalesced() -> None:
    buffer = TailBuffer(1 << 20)
    live = LiveStream(cap(chunk_bytes=1024, rate_bytes=2048), now=0.0)
    sent = 0
    now = 0.0
    for _ in range(40):  # 40 x 100 KB in 10 s: far more than 2 KB/s
        buffer.feed(b"y" * 100_000)
        now += 0.25
        while (chunk := live.take(buffer, now)) is not None:
            assert chunk[0] >= live.sent_to - len(chunk[1]) >= 0
            sent += len(chunk[1])
    assert sent <= 2048 * 10 + 2048  # the rate plus one second of burst
    assert live.skipped > 3_900_000


def test_the_buffer_never_holds_more_than_its_limit() -> None:
    buffer = TailBuffer(4096)
    live = LiveStream(cap(chunk_bytes=1024), now=0.0)
    for _ in range(100):
        buffer.feed(b"q" * 10_000)
    chunk = live.take(buffer, 0.0)
    assert chunk is not None and chunk[0] == buffer.total - 1024
    assert len(buffer.data) == 4096


# ------------------------------------------------------------------ broker gate


def test_the_gate_takes_each_chunk_once_in_order_within_the_bounds() -> None:
    gate = OutputGate(max_bytes=10, rate_bytes=1000)
    assert gate.admit("j", "n", "stdout", 0, "abcd", 0.0)
    assert not gate.admit("j", "n", "stdout", 0, "abcd", 0.0)  # repeated
    assert gate.admit("j", "n", "stdout", 8, "efgh", 0.0)  # a gap is fine
    assert not gate.admit("j", "n", "stdout", 12, "ijk", 0.0)  # over max_bytes
    assert gate.admit("j", "n", "stderr", 0, "ijk", 0.0)  # another stream
    assert gate.dropped == 2
    gate.forget("j")
    assert gate.admit("j", "n", "stdout", 0, "abcd", 0.0)


def test_the_gate_bounds_the_rate_per_node() -> None:
    gate = OutputGate(rate_bytes=100)
    assert gate.admit("j", "n", "stdout", 0, "x" * 60, 0.0)
    assert not gate.admit("j", "n", "stderr", 0, "x" * 60, 0.0)
    assert gate.admit("j", "n", "stderr", 0, "x" * 60, 0.5)


# ------------------------------------------------------------------ store


def _job(org: str = ORG) -> str:
    job_id = uuid.uuid4().hex
    store.create_job(org, job_id, "cmd", ["n1"], 1, 60, None)
    return job_id


def test_append_output_grows_the_stored_stream(store_db: str) -> None:
    job_id = _job()
    assert store.append_output(ORG, job_id, "n1", "stdout", [(0, "ab"), (2, "cd\n")]) == 5
    assert store.append_output(ORG, job_id, "n1", "stdout", [(3, "\n"), (5, "é")]) == 7
    assert store.get_output_bytes(ORG, job_id, "n1", "stdout") == "abcd\né".encode()
    assert store.get_output_bytes(ORG, job_id, "n1", "stderr") is None
    assert store.get_output_from(ORG, job_id, "n1", "stdout", 2) == ("cd\né".encode(), 7)
    assert store.get_output_from(ORG, job_id, "n1", "stdout", 9) == (b"", 7)
    # The result replaces the live copy.
    store.store_output(ORG, job_id, "n1", "final\n", "")
    assert store.get_output_from(ORG, job_id, "n1", "stdout", 0) == (b"final\n", 6)


def test_a_gap_or_the_cap_keeps_a_marked_tail(store_db: str) -> None:
    job_id = _job()
    store.append_output(ORG, job_id, "n1", "stdout", [(0, "one\n"), (8, "three\n")])
    stored = store.get_output_bytes(ORG, job_id, "n1", "stdout")
    assert stored == TRUNCATION_MARKER.format(dropped=8, total=14).encode() + b"three\n"
    assert store.get_output_from(ORG, job_id, "n1", "stdout", 10) == (b"ree\n", 14)
    assert store.get_output_from(ORG, job_id, "n1", "stdout", 2) == (stored, 14)
    store.append_output(ORG, job_id, "n1", "stdout", [(14, "x" * 10)], max_bytes=8)
    stored = store.get_output_bytes(ORG, job_id, "n1", "stdout")
    assert stored == TRUNCATION_MARKER.format(dropped=16, total=24).encode() + b"x" * 8
    record = store.get_output_record(ORG, job_id, "n1")
    assert record is not None and record.truncated and record.stdout_bytes == 24


def test_append_output_needs_the_job_in_the_org(store_db: str) -> None:
    job_id = _job()
    with pytest.raises(store.ConflictError):
        store.append_output("b" * 32, job_id, "n1", "stdout", [(0, "x")])


# ------------------------------------------------------------------ CLI printer


def _event(node: str, offset: int, data: str, channel: str = "stdout") -> Event:
    return Event("output", "1", json.dumps(
        {"node": node, "channel": channel, "offset": offset, "data": data}))


def test_the_printer_prefixes_whole_lines_and_skips_what_it_saw() -> None:
    out, err = io.BytesIO(), io.BytesIO()
    printer = OutputPrinter(out, err, prefix=True)
    printer.on_event(_event("n1", 0, "a\nb"))
    printer.on_event(_event("n2", 0, "x\n"))
    printer.on_event(_event("n1", 0, "a\nb"))  # replayed after a reconnect
    printer.on_event(_event("n1", 3, "c\n"))
    printer.on_event(_event("n1", 10, "d\n"))  # bytes 5..10 never streamed
    printer.on_event(_event("n1", 0, "ignored", channel="stderr"))
    assert out.getvalue().decode().splitlines() == [
        "n1: a", "n2: x", "n1: bc", "n1: [... 5 bytes not streamed ...]", "n1: d"]
    assert err.getvalue() == b""


def test_the_printer_without_prefix_writes_bytes_as_they_come() -> None:
    out = io.BytesIO()
    printer = OutputPrinter(out, out, nodes=["n1"])
    printer.on_event(_event("n1", 0, "par"))
    printer.on_event(_event("n2", 0, "other\n"))
    printer.on_event(_event("n1", 3, "tial\n"))
    assert out.getvalue() == b"partial\n"


def test_a_chunk_not_sent_is_taken_again_from_the_same_offset() -> None:
    buffer = TailBuffer(1 << 20)
    live = LiveStream(cap(), now=0.0)
    buffer.feed(b"one\n")
    chunk = live.take(buffer, 0.0)
    assert chunk == (0, "one\n")
    live.undo(*chunk)  # no connection
    assert live.take(buffer, 0.1) is None  # not before the interval: no busy loop
    buffer.feed(b"two\n")
    assert live.take(buffer, 0.25) == (0, "one\ntwo\n")
    assert live.sent_bytes == 8
