"""The job engine against the original's transition tables (original-server.md 4.3, 4.4, 4.7),
row by row, driven through the real node tracker on a manual clock."""

from __future__ import annotations

import pytest

from pushd.states import JobStatus, NodeStatus
from tests.support.broker_harness import ORG, EngineHarness


@pytest.fixture
def h() -> EngineHarness:
    return EngineHarness()


def votes(h: EngineHarness, job: str) -> list[tuple[str, str]]:
    return [(d["node"], d["status"]) for n, d in h.events(job) if n == "quorum_vote"]


def run_completes(h: EngineHarness, job: str) -> list[tuple[str, str]]:
    return [(d["node"], d["status"]) for n, d in h.events(job) if n == "run_complete"]


def rehabs(h: EngineHarness, job: str) -> list[str]:
    return [d["node"] for n, d in h.events(job) if n == "rehab"]


# -- start ------------------------------------------------------------------------------------


def test_start_sends_commit_with_options_and_run_timeout(h: EngineHarness) -> None:
    h.connect("n1")
    job = h.start_job(["n1"], dir="/tmp", env={"A": "1"}, run_timeout=30, capture=True)
    commit = h.last_sent("n1")
    assert commit == {
        "type": "commit",
        "job_id": job,
        "server": "pushd.test",
        "command": "echo hi",
        "dir": "/tmp",
        "env": {"A": "1"},
        "capture": True,
        "run_timeout": 30,
    }
    assert h.job_status(job) == JobStatus.VOTING
    name, data = h.events(job)[0]
    assert name == "start"
    assert data == {
        "command": "echo hi", "run_timeout": 30, "quorum": 1, "node_count": 1, "user": "alice",
        "dir": "/tmp", "env": {"A": "1"}, "capture": True,
    }


def test_offline_node_gets_no_commit_and_fails_quorum_at_once(h: EngineHarness) -> None:
    job = h.start_job(["ghost"])
    assert h.sent("ghost") == []
    assert h.node_status(job, "ghost") == NodeStatus.UNAVAILABLE
    assert h.job_status(job) == JobStatus.QUORUM_FAILED
    assert h.event_names(job) == ["start", "quorum_vote", "rehab", "job_complete"]
    assert votes(h, job) == [("ghost", "down")]
    assert h.events(job)[-1][1] == {"status": "quorum_failed"}


def test_node_in_rehab_is_unavailable_at_start(h: EngineHarness) -> None:
    h.heartbeat("n1")  # online, never answered abort
    h.sent("n1")
    job = h.start_job(["n1"])
    assert "commit" not in h.sent("n1")
    assert h.node_status(job, "n1") == NodeStatus.UNAVAILABLE
    assert h.job_status(job) == JobStatus.QUORUM_FAILED


def test_one_offline_node_does_not_hold_the_job(h: EngineHarness) -> None:
    h.connect("n1")
    job = h.start_job(["n1", "ghost"], quorum=1)
    h.send("n1", "ack_commit", job)
    assert h.job_status(job) == JobStatus.RUNNING
    assert h.sent("n1") == ["commit", "run"]
    h.send("n1", "ack_run", job)
    h.send("n1", "succeeded", job)
    assert h.job_status(job) == JobStatus.COMPLETE
    assert h.node_status(job, "ghost") == NodeStatus.UNAVAILABLE


# -- voting table 4.3 -------------------------------------------------------------------------


def test_ack_commit_new_becomes_ready_success(h: EngineHarness) -> None:
    h.connect("n1", "n2")
    job = h.start_job(["n1", "n2"])
    h.send("n1", "ack_commit", job)
    assert h.node_status(job, "n1") == NodeStatus.READY
    assert votes(h, job) == [("n1", "success")]
    assert h.job_status(job) == JobStatus.VOTING


def test_ack_commit_ready_is_unexpected_commit(h: EngineHarness) -> None:
    h.connect("n1", "n2")
    job = h.start_job(["n1", "n2"])
    h.send("n1", "ack_commit", job)
    h.send("n1", "ack_commit", job)
    assert h.node_status(job, "n1") == NodeStatus.READY
    assert votes(h, job) == [("n1", "success"), ("n1", "unexpected_commit")]
    assert rehabs(h, job) == []


