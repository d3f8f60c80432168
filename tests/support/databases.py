"""Throwaway databases for storage tests: a SQLite file, or a fresh PostgreSQL database.

The PostgreSQL server is named by PUSHD_TEST_POSTGRES (a libpq URL of a superuser connection);
the default is the machine's own server. Each test gets a database of its own, dropped afterwards,
so suites running at the same time cannot see each other's rows.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

POSTGRES_ADMIN_URL = os.environ.get(
    "PUSHD_TEST_POSTGRES", "postgresql://root@127.0.0.1:5432/postgres"
)
BACKENDS = ("sqlite", "postgres")


@contextlib.contextmanager
def postgres_database() -> Iterator[dict[str, object]]:
    """Create a uniquely named PostgreSQL database; yield its connection parameters; drop it."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    name = f"pushd_test_{uuid.uuid4().hex[:12]}"
    admin = conninfo_to_dict(POSTGRES_ADMIN_URL)
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {
            "host": admin.get("host", "127.0.0.1"),
            "port": int(admin.get("port", 5432)),
            "user": admin.get("user", "root"),
            "password": admin.get("password", ""),
            "database": name,
        }
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def sqlite_database(directory: Path) -> Iterator[dict[str, object]]:
    yield {"path": str(directory / "pushd.sqlite3")}
