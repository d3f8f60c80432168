"""Run a real broker (pushd.broker.service.Broker) for integration tests.

    env = BrokerEnv(tmp_path, db=("sqlite", params), heartbeat_interval=0.1, voting_timeout=1.0)
    env.start()                      Broker in a thread of this process (real sockets, real DB)
    env.stop()                       SIGTERM-equivalent: the loop closes everything and returns
    env.restart()                    stop, then a new Broker on the same dirs, ports and database
    env.client                       a BrokerClient on the control socket
    env.peer("n1", **kw) -> ProtocolPeer    admitted and started; stopped by env.close()
    env.create_job(nodes, command="true", quorum=None, run_timeout=3600, **options) -> job_id
                                     writes the `new` row (as the API does) and asks the broker
    env.job(job_id) -> JobView; env.wait_job(job_id, status) -> JobView
    env.events(job_id) -> [(name, data)]  the job's persisted feed events
"""

from __future__ import annotations

import atexit
import functools
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pushd_bench.protocol_peer import ProtocolPeer

from pushd import store
from pushd.broker.config import BrokerConfig
from pushd.broker.control_client import BrokerClient
from pushd.broker.service import Broker
from pushd.keys import load_or_create_server_keys, load_rsa_public_key
from pushd.states import TERMINAL_JOB_STATUSES, JobStatus
from tests.support.ports import free_ports

ORG_ID = "0123456789abcdef0123456789abcdef"
ORG_NAME = "acme"


@functools.cache
def _server_keys_template() -> Path:
    """One set of server keys for the whole test session: RSA generation costs up to a second
    per broker otherwise. Each BrokerEnv gets its own copy."""
    base = Path(tempfile.mkdtemp(prefix="pushd-test-keys-"))
    atexit.register(shutil.rmtree, base, True)
    load_or_create_server_keys(base / "keys")
    return base / "keys"


class BrokerEnv:
    def __init__(self, tmp_path: Path, db: tuple[str, dict[str, Any]], **overrides: Any) -> None:
        heartbeat_port, command_port, legacy_port = free_ports(3)
        values: dict[str, Any] = {
            "run_dir": tmp_path / "run",
            "data_dir": tmp_path / "data",
            "heartbeat_interval": 0.1,
            "server_heartbeat_port": heartbeat_port,
            "command_port": command_port,
            "unencrypted_command_port": legacy_port,
            "zeromq_listen_address": "tcp://127.0.0.1",
            "server_name": "127.0.0.1",
            "rehab_timer": 0.2,
            "voting_timeout": 1.0,
            "database": db,
        }
        values.update(overrides)
        self.config = BrokerConfig(**values)
        keys = self.config.data_dir / "keys"
        if not keys.exists():
            shutil.copytree(_server_keys_template(), keys)
        self.broker: Broker | None = None
        self._thread: threading.Thread | None = None
        self.client = BrokerClient(self.config.run_dir, timeout=5.0)
        self.peers: list[ProtocolPeer] = []

    # -- broker lifecycle --------------------------------------------------------------------

    def start(self) -> BrokerEnv:
        self.broker = Broker(self.config)
        self._thread = threading.Thread(target=self.broker.run, name="broker", daemon=True)
        self._thread.start()
        self.client.status()  # answers once the loop runs
        return self

    def stop(self) -> None:
        if self.broker is not None:
            self.broker.stop()
            assert self._thread is not None
            self._thread.join(10)
            assert not self._thread.is_alive(), "broker did not stop"
            self.broker = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        for peer in self.peers:
            peer.stop()
        self.stop()

    # -- nodes -------------------------------------------------------------------------------

    @property
    def command_addr(self) -> str:
        return f"tcp://127.0.0.1:{self.config.command_port}"

    @property
    def heartbeat_addr(self) -> str:
        return f"tcp://127.0.0.1:{self.config.server_heartbeat_port}"

    def peer(self, node: str, *, start: bool = True, wait_available: bool = True,
             curve: bool = True, **kwargs: Any) -> ProtocolPeer:
        assert self.broker is not None
        peer = ProtocolPeer.admitted(
            self.client, node=node, org_name=ORG_NAME, org_id=ORG_ID, curve=curve,
            command_addr=self.command_addr if curve
            else f"tcp://127.0.0.1:{self.config.unencrypted_command_port}",
            heartbeat_addr=self.heartbeat_addr,
            interval=self.config.heartbeat_interval,
            server_public_key=load_rsa_public_key(self.broker.keys.rsa_public_pem),
            **kwargs,
        )
        self.peers.append(peer)
        if start:
            peer.start()
            if wait_available:
                self.wait_available(node)
        return peer

    def node_state(self, node: str) -> dict[str, Any]:
        reply = self.client.node_states(ORG_ID, [node])
        return reply["nodes"][0]

    def wait_available(self, node: str, timeout: float = 5.0) -> None:
        wait_until(lambda: self.node_state(node)["availability"] == "available", timeout,
                   f"{node} available")

    # -- jobs --------------------------------------------------------------------------------

    def create_job(self, nodes: list[str], command: str = "true", *, quorum: int | None = None,
                   run_timeout: int = 3600, start: bool = True, **options: Any) -> str:
        job_id = ORG_ID[-12:] + secrets.token_hex(10)
        store.create_job(ORG_ID, job_id, command, nodes,
                         len(nodes) if quorum is None else quorum, run_timeout, "alice",
                         options or None)
        if start:
            reply = self.client.start_job(ORG_ID, job_id)
            assert reply["ok"], reply
        return job_id

    def job(self, job_id: str) -> Any:
        return store.get_job(ORG_ID, job_id)

    def wait_job(self, job_id: str, status: JobStatus | None = None,
                 timeout: float = 10.0) -> Any:
        def done() -> bool:
            view = self.job(job_id)
            if status is None:
                return view.status in TERMINAL_JOB_STATUSES
            return view.status == status

        wait_until(done, timeout, f"job {job_id} {status}")
        return self.job(job_id)

    def events(self, job_id: str) -> list[tuple[str, dict[str, Any]]]:
        return [(e.name, e.data) for e in store.job_events_after(ORG_ID, job_id)]

    def event_names(self, job_id: str) -> list[str]:
        return [name for name, _ in self.events(job_id)]


def wait_until(predicate: Any, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