def test_ack_commit_terminal_rehabs_client_died_while_voting(h: EngineHarness) -> None:
    h.connect("n1", "n2")
    job = h.start_job(["n1", "n2"], quorum=1)
    h.send("n1", "nack_commit", job)
    h.sent("n1")
    h.send("n1", "ack_commit", job)
    assert h.node_status(job, "n1") == NodeStatus.NACKED
    assert votes(h, job)[-1] == ("n1", "client_died_while_voting")
    assert rehabs(h, job) == ["n1"]
    assert h.sent("n1") == ["abort"]


def test_nack_commit_new_is_nacked_failure_with_reason(h: EngineHarness) -> None:
    h.connect("n1", "n2")
    job = h.start_job(["n1", "n2"])
    h.send("n1", "nack_commit", job, reason="not_whitelisted")
    assert h.node_status(job, "n1") == NodeStatus.NACKED
    assert h.node_reason(job, "n1") == "not_whitelisted"
    assert votes(h, job) == [("n1", "failure")]
    assert rehabs(h, job) == []


def test_nack_commit_ready_is_lost_availability(h: EngineHarness) -> None:
    h.connect("n1", "n2")
    job = h.start_job(["n1", "n2"])
    h.send("n1", "ack_commit", job)
    h.sent("n1")
    h.send("n1", "nack_commit", job)
    assert h.node_status(job, "n1") == NodeStatus.UNAVAILABLE
    assert votes(h, job)[-1] == ("n1", "lost_availibility")
    assert rehabs(h, job) == ["n1"]
    assert h.sent("n1") == ["abort"]


def test_nack_commit_terminal_rehabs(h: EngineHarness) -> None:
    h.connect("n1", "n2")
    job = h.start_job(["n1", "n2"])
    h.send("n1", "nack_commit", job)
    h.send("n1", "nack_commit", job)
    assert h.node_status(job, "n1") == NodeStatus.NACKED
    assert votes(h, job)[-1] == ("n1", "client_died_while_voting")
    assert rehabs(h, job) == ["n1"]


@pytest.mark.parametrize("acked_first", [False, True])
def test_node_down_while_voting(h: EngineHarness, acked_first: bool) -> None:
    h.connect("n1", "n2")
    job = h.start_job(["n1", "n2"])
    if acked_first:
        h.send("n1", "ack_commit", job)
    h.incarnations["n1"] = "restarted"  # a new client process: the old session ends
    h.heartbeat("n1")
    assert h.node_status(job, "n1") == NodeStatus.UNAVAILABLE
    assert votes(h, job)[-1] == ("n1", "down")
    assert rehabs(h, job) == ["n1"]


def test_node_down_when_terminal_votes_down(h: EngineHarness) -> None:
    h.connect("n1", "n2")
    job = h.start_job(["n1", "n2"])
    h.send("n1", "nack_commit", job)
    h.incarnations["n1"] = "restarted"
    h.heartbeat("n1")
    assert h.node_status(job, "n1") == NodeStatus.NACKED
    assert votes(h, job)[-1] == ("n1", "down")


@pytest.mark.parametrize("kind", ["nack_run", "ack_run", "succeeded", "failed", "aborted"])
@pytest.mark.parametrize("acked_first", [False, True])
def test_other_message_while_voting(h: EngineHarness, kind: str, acked_first: bool) -> None:
    h.connect("n1", "n2")
    job = h.start_job(["n1", "n2"])
    if acked_first:
        h.send("n1", "ack_commit", job)
    h.sent("n1")
    h.send("n1", kind, job)
    assert h.node_status(job, "n1") == NodeStatus.UNAVAILABLE
    assert votes(h, job) == ([("n1", "success")] if acked_first else [])
    assert rehabs(h, job) == ["n1"]
    assert h.sent("n1") == ["abort"]


def test_other_message_terminal_while_voting_rehabs(h: EngineHarness) -> None:
    h.connect("n1", "n2")
    job = h.start_job(["n1", "n2"])
    h.send("n1", "nack_commit", job)
    h.send("n1", "nack_run", job)
    assert h.node_status(job, "n1") == NodeStatus.NACKED
    assert rehabs(h, job) == ["n1"]


