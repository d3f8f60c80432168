"""One thread per broker that keeps the cluster's time: the lease, the doorbell, the mailbox.

    bell = Doorbell(member, connect_params, lease, deliver, on_identity)
    bell.start()         join (register with a fresh lease), then serve in a daemon thread
    bell.stop()          leave the cluster cleanly (held nodes dropped, lease ended now)
    bell.ring()          wake the thread now (e.g. after the loop queued mail for itself)

`deliver(item: dict)` is called from this thread with what the broker's loop must act on; the
broker passes a function that forwards it over an inproc socket. Items:
    {"op": "mail", "sender": str, "messages": [...]}    mail taken from the mailbox
    {"op": "members", "live": [...], "gone": [...]}     the live members changed
    {"op": "adopt", "member": str, "jobs": [[org_id, job_id], ...]}
                                                        jobs taken over from an expired member
    {"op": "events", "topics": [...]}                   other members' feed events committed
    {"op": "fenced", "why": str}                        this member lost its lease: stop

What the thread does, and why here rather than in the loop: every call below is a database
round trip, and the loop must never wait for one.
- LISTENs, on its own psycopg connection (autocommit, application_name
  ``pushd-doorbell:<member>`` so an operator can find it), to this member's mail channel, the
  identity channel and the events channel. NOTIFY carries no data that matters and has no
  replay: it only says "look". So the thread also looks every POLL_PERIOD seconds without a
  ring, and after (re)connecting it looks at once and treats the identity and every feed as
  changed: a notification sent while the connection was down is never needed.
- Renews the lease every lease/5 seconds on the store's pool. A renewal that finds its row gone
  (another member took this one's jobs) or that has not succeeded for a whole lease means
  another member may now run this member's jobs: `fenced`, and the broker exits (its supervisor
  restarts it, and it joins afresh).
- Every renewal it also reads the live members; members gone since the last look are reported,
  and for each expired member it tries `store.cluster.take_over` (one member wins each job).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from pushd import store
from pushd.store import cluster

log = logging.getLogger(__name__)

POLL_PERIOD = 1.0  # seconds: the mailbox is read at least this often, rung or not
RECONNECT_DELAYS = (0.2, 0.5, 1.0, 2.0)  # seconds, then the last one again
MAIL_BATCH = 200


class Doorbell:
    def __init__(
        self,
        member: str,
        connect_params: Mapping[str, Any],
        lease: float,
        deliver: Callable[[dict[str, Any]], None],
        on_identity: Callable[[], None],
        *,
        info: Mapping[str, Any],
    ) -> None:
        self.member = member
        self._params = dict(connect_params)
        self._lease = float(lease)
        self._renew_every = max(0.5, self._lease / 5)
        self._deliver = deliver
        self._on_identity = on_identity
        self._info = dict(info)
        self._stopping = threading.Event()
        self._rung = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: set[str] = set()
        self._renewed_at = 0.0  # time.monotonic() of the last successful renewal
        self._renew_due = 0.0
        self.reconnects = 0
        self.mail_taken = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def join(self) -> None:
        """Register (or refresh) this member with a fresh lease; drop the node rows it left
        behind when it last stopped (it holds no node yet)."""
        cluster.register_member(
            self.member, self._info["host"], self._info["api_port"],
            self._info["heartbeat_port"], self._info["command_port"], self._lease,
        )
        cluster.clear_presence(self.member)
        self._renewed_at = time.monotonic()
        self._renew_due = self._renewed_at + self._renew_every

    def start(self) -> None:
        self.join()
        self._thread = threading.Thread(target=self._run, name="cluster-doorbell", daemon=True)
        self._thread.start()

    def stop(self, *, leave: bool = True) -> None:
        self._stopping.set()
        self._rung.set()
        thread = self._thread
        if thread is not None:
            thread.join(5.0)
        if leave:
            try:
                cluster.leave(self.member)
            except Exception as err:
                log.warning("could not leave the cluster cleanly (%s); the lease runs out", err)

    def ring(self) -> None:
        self._rung.set()

    # -- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        self._look_at_members()  # the loop learns who else is live (self._live starts empty)
        attempt = 0
        while not self._stopping.is_set():
            try:
                connection = self._connect()
            except Exception as err:
                delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
                attempt += 1
                log.warning("cluster doorbell: cannot listen (%s); again in %.1f s", err, delay)
                self._keep_lease()  # on the pool, which may still reach the database
                self._stopping.wait(delay)
                continue
            attempt = 0
            try:
                self._listen(connection)
            except Exception as err:
                if not self._stopping.is_set():
                    self.reconnects += 1
                    log.warning("cluster doorbell: listening connection lost (%s); reconnecting",
                                err)
            finally:
                try:
                    connection.close()
                except Exception:
                    pass

    def _connect(self) -> Any:
        import psycopg

        params = {k: v for k, v in self._params.items() if v not in (None, "")}
        params["dbname"] = params.pop("database")
        connection = psycopg.connect(
            autocommit=True, application_name=f"pushd-doorbell:{self.member}"[:63],
            connect_timeout=5, **params,
        )
        for channel in (cluster.mail_channel(self.member), cluster.IDENTITY_CHANNEL,
                        cluster.EVENTS_CHANNEL):
            connection.execute(f'LISTEN "{channel}"')
        # Whatever was rung while nobody listened: look now, and let every reader look again.
        self._on_identity()
        self._deliver({"op": "events", "topics": ["*"]})
        self._take_mail()
        return connection

    def _listen(self, connection: Any) -> None:
        while not self._stopping.is_set():
            wait = max(0.05, min(POLL_PERIOD, self._renew_due - time.monotonic()))
            topics: set[str] = set()
            identity = False
            # Waits up to `wait` seconds for a first notification, then takes what else has
            # already arrived without waiting.
            notes = list(connection.notifies(timeout=wait, stop_after=1))
            if notes:
                notes.extend(connection.notifies(timeout=0))
            for note in notes:
                if note.channel == cluster.IDENTITY_CHANNEL:
                    identity = True
                elif note.channel == cluster.EVENTS_CHANNEL:
                    topics.update(t for t in note.payload.split(" ") if t)
            if self._rung.is_set():
                self._rung.clear()
            if identity:
                self._on_identity()
            if topics:
                self._deliver({"op": "events", "topics": sorted(topics)})
            self._take_mail()
            self._keep_lease()
            # A dead server is noticed by the LISTEN connection only when the kernel says so;
            # a cheap query makes sure this connection is alive at least once per poll.
            connection.execute("SELECT 1")

    def _take_mail(self) -> None:
        while True:
            batches = cluster.take_mail(self.member, MAIL_BATCH)
            for sender, messages in batches:
                self.mail_taken += len(messages)
                self._deliver({"op": "mail", "sender": sender, "messages": messages})
            if len(batches) < MAIL_BATCH:
                return

    def _keep_lease(self) -> None:
        now = time.monotonic()
        if now < self._renew_due:
            return
        self._renew_due = now + self._renew_every
        try:
            renewed = cluster.renew_lease(self.member, self._lease)
        except store.StoreError as err:
            log.warning("cluster lease not renewed (%s)", err)
            if now - self._renewed_at > self._lease:
                self._deliver({"op": "fenced", "why": f"lease not renewed for "
                               f"{now - self._renewed_at:.1f} s ({err})"})
            return
        if not renewed:
            self._deliver({"op": "fenced", "why": "another member took over this one's duties "
                           "(its lease had run out)"})
            return
        self._renewed_at = now
        self._look_at_members()

    def _look_at_members(self) -> None:
        try:
            live = cluster.live_members()
            expired = cluster.expired_members()
        except store.StoreError as err:
            log.warning("cannot read the cluster's members (%s)", err)
            return
        gone = sorted((self._live - live) | (set(expired) - {self.member}))
        if live != self._live or gone:
            self._deliver({"op": "members", "live": sorted(live), "gone": gone})
        self._live = live
        for dead in expired:
            if dead == self.member:
                continue
            try:
                jobs = cluster.take_over(dead, self.member)
            except store.StoreError as err:
                log.warning("could not take over member %s (%s)", dead, err)
                continue
            if jobs is None:
                continue  # another member got there first
            log.warning("cluster member %s is gone (lease expired); took over its %d active "
                        "job(s)", dead, len(jobs))
            self._deliver({"op": "adopt", "member": dead, "jobs": [list(j) for j in jobs]})
