"""pushd.broker.startup: the heartbeat's path is light, and a failed early start cleans up."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
import zmq

from pushd.broker.early_start import EarlyStart
from tests.support.broker_runner import BrokerEnv


def test_the_heartbeat_path_imports_neither_the_store_nor_the_loop() -> None:
    # What run_broker imports before the beacon beats: a heavy import added here would be
    # part of every restart's silence again.
    code = (
        "import sys, pushd.config, pushd.broker.startup, pushd.broker.early_start\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('peewee', 'psycopg',"
        " 'prometheus_client') or m.startswith(('pushd.store', 'pushd.broker.service',"
        " 'pushd.broker.jobs')))\n"
        "print(' '.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ""


def test_a_taken_heartbeat_port_fails_the_start_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    env = BrokerEnv(tmp_path, ("sqlite", {"path": str(tmp_path / "pushd.sqlite3")}))
    context = zmq.Context()
    squatter = context.socket(zmq.PUB)
    squatter.linger = 0
    squatter.bind(env.heartbeat_addr)
    try:
        with pytest.raises(zmq.ZMQError):
            EarlyStart.begin(env.config)
        assert not [t for t in threading.enumerate() if t.name == "startup-beacon"]
    finally:
        squatter.close()
        context.term()
    early = EarlyStart.begin(env.config)  # the port free again: it starts, and beats
    try:
        assert [t for t in threading.enumerate() if t.name == "startup-beacon"]
    finally:
        early.close()
        early.close()  # twice: run_broker's own cleanup may follow the Broker's
    assert not [t for t in threading.enumerate() if t.name == "startup-beacon"]