def test_voting_timeout_marks_silent_nodes_unavailable(h: EngineHarness) -> None:
    h.connect("n1", "n2")
    job = h.start_job(["n1", "n2"], quorum=1, voting_timeout=5)
    h.send("n1", "ack_commit", job)
    h.advance(4.9)
    assert h.job_status(job) == JobStatus.VOTING
    h.heartbeat("n1")
    h.heartbeat("n2")
    h.sent("n2")
    h.advance(0.2)
    assert h.node_status(job, "n2") == NodeStatus.UNAVAILABLE
    assert votes(h, job)[-1] == ("n2", "voting_timeout")
    assert "abort" in h.sent("n2")
    assert h.job_status(job) == JobStatus.RUNNING  # quorum 1 reached by n1


def test_voting_timeout_default_is_60_seconds(h: EngineHarness) -> None:
    h.connect("n1")
    job = h.start_job(["n1"])
    for _ in range(59):
        h.advance(1)
        h.heartbeat("n1")
    assert h.job_status(job) == JobStatus.VOTING
    h.advance(1.1)
    assert h.job_status(job) == JobStatus.QUORUM_FAILED
    assert h.node_status(job, "n1") == NodeStatus.UNAVAILABLE


def test_quorum_failed_sends_ready_nodes_to_was_ready(h: EngineHarness) -> None:
    h.connect("a", "b", "c")
    job = h.start_job(["a", "b", "c"], quorum=3)
    h.send("a", "nack_commit", job)
    h.send("b", "ack_commit", job)
    h.sent("b")
    h.send("c", "ack_commit", job)
    assert h.job_status(job) == JobStatus.QUORUM_FAILED
    assert h.node_status(job, "b") == NodeStatus.WAS_READY
    assert h.node_status(job, "c") == NodeStatus.WAS_READY
    assert h.node_status(job, "a") == NodeStatus.NACKED
    assert h.sent("b") == ["abort"]
    assert h.event_names(job)[-1] == "job_complete"
    assert "quorum_succeeded" not in h.event_names(job)


def test_quorum_met_with_a_nack(h: EngineHarness) -> None:
    h.connect("a", "b", "c")
    job = h.start_job(["a", "b", "c"], quorum=2)
    h.send("a", "nack_commit", job)
    for n in ("b", "c"):
        h.send(n, "ack_commit", job)
    assert h.job_status(job) == JobStatus.RUNNING
    for n in ("b", "c"):
        h.send(n, "ack_run", job)
        h.send(n, "succeeded", job)
    assert h.job_status(job) == JobStatus.COMPLETE
    assert h.node_status(job, "a") == NodeStatus.NACKED
    assert h.node_status(job, "b") == NodeStatus.SUCCEEDED


def test_quorum_zero_runs_even_if_every_node_nacks(h: EngineHarness) -> None:
    h.connect("a")
    job = h.start_job(["a"], quorum=0)
    h.send("a", "nack_commit", job)
    assert h.event_names(job) == [
        "start", "quorum_vote", "quorum_succeeded", "job_complete"
    ]
    assert h.job_status(job) == JobStatus.COMPLETE


# -- running table 4.4 ------------------------------------------------------------------------


def running_job(h: EngineHarness, nodes: tuple[str, ...] = ("n1", "n2"), **options) -> str:
    h.connect(*nodes)
    job = h.start_job(list(nodes), **options)
    for n in nodes:
        h.send(n, "ack_commit", job)
    assert h.job_status(job) == JobStatus.RUNNING
    for n in nodes:
        assert h.sent(n) == ["commit", "run"]
    return job


def test_run_message_carries_run_timeout(h: EngineHarness) -> None:
    job = running_job(h, run_timeout=42)
    assert h.last_sent("n1") == {"type": "run", "job_id": job, "run_timeout": 42}
    assert h.event_names(job)[-1] == "quorum_succeeded"


def test_ack_run_ready_becomes_running_with_run_start(h: EngineHarness) -> None:
    job = running_job(h)
    h.send("n1", "ack_run", job)
    assert h.node_status(job, "n1") == NodeStatus.RUNNING
    assert h.events(job)[-1] == ("run_start", {"node": "n1"})


def test_ack_run_running_is_a_no_op(h: EngineHarness) -> None:
    job = running_job(h)
    h.send("n1", "ack_run", job)
    before = len(h.events(job))
    h.send("n1", "ack_run", job)
    assert len(h.events(job)) == before
    assert h.sent("n1") == []


@pytest.mark.parametrize("kind", ["ack_run", "nack_run", "succeeded", "failed", "aborted",
                                  "nack_commit"])
