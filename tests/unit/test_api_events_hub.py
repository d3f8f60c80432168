"""EventHub over a real ZeroMQ PUB socket: an event wakes the streams of its topic only."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from pushd.api.events import EventHub


@pytest.fixture
def pub_and_hub(tmp_path: Path) -> Iterator[tuple[zmq.Socket, EventHub]]:
    context = zmq.Context()
    address = f"ipc://{tmp_path}/events.sock"
    pub = context.socket(zmq.PUB)
    pub.bind(address)
    hub = EventHub(zmq, context, address)
    hub.start()
    try:
        yield pub, hub
    finally:
        hub.close()
        time.sleep(0.6)  # the reader notices within its poll
        pub.close(0)
        context.term()


def publish_until(pub: zmq.Socket, topic: str, listener: Any, seconds: float) -> bool:
    """Publish on `topic` every 20 ms until the listener wakes (True) or `seconds` pass (the
    reader's subscription reaches the PUB a moment after it connects)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pub.send_multipart([topic.encode(), b"{}"])
        if listener.wait(0.02):
            return True
    return False


def test_an_event_wakes_the_listeners_of_its_topic_only(
    pub_and_hub: tuple[zmq.Socket, EventHub],
) -> None:
    pub, hub = pub_and_hub
    with hub.listen("job.j1") as job_listener, hub.listen("org.o1") as org_listener:
        assert publish_until(pub, "job.j1", job_listener, 3.0)
        before = hub.generation("org.o1")
        time.sleep(0.1)
        job_listener.wait(0)  # wake-ups of the events above still in flight
        org_listener.wait(0)
        for _ in range(5):
            pub.send_multipart([b"job.j2", b"{}"])
        assert not job_listener.wait(0.3)
        assert not org_listener.wait(0)
        assert hub.generation("org.o1") == before
        pub.send_multipart([b"org.o1", b"{}"])
        assert org_listener.wait(1.0)
        assert hub.generation("org.o1") != before


def test_a_topic_nobody_listens_to_has_no_generation(
    pub_and_hub: tuple[zmq.Socket, EventHub],
) -> None:
    pub, hub = pub_and_hub
    listener = hub.listen("job.j1")
    assert publish_until(pub, "job.j1", listener, 3.0)
    listener.close()
    assert hub.generation("job.j1") is None
