"""Server heartbeats while the broker is still starting: a thread that beats until the loop runs.

    beacon = StartupBeacon(beat, period)
    beacon.start()      calls beat() now, then every `period` seconds, from a thread of its own
    beacon.stop()       returns once the thread is gone; from then on the caller may use what
                        beat() used (the heartbeat socket) from its own thread. Idempotent.
    beacon.beats        how many beats went out

Why: a stock client judges the server offline after offline_threshold heartbeat intervals
without a server heartbeat, then reopens its sockets and, with no command message within ~4 s,
fetches its config again. A restart's silence is the old broker's last heartbeat to the new
one's first; with the first heartbeat sent only by the loop, everything the broker loads before
it (database and schema check, session keys, Curve bindings, jobs to recover: ~1.5 s with 5,000
nodes) was part of that silence, and at 1 s heartbeats it was past the threshold (bench/RESULTS.md,
restart storm). So the broker binds its heartbeat socket and starts this as soon as the
incarnation id is known, and the loop takes over when it starts. Heartbeats say only that the
server is there: a node that hears them keeps heartbeating over its command connection, which
queues in libzmq until the loop reads it.

The thread and the loop never use the socket at the same time: the loop starts beating only
after stop() has joined the thread (a join orders the thread's use before the loop's, which is
all ZeroMQ asks of a socket that changes threads).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class StartupBeacon:
    def __init__(self, beat: Callable[[], None], period: float) -> None:
        if period <= 0:
            raise ValueError(f"beacon period must be positive, not {period!r}")
        self._beat = beat
        self._period = period
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.beats = 0

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("beacon already started")
        self._thread = threading.Thread(target=self._run, name="startup-beacon", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        # Event.wait as the sleep: stop() ends the wait at once, not a period later.
        while not self._stopped.is_set():
            try:
                self._beat()
                self.beats += 1
            except Exception:  # a failed beat must not end the beacon: the next may go out
                log.exception("startup heartbeat failed")
            self._stopped.wait(self._period)
