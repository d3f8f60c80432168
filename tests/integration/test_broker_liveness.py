"""Liveness judged fairly with a real broker: a loop stalled longer than `offline_after` (a big
job's turn, a slow database) does not mark heartbeating nodes offline, whether their heartbeats
wait unread in the command socket or (stock clients) they fell silent because the server
heartbeat stopped; a node that really went silent still goes offline."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pushd.broker.service import Broker
from pushd.states import JobStatus, NodeStatus
from tests.support.broker_runner import BrokerEnv, wait_until


class Staller:
    """Makes the broker's loop stall once, inside its own thread (a timer callback that
    sleeps: the same effect as a turn busy with a large job or a slow database)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.done = threading.Event()

    def stall(self, seconds: float) -> None:
        self.done.clear()
        self.seconds = seconds
        assert self.done.wait(5), "the broker loop did not run its housekeeping"


@pytest.fixture
def staller(monkeypatch: pytest.MonkeyPatch) -> Staller:
    staller = Staller()
    housekeeping = Broker._housekeeping

    def stalling_housekeeping(self: Broker) -> None:
        seconds, staller.seconds = staller.seconds, 0.0
        if seconds:
            time.sleep(seconds)
            staller.done.set()
        housekeeping(self)

    monkeypatch.setattr(Broker, "_housekeeping", stalling_housekeeping)
    return staller


@pytest.fixture
def env(tmp_path: Path, staller: Staller) -> Iterator[BrokerEnv]:
    # 0.1 s heartbeats: offline after 0.3 s of silence; the stalls below last 1 s.
    env = BrokerEnv(tmp_path, ("sqlite", {"path": str(tmp_path / "pushd.sqlite3")})).start()
    try:
        yield env
    finally:
        env.close()


def aborts(peer: object) -> int:
    return len(peer.received("abort"))  # type: ignore[attr-defined]


def test_queued_heartbeats_keep_nodes_online_through_a_stall(env: BrokerEnv,
                                                             staller: Staller) -> None:
    peers = [env.peer(name) for name in ("a", "b", "c")]
    dead = env.peer("dead")
    job = env.create_job(["a", "b", "c"], "sleep 1.5")
    wait_until(lambda: env.job(job).status == JobStatus.RUNNING, 5, "job running")
    before = [aborts(p) for p in peers]
    dead.kill()

    staller.stall(1.0)  # ten heartbeat intervals, more than three times offline_after

    for name in ("a", "b", "c"):
        assert env.node_state(name)["status"] == "online"
    view = env.wait_job(job, timeout=10)
    assert view.status == JobStatus.COMPLETE
    assert all(view.node_status(n) == NodeStatus.SUCCEEDED for n in ("a", "b", "c"))
    # No session was ended and reopened (a new session starts with an abort).
    assert [aborts(p) for p in peers] == before
    # The node that really went silent is still judged offline.
    wait_until(lambda: env.node_state("dead")["status"] == "offline", 3, "dead offline")
    assert env.broker is not None and env.broker.counters["stalls"] >= 1


def test_stock_clients_silenced_by_a_stall_stay_online(env: BrokerEnv,
                                                      staller: Staller) -> None:
    peers = [env.peer(name, start=False) for name in ("a", "b")]
    for peer in peers:
        peer.stock_liveness = True
        peer.start()
        env.wait_available(peer.node)
    before = [aborts(p) for p in peers]

    staller.stall(1.0)

    # The stock clients judged the server offline during the stall and went quiet ...
    wait_until(lambda: all(p.online for p in peers), 3, "clients online again")
    # ... and the broker waited for them to come back instead of ending their sessions.
    time.sleep(0.5)
    for name in ("a", "b"):
        assert env.node_state(name)["status"] == "online"
    assert [aborts(p) for p in peers] == before


def test_a_silent_node_goes_offline_without_stalls(env: BrokerEnv) -> None:
    peer = env.peer("quiet")
    env.peer("chatty")
    peer.send_heartbeats = False
    wait_until(lambda: env.node_state("quiet")["status"] == "offline", 3, "quiet offline")
    assert env.node_state("chatty")["status"] == "online"
