"""A stopping broker's last server heartbeat is the last thing it does.

Nodes judge the server offline after a few heartbeat intervals of silence, and a restart's
silence runs from the old broker's last heartbeat to the new one's first. Whatever the stop does
after its last heartbeat (closing the database here, a slow one; ending thousands of node
connections in libzmq at scale) would lengthen it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from pushd_bench.server import HeartbeatListener

from pushd import store
from tests.support.broker_runner import BrokerEnv, wait_until

SLOW_CLOSE = 1.0  # seconds the database takes to close


def test_the_last_heartbeat_follows_the_database_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
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

    listener = HeartbeatListener(env.heartbeat_addr)
    try:
        wait_until(lambda: len(listener.beats) >= 1, 10, "a heartbeat before the stop")
        monkeypatch.setattr(store, "close_database", slow_close)
        env.stop()
        time.sleep(0.3)  # what the last heartbeat's linger lets out
    finally:
        listener.close()
        monkeypatch.setattr(store, "close_database", real_close)
        env.close()
    assert closed_at, "the database was not closed"
    *_, previous, last = listener.beats
    assert last.sequence == previous.sequence + 1
    assert last.at >= closed_at[0], (
        f"the last heartbeat went out {closed_at[0] - last.at:.2f} s before the stop ended")
