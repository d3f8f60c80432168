"""The shapes the broker's state machines exchange with the world around them.

The node tracker (`nodes.py`) and the job engine (`jobs.py`) are plain classes driven by events.
They never touch a socket, a database or the wall clock directly; they talk to three injected
collaborators, described here as Protocols so unit tests can drive them with recording doubles:

    NodeRef = tuple[str, str]             (org_id, node_name): the identity of a node
    Address                               opaque route to a node's connection (socket, identity)

    Outbox.send(ref, address, message)    deliver one command (`abort`, `ack`, `commit`, `run`)
                                          to a node; the outbox adds `sequence` and `timestamp`,
                                          signs with the node's session key and routes it.
    Scheduler.call_later(delay, fn) -> Timer   run `fn()` after `delay` seconds; Timer.cancel()
    Scheduler.now() -> float              monotonic seconds
    Journal.record(transition)            persist a job/node transition and its feed events
                                          (buffered; the journal's writer thread commits what
                                          has queued in one transaction, then publishes; see
                                          journal.py)

    JobSpec                               everything the engine needs to run one job
    Transition                            one batch of changes produced by one job event
    FeedEvent(name, data)                 one job-feed event (names and fields as the original)
    NodeOutput(stdout, stderr, stdout_dropped, stderr_dropped)   captured output of one node
    LiveChunk(node, channel, offset, data)   a live `output` chunk to append to a running node's
                                          stored output (the result replaces it at the end)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pushd.states import JobStatus, NodeStatus

NodeRef = tuple[str, str]
Address = Any

DEFAULT_VOTING_TIMEOUT = 60.0
DEFAULT_RUN_TIMEOUT = 3600


class Timer(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    def now(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer: ...


class Outbox(Protocol):
    def send(self, ref: NodeRef, address: Address, message: dict[str, Any]) -> None: ...


@dataclass(slots=True)
class FeedEvent:
    """A job-feed event: `name` is `start`, `quorum_vote`, ...; `data` excludes the timestamp."""

    name: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class NodeOutput:
    """Captured output of one node; a channel the node did not send is None. `*_dropped` count
    the characters the node left out to fit the body limit (pushd's `truncated` field)."""

    stdout: str | None
    stderr: str | None
    stdout_dropped: int = 0
    stderr_dropped: int = 0

    @property
    def truncated(self) -> bool:
        return bool(self.stdout_dropped or self.stderr_dropped)


@dataclass(slots=True, frozen=True)
class LiveChunk:
    """A live output chunk: `offset` is the stream's bytes before `data` (see live_output.py)."""

    node: str
    channel: str
    offset: int
    data: str


@dataclass(slots=True)
class Transition:
    """Everything one job event changed, persisted together before any event is published.

    node_statuses maps node name -> (status, reason or None); outputs maps node name ->
    NodeOutput. `job_status` is None when the job's own status did not change.
    """

    job_id: str
    org_id: str
    job_status: JobStatus | None = None
    node_statuses: dict[str, tuple[NodeStatus, str | None]] = field(default_factory=dict)
    outputs: dict[str, NodeOutput] = field(default_factory=dict)
    events: list[FeedEvent] = field(default_factory=list)
    live_output: list[LiveChunk] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.job_status is not None or self.node_statuses or self.outputs
                    or self.events or self.live_output)


class Journal(Protocol):
    def record(self, transition: Transition) -> None: ...


@dataclass(slots=True)
class JobSpec:
    """A job as the engine runs it (loaded from the store by the service layer).

    `node_statuses` holds the persisted status of every node (all `NEW` for a fresh job);
    `requestor` is the user or client that created the job (shown as `user` in the start event).
    `run_started_at` is the wall-clock time the job entered `running` (re-attach after restart).
    `max_concurrency` / `max_errors` are the job's rollout limits resolved to node counts
    (pushd/rollout.py); None: no limit.
    """

    job_id: str
    org_id: str
    command: str
    nodes: list[str]
    quorum: int
    run_timeout: float = DEFAULT_RUN_TIMEOUT
    voting_timeout: float = DEFAULT_VOTING_TIMEOUT
    requestor: str | None = None
    job_user: str | None = None
    dir: str | None = None
    env: dict[str, str] | None = None
    file: str | None = None
    capture: bool = False
    status: JobStatus = JobStatus.NEW
    node_statuses: dict[str, NodeStatus] = field(default_factory=dict)
    run_started_at: float | None = None
    max_concurrency: int | None = None
    max_errors: int | None = None

    def __post_init__(self) -> None:
        if not self.node_statuses:  # a fresh job: one C-level pass (100,000 nodes: ~10 ms)
            self.node_statuses = dict.fromkeys(self.nodes, NodeStatus.NEW)
            return
        for name in self.nodes:
            self.node_statuses.setdefault(name, NodeStatus.NEW)
