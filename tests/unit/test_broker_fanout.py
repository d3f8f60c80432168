"""A job's commit and run fan-out goes out a slice per loop turn (issue 12 item 7), driven
through the real node tracker and job engine on a manual clock; and the timer queue that makes
a "turn" of it."""

from __future__ import annotations

from pushd.broker.timers import ManualClock, TimerQueue
from pushd.states import JobStatus, NodeStatus
from tests.support.broker_harness import ORG, EngineHarness

NODES = [f"n{i}" for i in range(5)]


def commits(h: EngineHarness, nodes: list[str]) -> list[str]:
    return [n for n in nodes if "commit" in h.sent(n)]


def test_timer_added_by_a_callback_runs_on_the_next_turn() -> None:
    timers = TimerQueue(ManualClock())
    ran: list[str] = []

    def first() -> None:
        ran.append("first")
        timers.call_later(0.0, lambda: ran.append("second"))

    timers.call_later(0.0, first)
    assert timers.run_due() == 1 and ran == ["first"]
    assert timers.next_delay(1.0) == 0.0
    assert timers.run_due() == 1 and ran == ["first", "second"]


def test_commits_go_out_one_slice_per_turn() -> None:
    h = EngineHarness(fanout_slice=2)
    h.connect(*NODES)
    job = h.start_job(NODES)
    assert commits(h, NODES) == ["n0", "n1"]
    assert h.job_status(job) == JobStatus.VOTING
    h.turn()
    assert commits(h, NODES) == ["n2", "n3"]
    h.turn()
    assert commits(h, NODES) == ["n4"]
    assert h.turn() == 0
    for node in NODES:
        h.send(node, "ack_commit", job)
    assert h.job_status(job) == JobStatus.RUNNING


def test_quorum_waits_for_every_slice_of_unknown_nodes() -> None:
    h = EngineHarness(fanout_slice=2)
    h.connect("n0")
    ghosts = [f"ghost{i}" for i in range(4)]
    job = h.start_job(["n0", *ghosts], quorum=1)
    h.send("n0", "ack_commit", job)
    # ghost1..3 have not been looked at yet: the vote is not over.
    assert h.job_status(job) == JobStatus.VOTING
    assert h.node_status(job, "ghost3") == NodeStatus.NEW
    h.turn()
    h.turn()
    assert [h.node_status(job, g) for g in ghosts] == [NodeStatus.UNAVAILABLE] * 4
    assert h.job_status(job) == JobStatus.RUNNING
    assert h.sent("n0")[-1] == "run"


def test_run_goes_out_one_slice_per_turn() -> None:
    h = EngineHarness(fanout_slice=2)
    h.connect(*NODES)
    job = h.start_job(NODES)
    h.turn()
    h.turn()
    for node in NODES:
        h.sent(node)
        h.send(node, "ack_commit", job)
    runs = [n for n in NODES if h.sent(n) == ["run"]]
    assert runs == ["n0", "n1"]
    h.turn()
    assert [n for n in NODES if h.sent(n) == ["run"]] == ["n2", "n3"]
    h.turn()
    assert [n for n in NODES if h.sent(n) == ["run"]] == ["n4"]


def test_abort_stops_the_fan_out() -> None:
    h = EngineHarness(fanout_slice=2)
    h.connect(*NODES)
    job = h.start_job(NODES)
    h.engine.abort(job)
    h.turn()
    h.turn()
    assert [n for n in NODES if "commit" in h.sent(n)] == ["n0", "n1"]
    assert {h.node_status(job, n) for n in NODES} == {NodeStatus.ABORTED}


def test_node_gone_before_its_slice_is_not_sent_a_commit() -> None:
    h = EngineHarness(fanout_slice=2)
    h.connect(*NODES)
    job = h.start_job(NODES)
    assert commits(h, NODES) == ["n0", "n1"]
    h.tracker.end_session((ORG, "n3"))
    h.turn()
    assert commits(h, NODES) == ["n2"]
    assert h.node_status(job, "n3") == NodeStatus.UNAVAILABLE
    votes = [(d["node"], d["status"]) for n, d in h.events(job) if n == "quorum_vote"]
    assert votes == [("n3", "down")]
