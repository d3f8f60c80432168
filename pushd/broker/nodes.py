"""Node tracking: one session (the original's node FSM) per connected node, and liveness.

    tracker = NodeTracker(outbox, scheduler, rehab_interval=1.0, offline_after=30.0,
                          reattach_hold=0.0, liveness_clock=None)
    tracker.attach(jobs)                        the job engine (JobHooks) messages are routed to
    tracker.on_message(ref, address, body)      a validated message from node `ref` (NodeRef)
    tracker.rehab(ref)                          a job asks: abort the node until it says `aborted`
    tracker.check_liveness() -> list[NodeRef]   end the sessions of silent nodes (timer, once per
                                                heartbeat interval); returns the nodes ended
    tracker.status(ref) -> NodeState            online / available / last_seen (wall clock)
    tracker.is_available(ref) -> bool           online and idle: a job may send it `commit`
    tracker.address(ref) -> Address | None
    tracker.known(org_id) -> list[NodeRef]      nodes seen since the broker started (any state)
    tracker.session_count                       live sessions (`node_fsm_count` of /_status)
    tracker.end_session(ref)                    end a session now (key revoked): jobs see `down`
    tracker.shutdown()                          cancel every timer
    tracker.take_counts() -> dict[str, int]     sessions opened ("connected"), re-routed
                                                ("reconnected"), nodes become "available",
                                                "offline" since the last call (the
                                                broker logs them as one periodic INFO line; the
                                                per-node lines are DEBUG, so a restart storm of
                                                5,000 nodes does not write 10,000 lines)

Session states follow the original's `pushy_node_state` (post_init is folded into creation):

* A new session sends `abort` at once and every `rehab_interval` until the node answers
  `aborted` (state `rehab`, unavailable), then the node is `idle` (available).
* `idle` + a job's rehab request, or a heartbeat naming a job no live job knows -> `rehab`.
* A message with another client incarnation id ends the session (jobs see the node `down`)
  and starts a fresh one, which aborts the node again.
* A message from a new connection (ZMQ identity) re-routes the session and is answered `ack`.
* Job messages (`ack_commit` ... `failed`) go to the job engine in any state; if no live job
  takes them the node is sent to rehab. `aborted` naming a job is forwarded too, but an unknown
  job there does not trigger another rehab (pedant: no abort for a stray `aborted`).
* Liveness: a session whose node sent nothing valid for `offline_after` seconds ends (jobs see
  `down`), and the node is `offline` until its next valid message. Silence is measured on
  `liveness_clock` (default: the scheduler's clock); the broker passes a clock that does not
  count the time its own loop was stalled, so nodes are not convicted for the broker's delay.
* A heartbeat saying the node is idle with no job goes to the engine (JobHooks.node_idle): a
  node a job still counts as running has lost its job (its result was dropped on the way).
  One naming a live job goes there too (JobHooks.job_heartbeat): after a replaced connection
  it tells whether the `run` sent to the old one arrived.
* Re-attach after a broker restart: the first message of a node still running a job the broker
  is recovering (JobHooks.reattach accepts it) opens the session in `idle` without an abort,
  answered by `ack`, so the running command is not killed. Such a node is not judged offline
  before `reattach_hold` seconds after the tracker was created (the broker passes its
  recovery grace): a stock client that judged the server offline while it was down first
  delivers the heartbeats its socket had queued, then stays silent until it has seen more than
  `online_threshold` server heartbeats, longer than `offline_after`.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pushd.broker.contracts import Address, NodeRef, Outbox, Scheduler, Timer
from pushd.broker.liveness import LivenessMonitor

log = logging.getLogger(__name__)

JOB_MESSAGE_TYPES = frozenset(
    {"ack_commit", "nack_commit", "ack_run", "nack_run", "succeeded", "failed"}
)

REHAB = "rehab"
IDLE = "idle"


class JobHooks(Protocol):
    def job_message(self, ref: NodeRef, job_id: str, kind: str, body: dict[str, Any]) -> bool: ...

    def node_down(self, ref: NodeRef) -> None: ...

    def knows(
        self, ref: NodeRef, job_id: str, body: dict[str, Any] | None = None
    ) -> bool: ...

    def reattach(self, ref: NodeRef, job_id: str, body: dict[str, Any]) -> bool: ...

    def node_idle(self, ref: NodeRef) -> None: ...

    def connection_replaced(self, ref: NodeRef) -> None: ...

    def job_heartbeat(self, ref: NodeRef, job_id: str, job_state: Any) -> None: ...

    def output_chunk(self, ref: NodeRef, job_id: str, body: dict[str, Any]) -> bool: ...


@dataclass(slots=True, frozen=True)
class NodeState:
    online: bool
    available: bool
    last_seen: float | None  # POSIX seconds of the last valid message, None if never seen

    @property
    def status(self) -> str:
        return "online" if self.online else "offline"

    @property
    def availability(self) -> str:
        return "available" if self.available else "unavailable"


class NodeSession:
    __slots__ = ("address", "incarnation", "ref", "rehab_timer", "state")

    def __init__(self, ref: NodeRef, address: Address, incarnation: Any) -> None:
        self.ref = ref
        self.address = address
        self.incarnation = incarnation
        self.state = REHAB
        self.rehab_timer: Timer | None = None


class NodeTracker:
    def __init__(
        self,
        outbox: Outbox,
        scheduler: Scheduler,
        *,
        rehab_interval: float,
        offline_after: float,
        wall_clock: Callable[[], float] = time.time,
        reattach_hold: float = 0.0,
        liveness_clock: Callable[[], float] | None = None,
    ) -> None:
        self._outbox = outbox
        self._scheduler = scheduler
        self._rehab_interval = rehab_interval
        self._liveness: LivenessMonitor[NodeRef] = LivenessMonitor(offline_after)
        self._liveness_clock = liveness_clock or scheduler.now
        self._reattach_hold_until = self._liveness_clock() + reattach_hold
        self._counts: collections.Counter[str] = collections.Counter()
        self._wall_clock = wall_clock
        self._sessions: dict[NodeRef, NodeSession] = {}
        self._last_seen_wall: dict[NodeRef, float] = {}
        self._jobs: JobHooks | None = None

    def attach(self, jobs: JobHooks) -> None:
        self._jobs = jobs

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    # -- inbound -------------------------------------------------------------------------------

    def on_message(self, ref: NodeRef, address: Address, body: dict[str, Any]) -> None:
        kind = body.get("type")
        job_id = body.get("job_id")
        session = self._sessions.get(ref)
        if session is not None and body.get("incarnation_id") != session.incarnation:
            log.info("node %s/%s restarted (new client incarnation)", *ref)
            self._end(session)
            session = None
        if session is None:
            session = self._open(ref, address, body)
        elif address != session.address:
            session.address = address
            self._counts["reconnected"] += 1
            log.debug("node %s/%s reconnected; sending ack", *ref)
            self._outbox.send(ref, address, {"type": "ack"})
            if self._jobs is not None:
                self._jobs.connection_replaced(ref)  # what went to the old one may be lost

        self._liveness.touch(ref, self._liveness_clock())
        self._last_seen_wall[ref] = self._wall_clock()
        jobs = self._jobs

        if kind == "heartbeat":
            if job_id is None:
                if jobs is not None and body.get("job_state") == "idle":
                    jobs.node_idle(ref)
            elif session.state == IDLE:
                if jobs is None or not jobs.knows(ref, job_id, body):
                    log.info("node %s/%s heartbeats for unknown job %s; rehab", *ref, job_id)
                    self.rehab(ref)
                else:
                    jobs.job_heartbeat(ref, job_id, body.get("job_state"))
        elif kind == "output":
            # Live output (pushd clients): a chunk for a job that is over or unknown is only
            # late, never a reason for rehab.
            if job_id is not None and jobs is not None:
                jobs.output_chunk(ref, job_id, body)
        elif kind == "aborted":
            if session.state == REHAB:
                self._become_idle(session)
            if job_id is not None and jobs is not None:
                jobs.job_message(ref, job_id, kind, body)
        elif kind in JOB_MESSAGE_TYPES:
            taken = job_id is not None and jobs is not None and jobs.job_message(
                ref, job_id, kind, body
            )
            if not taken:
                log.info("node %s/%s sent %s for unknown job %s; rehab", *ref, kind, job_id)
                self.rehab(ref)
        else:
            log.info("node %s/%s sent unknown message type %r; ignored", *ref, kind)

    # -- requests from jobs and timers ---------------------------------------------------------

    def rehab(self, ref: NodeRef) -> None:
        session = self._sessions.get(ref)
        if session is None or session.state == REHAB:
            return
        session.state = REHAB
        self._send_abort(session)

    def check_liveness(self) -> list[NodeRef]:
        ended = []
        for ref in self._liveness.expired(self._liveness_clock()):
            session = self._sessions.get(ref)
            if session is not None:
                log.debug("node %s/%s is offline (silent too long)", *ref)
                self._end(session)
                ended.append(ref)
        if ended:
            # One line per check, not per node: a mass "offline" must not flood the log.
            self._counts["offline"] += len(ended)
            names = ", ".join(f"{org}/{node}" for org, node in ended[:5])
            log.info("%d node(s) offline (silent too long): %s%s", len(ended), names,
                     ", ..." if len(ended) > 5 else "")
        return ended

    def end_session(self, ref: NodeRef) -> None:
        """End a node's session now (its key was revoked); jobs see it `down`."""
        session = self._sessions.get(ref)
        if session is not None:
            self._end(session)

    def take_counts(self) -> dict[str, int]:
        """Counts of sessions opened, nodes become available and gone offline since the last
        call (then reset)."""
        counts, self._counts = dict(self._counts), collections.Counter()
        return counts

    def shutdown(self) -> None:
        for session in self._sessions.values():
            if session.rehab_timer is not None:
                session.rehab_timer.cancel()

    # -- queries -------------------------------------------------------------------------------

    def status(self, ref: NodeRef) -> NodeState:
        session = self._sessions.get(ref)
        return NodeState(
            online=session is not None,
            available=session is not None and session.state == IDLE,
            last_seen=self._last_seen_wall.get(ref),
        )

    def is_available(self, ref: NodeRef) -> bool:
        session = self._sessions.get(ref)
        return session is not None and session.state == IDLE

    def is_online(self, ref: NodeRef) -> bool:
        return ref in self._sessions

    def address(self, ref: NodeRef) -> Address | None:
        session = self._sessions.get(ref)
        return None if session is None else session.address

    def availability_counts(self) -> dict[tuple[str, str], int]:
        """(org_id, "available" | "unavailable") -> nodes known (connected or seen before)."""
        counts: collections.Counter[tuple[str, str]] = collections.Counter()
        sessions = self._sessions
        # Every session was opened by a message, which recorded its node here: no union needed.
        for ref in self._last_seen_wall:
            session = sessions.get(ref)
            idle = session is not None and session.state == IDLE
            counts[(ref[0], "available" if idle else "unavailable")] += 1
        return dict(counts)

    def session_availability(self) -> dict[NodeRef, bool]:
        """Every node with a session here -> whether it is available (idle)."""
        return {ref: session.state == IDLE for ref, session in self._sessions.items()}

    def known(self, org_id: str) -> list[NodeRef]:
        return [ref for ref in self._last_seen_wall if ref[0] == org_id]

    # -- internals -----------------------------------------------------------------------------

    def _open(self, ref: NodeRef, address: Address, body: dict[str, Any]) -> NodeSession:
        session = NodeSession(ref, address, body.get("incarnation_id"))
        self._sessions[ref] = session
        job_id = body.get("job_id")
        if job_id is not None and self._jobs is not None and self._jobs.reattach(ref, job_id, body):
            log.info("node %s/%s re-attached to running job %s", *ref, job_id)
            session.state = IDLE
            self._liveness.hold(ref, self._reattach_hold_until)
            self._outbox.send(ref, address, {"type": "ack"})
        else:
            log.debug("node %s/%s connected; rehab", *ref)
            self._counts["connected"] += 1
            self._send_abort(session)
        return session

    def _send_abort(self, session: NodeSession) -> None:
        if session.rehab_timer is not None:
            session.rehab_timer.cancel()
        self._outbox.send(session.ref, session.address, {"type": "abort"})
        session.rehab_timer = self._scheduler.call_later(
            self._rehab_interval, lambda: self._rehab_again(session)
        )

    def _rehab_again(self, session: NodeSession) -> None:
        session.rehab_timer = None
        if self._sessions.get(session.ref) is session and session.state == REHAB:
            self._send_abort(session)

    def _become_idle(self, session: NodeSession) -> None:
        if session.rehab_timer is not None:
            session.rehab_timer.cancel()
            session.rehab_timer = None
        session.state = IDLE
        self._counts["available"] += 1
        log.debug("node %s/%s is available", *session.ref)

    def _end(self, session: NodeSession) -> None:
        if session.rehab_timer is not None:
            session.rehab_timer.cancel()
        del self._sessions[session.ref]
        self._liveness.forget(session.ref)
        if self._jobs is not None:
            self._jobs.node_down(session.ref)
