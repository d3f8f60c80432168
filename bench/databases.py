"""Throwaway databases for storage tests: a SQLite file, or a fresh PostgreSQL database.

The PostgreSQL server is named by PUSHD_TEST_POSTGRES (a libpq URL of a superuser connection);
the default is the machine's own server. Each test gets a database of its own, dropped afterwards,
so suites running at the same time cannot see each other's rows.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

POSTGRES_ADMIN_URL = os.environ.get(
    "PUSHD_TEST_POSTGRES", "postgresql://root@127.0.0.1:5432/postgres"
)
BACKENDS = ("sqlite", "postgres")


class _AdminConnection:
    """One superuser connection kept for the whole test session (a new one per CREATE/DROP
    cost two connection set-ups per test); reopened if the server dropped it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn: Any = None

    def execute(self, sql: str) -> None:
        import psycopg

        with self._lock:
            for attempt in (1, 2):
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True)
                try:
                    self._conn.execute(sql)
                    return
                except psycopg.OperationalError:
                    if attempt == 2 or not self._conn.closed:
                        raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()


_CREATOR = _AdminConnection()
_DROPPER = _AdminConnection()
# Dropping a used database takes a while; the next test need not wait for it. The executor's
# worker is joined at interpreter exit, so every drop still happens.
_DROPS = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-drop")
# Closed at exit (after the executor's drops: its join runs before atexit callbacks), not left to
# interpreter shutdown, where psycopg warns about a connection deleted while open.
atexit.register(_DROPPER.close)
atexit.register(_CREATOR.close)


@contextlib.contextmanager
def postgres_database() -> Iterator[dict[str, object]]:
    """Create a uniquely named PostgreSQL database; yield its connection parameters; drop it
    (in the background: nothing else ever uses the name)."""
    from psycopg.conninfo import conninfo_to_dict

    name = f"pushd_test_{uuid.uuid4().hex[:12]}"
    admin = conninfo_to_dict(POSTGRES_ADMIN_URL)
    _CREATOR.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {
            "host": admin.get("host", "127.0.0.1"),
            "port": int(admin.get("port", 5432)),
            "user": admin.get("user", "root"),
            "password": admin.get("password", ""),
            "database": name,
        }
    finally:
        _DROPS.submit(_DROPPER.execute, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def sqlite_database(directory: Path) -> Iterator[dict[str, object]]:
    yield {"path": str(directory / "pushd.sqlite3")}
