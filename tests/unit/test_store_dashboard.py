"""Dashboard login tokens, sessions and node counts, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta

from pushd import store
from pushd.api.dashboard.views import duration_text
from pushd.states import NodeStatus

ORG = "a" * 32


def test_login_token_is_single_use(store_db: str) -> None:
    expires = store.utcnow() + timedelta(seconds=60)
    store.add_login_token("h1", ORG, "acme", "alice", expires)
    assert store.consume_login_token("h1") == store.DashboardGrant(ORG, "acme", "alice")
    assert store.consume_login_token("h1") is None
    assert store.consume_login_token("never-made") is None


def test_login_token_expires(store_db: str) -> None:
    now = store.utcnow()
    store.add_login_token("h2", ORG, "acme", "alice", now + timedelta(seconds=60))
    assert store.consume_login_token("h2", now=now + timedelta(seconds=61)) is None
    # An expired token is gone for good, not merely refused.
    assert store.consume_login_token("h2", now=now) is None


def test_racing_consumers_get_one_grant(store_db: str) -> None:
    store.add_login_token("h3", ORG, "acme", "alice", store.utcnow() + timedelta(seconds=60))
    results: list[object] = []
    barrier = threading.Barrier(4)

    def consume() -> None:
        barrier.wait()
        with store.connection():
            results.append(store.consume_login_token("h3"))

    threads = [threading.Thread(target=consume) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(1 for result in results if result is not None) == 1


def test_sessions_expire_and_can_be_deleted(store_db: str) -> None:
    now = store.utcnow()
    store.add_session("s1", ORG, "acme", "alice", "csrf", now + timedelta(hours=8))
    session = store.get_session("s1")
    assert session is not None
    assert (session.org_id, session.org_name, session.user_name, session.csrf_token) == (
        ORG, "acme", "alice", "csrf")
    assert store.get_session("s1", now=now + timedelta(hours=8, seconds=1)) is None
    store.add_session("s2", ORG, "acme", "bob", "csrf2", now - timedelta(seconds=1))
    assert store.prune_dashboard() == 1
    assert store.delete_session("s1") is True
    assert store.get_session("s1") is None


def test_node_counts_groups_by_job_and_status(store_db: str) -> None:
    store.create_job(ORG, "1" * 32, "true", ["n1", "n2", "n3"], 3, 60, "alice")
    store.create_job(ORG, "2" * 32, "true", ["n1"], 1, 60, "alice")
    store.create_job("b" * 32, "3" * 32, "true", ["n1"], 1, 60, "alice")
    store.set_node_statuses(ORG, "1" * 32, {"n1": NodeStatus.SUCCEEDED, "n2": NodeStatus.FAILED})
    counts = store.node_counts(ORG, ["1" * 32, "2" * 32, "3" * 32])
    assert counts == {
        "1" * 32: {"succeeded": 1, "failed": 1, "new": 1},
        "2" * 32: {"new": 1},
    }


def test_duration_text() -> None:
    assert [duration_text(s) for s in (-1, 4, 125, 3720, 273600)] == [
        "0s", "4s", "2m 05s", "1h 02m", "3d 04h"]


def test_job_outputs_in_one_read_for_display(store_db: str) -> None:
    store.create_job(ORG, "4" * 32, "true", ["n1", "n2", "n3"], 3, 60, "alice",
                     {"capture": True})
    store.store_output(ORG, "4" * 32, "n2", "two\n", None)
    store.store_output(ORG, "4" * 32, "n1", "one\udcff\n", "err\n", truncated=True)
    shown = store.job_outputs(ORG, "4" * 32, limit=10)
    assert list(shown) == ["n1", "n2"]
    assert shown["n1"] == store.ShownOutput("one\ufffd\n", "err\n", True)
    assert shown["n2"] == store.ShownOutput("two\n", None, False)
    assert list(store.job_outputs(ORG, "4" * 32, limit=1)) == ["n1"]
    assert store.job_outputs("b" * 32, "4" * 32, limit=10) == {}
