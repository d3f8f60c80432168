"""Real push-jobs-client processes against the real pushd server (tests/support/server.py)."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pushd_client.process import group_alive

from tests.support.client_process import ClientProcess, leftover_jobs, wait_until
from tests.support.server import PushdServer, running_server

ACTIVE = ("new", "voting", "running")


@pytest.fixture(scope="module")
def server() -> Iterator[PushdServer]:
    with running_server(nodes=("node1", "node2")) as srv:
        yield srv


@pytest.fixture
def files_root() -> Iterator[Path]:
    """A 0711 directory outside pytest's tree for job data files.

    Jobs running as `daemon` must reach their data file; pytest's base temp dir is 0700, and a
    concurrently starting pytest session resets it to 0700 if we open it up.
    """
    root = Path(tempfile.mkdtemp(prefix="pushd-client-e2e-"))
    os.chmod(root, 0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


class Node:
    """One client process for one of the server's nodes."""

    def __init__(
        self, server: PushdServer, tmp_path: Path, files_root: Path, name: str, **settings: Any
    ) -> None:
        self.server = server
        self.name = name
        url = f"{server.base_url}/organizations/{server.org_name}"
        self.client = ClientProcess(tmp_path / name, server.node_key_paths[name], url,
                                    node=name, file_dir=str(files_root / name), **settings)

    def start(self) -> None:
        self.client.start()
        self.wait_available()

    def wait_available(self, timeout: float = 40.0) -> None:
        """This client's command channel is up (it answered the server's rehab) and the
        server counts the node available."""

        def available() -> bool:
            if self.client.status().get("connection") != "online":
                return False
            resp = self.server.request("GET", f"node_states/{self.name}")
            return resp.status == 200 and resp.json().get("availability") == "available"

        wait_until(available, timeout)


@pytest.fixture
def node1(server: PushdServer, tmp_path: Path, files_root: Path) -> Iterator[Node]:
    node = Node(server, tmp_path, files_root, "node1")
    yield node
    node.client.stop()


def start_job(server: PushdServer, command: str, nodes: list[str], **fields: Any) -> str:
    resp = server.request("POST", "jobs", {"command": command, "nodes": nodes, **fields})
    assert resp.status == 201, resp.body
    return str(resp.json()["uri"]).rsplit("/", 1)[-1]


def job(server: PushdServer, job_id: str) -> dict[str, Any]:
    resp = server.request("GET", f"jobs/{job_id}")
    assert resp.status == 200, resp.body
    return dict(resp.json())


