"""Rollout control in the job engine (issue 17): max_concurrency, the error budget, waiting
nodes that neither time out nor look lost, and O(1) work to start the next node. Driven through
the real node tracker on a manual clock (tests/support/broker_harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pushd.broker.jobs import JobRun
from pushd.states import JobStatus, NodeStatus
from tests.support.broker_harness import ORG, EngineHarness


def names(n: int) -> list[str]:
    return [f"n{i:05d}" for i in range(n)]


def vote_all(h: EngineHarness, job: str, nodes: list[str]) -> None:
    for node in nodes:
        h.send(node, "ack_commit", job)


def runs_sent(h: EngineHarness, job: str) -> list[str]:
    return [ref[1] for ref, _, m in h.outbox.messages if m["type"] == "run" and m["job_id"] == job]


def finish(h: EngineHarness, job: str, node: str, kind: str = "succeeded") -> None:
    h.send(node, "ack_run", job)
    h.send(node, kind, job)


def max_running_in_feed(h: EngineHarness, job: str) -> int:
    """The most nodes between run_start and run_complete at any point of the feed."""
    running, most = 0, 0
    for name, _ in h.events(job):
        if name == "run_start":
            running += 1
            most = max(most, running)
        elif name == "run_complete":
            running -= 1
    return most


def test_at_most_max_concurrency_nodes_are_sent_run() -> None:
    h = EngineHarness()
    nodes = names(5)
    h.connect(*nodes)
    job = h.start_job(nodes, max_concurrency=2)
    vote_all(h, job, nodes)
    assert h.job_status(job) == JobStatus.RUNNING
    assert runs_sent(h, job) == nodes[:2]
    finish(h, job, nodes[0])
    assert runs_sent(h, job) == nodes[:3]  # one finished, the next starts at once
    finish(h, job, nodes[1], "failed")
    finish(h, job, nodes[2])
    finish(h, job, nodes[3])
    finish(h, job, nodes[4])
    assert runs_sent(h, job) == nodes
    assert h.job_status(job) == JobStatus.COMPLETE  # no max_errors: failures do not halt
    assert max_running_in_feed(h, job) == 1  # each node finished before the next acked
    start = h.events(job)[0][1]
    assert start["max_concurrency"] == 2 and "max_errors" not in start


def test_a_waiting_node_stays_ready_past_run_timeout_and_liveness() -> None:
    h = EngineHarness(offline_after=3.0)
    h.connect("a", "b")
    job = h.start_job(["a", "b"], max_concurrency=1, run_timeout=5)
    vote_all(h, job, ["a", "b"])
    h.send("a", "ack_run", job)
    for _ in range(4):  # 8 s: beyond b's run_timeout and the liveness window
        h.advance(2.0)
        h.heartbeat("a", job, "running")
        h.heartbeat("b", job, "committed")  # a stock client waiting after ack_commit
    assert h.node_status(job, "b") == NodeStatus.READY
    assert h.node_status(job, "a") == NodeStatus.TIMED_OUT  # its own 5 s since its `run`
    assert "b" in runs_sent(h, job)
    assert h.sent("b")[-1] == "run"
    h.send("b", "ack_run", job)
    h.advance(2.0)  # b was sent `run` at 6 s; its deadline is 11 s
    h.heartbeat("b", job, "running")
    h.send("b", "succeeded", job)
    assert h.node_status(job, "b") == NodeStatus.SUCCEEDED
    assert h.job_status(job) == JobStatus.COMPLETE
    assert ("run_complete", {"node": "a", "status": "timed_out"}) in h.events(job)


def test_error_budget_halts_the_job_and_skips_the_rest() -> None:
    h = EngineHarness()
    nodes = names(6)
    h.connect(*nodes)
    job = h.start_job(nodes, max_concurrency=2, max_errors=1)
    vote_all(h, job, nodes)
    for node in nodes:
        h.sent(node)
    finish(h, job, nodes[0], "failed")     # 1 failure: within the budget, n2 starts
    h.send(nodes[1], "ack_run", job)       # n1 running
    h.send(nodes[2], "nack_run", job)      # 2 failures > 1: halt; n1 keeps running
    assert runs_sent(h, job) == nodes[:3]
    for node in nodes[3:]:
        assert h.node_status(job, node) == NodeStatus.SKIPPED
        assert h.sent(node) == ["abort"]   # released from `committed`, never run
    assert h.job_status(job) == JobStatus.RUNNING
    h.send(nodes[1], "succeeded", job)
    assert h.node_status(job, nodes[1]) == NodeStatus.SUCCEEDED
    assert h.job_status(job) == JobStatus.HALTED
    assert ("halted", {"failed": 2, "max_errors": 1, "skipped": 3}) in h.events(job)
    assert h.events(job)[-1] == ("job_complete", {"status": "halted"})


def test_budget_without_concurrency_runs_all_and_ends_halted() -> None:
    h = EngineHarness()
    h.connect("a", "b", "c")
    job = h.start_job(["a", "b", "c"], max_errors=0)
    vote_all(h, job, ["a", "b", "c"])
    assert runs_sent(h, job) == ["a", "b", "c"]
    finish(h, job, "a", "failed")
    finish(h, job, "b")
    finish(h, job, "c")
    assert h.job_status(job) == JobStatus.HALTED


def test_within_budget_the_job_is_complete() -> None:
    h = EngineHarness()
    h.connect("a", "b")
    job = h.start_job(["a", "b"], max_concurrency=1, max_errors=1)
    vote_all(h, job, ["a", "b"])
    finish(h, job, "a", "failed")
    finish(h, job, "b")
    assert h.job_status(job) == JobStatus.COMPLETE


def test_quorum_covers_every_node_before_any_run() -> None:
    h = EngineHarness()
    nodes = names(4)
    h.connect(*nodes)
    job = h.start_job(nodes, max_concurrency=1)
    assert all(h.sent(node) == ["commit"] for node in nodes)  # every node votes at once
    vote_all(h, job, nodes[:3])
    assert runs_sent(h, job) == []  # still voting: nobody runs
    h.send(nodes[3], "nack_commit", job)
    assert h.job_status(job) == JobStatus.QUORUM_FAILED
    assert runs_sent(h, job) == []


def test_a_waiting_node_that_goes_down_is_crashed_and_its_turn_passes() -> None:
    h = EngineHarness()
    h.connect("a", "b", "c")
    job = h.start_job(["a", "b", "c"], max_concurrency=1)
    vote_all(h, job, ["a", "b", "c"])
    h.send("b", "aborted", job)  # b gives up while waiting: crashed (table 4.4 "other")
    assert h.node_status(job, "b") == NodeStatus.CRASHED
    finish(h, job, "a")
    finish(h, job, "c")
    assert runs_sent(h, job) == ["a", "c"]
    assert h.job_status(job) == JobStatus.COMPLETE


def test_abort_ends_waiting_nodes_aborted() -> None:
    h = EngineHarness()
    h.connect("a", "b")
    job = h.start_job(["a", "b"], max_concurrency=1)
    vote_all(h, job, ["a", "b"])
    h.engine.abort(job)
    assert h.node_status(job, "b") == NodeStatus.ABORTED
    assert h.job_status(job) == JobStatus.ABORTED


class CountingDict(dict[str, NodeStatus]):
    """The engine's per-node status map, counting every walk over it."""

    walks = 0

    def __iter__(self) -> Iterator[str]:
        CountingDict.walks += 1
        return super().__iter__()

    def items(self) -> Any:
        CountingDict.walks += 1
        return super().items()

    def values(self) -> Any:
        CountingDict.walks += 1
        return super().values()

    def keys(self) -> Any:
        CountingDict.walks += 1
        return super().keys()


