"""1.x-protocol peers really run jobs (the release notes' compatibility path).

The stock 2.x/3.x client always sends ``ccpk`` and decides from the answer
(original-client-and-knife.md 2.3): a config with ``curve_public_key`` means Curve on
``command_addr``; one without it, with the client's ``allow_unencrypted`` option, means the 1.x
protocol (no Curve) on ``command_addr``. A 1.x client sends no ``ccpk`` at all. Each test
configures the stock-protocol peer (bench/protocol_peer.py) through the real REST
config endpoint by that rule, then runs a job on it through the real server.
"""

from __future__ import annotations

import time
from typing import Any

import zmq
from pushd_bench.protocol_peer import ProtocolPeer

from pushd.protocol.config import decrypt_session_key
from tests.support.server import PushdServer, load_private_key_cached, running_server


def stock_client_peer(server: PushdServer, node: str, *, sends_ccpk: bool) -> ProtocolPeer:
    """Fetch the node's config as the stock client does, and connect as its rule says (with
    the client's allow_unencrypted option on)."""
    public, secret = (k.decode() for k in zmq.curve_keypair())
    resp = server.node_config(node, ccpk=public if sends_ccpk else None)
    assert resp.status == 200, resp.body
    config = resp.json()
    curve = "curve_public_key" in config
    peer = ProtocolPeer(
        node=node,
        org_name=server.org_name,
        org_id=server.org_id,
        command_addr=config["push_jobs"]["heartbeat"]["command_addr"],
        heartbeat_addr=config["push_jobs"]["heartbeat"]["out_addr"],
        session_key=decrypt_session_key(
            load_private_key_cached(server.node_key_paths[node]),
            config["encoded_session_key"]["key"],
        ),
        server_curve_key=config["curve_public_key"] if curve else None,
        curve_keys=(public, secret) if curve else None,  # None: the 1.x mode, no Curve
        interval=0.2,
    )
    return peer.start()


def run_job(server: PushdServer, node: str) -> dict[str, Any]:
    resp = server.request("POST", "jobs", {"command": "true", "nodes": [node]})
    assert resp.status == 201, resp.body
    job_id = resp.json()["uri"].rsplit("/", 1)[1]
    deadline = time.monotonic() + 20
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        doc = server.request("GET", f"jobs/{job_id}").json()
        if doc["status"] not in ("new", "voting", "running"):
            return doc
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {doc}\n{server.log_tail()}")


def wait_available(server: PushdServer, node: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        resp = server.request("GET", f"node_states/{node}")
        if resp.status == 200 and resp.json().get("availability") == "available":
            return
        time.sleep(0.1)
    raise AssertionError(f"{node} never became available\n{server.log_tail()}")


def command_port(config_doc: dict[str, Any]) -> int:
    return int(config_doc["push_jobs"]["heartbeat"]["command_addr"].rsplit(":", 1)[1])


def test_without_curve_a_2x_client_is_answered_as_by_a_1x_server() -> None:
    settings = {"disable_curve_encryption": True}
    with running_server(nodes=("node1", "node2"), settings=settings) as server:
        for node, sends_ccpk in (("node1", True), ("node2", False)):
            doc = server.node_config(node, ccpk="a" * 40 if sends_ccpk else None).json()
            assert "curve_public_key" not in doc
            assert "capabilities" not in doc  # a 1.x answer offers no live output
            assert command_port(doc) == server.ports["unencrypted_command_port"]
            peer = stock_client_peer(server, node, sends_ccpk=sends_ccpk)
            try:
                assert peer.curve_keys is None  # the client fell back to the 1.x protocol
                wait_available(server, node)
                job = run_job(server, node)
                assert job["status"] == "complete", job
                assert job["nodes"] == {"succeeded": [node]}
            finally:
                peer.stop()


def test_with_allow_unencrypted_ccpk_keeps_curve_and_1x_peers_get_the_legacy_port() -> None:
    settings = {"allow_unencrypted": True}
    with running_server(nodes=("new1", "old1"), settings=settings) as server:
        curve_doc = server.node_config("new1", ccpk=zmq.curve_keypair()[0].decode()).json()
        assert len(curve_doc["curve_public_key"]) == 40
        assert command_port(curve_doc) == server.ports["command_port"]
        assert "output" in curve_doc["capabilities"]  # pushd's client may send live output
        legacy_doc = server.node_config("old1", ccpk=None).json()
        assert "curve_public_key" not in legacy_doc
        assert "capabilities" not in legacy_doc
        assert command_port(legacy_doc) == server.ports["unencrypted_command_port"]

        modern = stock_client_peer(server, "new1", sends_ccpk=True)
        old = stock_client_peer(server, "old1", sends_ccpk=False)
        try:
            assert modern.curve_keys is not None and old.curve_keys is None
            for node in ("new1", "old1"):
                wait_available(server, node)
                job = run_job(server, node)
                assert job["status"] == "complete", job
                assert job["nodes"] == {"succeeded": [node]}
        finally:
            modern.stop()
            old.stop()
