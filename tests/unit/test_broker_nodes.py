"""Node sessions (original-server.md 1.4) and deadline liveness, on a manual clock."""

from __future__ import annotations

from pushd.broker.liveness import LivenessMonitor
from pushd.broker.timers import ManualClock, TimerQueue
from tests.support.broker_harness import ORG, EngineHarness

REF = (ORG, "n1")


def test_first_contact_aborts_until_aborted() -> None:
    h = EngineHarness(rehab_interval=1.0, offline_after=100)
    h.heartbeat("n1")
    assert h.sent("n1") == ["abort"]
    assert h.tracker.status(REF).status == "online"
    assert h.tracker.status(REF).availability == "unavailable"
    h.advance(1.0)
    assert h.sent("n1") == ["abort"]
    h.advance(1.0)
    assert h.sent("n1") == ["abort"]
    h.send("n1", "aborted")
    assert h.tracker.is_available(REF)
    h.advance(5.0)
    assert h.sent("n1") == []


def test_messages_in_rehab_do_not_make_a_node_available() -> None:
    h = EngineHarness()
    h.heartbeat("n1")
    h.heartbeat("n1")
    assert not h.tracker.is_available(REF)


def test_new_client_incarnation_restarts_the_session() -> None:
    h = EngineHarness()
    h.connect("n1")
    h.incarnations["n1"] = "second process"
    h.heartbeat("n1")
    assert h.sent("n1") == ["abort"]
    assert not h.tracker.is_available(REF)
    assert h.tracker.session_count == 1


def test_new_connection_gets_ack_and_replies_are_routed_there() -> None:
    h = EngineHarness()
    h.connect("n1")
    h.heartbeat("n1", address="second socket")
    assert h.sent("n1") == ["ack"]
    assert h.outbox.messages[-1][1] == "second socket"
    assert h.tracker.address(REF) == "second socket"
    assert h.tracker.is_available(REF)


def test_heartbeat_naming_an_unknown_job_rehabs_an_idle_node() -> None:
    h = EngineHarness()
    h.connect("n1")
    h.heartbeat("n1", "e" * 32, "running")
    assert h.sent("n1") == ["abort"]
    assert not h.tracker.is_available(REF)


def test_heartbeat_naming_a_live_job_is_fine() -> None:
    h = EngineHarness()
    h.connect("n1")
    job = h.start_job(["n1"])
    h.send("n1", "ack_commit", job)
    h.heartbeat("n1", job, "committed")
    assert h.sent("n1") == ["commit", "run"]


def test_stray_aborted_with_unknown_job_from_idle_node_is_not_aborted() -> None:
    h = EngineHarness()
    h.connect("n1")
    h.send("n1", "aborted", "e" * 32)
    assert h.sent("n1") == []
    assert h.tracker.is_available(REF)


def test_job_message_for_unknown_job_rehabs() -> None:
    h = EngineHarness()
    h.connect("n1")
    h.send("n1", "ack_commit", "e" * 32)
    assert h.sent("n1") == ["abort"]


def test_job_of_another_org_is_unknown() -> None:
    h = EngineHarness()
    h.connect("n1")
    job = h.start_job(["n1"])
    h.sent("n1")
    h.tracker.on_message(("other-org", "n1"), "x", {
        "type": "ack_commit", "job_id": job, "incarnation_id": "i"})
    assert h.node_status(job, "n1").wire == "new"


def test_unknown_message_type_is_ignored() -> None:
    h = EngineHarness()
    h.connect("n1")
    h.send("n1", "launch_missiles")
    assert h.sent("n1") == []
    assert h.tracker.is_available(REF)


def test_silent_node_goes_offline_and_comes_back_on_first_heartbeat() -> None:
    h = EngineHarness(offline_after=3.0)
    h.connect("n1")
    h.advance(2.5)
    assert h.tracker.check_liveness() == []
    h.heartbeat("n1")
    h.advance(2.9)
    assert h.tracker.check_liveness() == []
    h.advance(0.2)
    assert h.tracker.check_liveness() == [REF]
    assert h.tracker.status(REF).status == "offline"
    assert h.tracker.status(REF).last_seen is not None
    h.heartbeat("n1")
    assert h.tracker.status(REF).status == "online"
    assert h.sent("n1") == ["abort"]


