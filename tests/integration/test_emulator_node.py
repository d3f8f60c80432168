"""An emulated node's answers to real signed server messages (no sockets: frames in, frames out)."""

from __future__ import annotations

import os
import time

import pytest
from pushd_bench.node import Behaviour, EmulatedNode, JobStats
from pushd_bench.wire import CommandDecoder

from pushd.keys import generate_rsa_key, rsa_public_pem
from pushd.protocol.config import build_config, encrypt_session_key, parse_config
from pushd.protocol.frames import decode, encode
from pushd.protocol.messages import abort_message, commit_message, run_message

SERVER_KEY = generate_rsa_key()
CLIENT_KEY = generate_rsa_key()


def _node(behaviour: Behaviour,
          decoder: CommandDecoder | None = None) -> tuple[EmulatedNode, bytes]:
    session_key = os.urandom(32)
    config = parse_config(build_config(
        host="127.0.0.1", heartbeat_port=1, command_port=2, interval=1.0, node="emu-00001",
        organization="acme", public_key_pem=rsa_public_pem(SERVER_KEY),
        encoded_session_key=encrypt_session_key(CLIENT_KEY.public_key(), session_key),
        lifetime=3600, max_message_skew=300, max_body_size=65536, incarnation_id="inc-1",
    ))
    node = EmulatedNode(1, "emu-00001", "acme", CLIENT_KEY, behaviour, JobStats(), decoder)
    node.configure(config, session_key, dealer=None, sub=None)  # type: ignore[arg-type]
    return node, session_key


def _answers(node: EmulatedNode, key: bytes, body: dict) -> list[dict]:
    replies = node.on_command(encode(body, hmac_key=key), time.monotonic(), time.time())
    return [decode(frames, key=key) for frames in replies]


def _commit(job: str, capture: bool = False) -> dict:
    return commit_message(sequence=1, job_id=job, server="s", command="chef-client",
                          capture=capture)


@pytest.mark.parametrize(("exit_code", "outcome"), [(0, "succeeded"), (3, "failed")])
def test_commit_run_and_result_follow_the_behaviour(exit_code: int, outcome: str) -> None:
    node, key = _node(Behaviour(exit_code=exit_code, output_bytes=10))
    assert [m["type"] for m in _answers(node, key, _commit("j1", capture=True))] \
        == ["ack_commit"]
    replies = _answers(node, key, run_message(sequence=2, job_id="j1"))
    assert [m["type"] for m in replies] == ["ack_run", outcome]
    assert replies[1]["job_id"] == "j1" and replies[1]["stdout"] == "x" * 10
    assert [m["sequence"] for m in replies] == [2, 3]  # after ack_commit's 1
    record = node.job_stats.jobs["j1"]
    assert (record.commits, record.acked_runs, record.results) == (1, 1, 1)
    assert node.job_state == "idle"


def test_a_busy_node_nacks_and_a_delayed_job_finishes_later_or_is_aborted() -> None:
    node, key = _node(Behaviour(delay=30.0))
    _answers(node, key, _commit("j1"))
    assert [m["type"] for m in _answers(node, key, _commit("j2"))] == ["nack_commit"]
    assert [m["type"] for m in _answers(node, key, run_message(sequence=3, job_id="j2"))] \
        == ["nack_run"]
    assert [m["type"] for m in _answers(node, key, run_message(sequence=4, job_id="j1"))] \
        == ["ack_run"]  # no result yet: the command "runs" for 30 s
    assert node.job_state == "running" and node.finish_at is not None
    aborted = _answers(node, key, abort_message(sequence=5))
    assert [(m["type"], m["job_id"]) for m in aborted] == [("aborted", "j1")]
    assert node.finish_job(time.time()) is None  # nothing left to report


def test_forged_or_stale_messages_are_dropped() -> None:
    node, key = _node(Behaviour())
    assert _answers(node, os.urandom(32), _commit("j1")) == []
    stale = commit_message(sequence=1, job_id="j1", server="s", command="x",
                           timestamp="Mon, 01 Jan 2001 00:00:00 GMT")
    assert _answers(node, key, stale) == []
    assert node.job_state == "idle"


def test_a_shared_decoder_still_checks_each_nodes_signature_and_time() -> None:
    # The worker's decoder parses a job's commit once for all its nodes (the bodies differ only
    # in sequence and timestamp); each node's copy must still be its own, signed and fresh.
    decoder = CommandDecoder()
    first, first_key = _node(Behaviour(), decoder)
    second, second_key = _node(Behaviour(), decoder)
    commit = _commit("j1")
    assert [m["type"] for m in _answers(first, first_key, commit)] == ["ack_commit"]
    same_tail = {**commit, "sequence": 2}
    assert _answers(second, first_key, same_tail) == []  # signed with another node's key
    stale = {**same_tail, "timestamp": "Mon, 01 Jan 2001 00:00:00 GMT"}
    assert _answers(second, second_key, stale) == []
    assert second.job_state == "idle"
    assert [m["type"] for m in _answers(second, second_key, same_tail)] == ["ack_commit"]
    assert second.job_id == "j1"
    # Bodies not in the broker's shape (keys in another order) take the full decode.
    reordered = {"type": "abort", "timestamp": commit["timestamp"], "sequence": 3}
    assert [m["type"] for m in _answers(second, second_key, reordered)] == ["aborted"]


def test_a_restarted_node_is_a_new_process_without_its_job() -> None:
    node, key = _node(Behaviour(delay=30.0))
    _answers(node, key, _commit("j1"))
    _answers(node, key, run_message(sequence=2, job_id="j1"))
    old = node.identity.incarnation_id
    node.restart()
    assert node.identity.incarnation_id != old and node.identity.node == "emu-00001"
    assert (node.job_state, node.job_id, node.config) == ("idle", None, None)
    assert node.finish_job(time.time()) is None  # the old process's job is gone with it
    fresh, key = _node(Behaviour())
    node.configure(fresh.config, key, dealer=None, sub=None)  # type: ignore[arg-type]
    replies = _answers(node, key, _commit("j2"))
    assert [(m["type"], m["incarnation_id"]) for m in replies] \
        == [("ack_commit", node.identity.incarnation_id)]
