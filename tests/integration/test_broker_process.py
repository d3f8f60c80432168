"""`python -m pushd.broker --config FILE` as a real process, on SQLite and PostgreSQL: it serves,
survives SIGKILL in the middle of a running job (the job is re-attached and its result
recorded), and exits cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import zmq
from pushd_bench.protocol_peer import ProtocolPeer

from pushd import store
from pushd.broker.control_client import BrokerClient, BrokerUnavailable
from pushd.keys import load_or_create_server_keys, load_rsa_public_key
from pushd.states import JobStatus, NodeStatus
from tests.support.broker_runner import ORG_ID, ORG_NAME, wait_until
from tests.support.ports import free_ports


class BrokerProcess:
    def __init__(self, tmp_path: Path, db: tuple[str, dict[str, Any]]) -> None:
        self.dir = tmp_path / "pushd"
        ports = free_ports(4)
        self.heartbeat_port, self.command_port = ports[0], ports[1]
        lines = [
            f"opscode_pushy_server['dir'] = '{self.dir}'",
            f"opscode_pushy_server['server_heartbeat_port'] = {ports[0]}",
            f"opscode_pushy_server['command_port'] = {ports[1]}",
            f"opscode_pushy_server['api_port'] = {ports[2]}",
            f"opscode_pushy_server['unencrypted_command_port'] = {ports[3]}",
            "opscode_pushy_server['metrics_port'] = 0",
            "opscode_pushy_server['zeromq_listen_address'] = 'tcp://127.0.0.1'",
            "opscode_pushy_server['heartbeat_interval'] = 100",
            "opscode_pushy_server['rehab_timer'] = 200",
            "opscode_pushy_server['vip'] = '127.0.0.1'",
        ]
        kind, params = db
        if kind == "postgres":
            lines += [
                "postgresql['enable'] = true",
                f"postgresql['vip'] = '{params['host']}'",
                f"postgresql['port'] = {params['port']}",
                f"postgresql['database_name'] = '{params['database']}'",
                f"postgresql['sql_user'] = '{params['user']}'",
            ]
            if params.get("password"):
                lines.append(f"postgresql['sql_password'] = '{params['password']}'")
            self.db = db
        else:
            self.db = ("sqlite", {"path": str(self.dir / "data" / "pushd.sqlite3")})
        self.config_file = tmp_path / "opscode-push-jobs-server.rb"
        self.config_file.write_text("\n".join(lines) + "\n")
        self.run_dir = self.dir / "run"
        self.client = BrokerClient(self.run_dir, timeout=5.0)
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tmp_path / "broker.log"

    def start(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pushd.broker", "--config", str(self.config_file)],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )
        wait_until(self._answers, 15, "broker process answering")

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"broker exited: {self.log.read_text()[-3000:]}")
        try:
            BrokerClient(self.run_dir, timeout=0.3).status()
            return True
        except BrokerUnavailable:
            return False

    def signal(self, signum: int) -> int:
        assert self.process is not None
        self.process.send_signal(signum)
        code = self.process.wait(10)
        self.process = None
        return code

    def peer(self, node: str) -> ProtocolPeer:
        keys = load_or_create_server_keys(self.dir / "data" / "keys")
        peer = ProtocolPeer.admitted(
            self.client, node=node, org_name=ORG_NAME, org_id=ORG_ID,
            command_addr=f"tcp://127.0.0.1:{self.command_port}",
            heartbeat_addr=f"tcp://127.0.0.1:{self.heartbeat_port}", interval=0.1,
            server_public_key=load_rsa_public_key(keys.rsa_public_pem),
        )
        return peer.start()


@pytest.fixture
def broker(tmp_path: Path, db_backend: tuple[str, dict]) -> Iterator[BrokerProcess]:
    process = BrokerProcess(tmp_path, db_backend)
    process.start()
    store.open_database_params(*process.db)
    try:
        yield process
    finally:
        if process.process is not None:
            process.process.kill()
            process.process.wait(5)
        store.close_database()


def wait_available(broker: BrokerProcess, node: str) -> None:
    wait_until(
        lambda: broker.client.node_states(ORG_ID, [node])["nodes"][0]["availability"]
        == "available", 5, f"{node} available",
    )


def test_sigkill_mid_run_then_restart_finishes_the_job(broker: BrokerProcess) -> None:
    peer = broker.peer("n1")
    try:
        wait_available(broker, "n1")
        # the Curve binding is saved within a second of the config request
        wait_until(lambda: (broker.dir / "data" / "broker" / "curve_clients.json").exists(), 3,
                   "bindings saved")
        job = "ab" * 16
        store.create_job(ORG_ID, job, "sleep 3", ["n1"], 1, 60, "alice", {"capture": True})
        assert broker.client.start_job(ORG_ID, job)["ok"]
        wait_until(lambda: store.get_job(ORG_ID, job).node_status("n1") == NodeStatus.RUNNING,
                   5, "running")
        assert broker.signal(signal.SIGKILL) == -signal.SIGKILL
        broker.start()
        wait_until(lambda: store.get_job(ORG_ID, job).status == JobStatus.COMPLETE, 10,
                   "job complete")
        view = store.get_job(ORG_ID, job)
        assert view.nodes_by_status() == {"succeeded": ["n1"]}
        assert store.get_output(ORG_ID, job, "n1", "stdout") == "n1 says hi\n"
        assert len(peer.received("abort")) == 1  # only the first contact's
    finally:
        peer.stop()


def test_sigterm_exits_cleanly(broker: BrokerProcess) -> None:
    peer = broker.peer("n1")
    try:
        wait_available(broker, "n1")
        assert broker.signal(signal.SIGTERM) == 0
        with pytest.raises(BrokerUnavailable):
            BrokerClient(broker.run_dir, timeout=0.3).status()
    finally:
        peer.stop()


def test_the_broker_says_which_libzmq_it_runs(broker: BrokerProcess) -> None:
    # pushd's own build (omnibus/pyzmq/build-wheel) halves a node's memory; which one a broker
    # runs is the first thing to know when sizing its host.
    log = broker.log.read_text()
    assert f"libzmq {zmq.zmq_version()}, pyzmq {metadata.version('pyzmq')}" in log
    assert "is not pushd's build" not in log


def test_one_client_keeps_working_across_a_broker_restart(broker: BrokerProcess) -> None:
    # API workers keep their control sockets between requests: after the broker is killed and
    # started again, the same client's next request reaches the new broker.
    first = broker.client.status()["incarnation_id"]
    assert broker.client.status()["incarnation_id"] == first  # from the pooled socket
    assert broker.signal(signal.SIGKILL) == -signal.SIGKILL
    broker.start()
    second = broker.client.status()["incarnation_id"]
    assert second != first


def listen_backlog(port: int) -> int:
    # For a listening TCP socket, `ss` shows the accept backlog in the Send-Q column.
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[2])


def test_node_ports_take_a_herd_of_connects(broker: BrokerProcess) -> None:
    # libzmq's default backlog (100) drops the SYNs of a reconnect storm beyond it, and those
    # nodes wait for the kernel's 1 s / 3 s retransmits; the broker asks for the kernel's most.
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    expected = min(4096, somaxconn)
    assert listen_backlog(broker.command_port) == expected
    assert listen_backlog(broker.heartbeat_port) == expected