def test_any_message_for_a_terminal_node_while_running(h: EngineHarness, kind: str) -> None:
    job = running_job(h)
    h.send("n1", "ack_run", job)
    h.send("n1", "succeeded", job)
    h.send("n1", kind, job)
    assert h.node_status(job, "n1") == NodeStatus.SUCCEEDED
    assert h.events(job)[-2:] == [
        ("rehab", {"node": "n1"}),
        ("run_complete", {"node": "n1", "status": "client_died_while_running"}),
    ]
    assert h.sent("n1") == ["abort"]


def test_nack_run_ready(h: EngineHarness) -> None:
    job = running_job(h)
    h.send("n1", "nack_run", job, reason="not committed")
    assert h.node_status(job, "n1") == NodeStatus.FAILED
    assert h.node_reason(job, "n1") == "not committed"
    assert h.events(job)[-2:] == [
        ("rehab", {"node": "n1"}),
        ("run_complete", {"node": "n1", "status": "run_nacked"}),
    ]


def test_nack_run_running(h: EngineHarness) -> None:
    job = running_job(h)
    h.send("n1", "ack_run", job)
    h.send("n1", "nack_run", job)
    assert h.node_status(job, "n1") == NodeStatus.FAILED
    assert run_completes(h, job) == [("n1", "run_nacked_while_running")]
    assert rehabs(h, job) == ["n1"]


@pytest.mark.parametrize("kind", ["succeeded", "failed"])
def test_result_without_ack_run_is_crashed(h: EngineHarness, kind: str) -> None:
    job = running_job(h)
    h.send("n1", kind, job)
    assert h.node_status(job, "n1") == NodeStatus.CRASHED
    assert run_completes(h, job) == [("n1", "crashed")]
    assert rehabs(h, job) == ["n1"]


def test_succeeded_running_stores_output(h: EngineHarness) -> None:
    job = running_job(h, capture=True)
    h.send("n1", "ack_run", job)
    h.send("n1", "succeeded", job, stdout="out\n", stderr="")
    assert h.node_status(job, "n1") == NodeStatus.SUCCEEDED
    assert run_completes(h, job) == [("n1", "success")]
    assert h.outputs(job) == {"n1": ("out\n", "")}
    assert rehabs(h, job) == []


def test_failed_running(h: EngineHarness) -> None:
    job = running_job(h)
    h.send("n1", "ack_run", job)
    h.send("n1", "failed", job, stdout="x", stderr="boom")
    assert h.node_status(job, "n1") == NodeStatus.FAILED
    assert run_completes(h, job) == [("n1", "failure")]
    assert h.outputs(job) == {"n1": ("x", "boom")}


def test_output_with_one_channel_or_none(h: EngineHarness) -> None:
    job = running_job(h)
    h.send("n1", "ack_run", job)
    h.send("n1", "succeeded", job, stdout="only")
    h.send("n2", "ack_run", job)
    h.send("n2", "succeeded", job, stdout=5, stderr=None)
    assert h.outputs(job) == {"n1": ("only", None)}


def test_truncated_output_counts_are_kept(h: EngineHarness) -> None:
    job = running_job(h, nodes=("n1",))
    h.send("n1", "ack_run", job)
    h.send("n1", "failed", job, stdout="abc", stderr="", truncated={"stdout": 10, "stderr": -1})
    (output,) = [o for t in h.journal.transitions for o in t.outputs.values()]
    assert (output.stdout_dropped, output.stderr_dropped, output.truncated) == (10, 0, True)


@pytest.mark.parametrize("acked_run", [False, True])
@pytest.mark.parametrize("kind", ["aborted", "ack_commit", "nack_commit", "down"])
def test_other_events_while_running_crash_the_node(
    h: EngineHarness, kind: str, acked_run: bool
) -> None:
    job = running_job(h)
    if acked_run:
        h.send("n1", "ack_run", job)
    if kind == "down":
        h.incarnations["n1"] = "restarted"
        h.heartbeat("n1")
    else:
        h.send("n1", kind, job)
    assert h.node_status(job, "n1") == NodeStatus.CRASHED
    assert h.events(job)[-2:] == [
        ("rehab", {"node": "n1"}),
        ("run_complete", {"node": "n1", "status": "crashed"}),
    ]


def test_aborted_reason_is_kept(h: EngineHarness) -> None:
    job = running_job(h)
    h.send("n1", "aborted", job, reason="killed by operator")
    assert h.node_reason(job, "n1") == "killed by operator"


