"""What the broker refuses on the command port, and that it keeps serving afterwards."""

from __future__ import annotations

import base64
import json
import os
import random
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from pushd_bench.protocol_peer import ProtocolPeer, forged_header

from pushd.broker.control_client import control_path, events_path
from pushd.protocol.frames import build_header, encode
from pushd.protocol.signing import hmac_sign
from pushd.protocol.timestamps import format_timestamp
from pushd.states import JobStatus
from tests.support.broker_runner import ORG_ID, ORG_NAME, BrokerEnv, wait_until


def make_env(tmp_path: Path, **overrides) -> BrokerEnv:
    return BrokerEnv(tmp_path, ("sqlite", {"path": str(tmp_path / "pushd.sqlite3")}),
                     **overrides).start()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[BrokerEnv]:
    env = make_env(tmp_path)
    try:
        yield env
    finally:
        env.close()


def dropped(env: BrokerEnv, reason: str, count: int = 1) -> None:
    wait_until(lambda: env.broker.counters[reason] >= count, 3, f"{count} x {reason}")


def still_serves(env: BrokerEnv, node: str) -> None:
    job = env.create_job([node], "true")
    assert env.wait_job(job).nodes_by_status() == {"succeeded": [node]}


def test_replayed_message_is_dropped(env: BrokerEnv) -> None:
    peer = env.peer("n1")
    frames = encode(peer.body("heartbeat", None, job_state="idle"), hmac_key=peer.session_key)
    peer.send_frames(frames)
    peer.send_frames(frames)
    dropped(env, "replay")
    still_serves(env, "n1")


def test_sequence_restarts_on_a_new_connection(env: BrokerEnv) -> None:
    peer = env.peer("n1")
    peer.reconnect()  # the stock client's new socket counts from 1 again
    peer.wait_for("ack", 3)
    still_serves(env, "n1")
    assert env.broker.counters["replay"] == 0


def test_forged_signature_is_dropped(env: BrokerEnv) -> None:
    peer = env.peer("n1")
    peer.send_body(peer.body("heartbeat", "f" * 32, job_state="running"), header=forged_header())
    dropped(env, "bad_signature")
    peer.send_body(peer.body("heartbeat"), key=b"k" * 32)
    dropped(env, "bad_signature", 2)
    assert env.node_state("n1")["availability"] == "available"  # the forged job_id did nothing


def _signed_raw(peer: ProtocolPeer, body: dict) -> list[bytes]:
    """Frames of `body` as JSON with every non-ASCII character escaped (so a lone surrogate,
    which encode() refuses to send, reaches the broker), correctly signed."""
    raw = json.dumps(body).encode()
    return [build_header("hmac_sha256", hmac_sign(peer.session_key, raw)), raw]


def test_job_replies_are_checked_like_every_message(tmp_path: Path) -> None:
    # Plain job replies take the broker's fast path (reply_sequence): signature, replay, the
    # sender's binding and the field rules must hold there as on the full path.
    env = make_env(tmp_path, voting_timeout=30.0)
    try:
        peer = env.peer("n1")
        peer.answer_commit = peer.answer_run = None  # this test answers by hand
        job = env.create_job(["n1"], "true")
        job_id = peer.wait_for("commit")["job_id"]

        peer.send_body(peer.body("ack_commit", job_id), header=forged_header())
        dropped(env, "bad_signature")
        peer.send_frames(_signed_raw(peer, {**peer.body("ack_commit", job_id),
                                            "client": "\ud800"}))
        dropped(env, "bad_message")  # a field the broker never reads is still checked
        peer.send_body({**peer.body("ack_commit", job_id), "sequence": 2**63})
        dropped(env, "bad_message", 2)
        time.sleep(0.3)
        assert env.job(job_id).status == JobStatus.VOTING  # none of them voted
        assert "quorum_vote" not in env.event_names(job_id)

        ack = encode(peer.body("ack_commit", job_id), hmac_key=peer.session_key)
        peer.send_frames(ack)
        peer.wait_for("run")
        peer.send_frames(ack)  # the same signed reply again
        dropped(env, "replay")
        peer.send("ack_run", job_id)
        result = encode(peer.body("succeeded", job_id), hmac_key=peer.session_key)
        peer.send_frames(result)
        assert env.wait_job(job).nodes_by_status() == {"succeeded": ["n1"]}
        peer.send_frames(result)
        dropped(env, "replay", 2)
        assert env.event_names(job_id).count("quorum_vote") == 1
        assert env.event_names(job_id).count("run_complete") == 1
        peer.answer_commit = peer.answer_run = "ack"
        still_serves(env, "n1")
    finally:
        env.close()


