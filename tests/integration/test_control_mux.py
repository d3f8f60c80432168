"""MultiplexedBrokerClient: one control connection per API worker, replies matched by id."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import gevent
import pytest
import zmq
import zmq.green as green

from pushd import store
from pushd.broker.control_client import BrokerUnavailable, control_address
from pushd.broker.control_mux import MultiplexedBrokerClient
from tests.support.broker_runner import ORG_ID, ORG_NAME, BrokerEnv


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def env(tmp_path: Path) -> Iterator[BrokerEnv]:
    env = BrokerEnv(tmp_path, ("sqlite", {"path": str(tmp_path / "pushd.sqlite3")}))
    try:
        yield env
    finally:
        env.close()


@pytest.fixture
def green_context() -> Iterator[green.Context]:
    context = green.Context()
    yield context
    context.destroy(linger=0)


def test_concurrent_requests_share_one_connection_and_get_their_own_replies(
    env: BrokerEnv, green_context: green.Context
) -> None:
    env.start()
    client = MultiplexedBrokerClient(env.config.run_dir, timeout=5, context=green_context)
    try:
        assert client.request({"op": "status"})["ok"]
        files = open_files()  # this process holds both ends: the client's and the broker's
        nodes = [f"n{i}" for i in range(60)]
        jobs = [gevent.spawn(client.request, {"op": "node_states", "org_id": ORG_ID,
                                              "nodes": [node]}) for node in nodes]
        gevent.joinall(jobs, timeout=10)
        for node, job in zip(nodes, jobs, strict=True):
            assert job.value is not None, job.exception
            assert [n["node_name"] for n in job.value["nodes"]] == [node]
        assert open_files() == files  # 60 requests in flight: no socket more
    finally:
        client.close()


def test_a_request_the_caller_gave_up_on_is_not_delivered_when_the_broker_comes(
    env: BrokerEnv, green_context: green.Context
) -> None:
    client = MultiplexedBrokerClient(env.config.run_dir, timeout=0.3, context=green_context)
    try:
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable, match="admit"):
            client.request({"op": "admit", "org_name": ORG_NAME, "org_id": ORG_ID,
                            "node": "late", "ccpk": zmq.curve_keypair()[0].decode()})
        assert time.monotonic() - started < 2
        env.start()
        assert client.request({"op": "status"})["ok"]  # the same client, now connected
        gevent.sleep(0.3)
        assert store.get_session_key(ORG_ID, "late") is None  # the admit never arrived
        env.restart()
        assert client.request({"op": "status"})["ok"]  # and it follows a broker restart
    finally:
        client.close()


@pytest.fixture
def fake_broker(tmp_path: Path) -> Iterator[zmq.Socket]:
    """A fake broker: a plain ROUTER bound on the control address, closed after the test."""
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.linger = 0
    router.bind(control_address(tmp_path))
    try:
        yield router
    finally:
        router.close()
        context.term()


def echo(router: zmq.Socket, identity: bytes, payload: bytes) -> None:
    """A fake broker's answer: ok, the request's op echoed, its id returned."""
    request = json.loads(payload)
    router.send_multipart([identity, json.dumps(
        {"ok": True, "echo": request["op"], "id": request["id"]}).encode()])


def test_a_late_reply_is_dropped_and_the_next_request_gets_its_own(
    tmp_path: Path, green_context: green.Context, fake_broker: zmq.Socket
) -> None:
    # The fake broker answers the first request only after the client gave up on it, then the
    # second at once.
    router = fake_broker

    def answer_late() -> None:
        first = router.recv_multipart()
        second = router.recv_multipart()
        for identity, payload in (first, second):
            echo(router, identity, payload)

    thread = threading.Thread(target=answer_late, daemon=True)
    thread.start()
    client = MultiplexedBrokerClient(tmp_path, timeout=0.3, context=green_context)
    try:
        with pytest.raises(BrokerUnavailable):
            client.request({"op": "first"})
        assert client.request({"op": "second"}) == {"ok": True, "echo": "second"}
    finally:
        client.close()
        thread.join(2)


def test_a_new_clients_first_request_reaches_a_broker_that_is_up(
    tmp_path: Path, green_context: green.Context, fake_broker: zmq.Socket
) -> None:
    # The first request waits for the connection (ZMQ_IMMEDIATE) while the reader greenlet
    # already waits on the same socket for replies: it must not sleep through the connection.
    router = fake_broker
    stop = threading.Event()

    def echo_broker() -> None:
        while not stop.is_set():
            if router.poll(50):
                echo(router, *router.recv_multipart())

    thread = threading.Thread(target=echo_broker, daemon=True)
    thread.start()
    answered = 0
    try:
        for attempt in range(10):
            client = MultiplexedBrokerClient(tmp_path, timeout=0.5, context=green_context)
            try:
                assert client.request({"op": f"first-{attempt}"})["echo"] == f"first-{attempt}"
                answered += 1
            finally:
                client.close()
    finally:
        stop.set()
        thread.join(5)
    assert answered == 10
