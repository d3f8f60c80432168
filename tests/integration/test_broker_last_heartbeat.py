"""A stopping broker's last server heartbeat is the last thing it does.

Nodes judge the server offline after a few heartbeat intervals of silence, and a restart's
silence runs from the old broker's last heartbeat to the new one's first. Whatever the stop does
after its last heartbeat (closing the database here, a slow one; ending thousands of node
connections in libzmq at scale) would lengthen it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from pushd import store
from pushd.protocol.frames import open_frames
from tests.support.broker_runner import BrokerEnv, wait_until

SLOW_CLOSE = 1.0  # seconds the database takes to close


@pytest.fixture
def subscriber() -> Iterator[zmq.Socket]:
    context = zmq.Context()
    socket = context.socket(zmq.SUB)
    socket.linger = 0
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    yield socket
    socket.close()
    context.term()


def test_the_last_heartbeat_follows_the_database_close(
    tmp_path: Path, subscriber: zmq.Socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = BrokerEnv(tmp_path, ("sqlite", {"path": str(tmp_path / "pushd.sqlite3")}),
                    heartbeat_interval=5.0)  # no regular beat during the stop
    env.start()
    closed_at: list[float] = []
    real_close = store.close_database

    def slow_close(*args: Any, **kwargs: Any) -> Any:
        time.sleep(SLOW_CLOSE)
        result = real_close(*args, **kwargs)
        closed_at.append(time.monotonic())
        return result

    heard: list[tuple[float, int]] = []
    listening = threading.Event()
    stop_listening = threading.Event()

    def listen() -> None:
        listening.set()
        while not stop_listening.is_set():
            if subscriber.poll(50):
                body = open_frames(subscriber.recv_multipart()).body
                heard.append((time.monotonic(), body["sequence"]))

    subscriber.connect(env.heartbeat_addr)
    listener = threading.Thread(target=listen, daemon=True)
    try:
        listener.start()
        listening.wait(5)
        wait_until(lambda: len(heard) >= 1, 10, "a heartbeat before the stop")
        monkeypatch.setattr(store, "close_database", slow_close)
        env.stop()
        time.sleep(0.3)  # what the last heartbeat's linger lets out
    finally:
        stop_listening.set()
        listener.join(5)
        monkeypatch.setattr(store, "close_database", real_close)
        env.close()
    assert closed_at, "the database was not closed"
    last_at, last_sequence = heard[-1]
    assert [sequence for _, sequence in heard][-2:] == [last_sequence - 1, last_sequence]
    assert last_at >= closed_at[0], (
        f"the last heartbeat went out {closed_at[0] - last_at:.2f} s before the stop ended")