def test_run_timeout(h: EngineHarness) -> None:
    job = running_job(h, run_timeout=10)
    h.send("n1", "ack_run", job)
    h.advance(9.5)
    for n in ("n1", "n2"):
        h.heartbeat(n, job, "running")
    assert h.job_status(job) == JobStatus.RUNNING
    h.advance(1)
    assert h.job_status(job) == JobStatus.TIMED_OUT
    assert h.node_status(job, "n1") == NodeStatus.TIMED_OUT
    assert h.node_status(job, "n2") == NodeStatus.TIMED_OUT
    assert run_completes(h, job) == []
    assert h.events(job)[-1] == ("job_complete", {"status": "timed_out"})
    assert h.sent("n1") == ["abort"]


def test_complete_when_every_node_finished_even_if_failed(h: EngineHarness) -> None:
    job = running_job(h)
    for n, result in (("n1", "failed"), ("n2", "succeeded")):
        h.send(n, "ack_run", job)
        h.send(n, result, job)
    assert h.job_status(job) == JobStatus.COMPLETE
    assert h.event_names(job)[-1] == "job_complete"
    assert not h.engine.is_live(job)


def test_full_event_sequence_of_a_successful_job(h: EngineHarness) -> None:
    job = running_job(h, nodes=("n1",))
    h.send("n1", "ack_run", job)
    h.send("n1", "succeeded", job)
    assert h.event_names(job) == [
        "start", "quorum_vote", "quorum_succeeded", "run_start", "run_complete", "job_complete"
    ]
    assert h.events(job)[-1] == ("job_complete", {"status": "complete"})


def test_stray_nack_commit_with_unknown_job_id_while_running(h: EngineHarness) -> None:
    job = running_job(h, nodes=("n1",))
    h.send("n1", "ack_run", job)
    h.send("n1", "nack_commit", "f" * 32)  # unknown job: the node is sent to rehab
    assert h.sent("n1") == ["abort"]
    h.send("n1", "aborted", job)  # the stock client answers naming the job it was running
    assert h.node_status(job, "n1") == NodeStatus.CRASHED
    assert h.job_status(job) == JobStatus.COMPLETE
    # ... and afterwards the node is usable again.
    h.send("n1", "aborted")
    assert h.tracker.is_available((ORG, "n1"))
    job2 = h.start_job(["n1"])
    h.send("n1", "ack_commit", job2)
    h.send("n1", "ack_run", job2)
    h.send("n1", "succeeded", job2)
    assert h.job_status(job2) == JobStatus.COMPLETE


# -- abort -------------------------------------------------------------------------------------


def test_abort_a_running_job(h: EngineHarness) -> None:
    job = running_job(h)
    h.send("n1", "ack_run", job)
    h.send("n2", "ack_run", job)
    h.send("n2", "succeeded", job)
    assert h.engine.abort(job) == JobStatus.ABORTED
    assert h.job_status(job) == JobStatus.ABORTED
    assert h.node_status(job, "n1") == NodeStatus.ABORTED
    assert h.node_status(job, "n2") == NodeStatus.SUCCEEDED
    assert h.sent("n1") == ["abort"]
    assert h.sent("n2") == []
    assert h.events(job)[-1] == ("job_complete", {"status": "aborted"})
    with pytest.raises(KeyError):
        h.engine.abort(job)


def test_abort_while_voting(h: EngineHarness) -> None:
    h.connect("n1", "n2")
    job = h.start_job(["n1", "n2"])
    h.send("n1", "ack_commit", job)
    h.engine.abort(job)
    assert h.node_status(job, "n1") == NodeStatus.ABORTED
    assert h.node_status(job, "n2") == NodeStatus.ABORTED
    h.advance(120)  # the voting timer was cancelled: nothing more happens to the job
    assert h.event_names(job)[-1] == "job_complete"


# -- restart re-attach --------------------------------------------------------------------------


def recovering_job(h: EngineHarness, statuses: dict[str, NodeStatus], grace: float = 3.0):
    from pushd.broker.contracts import JobSpec

    spec = JobSpec(
        job_id="a" * 32, org_id=ORG, command="sleep 5", nodes=list(statuses), quorum=1,
        status=JobStatus.RUNNING, node_statuses=dict(statuses),
    )
    h.engine.recover(spec, run_left=100, grace=grace)
    return spec.job_id