def finished(server: PushdServer, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        doc = job(server, job_id)
        if doc["status"] not in ACTIVE:
            return doc
        assert time.monotonic() < deadline, f"job still {doc['status']}: {doc}"
        time.sleep(0.1)


def output(server: PushdServer, job_id: str, node: str, channel: str) -> str:
    resp = server.request("GET", f"jobs/{job_id}/output/{node}/{channel}",
                          headers={"Accept": "application/octet-stream"})
    assert resp.status == 200, resp.body
    return resp.body.decode()


def running_job_group(node: Node) -> int:
    return node.client.job_pid(timeout=40)


def test_echo_job_with_capture(server: PushdServer, node1: Node) -> None:
    node1.start()
    job_id = start_job(server, "hello", ["node1"], capture_output=True)
    doc = finished(server, job_id)
    assert doc["status"] == "complete" and doc["nodes"] == {"succeeded": ["node1"]}
    assert output(server, job_id, "node1", "stdout") == "hello from the node\n"
    assert output(server, job_id, "node1", "stderr") == ""


def test_both_channels_captured(server: PushdServer, node1: Node) -> None:
    node1.start()
    job_id = start_job(server, "both", ["node1"], capture_output=True)
    assert finished(server, job_id)["nodes"] == {"succeeded": ["node1"]}
    assert output(server, job_id, "node1", "stdout") == "to-out\n"
    assert output(server, job_id, "node1", "stderr") == "to-err\n"


def test_user_dir_env_file_and_chef_push_variables(server: PushdServer, node1: Node) -> None:
    node1.start()
    job_id = start_job(
        server, "probe", ["node1"], capture_output=True, user="daemon", dir="/tmp",
        env={"FOO": "bar", "PATH": "/evil", "CHEF_PUSH_JOB_ID": "forged"},
        file="raw:the data",
    )
    assert finished(server, job_id)["nodes"] == {"succeeded": ["node1"]}
    lines = output(server, job_id, "node1", "stdout").splitlines()
    assert lines[:8] == [
        "daemon", "/tmp", "FOO=bar", "PATH_OK=yes", "FILE=the data", "NODE=node1",
        f"JOB={job_id}", lines[7],
    ]
    data_file = lines[7].removeprefix("PATHFILE=")
    assert job_id in data_file and not os.path.exists(data_file)


def test_not_whitelisted_is_nacked_with_reason(server: PushdServer, node1: Node) -> None:
    node1.start()
    job_id = start_job(server, "rm -rf /", ["node1"])
    doc = finished(server, job_id)
    assert doc["status"] == "quorum_failed" and doc["nodes"] == {"nacked": ["node1"]}
    assert doc.get("node_reasons") == {"node1": "not_whitelisted"}


def test_busy_node_nacks_the_second_job(server: PushdServer, node1: Node) -> None:
    node1.start()
    first = start_job(server, "sleep 2", ["node1"])
    wait_until(lambda: job(server, first)["status"] == "running", 40)
    second = start_job(server, "hello", ["node1"])
    doc = finished(server, second)
    assert doc["nodes"] == {"nacked": ["node1"]}
    assert doc.get("node_reasons") == {"node1": "busy"}
    assert finished(server, first)["nodes"] == {"succeeded": ["node1"]}


def test_lock_held_is_nacked(server: PushdServer, node1: Node) -> None:
    node1.start()
    with open(node1.client.lock_path, "a") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        job_id = start_job(server, "locked", ["node1"])
        doc = finished(server, job_id)
    assert doc["nodes"] == {"nacked": ["node1"]}
    assert doc.get("node_reasons") == {"node1": "lock_held"}
    again = start_job(server, "locked", ["node1"])
    assert finished(server, again)["nodes"] == {"succeeded": ["node1"]}


def test_abort_kills_sleep_and_its_children(server: PushdServer, node1: Node) -> None:
    node1.start()
    job_id = start_job(server, "sleepy", ["node1"])
    pgid = running_job_group(node1)
    wait_until(lambda: job(server, job_id)["status"] == "running", 40)
    resp = server.request("POST", f"jobs/{job_id}/abort", {})
    assert resp.status == 200, resp.body
    assert finished(server, job_id)["status"] == "aborted"
    wait_until(lambda: not group_alive(pgid), 40)
    node1.wait_available()


def test_run_timeout_ends_the_job_and_its_processes(server: PushdServer, node1: Node) -> None:
    node1.start()
    job_id = start_job(server, "sleepy", ["node1"], run_timeout=2)
    pgid = running_job_group(node1)
    doc = finished(server, job_id)
    assert doc["status"] == "timed_out" and doc["nodes"] == {"timed_out": ["node1"]}
    wait_until(lambda: not group_alive(pgid), 40)
    node1.wait_available()


def test_output_larger_than_the_limit_arrives_truncated(
    server: PushdServer, node1: Node
) -> None:
    node1.start()
    job_id = start_job(server, "big", ["node1"], capture_output=True)
    assert finished(server, job_id)["nodes"] == {"succeeded": ["node1"]}
    stdout = output(server, job_id, "node1", "stdout")
    stderr = output(server, job_id, "node1", "stderr")
    assert stdout.startswith("[push-jobs-client: output truncated")
    assert stdout.endswith("out line 19999\n") and stderr.endswith("err line 19999\n")
    total = sum(len(f"out line {i}\n") for i in range(20000))
    assert f"of {total} bytes dropped" in stdout.splitlines()[0]
    assert len(stdout) + len(stderr) < 63000


def test_client_killed_mid_run(server: PushdServer, node1: Node) -> None:
    node1.start()
    job_id = start_job(server, "sleepy", ["node1"])
    pgid = running_job_group(node1)
    node1.client.signal(signal.SIGKILL)
    node1.client.wait()
    node1.client.start()
    doc = finished(server, job_id)
    assert doc["nodes"] in ({"crashed": ["node1"]}, {"failed": ["node1"]}), doc
    wait_until(lambda: not group_alive(pgid), 40)
    node1.wait_available()
    again = start_job(server, "hello", ["node1"])
    assert finished(server, again)["nodes"] == {"succeeded": ["node1"]}


@pytest.mark.slow
def test_server_restarted_mid_run_and_client_started_before_server(
    tmp_path: Path, files_root: Path
) -> None:
    with running_server(nodes=("node1",)) as srv:
        node = Node(srv, tmp_path, files_root, "node1")
        try:
            node.start()
            job_id = start_job(srv, "sleep 4", ["node1"])
            pgid = running_job_group(node)
            srv.restart()
            # pushd re-attaches running jobs after a restart: the client keeps its job across
            # the reconnect and delivers the result (sent again if the server was down then).
            doc = finished(srv, job_id)
            assert doc["status"] == "complete" and doc["nodes"] == {"succeeded": ["node1"]}
            assert not group_alive(pgid)
            node.client.stop()
            srv.stop()
            node.client.start()  # before its server
            # Its own status (the stopped client's file says "stopped") after failed fetches.
            wait_until(lambda: node.client.status().get("connection") == "connecting"
                       and "cannot reach" in (node.client.status().get("last_error") or ""), 40)
            srv.start()
            node.wait_available()
            again = start_job(srv, "hello", ["node1"])
            assert finished(srv, again)["nodes"] == {"succeeded": ["node1"]}
        finally:
            node.client.stop()


def test_no_leftover_processes() -> None:
    """Guard for this file: none of the job commands it started is still running (only this
    session's jobs count: other test runs on the machine use the same commands)."""
    mine = leftover_jobs(("sleep 3131", "sleep 3132"))
    assert not mine, mine


def test_client_with_allow_unencrypted_falls_back_on_a_server_without_curve(
    tmp_path: Path, files_root: Path
) -> None:
    # disable_curve_encryption: the config endpoint answers as a 1.x server does, so the client
    # (which always sends ccpk) falls back to the 1.x protocol instead of trying Curve on a port
    # that speaks none and looping on "No messages being received on command port".
    with running_server(nodes=("node1",), settings={"disable_curve_encryption": True}) as srv:
        node = Node(srv, tmp_path, files_root, "node1", allow_unencrypted=True)
        try:
            node.start()
            job_id = start_job(srv, "hello", ["node1"])
            doc = finished(srv, job_id)
            assert doc["status"] == "complete" and doc["nodes"] == {"succeeded": ["node1"]}
        finally:
            node.client.stop()
