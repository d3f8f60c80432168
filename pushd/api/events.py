"""Live wake-ups for SSE streams from the broker's events socket.

The broker writes every feed event to the database before it wakes the feeds on
``ipc://{run_dir}/events.sock`` (frames: topic ``job.<job_id>`` | ``org.<org_id>``, then
``{"id": N}``, the newest stored event id on the topic; one message per topic per journal
batch). The database is the source of truth for the streams: a wake-up only wakes the streams
listening on its topic, and they read what is new from the store. So a stream never misses an
event the socket dropped, never blocks the broker (PUB drops for a slow subscriber) and never
blocks another stream (a wake-up is a flag, not a queue).

    EventHub(zmq_module, context, address)
        One SUB socket per API worker. ``start()`` runs the reader in a thread (a greenlet in a
        gevent worker, where threading is patched; pass ``zmq.green`` there). ``listen(topic)``
        returns a Listener; ``close()`` stops the reader. ``generation(topic) -> int | None``:
        a number that changes (to a value never used before) each time an event for the topic
        arrives, taken before its listeners are woken; None while nobody listens to the
        topic. Streams key the store reads they share on it (`pushd.api.feeds`): a read
        started under the current generation began after every event woken so far was
        committed.
    Listener
        ``wait(timeout) -> bool``: True when an event for the topic arrived since the last call
        (or arrives within `timeout` seconds). ``close()`` unsubscribes; it is also a context
        manager.
"""

from __future__ import annotations

import itertools
import logging
import threading
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)


# Published by a cluster member's broker after its doorbell reconnected: a notification may have
# been missed, so every stream looks at the store again.
WAKE_ALL = "*"
DRAIN_LIMIT = 1000  # messages read per wake-up of the reader before its streams are woken


class Listener:
    def __init__(self, hub: EventHub, topic: str) -> None:
        self.topic = topic
        self._hub = hub
        self._flag = threading.Event()

    def notify(self) -> None:
        self._flag.set()

    def wait(self, timeout: float) -> bool:
        woke = self._flag.wait(timeout)
        self._flag.clear()
        return woke

    def close(self) -> None:
        self._hub._remove(self)

    def __enter__(self) -> Listener:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EventHub:
    def __init__(self, zmq_module: Any, context: Any, address: str) -> None:
        self._zmq = zmq_module
        self._context = context
        self._address = address
        self._listeners: dict[str, set[Listener]] = {}
        self._generations: dict[str, int] = {}
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._running = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._run, name="pushd-events", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._running = False

    def listen(self, topic: str) -> Listener:
        listener = Listener(self, topic)
        with self._lock:
            if topic not in self._listeners:
                self._generations[topic] = next(self._counter)
            self._listeners.setdefault(topic, set()).add(listener)
        return listener

    def generation(self, topic: str) -> int | None:
        return self._generations.get(topic)

    def _remove(self, listener: Listener) -> None:
        with self._lock:
            group = self._listeners.get(listener.topic)
            if group is not None:
                group.discard(listener)
                if not group:
                    del self._listeners[listener.topic]
                    self._generations.pop(listener.topic, None)

    def _wake(self, topic: str) -> None:
        with self._lock:
            if topic == WAKE_ALL:
                topics = list(self._listeners)
            else:
                topics = [topic] if topic in self._listeners else []
            listeners = [one for name in topics for one in self._listeners[name]]
            for name in topics:
                self._generations[name] = next(self._counter)
        for listener in listeners:
            listener.notify()

    def _run(self) -> None:
        import zmq as plain_zmq

        zmq = self._zmq
        # The drain below reads with the plain recv, not zmq.green's: green's asks the socket's
        # EVENTS after every frame (to re-arm gevent's watcher), through pyzmq's enum
        # conversions: most of the two workers' ~0.4 s of CPU per 8,000-node job (24,000
        # events). Nothing is missed for it: the green Poller's poll() starts with a real
        # zmq_poll of the socket, which sees whatever is queued.
        recv = plain_zmq.Socket.recv
        sock = self._context.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        # Subscribe to everything: filtering per stream happens here, and the broker's PUB
        # must not need to know which topics this worker cares about.
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(self._address)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        try:
            while self._running:
                if not poller.poll(500):
                    continue
                # Everything that waits, then one wake-up per topic: a big job publishes three
                # events per node, and a poll and a wake-up per event cost each API worker
                # ~20 us per event (most of its CPU during an 8,000-node job).
                topics = set()
                for _ in range(DRAIN_LIMIT):
                    try:
                        frame = recv(sock, zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    topics.add(frame.bytes)
                    while frame.more:  # {"id": N}: the streams read what is new from the store
                        frame = recv(sock, zmq.NOBLOCK, copy=False)
                for topic in topics:
                    self._wake(topic.decode("utf-8", "replace"))
        except Exception:
            log.exception("events reader stopped")
        finally:
            sock.close(0)