def test_reattach_running_node_finishes_the_job(h: EngineHarness) -> None:
    job = recovering_job(h, {"n1": NodeStatus.RUNNING, "n2": NodeStatus.NACKED})
    h.heartbeat("n1", job, "running")
    assert h.sent("n1") == ["ack"]  # no abort: the command keeps running
    h.advance(5)  # grace over: n1 already re-attached
    h.heartbeat("n1", job, "running")
    assert h.engine.is_live(job)
    h.send("n1", "succeeded", job)
    assert h.node_status(job, "n1") == NodeStatus.SUCCEEDED
    assert h.job_status(job) == JobStatus.COMPLETE


def test_reattach_missing_node_is_crashed_after_grace(h: EngineHarness) -> None:
    job = recovering_job(h, {"n1": NodeStatus.RUNNING, "n2": NodeStatus.RUNNING})
    h.heartbeat("n1", job, "running")
    h.advance(3.1)
    assert h.node_status(job, "n2") == NodeStatus.CRASHED
    assert h.engine.is_live(job)
    h.send("n1", "succeeded", job)
    assert h.job_status(job) == JobStatus.COMPLETE


def test_reattached_node_is_not_judged_offline_during_the_restart_hold() -> None:
    # A stock client that judged the server offline: its queued heartbeats re-attach it, then
    # it is silent until it has seen more than online_threshold server heartbeats.
    from pushd.broker.jobs import JobEngine
    from pushd.broker.nodes import NodeTracker

    h = EngineHarness(offline_after=3.0)  # its tracker and engine, rebuilt with the hold
    h.tracker = NodeTracker(h.outbox, h.timers, rehab_interval=1.0, offline_after=3.0,
                            wall_clock=h.clock, reattach_hold=7.0)
    h.engine = JobEngine(h.outbox, h.timers, h.journal, h.tracker, server_name="pushd.test")
    h.tracker.attach(h.engine)
    job = recovering_job(h, {"n1": NodeStatus.RUNNING, "n2": NodeStatus.RUNNING}, grace=7.0)
    h.heartbeat("n1", job, "running")
    h.heartbeat("n2", job, "running")
    for _ in range(6):
        h.advance(1)
        h.tracker.check_liveness()
    assert run_completes(h, job) == []  # 6 s silent, offline_after 3 s: both still held
    h.heartbeat("n1", job, "running")  # back online after 6 s
    h.advance(1.1)
    h.tracker.check_liveness()
    assert h.node_status(job, "n2") == NodeStatus.CRASHED  # silent past the hold: offline
    assert run_completes(h, job) == [("n2", "crashed")]
    h.send("n1", "succeeded", job)
    assert h.job_status(job) == JobStatus.COMPLETE
    assert run_completes(h, job) == [("n2", "crashed"), ("n1", "success")]


def test_reattach_idle_node_is_aborted_and_crashed(h: EngineHarness) -> None:
    job = recovering_job(h, {"n1": NodeStatus.RUNNING})
    h.heartbeat("n1")  # it is not running the job any more
    assert h.sent("n1") == ["abort"]
    h.advance(3.1)
    assert h.node_status(job, "n1") == NodeStatus.CRASHED
    assert h.job_status(job) == JobStatus.COMPLETE


def test_reattach_result_sent_before_any_heartbeat(h: EngineHarness) -> None:
    job = recovering_job(h, {"n1": NodeStatus.RUNNING})
    h.send("n1", "failed", job, stdout="", stderr="e")
    assert "abort" not in h.sent("n1")
    assert h.node_status(job, "n1") == NodeStatus.FAILED
    assert h.job_status(job) == JobStatus.COMPLETE


def test_idle_heartbeat_from_a_running_node_means_its_result_was_lost(h: EngineHarness) -> None:
    job = running_job(h, nodes=("n1",))
    h.send("n1", "ack_run", job)
    h.heartbeat("n1", job, "running")
    assert h.node_status(job, "n1") == NodeStatus.RUNNING
    h.heartbeat("n1")  # idle, no job: the `succeeded` it sent never arrived
    assert h.node_status(job, "n1") == NodeStatus.CRASHED
    assert run_completes(h, job) == [("n1", "crashed")]
    assert h.job_status(job) == JobStatus.COMPLETE


