"""The broker loop's side of the cluster: nodes held by other members, and jobs run elsewhere.

    relay = ClusterRelay(member, tracker, outbox, mailer, scheduler, recovery_grace=...)
    relay.attach(engine)            the job engine (after it was made with `relay` as its nodes)
    relay.on_mail(sender, messages) / relay.on_members(live, gone)   doorbell items (loop thread)
    relay.adopted(job_ids)          tell every member who now coordinates these jobs
    relay.learn_presence(org_id, names)   read where a job's non-local nodes are (before start)
    relay.flush()                   once per loop turn: hand the turn's mail to the mailer
    relay.publish_presence()        periodic: the held nodes that changed -> cluster_nodes

It stands between the node tracker and the job engine, which know nothing of the cluster:
- to the engine it is the node view (`is_available`, `address`, `rehab`): a node held by this
  broker answers from the tracker; a node another live member holds has the address
  ``("remote", member)``, and the broker's `send` hands a message for such an address back
  here (`forward`), to travel as mail;
- to the tracker it is the job hooks: a message of a local node for a job this broker does not
  run goes, as mail, to the job's coordinator (`store.cluster.coordinator_of`, cached), and the
  relay remembers (node, job) -> coordinator so that the node's going down or idle reaches it.

Mail ops (each message is a dict with "op"; refs are [org_id, node]):
    send      {refs, message}        coordinator -> holder: send `message` to these nodes
                                     (a ref no longer held comes back as `down`)
    rehab     {ref}                  coordinator -> holder: abort whatever the node runs
    node      {ref, job, kind, body} holder -> coordinator: a job message of the node
    output    {ref, job, body}       holder -> coordinator: a live output chunk
    reattach  {ref, job, body}       holder -> coordinator: the node says it runs the job
    down      {ref}                  holder -> coordinators: the node's session ended
    idle      {ref}                  holder -> coordinators: the node heartbeats idle
    coordinator {jobs}               new coordinator -> all: these jobs are run by the sender
A coordinator that has no use for a node message answers `rehab`, as for a local node.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from pushd.broker.contracts import Address, NodeRef, Scheduler
from pushd.store import cluster

log = logging.getLogger(__name__)

REMOTE = "remote"
# A node's result relayed to a coordinator is kept this long: if that coordinator dies before
# reading it, the member that takes the job over gets it again (the node will not resend it).
RESULT_KEEP = 120.0  # seconds
RESULT_KINDS = frozenset({"succeeded", "failed", "aborted"})
MAX_KEPT_RESULTS = 50_000
COORDINATOR_TTL = 5.0  # seconds a looked-up coordinator (or "none") is trusted
MAX_COORDINATOR_CACHE = 10_000


class ClusterRelay:
    def __init__(
        self,
        member: str,
        tracker: Any,
        outbox: Any,
        mailer: Any,
        scheduler: Scheduler,
        *,
        recovery_grace: float,
    ) -> None:
        self.member = member
        self._tracker = tracker
        self._outbox = outbox
        self._mailer = mailer
        self._scheduler = scheduler
        self._grace = recovery_grace
        self._engine: Any = None
        self._live: set[str] = {member}
        # Coordinator side: where nodes held by other members are, and if available.
        self._remote: dict[NodeRef, tuple[str, bool]] = {}
        # Holder side: (node, job) -> the coordinator its messages go to.
        self._relays: dict[tuple[NodeRef, str], str] = {}
        self._relayed_jobs: dict[NodeRef, set[str]] = defaultdict(set)
        self._coordinators: dict[str, tuple[str | None, float]] = {}
        self._outgoing: dict[str, list[dict[str, Any]]] = defaultdict(list)
        # send(): messages for remote nodes grouped per (member, message) within a turn.
        self._sends: dict[tuple[str, int], tuple[dict[str, Any], list[list[str]]]] = {}
        self._published: dict[NodeRef, bool] = {}
        # job -> node -> (kind, body, monotonic time): results relayed, for a take-over.
        self._results: dict[str, dict[NodeRef, tuple[str, dict[str, Any], float]]] = {}
        self._kept = 0
        self._moved: dict[str, float] = {}  # jobs whose coordinator changed -> when
        self.counts: dict[str, int] = defaultdict(int)

    def attach(self, engine: Any) -> None:
        self._engine = engine

    # -- node view (for the job engine) ----------------------------------------------------------

    def is_available(self, ref: NodeRef) -> bool:
        if self._tracker.is_online(ref):
            return bool(self._tracker.is_available(ref))
        found = self._remote.get(ref)
        return found is not None and found[1] and found[0] in self._live

    def address(self, ref: NodeRef) -> Address | None:
        local = self._tracker.address(ref)
        if local is not None:
            return local
        found = self._remote.get(ref)
        if found is None or found[0] not in self._live:
            return None
        return (REMOTE, found[0].encode("utf-8"))

    def rehab(self, ref: NodeRef) -> None:
        if self._tracker.is_online(ref):
            self._tracker.rehab(ref)
            return
        found = self._remote.get(ref)
        if found is not None:
            self._mail(found[0], {"op": "rehab", "ref": list(ref)})

    def forward(self, ref: NodeRef, address: Address, message: dict[str, Any]) -> None:
        """The broker's `send` for an address of `address()`'s REMOTE kind."""
        member = address[1].decode("utf-8")
        key = (member, id(message))
        entry = self._sends.get(key)
        if entry is None or entry[0] is not message:
            entry = self._sends[key] = (message, [])
        entry[1].append(list(ref))

    # -- job hooks (for the node tracker) --------------------------------------------------------

    def job_message(self, ref: NodeRef, job_id: str, kind: str, body: dict[str, Any]) -> bool:
        if self._engine.job_message(ref, job_id, kind, body):
            return True
        relayed = self._relay(ref, job_id, {"op": "node", "ref": list(ref), "job": job_id,
                                            "kind": kind, "body": body})
        adopting = not relayed and self._adopting(job_id)
        if (relayed or adopting) and kind in RESULT_KINDS:
            # Kept for a new coordinator; when that is this member (adopting), handed to the
            # engine by adopted() once it runs the job.
            self._keep_result(ref, job_id, kind, body)
        return relayed or adopting

    def output_chunk(self, ref: NodeRef, job_id: str, body: dict[str, Any]) -> bool:
        if self._engine.output_chunk(ref, job_id, body):
            return True
        return self._relay(ref, job_id, {"op": "output", "ref": list(ref), "job": job_id,
                                         "body": body})

    def node_down(self, ref: NodeRef) -> None:
        self._engine.node_down(ref)
        for member in self._forget_relays(ref):
            self._mail(member, {"op": "down", "ref": list(ref)})

    def node_idle(self, ref: NodeRef) -> None:
        self._engine.node_idle(ref)
        if ref in self._relayed_jobs:
            # Told once: an idle node runs none of the jobs it was relayed for.
            for member in self._forget_relays(ref):
                self._mail(member, {"op": "idle", "ref": list(ref)})

    def connection_replaced(self, ref: NodeRef) -> None:
        # This member's own jobs only: a job coordinated elsewhere waits for its voting timeout.
        self._engine.connection_replaced(ref)

    def job_heartbeat(self, ref: NodeRef, job_id: str, job_state: Any) -> None:
        self._engine.job_heartbeat(ref, job_id, job_state)  # as connection_replaced: own jobs

    def knows(self, ref: NodeRef, job_id: str, body: dict[str, Any] | None = None) -> bool:
        engine = self._engine
        if engine.knows(ref, job_id):
            if body is not None and engine.is_recovering(ref, job_id):
                # A job taken over while this broker already held the node: its heartbeat is
                # its re-attachment (a broker restart would have seen it as a new session).
                engine.reattach(ref, job_id, body)
            return True
        coordinator = self._coordinator_of(job_id)
        if coordinator is None:
            return False
        if coordinator == self.member:
            return self._adopting(job_id)
        previous = self._relays.get((ref, job_id))
        if previous != coordinator:
            self._remember_relay(ref, job_id, coordinator)
            if body is not None and (previous is not None or job_id in self._moved):
                # Its job changed hands since it was relayed (learnt from the new coordinator's
                # broadcast or from the jobs table, whichever came first): the new coordinator,
                # which is recovering the job, needs to hear that the node still runs it.
                self._mail(coordinator, {"op": "reattach", "ref": list(ref), "job": job_id,
                                         "body": body})
        return True

    def reattach(self, ref: NodeRef, job_id: str, body: dict[str, Any]) -> bool:
        if self._engine.reattach(ref, job_id, body):
            return True
        coordinator = self._coordinator_of(job_id)
        if coordinator is None:
            return False
        if coordinator == self.member:
            return self._adopting(job_id)  # its next heartbeat re-attaches it (knows())
        self._remember_relay(ref, job_id, coordinator)
        self._mail(coordinator, {"op": "reattach", "ref": list(ref), "job": job_id,
                                 "body": body})
        return True

    # -- doorbell items ------------------------------------------------------------------------

    def on_mail(self, sender: str, messages: Iterable[dict[str, Any]]) -> None:
        for message in messages:
            op = message.get("op")
            self.counts[f"in_{op}"] += 1
            try:
                handler = _HANDLERS.get(str(op))
                if handler is None:
                    log.warning("cluster mail from %s with unknown op %r; ignored", sender, op)
                    continue
                handler(self, sender, message)
            except Exception:
                log.exception("cluster mail %r from %s failed", op, sender)

    def on_members(self, live: Iterable[str], gone: Iterable[str]) -> None:
        self._live = set(live) | {self.member}
        gone = set(gone)
        if not gone:
            return
        lost = [ref for ref, (member, _) in self._remote.items() if member in gone]
        for ref in lost:
            del self._remote[ref]
        if lost:
            log.info("%d node(s) held by gone member(s) %s: their jobs wait %.0f s for them "
                     "to come back", len(lost), ", ".join(sorted(gone)), self._grace)
            self._engine.expect_back(lost, self._grace)
        for job_id, (member, _) in list(self._coordinators.items()):
            if member in gone:
                del self._coordinators[job_id]

    def adopted(self, job_ids: Iterable[str]) -> None:
        """Call after the engine took these jobs up: this broker's own nodes in them stop
        relaying to the old coordinator, results they relayed to it are read here again, and
        every other member is told."""
        jobs = list(job_ids)
        self._on_coordinator(self.member, {"jobs": jobs})
        for member in self._live - {self.member}:
            self._mail(member, {"op": "coordinator", "jobs": jobs})

    def learn_presence(self, org_id: str, names: Iterable[str]) -> None:
        """Where the nodes of a job that this broker does not hold are (one query)."""
        wanted = [name for name in names if not self._tracker.is_online((org_id, name))]
        if not wanted:
            return
        found = cluster.presence(org_id, wanted)
        for name in wanted:
            ref = (org_id, name)
            where = found.get(name)
            if where is None or where[0] == self.member:
                self._remote.pop(ref, None)
            else:
                self._remote[ref] = where

    # -- periodic and per turn -----------------------------------------------------------------

    def flush(self) -> None:
        if self._sends:
            for (member, _), (message, refs) in self._sends.items():
                self._outgoing[member].append({"op": "send", "refs": refs, "message": message})
                self.counts["out_send"] += len(refs)
            self._sends.clear()
        if self._outgoing:
            mail, self._outgoing = dict(self._outgoing), defaultdict(list)
            self._mailer.post(mail)

    def publish_presence(self) -> None:
        if self._results or self._moved:
            self.prune_results()
        current = self._tracker.session_availability()
        previous = self._published
        changes: dict[tuple[str, str], bool | None] = {
            ref: up for ref, up in current.items() if previous.get(ref) != up
        }
        for ref in previous.keys() - current.keys():
            changes[ref] = None
        if changes:
            self._mailer.presence(changes)
            self._published = current

    # -- internals -------------------------------------------------------------------------------

    def _mail(self, member: str, message: dict[str, Any]) -> None:
        self.counts[f"out_{message['op']}"] += 1
        self._outgoing[member].append(message)

    def _relay(self, ref: NodeRef, job_id: str, message: dict[str, Any]) -> bool:
        coordinator = self._relays.get((ref, job_id)) or self._coordinator_of(job_id)
        if coordinator is None or coordinator == self.member:
            return False
        self._remember_relay(ref, job_id, coordinator)
        self._mail(coordinator, message)
        return True

    def _remember_relay(self, ref: NodeRef, job_id: str, coordinator: str) -> None:
        self._relays[(ref, job_id)] = coordinator
        self._relayed_jobs[ref].add(job_id)

    def _forget_relays(self, ref: NodeRef) -> set[str]:
        members = set()
        for job_id in self._relayed_jobs.pop(ref, set()):
            member = self._relays.pop((ref, job_id), None)
            if member is not None:
                members.add(member)
        return members

    def _adopting(self, job_id: str) -> bool:
        """Whether the jobs table names this member coordinator of `job_id` while the engine
        does not run it: a take-over commits in the doorbell's thread and the loop adopts the
        jobs when it reads that news, so a node's heartbeat or result read in between must not
        send the node to rehab (it would drop the job it runs; seen as a crashed node in the
        cluster's kill -9 test). The lookup is trusted for COORDINATOR_TTL like any other: a
        node that still names a job which ended here is rehabbed at most that much later."""
        return not self._engine.is_live(job_id) and self._coordinator_of(job_id) == self.member

    def _coordinator_of(self, job_id: str) -> str | None:
        now = time.monotonic()
        cached = self._coordinators.get(job_id)
        # A coordinator is trusted for COORDINATOR_TTL like "none": a job ends at its live
        # coordinator without telling the holders, and a node that still heartbeats it (its
        # abort lost while its connection was replaced) gets rehab only once the lookup says
        # the job is over (kept for ever, the node stayed "available" while its client
        # answered every commit `busy`).
        fresh = cached is not None and now - cached[1] < COORDINATOR_TTL
        if cached is not None and fresh and (cached[0] is None or cached[0] in self._live):
            return cached[0]
        try:
            coordinator = cluster.coordinator_of(job_id)
        except Exception as err:
            log.warning("cannot look up the coordinator of job %s (%s)", job_id, err)
            return None
        if len(self._coordinators) >= MAX_COORDINATOR_CACHE:
            self._coordinators.clear()
        self._coordinators[job_id] = (coordinator, now)
        return coordinator

    # -- mail handlers (one per op) --------------------------------------------------------------

    def _on_send(self, sender: str, message: dict[str, Any]) -> None:
        body = message["message"]
        job_id = body.get("job_id")
        outbox, tracker = self._outbox, self._tracker
        for org_id, node in message["refs"]:
            ref = (org_id, node)
            address = tracker.address(ref)
            if address is None:
                self._mail(sender, {"op": "down", "ref": [org_id, node]})
                continue
            if isinstance(job_id, str):
                self._remember_relay(ref, job_id, sender)
            outbox.send(ref, address, body)

    def _on_rehab(self, sender: str, message: dict[str, Any]) -> None:
        ref = _ref(message)
        if self._tracker.is_online(ref):
            self._tracker.rehab(ref)

    def _on_node(self, sender: str, message: dict[str, Any]) -> None:
        ref = _ref(message)
        self._heard_from(ref, sender)
        if not self._engine.job_message(ref, message["job"], message["kind"], message["body"]):
            self._mail(sender, {"op": "rehab", "ref": list(ref)})

    def _on_output(self, sender: str, message: dict[str, Any]) -> None:
        ref = _ref(message)
        self._heard_from(ref, sender)
        self._engine.output_chunk(ref, message["job"], message["body"])

    def _on_reattach(self, sender: str, message: dict[str, Any]) -> None:
        ref = _ref(message)
        self._heard_from(ref, sender)
        job_id = message["job"]
        engine = self._engine
        if not engine.reattach(ref, job_id, message["body"]) and not engine.knows(ref, job_id):
            self._mail(sender, {"op": "rehab", "ref": list(ref)})

    def _on_down(self, sender: str, message: dict[str, Any]) -> None:
        ref = _ref(message)
        found = self._remote.get(ref)
        if found is None or found[0] != sender or self._tracker.is_online(ref):
            return  # it has moved on since: its new holder speaks for it
        del self._remote[ref]
        self._engine.node_down(ref)

    def _on_idle(self, sender: str, message: dict[str, Any]) -> None:
        self._engine.node_idle(_ref(message))

    def _on_coordinator(self, sender: str, message: dict[str, Any]) -> None:
        now = time.monotonic()
        for job_id in message["jobs"]:
            self._coordinators[job_id] = (sender, now)
            self._moved[job_id] = now
            # Results the old coordinator may never have read: the new one gets them again
            # (a recovering job takes a node's result as its re-attachment).
            for ref, (kind, body, _) in self._results.pop(job_id, {}).items():
                self._kept -= 1
                if sender == self.member:
                    self._engine.job_message(ref, job_id, kind, body)
                else:
                    self._mail(sender, {"op": "node", "ref": list(ref), "job": job_id,
                                        "kind": kind, "body": body})
            # Relays to the old coordinator are stale: the node's next heartbeat re-attaches.
            for key in [key for key in self._relays if key[1] == job_id]:
                del self._relays[key]
                self._relayed_jobs[key[0]].discard(job_id)

    def _keep_result(self, ref: NodeRef, job_id: str, kind: str, body: dict[str, Any]) -> None:
        now = time.monotonic()
        if self._kept >= MAX_KEPT_RESULTS:
            self.prune_results(now, everything=True)
        job = self._results.setdefault(job_id, {})
        if ref not in job:
            self._kept += 1
        job[ref] = (kind, body, now)

    def prune_results(self, now: float | None = None, *, everything: bool = False) -> None:
        """Forget relayed results older than RESULT_KEEP (all of them with `everything`)."""
        now = time.monotonic() if now is None else now
        for job_id in [job for job, when in self._moved.items() if now - when > RESULT_KEEP]:
            del self._moved[job_id]
        for job_id in list(self._results):
            nodes = self._results[job_id]
            for ref in [ref for ref, kept in nodes.items()
                        if everything or now - kept[2] > RESULT_KEEP]:
                del nodes[ref]
                self._kept -= 1
            if not nodes:
                del self._results[job_id]

    def _heard_from(self, ref: NodeRef, sender: str) -> None:
        if not self._tracker.is_online(ref):
            self._remote[ref] = (sender, True)


def _ref(message: dict[str, Any]) -> NodeRef:
    org_id, node = message["ref"]
    return (str(org_id), str(node))


_HANDLERS = {
    "send": ClusterRelay._on_send,
    "rehab": ClusterRelay._on_rehab,
    "node": ClusterRelay._on_node,
    "output": ClusterRelay._on_output,
    "reattach": ClusterRelay._on_reattach,
    "down": ClusterRelay._on_down,
    "idle": ClusterRelay._on_idle,
    "coordinator": ClusterRelay._on_coordinator,
}
