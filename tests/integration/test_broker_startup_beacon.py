"""The server heartbeat goes out while the broker is still loading (pushd.broker.beacon).

A restart's silence, as a node hears it, must not include the broker's start-up work: here the
database takes seconds to open (a busy disk, a PostgreSQL server slow to answer), and a
subscriber still hears correctly signed server heartbeats of the new broker's incarnation, then
the loop's, with no sequence number used twice.
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
from pushd.keys import load_or_create_server_keys, load_rsa_public_key
from pushd.protocol.frames import open_frames, verify_signature
from tests.support.broker_runner import BrokerEnv

SLOW_OPEN = 3.0  # seconds the database takes to open


@pytest.fixture
def subscriber() -> Iterator[zmq.Socket]:
    context = zmq.Context()
    socket = context.socket(zmq.SUB)
    socket.linger = 0
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    yield socket
    socket.close()
    context.term()


def test_heartbeats_go_out_while_the_database_is_still_opening(
    tmp_path: Path, subscriber: zmq.Socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = BrokerEnv(tmp_path, ("sqlite", {"path": str(tmp_path / "pushd.sqlite3")}),
                    heartbeat_interval=1.0)
    opening = threading.Event()
    real_open = store.open_database_params

    def slow_open(*args: Any, **kwargs: Any) -> Any:
        opening.set()
        time.sleep(SLOW_OPEN)
        return real_open(*args, **kwargs)

    public_key = load_rsa_public_key(
        load_or_create_server_keys(env.config.data_dir / "keys").rsa_public_pem
    )
    monkeypatch.setattr(store, "open_database_params", slow_open)
    subscriber.connect(env.heartbeat_addr)
    starter = threading.Thread(target=env.start, daemon=True)
    starter.start()
    try:
        assert opening.wait(10), "the broker never opened its database"
        opened_at = time.monotonic()
        heard: list[tuple[float, dict[str, Any]]] = []
        # Until the loop has beaten a while after the start (or a deadline).
        deadline = opened_at + SLOW_OPEN + 5
        while time.monotonic() < deadline and (starter.is_alive() or len(heard) < 12):
            if subscriber.poll(200):
                envelope = open_frames(subscriber.recv_multipart())
                verify_signature(envelope, public_key)
                heard.append((time.monotonic(), envelope.body))
        starter.join(10)
        assert not starter.is_alive(), "the broker did not finish starting"
        assert env.broker is not None
        # At 4 per interval while the database opens: several before it is open.
        early = [body for at, body in heard if at - opened_at < SLOW_OPEN - 0.5]
        assert len(early) >= 3, f"{len(early)} heartbeats while the broker was loading"
        assert {body["incarnation_id"] for _, body in heard} == {env.broker.incarnation_id}
        assert env.client.status()["incarnation_id"] == env.broker.incarnation_id
        sequences = [body["sequence"] for _, body in heard]
        assert len(heard) > len(early), "the loop did not take over the heartbeat"
        assert sequences == sorted(set(sequences)), "a sequence number went out twice"
    finally:
        starter.join(10)
        env.close()