def test_message_naming_another_node_is_dropped(env: BrokerEnv) -> None:
    peer = env.peer("n1")
    other = env.client.admit(ORG_NAME, ORG_ID, "n2", None if False else
                             zmq.curve_keypair()[0].decode())
    body = peer.body("heartbeat")
    body["node"] = "n2"
    peer.send_body(body, key=base64.b64decode(other["session_key"]))
    dropped(env, "wrong_node")
    assert env.node_state("n2")["status"] == "offline"


def test_unknown_sender_bad_header_stale_and_oversize_are_dropped(env: BrokerEnv) -> None:
    peer = env.peer("n1")
    body = peer.body("heartbeat")
    body["node"] = "nobody"
    peer.send_body(body)
    dropped(env, "unknown_sender")

    peer.send_frames([b"Version:3.0;SigningMethod:hmac_sha256;Signature:AAAA",
                      b'{"type":"heartbeat"}'])
    dropped(env, "bad_header")

    body = peer.body("heartbeat")
    body["timestamp"] = format_timestamp(time.time() + 400)
    peer.send_body(body)
    dropped(env, "stale")

    peer.send_body(peer.body("heartbeat", padding="x" * 70_000))
    dropped(env, "too_large")

    peer.send_frames([b"one", b"two", b"three"])
    dropped(env, "bad_frames")

    peer.send_frames([build_header("hmac_sha256", "AAAA"), b"\xff\xfe not json"])
    dropped(env, "bad_json")

    body = peer.body("heartbeat")
    body["sequence"] = "seven"
    peer.send_body(body)
    dropped(env, "bad_message")
    still_serves(env, "n1")


def test_unadmitted_curve_key_cannot_connect(env: BrokerEnv) -> None:
    public, secret = zmq.curve_keypair()
    good = env.client.admit(ORG_NAME, ORG_ID, "n1", zmq.curve_keypair()[0].decode())
    peer = ProtocolPeer(
        node="n1", org_name=ORG_NAME, org_id=ORG_ID, command_addr=env.command_addr,
        heartbeat_addr=None, session_key=base64.b64decode(good["session_key"]),
        server_curve_key=good["curve_public_key"],
        curve_keys=(public.decode(), secret.decode()), interval=0.1,
    ).start()
    env.peers.append(peer)
    dropped(env, "zap_refused")  # the handshake was tried and refused
    assert peer.received() == []
    assert env.node_state("n1")["status"] == "offline"


def test_admission_window_expires(tmp_path: Path) -> None:
    env = make_env(tmp_path, zap_window=1.0)
    try:
        peer = env.peer("n1", start=False)
        time.sleep(1.2)  # let the admission window pass
        peer.start()
        dropped(env, "zap_refused")
        assert peer.received() == []
        late = env.peer("n2")  # admitted and connected within the window: works
        assert late.received("abort")
    finally:
        env.close()


def test_unencrypted_clients_refused_unless_allowed(env: BrokerEnv) -> None:
    reply = env.client.admit(ORG_NAME, ORG_ID, "n1", None)
    assert reply["ok"] is False and reply["error"] == "unencrypted_not_allowed"
    assert env.client.admit(ORG_NAME, ORG_ID, "n1", "short")["error"] == "bad_ccpk"


def test_legacy_port_runs_jobs_when_allowed(tmp_path: Path) -> None:
    env = make_env(tmp_path, allow_unencrypted=True)
    try:
        env.peer("old", curve=False)
        still_serves(env, "old")
    finally:
        env.close()


