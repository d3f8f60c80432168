"""EventHub over a real ZeroMQ PUB socket: job topics are taken only while listened to."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from pushd.api.events import LATE_WAKE, EventHub


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
        time.sleep(0.1)  # the reader notices within its poll
        pub.close(0)
        context.term()


def publish_until(pub: zmq.Socket, topic: str, listener: object, seconds: float) -> bool:
    """Publish on `topic` every 20 ms until the listener wakes (True) or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pub.send_multipart([topic.encode(), b"{}"])
        if listener.wait(0.02):  # type: ignore[attr-defined]
            return True
    return False


def test_org_topics_wake_their_listener(pub_and_hub: tuple[zmq.Socket, EventHub]) -> None:
    pub, hub = pub_and_hub
    with hub.listen("org.o1") as listener:
        assert publish_until(pub, "org.o1", listener, 3.0)


def test_a_job_listener_is_woken_for_its_topic_and_not_for_another_job(
    pub_and_hub: tuple[zmq.Socket, EventHub],
) -> None:
    pub, hub = pub_and_hub
    with hub.listen("job.j1") as listener:
        # The subscription is made by the reader and woken once made, then LATE_WAKE later:
        # a stream re-reads the store over the moment its subscription was on its way.
        assert listener.wait(1.0)
        assert listener.wait(LATE_WAKE + 1.0)
        assert publish_until(pub, "job.j1", listener, 3.0)
        time.sleep(0.1)
        listener.wait(0)  # drop wake-ups of the events above still in flight
        for _ in range(5):
            pub.send_multipart([b"job.j2", b"{}"])
        assert not listener.wait(0.3)
        pub.send_multipart([b"job.j1", b"{}"])
        assert listener.wait(1.0)


def test_a_closed_job_topic_is_unsubscribed_and_can_be_listened_to_again(
    pub_and_hub: tuple[zmq.Socket, EventHub],
) -> None:
    pub, hub = pub_and_hub
    first = hub.listen("job.j1")
    assert publish_until(pub, "job.j1", first, 3.0)
    first.close()
    time.sleep(0.2)
    assert hub.generation("job.j1") is None
    with hub.listen("job.j1") as again:
        assert again.wait(1.0)  # woken when (re)subscribed
        time.sleep(LATE_WAKE + 0.1)
        again.wait(0)
        assert publish_until(pub, "job.j1", again, 3.0)