def test_idle_heartbeat_from_a_ready_node_is_not_judged(h: EngineHarness) -> None:
    job = running_job(h, nodes=("n1",))
    h.heartbeat("n1")  # sent before the `run` arrived
    assert h.node_status(job, "n1") == NodeStatus.READY


# -- a node's connection replaced while it votes -------------------------------------------------


def test_commit_lost_with_a_replaced_connection_is_sent_again(h: EngineHarness) -> None:
    h.connect("n1")
    job = h.start_job(["n1"])
    assert h.sent("n1") == ["commit"]
    # The client reopened its sockets (a config fetch) before the commit reached it: the
    # commit went to the old connection, and the client speaks idle from a new one.
    h.heartbeat("n1", address=("addr", "n1-new"))
    assert h.sent("n1") == ["ack", "commit"]
    assert h.last_sent("n1")["job_id"] == job
    h.send("n1", "ack_commit", job, address=("addr", "n1-new"))
    assert h.node_status(job, "n1") == NodeStatus.READY
    assert h.job_status(job) == JobStatus.RUNNING


def test_idle_heartbeat_on_the_same_connection_does_not_resend_the_commit(
    h: EngineHarness,
) -> None:
    h.connect("n1")
    job = h.start_job(["n1"])
    assert h.sent("n1") == ["commit"]
    h.heartbeat("n1")  # crossed the commit in flight: the node answers it next
    assert h.sent("n1") == []
    assert h.node_status(job, "n1") == NodeStatus.NEW


def test_run_lost_with_a_replaced_connection_is_sent_again(h: EngineHarness) -> None:
    job = running_job(h, nodes=("n1",))
    # The run went to the old connection; from the new one the client still says committed.
    h.heartbeat("n1", job, "committed", address=("addr", "n1-new"))
    assert h.sent("n1") == ["ack", "run"]
    assert h.last_sent("n1")["job_id"] == job
    # Sent once: a later committed heartbeat (crossing the new run in flight) gets nothing.
    h.heartbeat("n1", job, "committed", address=("addr", "n1-new"))
    assert h.sent("n1") == []
    h.send("n1", "ack_run", job, address=("addr", "n1-new"))
    h.send("n1", "succeeded", job, address=("addr", "n1-new"))
    assert h.job_status(job) == JobStatus.COMPLETE


def test_a_node_replaced_while_voting_gets_one_run_after_it_answered(h: EngineHarness) -> None:
    h.connect("n1")
    job = h.start_job(["n1"])
    assert h.sent("n1") == ["commit"]
    # It had the commit; its answer is the first word from its new connection.
    h.send("n1", "ack_commit", job, address=("addr", "n1-new"))
    assert h.sent("n1") == ["ack", "run"]  # the run goes to the new connection
    # Crossing that run in flight: the first run was not lost, nothing is sent again.
    h.heartbeat("n1", job, "committed", address=("addr", "n1-new"))
    assert h.sent("n1") == []


def test_committed_heartbeat_on_the_same_connection_does_not_resend_the_run(
    h: EngineHarness,
) -> None:
    job = running_job(h, nodes=("n1",))
    h.heartbeat("n1", job, "committed")  # crossed the run in flight
    assert h.sent("n1") == []
    assert h.node_status(job, "n1") == NodeStatus.READY


def test_ack_run_lost_with_a_replaced_connection_counts_the_node_running(
    h: EngineHarness,
) -> None:
    job = running_job(h, nodes=("n1",))
    # The run arrived, the ack_run went out on the old connection and was lost.
    h.heartbeat("n1", job, "running", address=("addr", "n1-new"))
    assert h.sent("n1") == ["ack"]  # no second run: the client would nack it
    assert h.node_status(job, "n1") == NodeStatus.RUNNING
    assert h.event_names(job)[-1] == "run_start"


def test_a_committed_node_on_a_new_connection_gets_no_second_commit(h: EngineHarness) -> None:
    h.connect("n1")
    job = h.start_job(["n1"])
    assert h.sent("n1") == ["commit"]
    # It got the commit before the switch (a second one would be nacked as busy).
    h.heartbeat("n1", job, "committed", address=("addr", "n1-new"))
    assert h.sent("n1") == ["ack"]
    h.send("n1", "ack_commit", job, address=("addr", "n1-new"))
    assert h.node_status(job, "n1") == NodeStatus.READY