def test_node_going_offline_mid_run_is_crashed() -> None:
    h = EngineHarness(offline_after=3.0)
    h.connect("n1", "n2")
    job = h.start_job(["n1", "n2"])
    for n in ("n1", "n2"):
        h.send(n, "ack_commit", job)
    for n in ("n1", "n2"):
        h.send(n, "ack_run", job)
    h.advance(2)
    h.heartbeat("n2", job, "running")
    h.advance(2)
    h.tracker.check_liveness()
    assert h.node_status(job, "n1").wire == "crashed"
    assert h.node_status(job, "n2").wire == "running"


def test_unknown_node_status_is_offline() -> None:
    h = EngineHarness()
    state = h.tracker.status((ORG, "nobody"))
    assert (state.status, state.availability, state.last_seen) == ("offline", "unavailable", None)


# -- LivenessMonitor ------------------------------------------------------------------------------


def test_liveness_monitor_deadlines() -> None:
    monitor = LivenessMonitor(offline_after=10)
    monitor.touch("a", 0)
    monitor.touch("b", 5)
    assert monitor.expired(9.9) == []
    monitor.touch("a", 8)
    assert monitor.expired(10.0) == []
    assert monitor.expired(15.0) == ["b"]
    assert monitor.expired(18.0) == ["a"]
    assert len(monitor) == 0


def test_liveness_monitor_forget_and_touch_again_keeps_one_entry() -> None:
    monitor = LivenessMonitor(offline_after=10)
    for round_ in range(50):
        monitor.touch("a", round_)
        monitor.forget("a")
    monitor.touch("a", 100)
    assert monitor.expired(200) == ["a"]
    assert monitor.expired(400) == []


def test_liveness_monitor_hold_delays_the_verdict_but_not_past_later_silence() -> None:
    monitor = LivenessMonitor(offline_after=3)
    monitor.touch("held", 0)
    monitor.touch("plain", 0)
    monitor.hold("held", 7)
    assert monitor.expired(3) == ["plain"]
    assert monitor.expired(6.9) == []
    assert monitor.expired(7) == ["held"]
    # heard from late in the hold: the normal deadline counts from its last message
    monitor.touch("late", 0)
    monitor.hold("late", 7)
    monitor.touch("late", 6)
    assert monitor.expired(8.9) == []
    assert monitor.expired(9) == ["late"]
    # the hold goes with the node: touched again after expiry, the normal rule applies
    monitor.touch("held", 20)
    assert monitor.expired(23) == ["held"]


def test_liveness_heap_does_not_grow_with_heartbeats() -> None:
    monitor = LivenessMonitor(offline_after=3)
    for t in range(1000):
        for node in range(20):
            monitor.touch(node, t)
        monitor.expired(t)
    assert len(monitor._heap) <= 20


def test_timer_queue_cancel_and_order() -> None:
    clock = ManualClock()
    timers = TimerQueue(clock)
    fired: list[str] = []
    timers.call_later(2, lambda: fired.append("b"))
    timers.call_later(1, lambda: fired.append("a"))
    cancelled = timers.call_later(1.5, lambda: fired.append("x"))
    cancelled.cancel()
    assert timers.next_delay(10) == 1
    clock.advance(3)
    assert timers.run_due() == 2
    assert fired == ["a", "b"]
    assert timers.next_delay(10) == 10


def test_timer_callback_error_does_not_stop_others() -> None:
    clock = ManualClock()
    timers = TimerQueue(clock)
    fired: list[int] = []

    def boom() -> None:
        raise RuntimeError("bad job")

    timers.call_later(1, boom)
    timers.call_later(1, lambda: fired.append(1))
    clock.advance(1)
    timers.run_due()
    assert fired == [1]


def test_heartbeat_naming_a_live_job_of_other_nodes_rehabs() -> None:
    h = EngineHarness()
    h.connect("n1", "n2")
    h.start_job(["n2"])
    job = h.start_job(["n2"])
    h.heartbeat("n1", job, "running")
    assert h.sent("n1") == ["abort"]