def test_fuzzed_frames_do_not_stop_the_broker(env: BrokerEnv) -> None:
    """100,000 random and mutated frames over an admitted Curve connection, then a job."""
    peer = env.peer("n1")
    rng = random.Random(1234)
    template = encode(peer.body("heartbeat", None, job_state="idle"), hmac_key=peer.session_key)
    fuzzer = zmq.Context.instance().socket(zmq.DEALER)
    fuzzer.linger = 0
    fuzzer.sndhwm = 0
    public, secret = zmq.curve_keypair()
    env.client.admit(ORG_NAME, ORG_ID, "fuzz", public.decode())
    fuzzer.curve_serverkey = env.broker.keys.curve_public_z85.encode()
    fuzzer.curve_publickey, fuzzer.curve_secretkey = public, secret
    fuzzer.connect(env.command_addr)

    def mutate(data: bytes) -> bytes:
        buf = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            op = rng.random()
            if op < 0.5 and buf:
                buf[rng.randrange(len(buf))] = rng.randrange(256)
            elif op < 0.75:
                buf.insert(rng.randrange(len(buf) + 1), rng.randrange(256))
            elif buf:
                del buf[rng.randrange(len(buf))]
        return bytes(buf)

    sent = 0
    for i in range(100_000):
        kind = i % 4
        if kind == 0:
            frames = [rng.randbytes(rng.randint(0, 64)) for _ in range(rng.randint(1, 4))]
        elif kind == 1:
            frames = [mutate(template[0]), template[1]]
        elif kind == 2:
            frames = [template[0], mutate(template[1])]
        else:
            frames = [mutate(template[0]), mutate(template[1])]
        fuzzer.send_multipart(frames)
        sent += len(frames)
    wait_until(lambda: env.broker.counters["dropped"] >= 99_000, 60, "fuzz frames processed")

    # Then correctly signed bodies with random field values, so they get past the signature
    # into the message validator and the node session.
    fuzz_key = base64.b64decode(env.client.admit(ORG_NAME, ORG_ID, "fuzz", public.decode())[
        "session_key"])
    junk = [None, 0, -1, 2**70, 1.5, "", "x" * 300, "running", "idle", [], {}, True, "f" * 32,
            "\u00e9t\u00e9"]
    kinds = ["heartbeat", "ack_commit", "nack_commit", "ack_run", "nack_run", "succeeded",
             "failed", "aborted", "bogus", None, 7]
    accepted_before = env.broker.counters["accepted"]
    for sequence in range(1, 5001):
        body = {"node": "fuzz", "org": ORG_NAME, "type": rng.choice(kinds),
                "sequence": sequence, "timestamp": format_timestamp(),
                "incarnation_id": rng.choice(["i1", "i2", rng.choice(junk)]),
                "job_id": rng.choice(junk), "job_state": rng.choice(junk),
                "stdout": rng.choice(junk), "stderr": rng.choice(junk),
                "reason": rng.choice(junk)}
        for key in rng.sample(sorted(body), rng.randint(0, 3)):
            if key not in ("node", "org", "timestamp", "sequence"):
                del body[key]
        fuzzer.send_multipart(encode(body, hmac_key=fuzz_key))
    wait_until(lambda: env.broker.counters["accepted"] + env.broker.counters["bad_message"]
               >= accepted_before + 4900, 30, "signed fuzz processed")
    assert env.broker.counters["accepted"] > accepted_before + 100
    fuzzer.close(0)
    assert env.broker.counters["internal_error"] == 0
    assert env.client.status()["incarnation_id"]
    still_serves(env, "n1")
    assert env.wait_job(env.create_job(["n1"], "true")).status == JobStatus.COMPLETE


def test_deleted_session_key_stops_a_connected_node(tmp_path: Path) -> None:
    from pushd import store

    env = make_env(tmp_path, session_key_reload_interval=0.3)
    try:
        peer = env.peer("n1")
        store.delete_session_key(ORG_ID, "n1")  # `push-jobs-server-ctl client delete`
        wait_until(lambda: env.node_state("n1")["status"] == "offline", 3, "n1 offline")
        dropped(env, "unknown_sender")
        peer.clear()
        time.sleep(0.3)
        assert peer.received() == []
        assert env.node_state("n1")["status"] == "offline"
    finally:
        env.close()


def test_control_and_events_sockets_are_the_service_users_only(tmp_path: Path) -> None:
    """A local user who could reach control.sock could admit keys and read session keys."""
    previous = os.umask(0)  # the most permissive start; the broker must not depend on umask
    try:
        env = make_env(tmp_path)
    finally:
        os.umask(previous)
    try:
        for path in (control_path(env.config.run_dir), events_path(env.config.run_dir)):
            assert stat.S_ISSOCK(path.stat().st_mode)
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert env.client.status()["ok"] is True
    finally:
        env.close()
