"""The tests' name for the cluster harness, pushd_bench.cluster (see its docstring: N real
servers on one PostgreSQL database behind a real HAProxy), plus what only tests use: pushd's own
client processes whose chef_server_url is the cluster's one URL.

    requires_haproxy                         pytest mark: skip (with the reason) without haproxy
    cluster_client(cluster, directory, node, **settings) -> ClientProcess  (not started)
    client_server(cluster, client) -> int | None
        the server the client is connected to now: the last "connected to OUT / CMD" line of
        its log (the config answer it used), mapped by port
    wait_client_connected(cluster, client, timeout=30, avoid=None) -> int
        waits until the client is connected to a server (other than `avoid`) and returns it
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from pushd_bench.cluster import (
    DOORBELL_PREFIX,
    ClusterFront,
    ClusterServer,
    PushdCluster,
    haproxy_available,
    running_cluster,
)

from tests.support.client_process import ClientProcess

__all__ = [
    "DOORBELL_PREFIX", "ClusterFront", "ClusterServer", "PushdCluster", "client_server",
    "cluster_client", "haproxy_available", "requires_haproxy", "running_cluster",
    "wait_client_connected",
]

requires_haproxy = pytest.mark.skipif(
    not haproxy_available(),
    reason="haproxy (Debian package; scripts/install-deps installs it) is not installed: "
    "the cluster tests put a real HAProxy in front of three servers",
)

_CONNECTED = re.compile(r"connected to (\S+) / (\S+) \(")


def cluster_client(
    cluster: PushdCluster, directory: Path, node: str, **settings: Any
) -> ClientProcess:
    """pushd's client for `node` with the cluster's one URL (HAProxy) as chef_server_url."""
    return ClientProcess(
        directory / node, cluster.servers[0].node_key_paths[node],
        f"{cluster.url}/organizations/{cluster.org_name}", node=node, **settings,
    )


def client_server(cluster: PushdCluster, client: ClientProcess) -> int | None:
    try:
        found = _CONNECTED.findall(client.log())
    except FileNotFoundError:
        return None
    return cluster.server_of(found[-1][1]) if found else None


def wait_client_connected(
    cluster: PushdCluster, client: ClientProcess, timeout: float = 30.0,
    avoid: int | None = None,
) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.proc is not None and client.proc.poll() is not None:
            break
        index = client_server(cluster, client)
        if index is not None and index != avoid and client.status().get("connection") == "online":
            return index
        time.sleep(0.1)
    raise AssertionError(
        f"{client.config_path.parent.name} never connected"
        + ("" if client.proc is None or client.proc.poll() is None else " (it exited)")
        + ("" if avoid is None else f" to a server other than {avoid}")
        + f"\n---- client log ----\n{client.log()[-3000:]}"
    )
