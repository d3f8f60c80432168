"""The broker's node tracker and job engine wired together, with recording stand-ins for the
socket layer (RecordingOutbox) and the database (RecordingJournal), on a manual clock.

    h = EngineHarness(rehab_interval=1.0, offline_after=3.0)
    h.connect("n1")                    node's first heartbeat + its `aborted`: idle, available
    job = h.start_job(["n1", "n2"], quorum=2)
    h.send("n1", "ack_commit", job)    a message from the node (job_id = job)
    h.sent("n1") -> list[str]          types sent to the node since the last call (drains)
    h.node_status(job, "n1") -> NodeStatus, h.job_status(job) -> JobStatus
    h.events(job) -> list[(name, data)] feed events recorded for the job, in order
    h.advance(seconds)                 move the clock and fire due timers
    h.turn() -> int                    fire the timers due now, as one loop turn does (a job's
                                       next fan-out slice); returns how many ran
"""

from __future__ import annotations

import itertools
from typing import Any

from pushd.broker.contracts import JobSpec, NodeRef, Transition
from pushd.broker.jobs import JobEngine
from pushd.broker.nodes import NodeTracker
from pushd.broker.timers import ManualClock, TimerQueue
from pushd.states import JobStatus, NodeStatus

ORG = "0" * 31 + "1"


class RecordingOutbox:
    """Stands in for the socket layer: keeps what would have been sent to each node."""

    def __init__(self) -> None:
        self.messages: list[tuple[NodeRef, Any, dict[str, Any]]] = []

    def send(self, ref: NodeRef, address: Any, message: dict[str, Any]) -> None:
        self.messages.append((ref, address, message))


class RecordingJournal:
    """Stands in for the database: keeps every transition in order."""

    def __init__(self) -> None:
        self.transitions: list[Transition] = []

    def record(self, transition: Transition) -> None:
        self.transitions.append(transition)


class EngineHarness:
    def __init__(self, *, rehab_interval: float = 1.0, offline_after: float = 3.0,
                 fanout_slice: int | None = None) -> None:
        self.clock = ManualClock()
        self.timers = TimerQueue(self.clock)
        self.outbox = RecordingOutbox()
        self.journal = RecordingJournal()
        self.tracker = NodeTracker(
            self.outbox,
            self.timers,
            rehab_interval=rehab_interval,
            offline_after=offline_after,
            wall_clock=self.clock,
        )
        self.engine = JobEngine(
            self.outbox, self.timers, self.journal, self.tracker, server_name="pushd.test",
            **({} if fanout_slice is None else {"fanout_slice": fanout_slice}),
        )
        self.tracker.attach(self.engine)
        self._job_ids = itertools.count(1)
        self._read: dict[str, int] = {}
        self.incarnations: dict[str, str] = {}

    # -- driving -------------------------------------------------------------------------------

    def send(
        self, node: str, kind: str, job_id: str | None = None, *, address: Any = None,
        **extra: Any,
    ) -> None:
        body = {
            "type": kind,
            "node": node,
            "org": "testorg",
            "incarnation_id": self.incarnations.setdefault(node, f"inc-{node}"),
            "job_id": job_id,
            **extra,
        }
        self.tracker.on_message((ORG, node), address or ("addr", node), body)

    def heartbeat(self, node: str, job_id: str | None = None, job_state: str = "idle",
                  **extra: Any) -> None:
        self.send(node, "heartbeat", job_id, job_state=job_state, **extra)

    def connect(self, *nodes: str) -> None:
        for node in nodes:
            self.heartbeat(node)
            self.send(node, "aborted")
            self.sent(node)

    def start_job(self, nodes: list[str], quorum: int | None = None, **options: Any) -> str:
        job_id = f"{next(self._job_ids):032x}"
        spec = JobSpec(
            job_id=job_id,
            org_id=ORG,
            command="echo hi",
            nodes=list(nodes),
            quorum=len(nodes) if quorum is None else quorum,
            requestor="alice",
            **options,
        )
        self.engine.start(spec)
        return job_id

    def turn(self) -> int:
        return self.timers.run_due()

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.timers.run_due()

    # -- observing -------------------------------------------------------------------------------

    def sent(self, node: str) -> list[str]:
        """Types of messages sent to `node` since the last call for it."""
        mine = [m for ref, _, m in self.outbox.messages if ref == (ORG, node)]
        start = self._read.get(node, 0)
        self._read[node] = len(mine)
        return [m["type"] for m in mine[start:]]

    def last_sent(self, node: str) -> dict[str, Any]:
        return [m for ref, _, m in self.outbox.messages if ref == (ORG, node)][-1]

    def node_status(self, job_id: str, node: str) -> NodeStatus:
        status = NodeStatus.NEW
        for t in self.journal.transitions:
            if t.job_id == job_id and node in t.node_statuses:
                status = t.node_statuses[node][0]
        return status

    def node_reason(self, job_id: str, node: str) -> str | None:
        reason = None
        for t in self.journal.transitions:
            if t.job_id == job_id and node in t.node_statuses:
                reason = t.node_statuses[node][1]
        return reason

    def job_status(self, job_id: str) -> JobStatus:
        status = JobStatus.NEW
        for t in self.journal.transitions:
            if t.job_id == job_id and t.job_status is not None:
                status = t.job_status
        return status

    def events(self, job_id: str) -> list[tuple[str, dict[str, Any]]]:
        return [
            (e.name, e.data)
            for t in self.journal.transitions
            if t.job_id == job_id
            for e in t.events
        ]

    def event_names(self, job_id: str) -> list[str]:
        return [name for name, _ in self.events(job_id)]

    def outputs(self, job_id: str) -> dict[str, tuple[str | None, str | None]]:
        out: dict[str, tuple[str | None, str | None]] = {}
        for t in self.journal.transitions:
            if t.job_id == job_id:
                out.update({n: (o.stdout, o.stderr) for n, o in t.outputs.items()})
        return out
