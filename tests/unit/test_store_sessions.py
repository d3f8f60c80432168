"""Node session keys and known nodes, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import datetime

from pushd import store

ORG_A = "a" * 32
ORG_B = "b" * 32


def test_session_key_is_created_once_and_then_returned(store_db: str) -> None:
    key = store.get_or_create_session_key(ORG_A, "acme", "web1")
    assert isinstance(key, bytes) and len(key) == 32
    assert store.get_or_create_session_key(ORG_A, "acme", "web1") == key
    assert store.get_session_key(ORG_A, "web1") == key
    other = store.get_or_create_session_key(ORG_A, "acme", "web2")
    assert other != key
    # Same node name in another org is another node with another key.
    assert store.get_or_create_session_key(ORG_B, "globex", "web1") != key
    assert store.get_session_key(ORG_B, "web2") is None


def test_load_session_keys_returns_every_org(store_db: str) -> None:
    a = store.get_or_create_session_key(ORG_A, "acme", "web1")
    b = store.get_or_create_session_key(ORG_B, "globex", "db1")
    assert store.load_session_keys() == {
        ("acme", "web1"): (ORG_A, a),
        ("globex", "db1"): (ORG_B, b),
    }


def test_delete_session_key_makes_the_next_key_new(store_db: str) -> None:
    key = store.get_or_create_session_key(ORG_A, "acme", "web1")
    assert store.delete_session_key(ORG_B, "web1") is False  # scoped by org
    assert store.delete_session_key(ORG_A, "web1") is True
    assert store.get_session_key(ORG_A, "web1") is None
    assert store.get_or_create_session_key(ORG_A, "acme", "web1") != key


def test_session_keys_survive_reopening_the_database(db_backend: tuple[str, dict]) -> None:
    kind, params = db_backend
    store.open_database_params(kind, params, migrate=True)
    try:
        key = store.get_or_create_session_key(ORG_A, "acme", "web1")
    finally:
        store.close_database()
    store.open_database_params(kind, params, migrate=True)
    try:
        assert store.load_session_keys() == {("acme", "web1"): (ORG_A, key)}
    finally:
        store.close_database()


def test_concurrent_creation_yields_one_key(store_db: str) -> None:
    results: list[bytes] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def worker() -> None:
        try:
            start.wait()
            with store.connection():
                results.append(store.get_or_create_session_key(ORG_A, "acme", "race"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len(results) == 6 and len(set(results)) == 1
    assert store.get_session_key(ORG_A, "race") == results[0]


def test_known_nodes_upsert_last_seen(store_db: str) -> None:
    first = datetime(2024, 1, 1, 0, 0, 0, 1)
    later = datetime(2024, 1, 1, 0, 5, 0)
    store.touch_known_nodes(ORG_A, {"web1": first, "web2": first})
    store.touch_known_nodes(ORG_A, {"web1": later})
    store.touch_known_nodes(ORG_B, {"web1": first})
    assert store.known_nodes(ORG_A) == {"web1": later, "web2": first}
    assert store.known_nodes(ORG_B) == {"web1": first}
    store.touch_known_nodes(ORG_A, {f"n{i}": later for i in range(1200)})
    assert len(store.known_nodes(ORG_A)) == 1202


def test_calls_outside_a_connection_block_give_their_connection_back() -> None:
    # Each short-lived thread (like an SSE greenlet) uses the store without connection();
    # with a pool of 2, a stranded connection would make the third thread wait and fail.
    from tests.support.databases import postgres_database

    with postgres_database() as params:
        store.open_database_params("postgres", params, pool_size=2, migrate=True)
        try:
            failures: list[BaseException] = []

            def one_call(index: int) -> None:
                try:
                    store.get_or_create_session_key(ORG_A, "acme", f"node{index}")
                    with store.transaction():
                        store.touch_known_nodes(ORG_A, {f"node{index}": datetime(2024, 1, 1)})
                except BaseException as exc:  # reported below
                    failures.append(exc)

            for index in range(6):
                thread = threading.Thread(target=one_call, args=(index,))
                thread.start()
                thread.join(60)
            assert failures == []
            assert len(store.load_session_keys()) == 6
            assert len(store.known_nodes(ORG_A)) == 6
        finally:
            store.close_database()