def steady_state_cost(size: int, finished: int = 200) -> tuple[int, int, int]:
    """Finish `finished` nodes of a `size`-node job with max_concurrency 50; return (walks over
    all nodes, waiting-queue pops, messages sent) spent doing it."""
    h = EngineHarness()
    nodes = names(size)
    h.connect(*nodes)
    job = h.start_job(nodes, max_concurrency=50, run_timeout=10**6)
    vote_all(h, job, nodes)
    run: JobRun = h.engine._jobs[job]
    run.statuses = CountingDict(run.statuses)
    pops = 0
    real_waiting = run.waiting

    class CountingDeque:
        def popleft(self) -> str:
            nonlocal pops
            pops += 1
            return real_waiting.popleft()

    run.waiting = CountingDeque()  # type: ignore[assignment]
    CountingDict.walks = 0
    sent_before = len(h.outbox.messages)
    for node in nodes[:finished]:
        finish(h, job, node)
    return CountingDict.walks, pops, len(h.outbox.messages) - sent_before


def test_starting_the_next_node_does_not_grow_with_job_size() -> None:
    small = steady_state_cost(1_000)
    large = steady_state_cost(8_000)
    # Each finish starts exactly one node: one pop, one `run`, and no walk over the job's
    # nodes, whatever the job's size.
    assert small == large == (0, 200, 200)


