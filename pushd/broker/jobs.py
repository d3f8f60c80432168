"""The job engine: voting and running exactly as the original's transition tables (4.3, 4.4).

    engine = JobEngine(outbox, scheduler, journal, nodes, server_name="push.example.com",
                       fanout_slice=FANOUT_SLICE, fanout_budget=FANOUT_BUDGET)
    engine.start(spec)                       run a job (JobSpec) that is `new`: commit, then vote;
                                             commits (and later runs) go out a slice per
                                             scheduler turn: at most `fanout_slice` nodes and
                                             `fanout_budget` seconds (scheduler clock)
    engine.recover(spec, run_left, grace)    re-attach a job that was `running` when the broker
                                             stopped; nodes that do not show up still running it
                                             within `grace` seconds are crashed
    engine.abort(job_id) -> JobStatus        abort a live job: nodes still active get `abort`
                                             and status `aborted`; raises KeyError if not live
    engine.live_job_ids() -> list[str]
    engine.is_live(job_id) -> bool
    engine.org_of(job_id) -> str | None      the org of a live job
    engine.shutdown()                        cancel timers (the jobs stay `running` in the store)

    JobHooks for the node tracker (see nodes.py):
    engine.job_message(ref, job_id, kind, body) -> bool   False: no live job of that node
    engine.node_down(ref)                                 the node's session ended
    engine.knows(ref, job_id) -> bool
    engine.reattach(ref, job_id, body) -> bool
    engine.node_idle(ref)                                 heartbeat: idle, no job
    engine.output_chunk(ref, job_id, body) -> bool        a live `output` chunk (pushd
        clients) of a node the job counts `running`, with capture: within `output_gate`'s
        bounds (live_output.py) it becomes an `output` feed event {node, channel, offset,
        data} and is appended to the node's stored output; never changes a status

`nodes` (NodeView) is the tracker: `is_available`, `address`, `rehab`.

Every event produces one `Transition` (node statuses with reasons, outputs, job status, feed
events in order) handed to the journal, which persists it before publishing the events.

Voting (table 4.3), "rehab" meaning the node is told to abort and a `rehab` event is logged:

    event        node new                node ready                 node terminal
    ack_commit   ready / success         - / unexpected_commit      rehab / client_died_while_voting
    nack_commit  nacked / failure        unavailable+rehab /        rehab / client_died_while_voting
                                         lost_availibility
    down         unavailable+rehab/down  unavailable+rehab / down   rehab / down
    other        unavailable+rehab       unavailable+rehab          rehab
    voting timeout remaining new -> unavailable (abort sent), one quorum_vote voting_timeout each

When no node is `new`: ready >= quorum -> `quorum_succeeded` and running; else ready nodes ->
`was_ready` (abort sent) and the job ends `quorum_failed`.

Running (table 4.4), events after the arrow are `run_complete` statuses:

    event      node ready                node running             node terminal
    ack_run    running (+run_start)      -                        rehab / client_died_while_running
    nack_run   failed+rehab / run_nacked failed+rehab /           rehab / client_died_while_running
                                         run_nacked_while_running
    succeeded  crashed+rehab / crashed   succeeded / success      rehab / client_died_while_running
    failed     crashed+rehab / crashed   failed / failure         rehab / client_died_while_running
    other      crashed+rehab / crashed   crashed+rehab / crashed  rehab / client_died_while_running
    run timeout  ready/running -> timed_out (abort sent), job `timed_out`

When no node is `ready` or `running` the job ends `complete`.

Rollout control (issue 17), only for jobs that set `max_concurrency` / `max_errors` (JobSpec
holds them resolved to node counts); a job with neither runs exactly as above.

- Voting is unchanged: every node gets `commit` at once and the quorum covers all nodes before
  any run starts. Ready nodes then wait their turn in a FIFO (`JobRun.waiting`, in job order):
  at most `max_concurrency` nodes have been sent `run` and not finished; each finished node
  starts the next. Starting the next node is O(1) (a deque pop and a tally read, no scan).
- A waiting node stays `ready` and hears nothing: a stock 2.x/3.x client (and pushd's) stays
  `committed` until `run` or `abort` (it has no commit timeout; it heartbeats `committed` with
  the job id, which the tracker accepts, and `node_idle` only concerns `running` nodes), so it
  neither times out nor looks lost. Its `run_timeout` starts when it is sent `run`: with
  `max_concurrency` the job has no job-wide run timer; each started node has its own deadline
  (started order = deadline order, so one timer on the oldest suffices). A node past it is
  `timed_out` (abort sent, `run_complete` `timed_out`), counted as a failure, and the job goes
  on.
- Failures are nodes that ended `failed`, `crashed` or `timed_out` while running (`nack_run`
  is `failed`). Once they exceed `max_errors` no node is started any more: waiting nodes end
  `skipped` (abort sent; a `halted` feed event gives the counts), running nodes finish, and the
  job ends `halted` instead of `complete`.

Improvements over the original (issue 3): nodes that are not available when the job starts
(offline or in rehab) get no `commit` and vote `down` at once; the voting timeout is per job;
`commit` and `run` carry `run_timeout`; a `reason` given with `nack_commit`, `nack_run` or
`aborted` is stored with the node's status; `abort` ends a job on request; a node that
heartbeats `idle` while the job counts it `running` lost its result and is `crashed` at once
(the "other" row) instead of holding the job until run_timeout.

Every started job ends (issue 12): a quorum larger than the node count ends `quorum_failed` at
once, before any commit (nodes `unavailable`); an error while starting a job ends it `crashed`
(active nodes `crashed` and told to abort). Both put a `reason` on the nodes and on
`job_complete`.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter, deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from pushd.broker.contracts import (
    Address,
    FeedEvent,
    JobSpec,
    Journal,
    LiveChunk,
    NodeOutput,
    NodeRef,
    Outbox,
    Scheduler,
    Timer,
    Transition,
)
from pushd.broker.live_output import OutputGate
from pushd.states import ACTIVE_NODE_STATUSES, JobStatus, NodeStatus

log = logging.getLogger(__name__)

MAX_REASON_LENGTH = 1024
# Nodes handled per slice of a job's fan-out (commit at start, run at quorum): one slice per
# loop turn, ~10-40 ms, so a 100,000-node job leaves the loop free between slices to answer
# control requests (node_states) and read heartbeats instead of holding it for seconds.
FANOUT_SLICE = 2000
# ... and at most this many seconds of it (checked every FANOUT_CHECK nodes), so a slice stays
# well inside the loop's turn budget (service.TURN_BUDGET, 0.25 s) on a slow or busy machine.
FANOUT_BUDGET = 0.05
FANOUT_CHECK = 128

VOTING = "voting"
RUNNING = "running"


class NodeView(Protocol):
    def is_available(self, ref: NodeRef) -> bool: ...

    def address(self, ref: NodeRef) -> Address | None: ...

    def rehab(self, ref: NodeRef) -> None: ...


class JobRun:
    """The live state of one job."""

    __slots__ = (
        "deadlines", "halted", "pending", "phase", "recovering", "replaced", "spec", "started",
        "statuses", "tally", "timer", "waiting",
    )

    def __init__(self, spec: JobSpec, phase: str) -> None:
        self.spec = spec
        self.phase = phase
        self.statuses: dict[str, NodeStatus] = dict(spec.node_statuses)
        # Nodes per status, kept in step with `statuses`: the end-of-phase checks after every
        # event are O(1), not a scan of all nodes (8,000-node jobs).
        self.tally: Counter[NodeStatus] = Counter(self.statuses.values())
        self.timer: Timer | None = None
        self.recovering: set[str] = set()
        # Nodes sent `commit` (or `run`) that then spoke from a new connection: the message may
        # have been lost with the old one (see JobEngine.connection_replaced).
        self.replaced: set[str] = set()
        self.started: float | None = None  # scheduler time it began voting (None: re-attached)
        # Rollout control: ready nodes not yet sent `run`, in turn order. `pending` says which
        # entries of `waiting` still wait (a node leaving `ready` is dropped from it only: the
        # deque entry is skipped when popped), so both stay O(1) per node.
        self.waiting: deque[str] = deque()
        self.pending: set[str] = set()
        # (deadline, node) of started nodes, oldest first (staged jobs: per-node run_timeout).
        self.deadlines: deque[tuple[float, str]] = deque()
        self.halted = False

    @property
    def staged(self) -> bool:
        """True when nodes start in turns (max_concurrency) rather than all at once."""
        return self.spec.max_concurrency is not None

    def set(self, name: str, status: NodeStatus) -> None:
        self.tally[self.statuses[name]] -= 1
        self.statuses[name] = status
        self.tally[status] += 1
        if status != NodeStatus.READY and self.pending:
            self.pending.discard(name)
        if self.replaced:
            self.replaced.discard(name)  # it answered: nothing sent before was lost

    def in_flight(self) -> int:
        """Nodes sent `run` (or re-attaching) that have not finished."""
        return self.tally[NodeStatus.READY] + self.tally[NodeStatus.RUNNING] - len(self.pending)

    def failures(self) -> int:
        return (
            self.tally[NodeStatus.FAILED]
            + self.tally[NodeStatus.CRASHED]
            + self.tally[NodeStatus.TIMED_OUT]
        )

    def over_budget(self) -> bool:
        budget = self.spec.max_errors
        return budget is not None and self.failures() > budget

    def count(self, *statuses: NodeStatus) -> int:
        # Called after every reply of a job: a loop, not sum() over a generator (half the cost).
        tally, total = self.tally, 0
        for status in statuses:
            total += tally[status]
        return total


def _reason(body: dict[str, Any]) -> str | None:
    reason = body.get("reason")
    if isinstance(reason, str) and reason:
        return reason[:MAX_REASON_LENGTH]
    return None


def _output(body: dict[str, Any]) -> NodeOutput | None:
    """The output a result carries: either channel may be missing (stored as absent)."""
    stdout, stderr = body.get("stdout"), body.get("stderr")
    stdout = stdout if isinstance(stdout, str) else None
    stderr = stderr if isinstance(stderr, str) else None
    if stdout is None and stderr is None:
        return None
    dropped = body.get("truncated")
    counts = [0, 0]
    if isinstance(dropped, dict):
        for index, channel in enumerate(("stdout", "stderr")):
            value = dropped.get(channel)
            if type(value) is int and value > 0:
                counts[index] = value
    return NodeOutput(stdout, stderr, counts[0], counts[1])


class JobEngine:
    def __init__(
        self,
        outbox: Outbox,
        scheduler: Scheduler,
        journal: Journal,
        nodes: NodeView,
        *,
        server_name: str,
        fanout_slice: int = FANOUT_SLICE,
        fanout_budget: float = FANOUT_BUDGET,
    ) -> None:
        self._fanout_slice = fanout_slice
        self._fanout_budget = fanout_budget
        self._outbox = outbox
        self._scheduler = scheduler
        self._journal = journal
        self._nodes = nodes
        self._server_name = server_name
        self._jobs: dict[str, JobRun] = {}
        # (org_id, node) -> ids of live jobs naming that node: whom to tell when it goes down.
        self._watching: dict[NodeRef, set[str]] = {}
        # Bounds on live output; the service sets output_max_bytes (issue 18).
        self.output_gate = OutputGate()
        # Told of every finished job: (org_id, status, nodes per final status, seconds since it
        # began voting or None). The broker's metrics.
        self.on_finished: Callable[[str, str, Mapping[NodeStatus, int], float | None], None] = (
            lambda org_id, status, tally, duration: None
        )

    # -- public API ----------------------------------------------------------------------------

    def live_job_ids(self) -> list[str]:
        return list(self._jobs)

    def is_live(self, job_id: str) -> bool:
        return job_id in self._jobs

    def live_jobs_by_org(self) -> dict[str, int]:
        return dict(Counter(run.spec.org_id for run in self._jobs.values()))

    def org_of(self, job_id: str) -> str | None:
        run = self._jobs.get(job_id)
        return None if run is None else run.spec.org_id

    def start(self, spec: JobSpec) -> None:
        if spec.job_id in self._jobs:
            return  # a repeated start_job request for a job already running
        run = JobRun(spec, VOTING)
        run.started = self._scheduler.now()
        # Nodes are watched as their commit goes out (_commit_slice): a node voted `down` at
        # start needs no watching, and 100,000 watch sets made up front took ~0.3 s.
        self._adopt(run, watch=False)
        log.info("job %s starting: %d nodes, quorum %d", spec.job_id, len(spec.nodes), spec.quorum)
        try:
            self._begin(run)
        except Exception as err:
            # An accepted job must end: without this it stayed `voting` with no timer (a commit
            # the outbox could not encode raised before the voting timer was set).
            log.exception("job %s: error while starting it; crashed", spec.job_id)
            self._crash(run, f"internal error while starting the job ({type(err).__name__}: "
                             f"{err})")

    def _begin(self, run: JobRun) -> None:
        spec = run.spec
        start_event = self._start_event(spec)
        if spec.quorum > len(spec.nodes):
            # No node can make up for it: end now, before any node hears of the job.
            reason = f"quorum {spec.quorum} is larger than the job's {len(spec.nodes)} node(s)"
            t = Transition(spec.job_id, spec.org_id, events=[start_event])
            for name in spec.nodes:
                self._set(run, t, name, NodeStatus.UNAVAILABLE, reason)
            log.info("job %s: %s", spec.job_id, reason)
            self._finish(run, t, JobStatus.QUORUM_FAILED, reason)
            self._record(t)
            return
        self._journal.record(
            Transition(spec.job_id, spec.org_id, JobStatus.VOTING, events=[start_event])
        )
        spec.status = JobStatus.VOTING
        run.timer = self._scheduler.call_later(
            spec.voting_timeout, lambda: self._voting_timeout(spec.job_id)
        )
        self._commit_slice(run, self._commit_message(spec), 0)

    def _commit_slice(self, run: JobRun, commit: dict[str, Any], first: int) -> None:
        """Send `commit` to the available nodes of one slice; the others vote `down` (one
        Transition per slice). The next slice runs on the next loop turn. Nodes whose status
        changed meanwhile (gone down, voting timeout) are skipped; an ended job stops it."""
        spec = run.spec
        if self._jobs.get(spec.job_id) is not run or run.phase != VOTING:
            return
        last = min(first + self._fanout_slice, len(spec.nodes))
        t = Transition(spec.job_id, spec.org_id)
        deadline = self._scheduler.now() + self._fanout_budget
        for index in range(first, last):
            if not (index - first + 1) % FANOUT_CHECK and self._scheduler.now() >= deadline:
                last = index
                break
            name = spec.nodes[index]
            if run.statuses[name] != NodeStatus.NEW:
                continue
            ref = (spec.org_id, name)
            address = self._nodes.address(ref)
            if address is not None and self._nodes.is_available(ref):
                self._watching.setdefault(ref, set()).add(spec.job_id)
                self._outbox.send(ref, address, commit)
            else:
                self._voting_event(run, t, name, "down", {})
        if last < len(spec.nodes):
            self._scheduler.call_later(
                0.0, lambda: self._guarded(run, lambda: self._commit_slice(run, commit, last))
            )
        self._maybe_finished_voting(run, t)
        self._record(t)

    def recover(self, spec: JobSpec, run_left: float, grace: float) -> None:
        """Re-attach a job found `running` at broker start (see module docstring)."""
        run = JobRun(spec, RUNNING)
        run.recovering = {
            name
            for name, status in run.statuses.items()
            if status in (NodeStatus.READY, NodeStatus.RUNNING)
        }
        self._adopt(run)
        log.info("job %s re-attaching %d nodes", spec.job_id, len(run.recovering))
        if not run.staged:
            run.timer = self._scheduler.call_later(
                max(0.0, run_left), lambda: self._running_timeout(spec.job_id)
            )
        self._scheduler.call_later(grace, lambda: self._recovery_grace_over(spec.job_id))
        if not run.recovering:
            self._maybe_finished_running(run, Transition(spec.job_id, spec.org_id))

    def abort(self, job_id: str) -> JobStatus:
        run = self._jobs[job_id]
        spec = run.spec
        transition = Transition(job_id, spec.org_id)
        for name, status in run.statuses.items():
            if status in ACTIVE_NODE_STATUSES:
                self._set(run, transition, name, NodeStatus.ABORTED)
                self._nodes.rehab((spec.org_id, name))
        log.info("job %s aborted on request", job_id)
        self._finish(run, transition, JobStatus.ABORTED)
        self._record(transition)
        return JobStatus.ABORTED

    def shutdown(self) -> None:
        for run in self._jobs.values():
            if run.timer is not None:
                run.timer.cancel()

    # -- JobHooks ------------------------------------------------------------------------------

    def knows(self, ref: NodeRef, job_id: str, body: dict[str, Any] | None = None) -> bool:
        """True when `job_id` is a live job of the node's org that includes the node."""
        run = self._jobs.get(job_id)
        return run is not None and run.spec.org_id == ref[0] and ref[1] in run.statuses

    def job_message(self, ref: NodeRef, job_id: str, kind: str, body: dict[str, Any]) -> bool:
        run = self._jobs.get(job_id)
        if run is None or run.spec.org_id != ref[0] or ref[1] not in run.statuses:
            return False
        run.recovering.discard(ref[1])
        self._on_event(run, ref[1], kind, body)
        return True

    def output_chunk(self, ref: NodeRef, job_id: str, body: dict[str, Any]) -> bool:
        run = self._jobs.get(job_id)
        name = ref[1]
        if (
            run is None or run.spec.org_id != ref[0] or not run.spec.capture
            or run.statuses.get(name) != NodeStatus.RUNNING
        ):
            return False
        channel, offset, data = body["channel"], body["offset"], body["data"]
        if not self.output_gate.admit(job_id, name, channel, offset, data,
                                      self._scheduler.now()):
            return False
        t = Transition(run.spec.job_id, run.spec.org_id)
        t.live_output.append(LiveChunk(name, channel, offset, data))
        t.events.append(FeedEvent(
            "output", {"node": name, "channel": channel, "offset": offset, "data": data}))
        self._record(t)
        return True

    def node_down(self, ref: NodeRef) -> None:
        for job_id in list(self._watching.get(ref, ())):
            run = self._jobs.get(job_id)
            if run is not None and ref[1] not in run.recovering:
                self._on_event(run, ref[1], "down", {})

    def is_recovering(self, ref: NodeRef, job_id: str) -> bool:
        run = self._jobs.get(job_id)
        return run is not None and ref[1] in run.recovering

    def expect_back(self, refs: list[NodeRef], grace: float) -> None:
        """These nodes' server went away (a cluster member's lease ran out): each active one
        of a live job gets `grace` seconds to re-attach through another member, as after a
        broker restart, before it is judged crashed."""
        jobs: set[str] = set()
        for ref in refs:
            for job_id in list(self._watching.get(ref, ())):
                run = self._jobs.get(job_id)
                if run is not None and run.statuses.get(ref[1]) in (
                    NodeStatus.READY, NodeStatus.RUNNING
                ) and run.phase == RUNNING:
                    run.recovering.add(ref[1])
                    jobs.add(job_id)
                elif run is not None and run.phase == VOTING:
                    self._on_event(run, ref[1], "down", {})
        for job_id in jobs:
            self._scheduler.call_later(grace, functools.partial(self._recovery_grace_over, job_id))

    def connection_replaced(self, ref: NodeRef) -> None:
        """The node speaks from a new connection (its client reopened its sockets, e.g. after
        a config fetch): a `commit` sent to the old connection may be lost with it, and the
        job would wait for its voting timeout; so may a `run`, and the job would wait for its
        run timeout. Each of the node's jobs that sent one and has no answer yet remembers the
        node (until it answers, JobRun.set): its next idle heartbeat says the commit never
        arrived (node_idle sends it again), its next heartbeat naming the job says whether the
        run did (job_heartbeat). A node still waiting its turn (rollout) was sent no run. (A
        blind resend could reach a client that did get the first one, which answers a second
        commit or run with a nack.)"""
        name = ref[1]
        for job_id in self._watching.get(ref, ()):
            run = self._jobs.get(job_id)
            if run is None:
                continue
            status = run.statuses.get(name)
            if (run.phase == VOTING and status == NodeStatus.NEW) or (
                run.phase == RUNNING and status == NodeStatus.READY and name not in run.pending
            ):
                run.replaced.add(name)  # sent `commit` (or `run`) with no answer yet

    def job_heartbeat(self, ref: NodeRef, job_id: str, job_state: Any) -> None:
        """A heartbeat naming a live job of the node. From a node sent `run` whose connection
        was then replaced, it tells what became of the `run`: still `committed` means it was
        lost with the old connection (sent again, not blindly: a running client answers a
        second `run` with nack_run); `running` means the run arrived and the `ack_run` was
        lost (taken as that ack, else the job would count the node running only at its
        result)."""
        run = self._jobs.get(job_id)
        name = ref[1]
        if run is None or name not in run.replaced or run.spec.org_id != ref[0]:
            return
        run.replaced.discard(name)
        if run.phase != RUNNING or run.statuses.get(name) != NodeStatus.READY:
            return
        if job_state == "committed":
            address = self._nodes.address(ref)
            if address is not None:
                log.info("job %s: node %s is still committed on a new connection; its run "
                         "was lost with the old one, sending it again", job_id, name)
                self._outbox.send(ref, address, self._run_message(run.spec))
        elif job_state == "running":
            log.info("job %s: node %s runs on a new connection; its ack_run was lost",
                     job_id, name)
            self._on_event(run, name, "ack_run", {})

    def node_idle(self, ref: NodeRef) -> None:
        """The node heartbeats `idle` with no job: any job counting it as running lost it,
        and a voting job whose commit went to the node's previous connection sends it again.

        The stock client sends its result before its next heartbeat on the same socket, so an
        idle heartbeat from a node we still think is running means the result was lost (the
        client drops messages when its send queue of 3 is full, e.g. across a broker restart).
        The original ignored heartbeat job states and such a job waited for run_timeout.
        """
        for job_id in list(self._watching.get(ref, ())):
            run = self._jobs.get(job_id)
            if run is not None and ref[1] in run.replaced:
                run.replaced.discard(ref[1])
                address = self._nodes.address(ref)
                if run.phase == VOTING and run.statuses.get(ref[1]) == NodeStatus.NEW and \
                        address is not None:
                    log.info("job %s: node %s is idle on a new connection; its commit was "
                             "lost with the old one, sending it again", job_id, ref[1])
                    self._outbox.send(ref, address, self._commit_message(run.spec))
                    continue
            if (
                run is not None
                and run.phase == RUNNING
                and run.statuses.get(ref[1]) == NodeStatus.RUNNING
                and ref[1] not in run.recovering
            ):
                log.info("job %s: node %s is idle; its result was lost", job_id, ref[1])
                self._on_event(run, ref[1], "lost", {})

    def reattach(self, ref: NodeRef, job_id: str, body: dict[str, Any]) -> bool:
        run = self._jobs.get(job_id)
        name = ref[1]
        if run is None or run.spec.org_id != ref[0] or name not in run.recovering:
            return False
        kind = body.get("type")
        state = body.get("job_state")
        if kind in ("succeeded", "failed", "output"):
            # The result itself follows as a job message; live output means it is running.
            return True
        if kind != "heartbeat" or state not in ("running", "committed"):
            return False
        run.recovering.discard(name)
        transition = Transition(run.spec.job_id, run.spec.org_id)
        if state == "running":
            if run.statuses[name] == NodeStatus.READY:
                self._set(run, transition, name, NodeStatus.RUNNING)
                transition.events.append(FeedEvent("run_start", {"node": name}))
            if run.staged:
                # Its start time died with the old broker: a full run_timeout from now.
                self._add_deadline(run, name)
        elif state == "committed":
            if run.statuses[name] != NodeStatus.READY:
                return False
            if run.staged:
                # It waits its turn again (it may not have had one before the restart).
                run.waiting.append(name)
                run.pending.add(name)
                self._fill(run, transition)
            else:
                # It never received `run` before the restart: send it now.
                address = self._nodes.address(ref)
                if address is not None:
                    self._outbox.send(ref, address, self._run_message(run.spec))
        self._record(transition)
        return True

    # -- event handling ------------------------------------------------------------------------

    def _on_event(self, run: JobRun, name: str, kind: str, body: dict[str, Any]) -> None:
        transition = Transition(run.spec.job_id, run.spec.org_id)
        if run.phase == VOTING:
            self._voting_event(run, transition, name, kind, body)
            self._maybe_finished_voting(run, transition)
        else:
            self._running_event(run, transition, name, kind, body)
            self._after_node_finished(run, transition)
            self._maybe_finished_running(run, transition)
        self._record(transition)

    def _voting_event(
        self, run: JobRun, t: Transition, name: str, kind: str, body: dict[str, Any]
    ) -> None:
        status = run.statuses[name]
        reason = _reason(body)
        if kind == "ack_commit":
            if status == NodeStatus.NEW:
                self._set(run, t, name, NodeStatus.READY)
                self._vote(t, name, "success")
            elif status == NodeStatus.READY:
                self._vote(t, name, "unexpected_commit")
            else:
                self._vote(t, name, "client_died_while_voting")
                self._rehab(run, t, name)
        elif kind == "nack_commit":
            if status == NodeStatus.NEW:
                self._set(run, t, name, NodeStatus.NACKED, reason)
                self._vote(t, name, "failure")
            elif status == NodeStatus.READY:
                self._set(run, t, name, NodeStatus.UNAVAILABLE, reason)
                self._vote(t, name, "lost_availibility")  # sic: the original's spelling
                self._rehab(run, t, name)
            else:
                self._vote(t, name, "client_died_while_voting")
                self._rehab(run, t, name)
        elif kind == "down":
            if status in (NodeStatus.NEW, NodeStatus.READY):
                self._set(run, t, name, NodeStatus.UNAVAILABLE)
            self._vote(t, name, "down")
            self._rehab(run, t, name)
        else:
            if status in (NodeStatus.NEW, NodeStatus.READY):
                self._set(run, t, name, NodeStatus.UNAVAILABLE, reason)
            log.warning("job %s: unexpected %s from %s while voting", run.spec.job_id, kind, name)
            self._rehab(run, t, name)

    def _running_event(
        self, run: JobRun, t: Transition, name: str, kind: str, body: dict[str, Any]
    ) -> None:
        status = run.statuses[name]
        reason = _reason(body)
        if status not in (NodeStatus.READY, NodeStatus.RUNNING):
            # Any message about a node already finished with this job.
            self._rehab(run, t, name)
            self._run_complete(t, name, "client_died_while_running")
            return
        ready = status == NodeStatus.READY
        if kind == "ack_run":
            if ready:
                self._set(run, t, name, NodeStatus.RUNNING)
                t.events.append(FeedEvent("run_start", {"node": name}))
        elif kind == "nack_run":
            self._set(run, t, name, NodeStatus.FAILED, reason)
            self._rehab(run, t, name)
            self._run_complete(t, name, "run_nacked" if ready else "run_nacked_while_running")
        elif kind in ("succeeded", "failed") and not ready:
            succeeded = kind == "succeeded"
            self._set(run, t, name, NodeStatus.SUCCEEDED if succeeded else NodeStatus.FAILED)
            output = _output(body)
            if output is not None:
                t.outputs[name] = output
            self._run_complete(t, name, "success" if succeeded else "failure")
        else:
            # succeeded/failed without ack_run, down, aborted, stray commit replies.
            self._set(run, t, name, NodeStatus.CRASHED, reason if kind == "aborted" else None)
            self._rehab(run, t, name)
            self._run_complete(t, name, "crashed")

    def _maybe_finished_voting(self, run: JobRun, t: Transition) -> None:
        if run.phase != VOTING or run.count(NodeStatus.NEW):
            return
        spec = run.spec
        if run.count(NodeStatus.READY) >= spec.quorum:
            t.events.append(FeedEvent("quorum_succeeded", {}))
            self._start_running(run, t)
            return
        for name, status in run.statuses.items():
            if status == NodeStatus.READY:
                self._set(run, t, name, NodeStatus.WAS_READY)
                self._nodes.rehab((spec.org_id, name))
        self._finish(run, t, JobStatus.QUORUM_FAILED)

    def _start_running(self, run: JobRun, t: Transition) -> None:
        spec = run.spec
        run.phase = RUNNING
        spec.status = JobStatus.RUNNING
        t.job_status = JobStatus.RUNNING
        if run.timer is not None:
            run.timer.cancel()
            run.timer = None
        if run.staged:
            for name, status in run.statuses.items():
                if status == NodeStatus.READY:
                    run.waiting.append(name)
                    run.pending.add(name)
            log.info(
                "job %s running on %d nodes, at most %d at once",
                spec.job_id, len(run.pending), spec.max_concurrency,
            )
            self._fill(run, t)
            self._maybe_finished_running(run, t)
            return
        ready = [name for name, status in run.statuses.items() if status == NodeStatus.READY]
        log.info("job %s running on %d nodes", spec.job_id, len(ready))
        run.timer = self._scheduler.call_later(
            spec.run_timeout, lambda: self._running_timeout(spec.job_id)
        )
        self._run_slice(run, self._run_message(spec), ready, 0)
        self._maybe_finished_running(run, t)

    def _run_slice(self, run: JobRun, message: dict[str, Any], ready: list[str],
                   first: int) -> None:
        """Send `run` to one slice of the nodes that were ready at quorum (next slice on the
        next loop turn); stops when the job has ended."""
        spec = run.spec
        if self._jobs.get(spec.job_id) is not run or run.phase != RUNNING:
            return
        last = min(first + self._fanout_slice, len(ready))
        deadline = self._scheduler.now() + self._fanout_budget
        for index in range(first, last):
            if not (index - first + 1) % FANOUT_CHECK and self._scheduler.now() >= deadline:
                last = index
                break
            name = ready[index]
            if run.statuses[name] == NodeStatus.READY:
                ref = (spec.org_id, name)
                address = self._nodes.address(ref)
                if address is not None:
                    self._outbox.send(ref, address, message)
        if last < len(ready):
            self._scheduler.call_later(
                0.0, lambda: self._guarded(run, lambda: self._run_slice(run, message, ready, last))
            )

    def _guarded(self, run: JobRun, step: Any) -> None:
        """A later fan-out slice: an error in it ends the job `crashed`, as one while starting
        does (it would otherwise wait for its voting or run timeout)."""
        try:
            step()
        except Exception as err:
            log.exception("job %s: error during its fan-out; crashed", run.spec.job_id)
            self._crash(run, f"internal error during the fan-out ({type(err).__name__}: {err})")

    # -- rollout control -----------------------------------------------------------------------

    def _fill(self, run: JobRun, t: Transition) -> None:
        """Start waiting nodes while there is room; O(1) per node started."""
        limit = run.spec.max_concurrency
        if limit is None or run.halted or run.phase != RUNNING:
            return
        spec = run.spec
        room = limit - run.in_flight()
        message: dict[str, Any] | None = None
        while room > 0 and run.pending:
            name = run.waiting.popleft()
            if name not in run.pending:
                continue  # left `ready` while waiting (down, crashed): already accounted for
            run.pending.discard(name)
            room -= 1
            ref = (spec.org_id, name)
            address = self._nodes.address(ref)
            if address is not None:
                if message is None:
                    message = self._run_message(spec)
                self._outbox.send(ref, address, message)
            self._add_deadline(run, name)

    def _add_deadline(self, run: JobRun, name: str) -> None:
        run.deadlines.append((self._scheduler.now() + run.spec.run_timeout, name))
        if run.timer is None:
            self._arm_deadline_timer(run)

    def _arm_deadline_timer(self, run: JobRun) -> None:
        if not run.deadlines:
            run.timer = None
            return
        job_id = run.spec.job_id
        delay = max(0.0, run.deadlines[0][0] - self._scheduler.now())
        run.timer = self._scheduler.call_later(delay, lambda: self._node_deadlines(job_id))

    def _node_deadlines(self, job_id: str) -> None:
        """Staged jobs: started nodes past their own run_timeout are timed out."""
        run = self._jobs.get(job_id)
        if run is None or run.phase != RUNNING:
            return
        run.timer = None
        t = Transition(job_id, run.spec.org_id)
        now = self._scheduler.now()
        while run.deadlines and run.deadlines[0][0] <= now:
            _, name = run.deadlines.popleft()
            if run.statuses[name] in (NodeStatus.READY, NodeStatus.RUNNING):
                log.info("job %s: node %s timed out", job_id, name)
                self._set(run, t, name, NodeStatus.TIMED_OUT)
                self._rehab(run, t, name)
                self._run_complete(t, name, "timed_out")
        self._after_node_finished(run, t)
        if run.timer is None and run.phase == RUNNING:
            self._arm_deadline_timer(run)
        self._maybe_finished_running(run, t)
        self._record(t)

    def _after_node_finished(self, run: JobRun, t: Transition) -> None:
        """After a running-phase event: halt on an exhausted error budget, else start more."""
        if run.phase != RUNNING:
            return
        if not run.halted and run.over_budget():
            self._halt(run, t)
        self._fill(run, t)

    def _halt(self, run: JobRun, t: Transition) -> None:
        spec = run.spec
        run.halted = True
        skipped = list(run.pending)
        run.pending.clear()
        run.waiting.clear()
        for name in skipped:
            # Committed and waiting: `abort` returns it to idle (it never ran anything).
            self._set(run, t, name, NodeStatus.SKIPPED)
            self._nodes.rehab((spec.org_id, name))
        log.info(
            "job %s halted: %d failures over the budget of %d; %d nodes skipped",
            spec.job_id, run.failures(), spec.max_errors, len(skipped),
        )
        t.events.append(
            FeedEvent(
                "halted",
                {"failed": run.failures(), "max_errors": spec.max_errors,
                 "skipped": len(skipped)},
            )
        )

    def _maybe_finished_running(self, run: JobRun, t: Transition) -> None:
        if run.phase == RUNNING and not run.count(NodeStatus.READY, NodeStatus.RUNNING):
            self._finish(run, t, JobStatus.HALTED if run.over_budget() else JobStatus.COMPLETE)

    # -- timers --------------------------------------------------------------------------------

    def _voting_timeout(self, job_id: str) -> None:
        run = self._jobs.get(job_id)
        if run is None or run.phase != VOTING:
            return
        run.timer = None
        t = Transition(job_id, run.spec.org_id)
        for name, status in run.statuses.items():
            if status == NodeStatus.NEW:
                self._set(run, t, name, NodeStatus.UNAVAILABLE)
                self._vote(t, name, "voting_timeout")
                self._nodes.rehab((run.spec.org_id, name))
        log.info("job %s: voting timed out", job_id)
        self._maybe_finished_voting(run, t)
        self._record(t)

    def _running_timeout(self, job_id: str) -> None:
        run = self._jobs.get(job_id)
        if run is None or run.phase != RUNNING:
            return
        run.timer = None
        t = Transition(job_id, run.spec.org_id)
        for name, status in run.statuses.items():
            if status in (NodeStatus.READY, NodeStatus.RUNNING):
                self._set(run, t, name, NodeStatus.TIMED_OUT)
                self._nodes.rehab((run.spec.org_id, name))
        log.info("job %s timed out", job_id)
        self._finish(run, t, JobStatus.TIMED_OUT)
        self._record(t)

    def _recovery_grace_over(self, job_id: str) -> None:
        run = self._jobs.get(job_id)
        if run is None or not run.recovering:
            return
        t = Transition(job_id, run.spec.org_id)
        for name in sorted(run.recovering):
            log.info("job %s: node %s did not come back running it; crashed", job_id, name)
            self._set(run, t, name, NodeStatus.CRASHED)
            self._rehab(run, t, name)
            self._run_complete(t, name, "crashed")
        run.recovering.clear()
        self._after_node_finished(run, t)
        self._maybe_finished_running(run, t)
        self._record(t)

    # -- helpers -------------------------------------------------------------------------------

    def _adopt(self, run: JobRun, *, watch: bool = True) -> None:
        spec = run.spec
        self._jobs[spec.job_id] = run
        if not watch:
            return
        for name in spec.nodes:
            self._watching.setdefault((spec.org_id, name), set()).add(spec.job_id)

    def _crash(self, run: JobRun, reason: str) -> None:
        """End a live job `crashed` after an error of its own: active nodes crashed, told to
        abort (they may have had the commit), `reason` on each and on `job_complete`."""
        spec = run.spec
        if self._jobs.get(spec.job_id) is not run:
            return  # it ended before the error
        # Storable text whatever the error said (it may quote the very string that failed).
        reason = reason.encode("utf-8", "backslashreplace").decode("utf-8")[:MAX_REASON_LENGTH]
        t = Transition(spec.job_id, spec.org_id)
        for name, status in list(run.statuses.items()):
            if status in ACTIVE_NODE_STATUSES:
                self._set(run, t, name, NodeStatus.CRASHED, reason)
                try:
                    self._nodes.rehab((spec.org_id, name))
                except Exception:
                    log.exception("job %s: cannot tell %s to abort", spec.job_id, name)
        self._finish(run, t, JobStatus.CRASHED, reason)
        self._record(t)

    def _finish(
        self, run: JobRun, t: Transition, status: JobStatus, reason: str | None = None
    ) -> None:
        spec = run.spec
        if run.timer is not None:
            run.timer.cancel()
            run.timer = None
        run.phase = "done"
        spec.status = status
        t.job_status = status
        data: dict[str, Any] = {"status": status.wire}
        if reason is not None:
            data["reason"] = reason  # pushd addition: why the job ended without its nodes
        t.events.append(FeedEvent("job_complete", data))
        del self._jobs[spec.job_id]
        self.output_gate.forget(spec.job_id)
        for name in spec.nodes:
            ref = (spec.org_id, name)
            watchers = self._watching.get(ref)
            if watchers is not None:
                watchers.discard(spec.job_id)
                if not watchers:
                    del self._watching[ref]
        log.info("job %s finished: %s", spec.job_id, status.wire)
        duration = None if run.started is None else self._scheduler.now() - run.started
        self.on_finished(spec.org_id, status.wire, run.tally, duration)

    def _record(self, t: Transition) -> None:
        if not t.is_empty():
            self._journal.record(t)

    def _set(
        self, run: JobRun, t: Transition, name: str, status: NodeStatus, reason: str | None = None
    ) -> None:
        run.set(name, status)
        t.node_statuses[name] = (status, reason)

    def _rehab(self, run: JobRun, t: Transition, name: str) -> None:
        t.events.append(FeedEvent("rehab", {"node": name}))
        self._nodes.rehab((run.spec.org_id, name))

    @staticmethod
    def _vote(t: Transition, name: str, status: str) -> None:
        t.events.append(FeedEvent("quorum_vote", {"node": name, "status": status}))

    @staticmethod
    def _run_complete(t: Transition, name: str, status: str) -> None:
        t.events.append(FeedEvent("run_complete", {"node": name, "status": status}))

    def _start_event(self, spec: JobSpec) -> FeedEvent:
        data: dict[str, Any] = {
            "command": spec.command,
            "run_timeout": spec.run_timeout,
            "quorum": spec.quorum,
            "node_count": len(spec.nodes),
            "user": spec.requestor,
        }
        if spec.job_user is not None:
            data["job_user"] = spec.job_user
        if spec.dir is not None:
            data["dir"] = spec.dir
        if spec.env is not None:
            data["env"] = spec.env
        if spec.file is not None:
            data["file_specified"] = True
        data["capture"] = spec.capture
        # Rollout limits (resolved node counts) only when set: other start events keep shape.
        if spec.max_concurrency is not None:
            data["max_concurrency"] = spec.max_concurrency
        if spec.max_errors is not None:
            data["max_errors"] = spec.max_errors
        return FeedEvent("start", data)

    def _commit_message(self, spec: JobSpec) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "commit",
            "job_id": spec.job_id,
            "server": self._server_name,
            "command": spec.command,
        }
        if spec.job_user is not None:
            message["user"] = spec.job_user
        if spec.dir is not None:
            message["dir"] = spec.dir
        if spec.env is not None:
            message["env"] = spec.env
        if spec.file is not None:
            message["file"] = spec.file
        message["capture"] = spec.capture
        message["run_timeout"] = spec.run_timeout
        return message

    @staticmethod
    def _run_message(spec: JobSpec) -> dict[str, Any]:
        return {"type": "run", "job_id": spec.job_id, "run_timeout": spec.run_timeout}
