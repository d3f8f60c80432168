"""The cluster's shared tables (store.cluster) on a real PostgreSQL: leases judged by the
database's clock, one member wins each take-over, rows of gone members do not count, the
mailbox keeps the senders' order and rings at commit, the first member's keys win."""

from __future__ import annotations

import threading
import time

import psycopg

from pushd import store
from pushd.states import JobStatus
from pushd.store import cluster

ORG = "a" * 32


def _listen(params: dict, channel: str) -> psycopg.Connection:
    connection = psycopg.connect(
        host=params["host"], port=params["port"], user=params["user"],
        dbname=params["database"], autocommit=True,
    )
    connection.execute(f'LISTEN "{channel}"')
    return connection


def _join(member: str, lease: float = 30.0) -> None:
    cluster.register_member(member, "127.0.0.1", 1, 2, 3, lease)


def test_an_expired_member_is_taken_over_once_with_its_active_jobs_only(
    postgres_store: dict,
) -> None:
    _join("a", lease=0.3)
    _join("b")
    _join("c")
    store.create_job(ORG, "j" * 32, "true", ["n1"], 1, 60, "u", coordinator="a")
    store.create_job(ORG, "k" * 32, "true", ["n1"], 1, 60, "u", coordinator="a")
    store.set_job_status(ORG, "k" * 32, JobStatus.COMPLETE)
    cluster.set_presence("a", {(ORG, "n1"): True})
    assert cluster.take_over("a", "b") is None  # still leased: nobody may take it
    time.sleep(0.4)
    assert cluster.expired_members() == ["a"]
    assert "a" not in cluster.live_members()
    assert cluster.presence(ORG) == {}  # an expired member's nodes are nobody's

    results: list[object] = []
    barrier = threading.Barrier(2)

    def claim(me: str) -> None:
        barrier.wait()
        results.append(cluster.take_over("a", me))

    threads = [threading.Thread(target=claim, args=(me,)) for me in ("b", "c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [r for r in results if r is not None]
    assert winners == [[(ORG, "j" * 32)]]  # one winner; the finished job is not moved
    assert cluster.coordinator_of("j" * 32) in ("b", "c")
    assert cluster.coordinator_of("k" * 32) is None  # not active
    assert [m.member for m in cluster.members()] == ["b", "c"]


def test_renewal_fails_once_another_member_took_this_ones_row(postgres_store: dict) -> None:
    _join("a", lease=0.2)
    time.sleep(0.3)
    assert cluster.take_over("a", "b") == []
    assert cluster.renew_lease("a", 10) is False  # fenced: its duties are someone else's
    _join("a")  # a restart joins afresh
    assert cluster.renew_lease("a", 10) is True


def test_leave_ends_the_lease_now_and_drops_the_held_nodes(postgres_store: dict) -> None:
    _join("a")
    cluster.set_presence("a", {(ORG, "n1"): True, (ORG, "n2"): False})
    assert cluster.presence(ORG) == {"n1": ("a", True), "n2": ("a", False)}
    cluster.leave("a")
    assert cluster.expired_members() == ["a"]
    assert cluster.presence(ORG) == {}


def test_presence_moves_with_the_node_and_a_late_removal_does_not_undo_it(
    postgres_store: dict,
) -> None:
    _join("a")
    _join("b")
    cluster.set_presence("a", {(ORG, "n1"): True})
    cluster.set_presence("b", {(ORG, "n1"): True})  # it reconnected to b
    cluster.set_presence("a", {(ORG, "n1"): None})  # a notices its session ended, later
    assert cluster.presence(ORG, ["n1", "n2"]) == {"n1": ("b", True)}


def test_mail_keeps_the_order_and_rings_the_recipient_at_commit(postgres_store: dict) -> None:
    _join("a")
    listener = _listen(postgres_store, cluster.mail_channel("b"))
    try:
        cluster.post_mail("a", {"b": [{"op": "send", "n": 1}, {"op": "send", "n": 2}]})
        cluster.post_mail("a", {"b": [{"op": "rehab", "n": 3}], "c": [{"op": "x"}]})
        notes = list(listener.notifies(timeout=2.0, stop_after=1))
        assert notes and notes[0].channel == cluster.mail_channel("b")
    finally:
        listener.close()
    taken = cluster.take_mail("b")
    assert [(sender, [m["n"] for m in messages]) for sender, messages in taken] == [
        ("a", [1, 2]), ("a", [3])
    ]
    assert cluster.take_mail("b") == []  # taken once
    assert cluster.take_mail("c") == [("a", [{"op": "x"}])]


def test_event_topics_ring_in_notifications_below_the_payload_limit(postgres_store: dict) -> None:
    listener = _listen(postgres_store, cluster.EVENTS_CHANNEL)
    topics = {f"job.{i:032d}" for i in range(400)}  # ~15 KB of topics: more than one payload
    try:
        with store.transaction():
            cluster.lock_events()
            cluster.ring_events(topics)
        seen: set[str] = set()
        for note in listener.notifies(timeout=2.0):
            assert len(note.payload.encode()) < 8000
            seen.update(note.payload.split(" "))
            if seen >= topics:
                break
    finally:
        listener.close()
    assert seen == topics


def test_the_first_members_keys_are_the_clusters(postgres_store: dict) -> None:
    first = cluster.shared_keys({"rsa": b"first-rsa", "curve": b"first-curve"})
    second = cluster.shared_keys({"rsa": b"second-rsa", "curve": b"second-curve"})
    assert first == second == {"rsa": b"first-rsa", "curve": b"first-curve"}