def test_node_status_ref_is_of_the_harness_org() -> None:
    # Guard for the helpers above: runs_sent reads refs of this org only.
    h = EngineHarness()
    h.connect("a")
    job = h.start_job(["a"], max_concurrency=1)
    h.send("a", "ack_commit", job)
    assert [ref for ref, _, m in h.outbox.messages if m["type"] == "run"] == [(ORG, "a")]


def test_after_a_broker_restart_waiting_nodes_wait_their_turn_again() -> None:
    from pushd.broker.contracts import JobSpec

    h = EngineHarness()
    statuses = {"a": NodeStatus.RUNNING, "b": NodeStatus.READY, "c": NodeStatus.READY}
    spec = JobSpec(
        job_id="a" * 32, org_id=ORG, command="sleep 5", nodes=list(statuses), quorum=3,
        status=JobStatus.RUNNING, node_statuses=dict(statuses), run_timeout=10,
        max_concurrency=1,
    )
    h.engine.recover(spec, run_left=100, grace=3.0)
    job = spec.job_id
    h.heartbeat("a", job, "running")
    h.heartbeat("b", job, "committed")
    h.heartbeat("c", job, "committed")
    assert runs_sent(h, job) == []  # a holds the only slot
    h.send("a", "succeeded", job)
    assert runs_sent(h, job) == ["b"]
    h.advance(11)  # b's own run_timeout (it never acked): timed out, c's turn
    assert h.node_status(job, "b") == NodeStatus.TIMED_OUT
    assert runs_sent(h, job) == ["b", "c"]
    finish(h, job, "c")
    assert h.job_status(job) == JobStatus.COMPLETE


def test_a_reattached_running_node_gets_a_deadline() -> None:
    from pushd.broker.contracts import JobSpec

    h = EngineHarness()
    statuses = {"a": NodeStatus.RUNNING, "b": NodeStatus.READY}
    spec = JobSpec(
        job_id="b" * 32, org_id=ORG, command="sleep 5", nodes=list(statuses), quorum=2,
        status=JobStatus.RUNNING, node_statuses=dict(statuses), run_timeout=5,
        max_concurrency=1,
    )
    h.engine.recover(spec, run_left=100, grace=30.0)
    job = spec.job_id
    h.heartbeat("a", job, "running")
    h.heartbeat("b", job, "committed")
    for _ in range(3):
        h.advance(2)
        h.heartbeat("a", job, "running")
        h.heartbeat("b", job, "committed")
    assert h.node_status(job, "a") == NodeStatus.TIMED_OUT
    assert runs_sent(h, job) == ["b"]


def test_a_waiting_node_on_a_new_connection_still_waits_its_turn() -> None:
    """A replaced connection makes the engine re-send a `run` the old one may have lost, but
    only to a node that was sent one: a node waiting its turn is still committed and gets none
    (else the rollout's max_concurrency would be exceeded)."""
    h = EngineHarness()
    h.connect("a", "b")
    job = h.start_job(["a", "b"], max_concurrency=1)
    vote_all(h, job, ["a", "b"])
    assert runs_sent(h, job) == ["a"]
    h.heartbeat("b", job, "committed", address=("addr", "b-new"))
    assert runs_sent(h, job) == ["a"]
    finish(h, job, "a")
    assert runs_sent(h, job) == ["a", "b"]  # its turn: the run goes to the new connection
    assert h.outbox.messages[-1][1] == ("addr", "b-new")
