"""`heartbeat_process`: the server heartbeat published by a relay process of its own, so the
broker holds one connection per node instead of two (twice the nodes under one open-files
limit). Real server, real stock-protocol peers, real kill -9."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pushd_bench.server import running_server

NODES = [f"node{i}" for i in range(12)]


def _tcp_sockets(pid: int) -> int:
    """Open TCP connections and listeners of `pid` (socket inodes found in /proc/net/tcp)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            inodes.add(line.split()[9])
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            count += 1
    return count


def _relay_pids(server: Any) -> list[int]:
    run_dir = str(server.settings.get("run_dir")).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"pushd.broker.heartbeat_relay" in cmdline and run_dir in cmdline:
            found.append(int(entry.name))
    return found


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_nodes_hear_the_relay_and_the_broker_holds_one_connection_per_node() -> None:
    with running_server(nodes=NODES, settings={"heartbeat_process": True}) as server:
        peers = [server.peer(node) for node in NODES]
        for node in NODES:
            server.wait_available(node)
        broker = server.broker_pid()
        assert broker is not None
        relays = _relay_pids(server)
        assert len(relays) == 1
        # Each node: a command connection to the broker, a heartbeat one to the relay (plus
        # the listening sockets of each process).
        assert _tcp_sockets(broker) < len(NODES) + 5
        assert _tcp_sockets(relays[0]) >= len(NODES)

        resp = server.request("POST", "jobs", {"command": "true", "nodes": NODES})
        assert resp.status == 201, resp.body
        job = resp.json()["uri"].rsplit("/", 1)[1]
        _wait(lambda: server.request("GET", f"jobs/{job}").json()["status"] == "complete",
              30, "the job to complete")
        assert server.request("GET", f"jobs/{job}").json()["nodes"] == {"succeeded": sorted(NODES)}
        assert all(peer.server_heartbeats > 0 for peer in peers)


def test_the_relay_ends_with_its_broker_and_a_restarted_broker_publishes_again() -> None:
    with running_server(nodes=NODES[:2], settings={"heartbeat_process": True}) as server:
        peer = server.peer(NODES[0])
        server.wait_available(NODES[0])
        (relay,) = _relay_pids(server)
        broker = server.broker_pid()
        assert broker is not None
        os.kill(broker, signal.SIGKILL)
        _wait(lambda: relay not in _relay_pids(server), 10, "the relay to end with its broker")
        _wait(lambda: server.broker_pid() not in (None, broker), 30, "a new broker")
        _wait(lambda: len(_relay_pids(server)) == 1, 30, "a new relay")
        before = peer.server_heartbeats
        _wait(lambda: peer.server_heartbeats > before + 2, 30,
              "server heartbeats through the new relay")
