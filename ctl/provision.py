"""What reconfigure creates before any service starts: account, directories, keys, database.

    ensure_service_user(user) -> bool                    creates a system account (root only);
                                                         True when it was created
    ensure_directories(settings) -> list[Path]           dir, data_dir, run_dir, service_dir,
                                                         log_directory, etc_dir; returns those
                                                         created now
    hand_over(settings, user) -> None                    as root, gives the service's state
                                                         (dir, data_dir, run_dir, log_directory,
                                                         the SQLite file) to `user`; service_dir
                                                         stays root's
    ensure_server_keys(settings) -> KeysOutcome          RSA + Curve keys (pushd.cluster_keys):
                                                         created when missing; on PostgreSQL
                                                         the cluster's (after ensure_database)
    check_sqlite_free(settings) -> None                  SQLite: another server (another
                                                         run_dir) holding the database's server
                                                         lock fails (pushd.sqlite_lock)
    ensure_database(settings) -> tuple[int | None, int]  (schema version before, after); creates
                                                         the PostgreSQL role and database first
                                                         when postgresql['enable'] is set
Errors are CommandFailed (one line for the operator).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pushd_ctl.context import CommandFailed

if TYPE_CHECKING:
    from pushd.cluster_keys import KeysOutcome

__all__ = [
    "check_sqlite_free",
    "ensure_database",
    "ensure_directories",
    "ensure_server_keys",
    "ensure_service_user",
    "hand_over",
]

_DIRECTORY_SETTINGS = ("dir", "data_dir", "run_dir", "service_dir", "log_directory", "etc_dir")
_OWNED_BY_SERVICE = ("dir", "data_dir", "run_dir", "log_directory")


def ensure_service_user(user: str) -> bool:
    try:
        pwd.getpwnam(user)
        return False
    except KeyError:
        pass
    if os.geteuid() != 0:
        raise CommandFailed(f"service user {user!r} does not exist (only root can create it)")
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    proc = subprocess.run(
        [useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", user],
        capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        raise CommandFailed(f"cannot create user {user!r}: {proc.stderr.strip()}")
    return True


def ensure_directories(settings: Any) -> list[Path]:
    created: list[Path] = []
    for name in _DIRECTORY_SETTINGS:
        path = Path(settings.get(name))
        if not path.is_dir():
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise CommandFailed(f"cannot create {name} {path}: {err.strerror}") from None
            created.append(path)
    # Keys and the database live here; nobody else needs to read it.
    Path(settings.get("data_dir")).chmod(0o700)
    return created


def hand_over(settings: Any, user: str) -> None:
    if os.geteuid() != 0 or user == "root":
        return
    account = pwd.getpwnam(user)
    targets = [Path(settings.get(name)) for name in _OWNED_BY_SERVICE]
    # The service dir (often under `dir`) stays root's: its scripts run as root before chpst.
    service_dir = Path(settings.get("service_dir"))
    for top in targets:
        if not top.exists():
            continue
        for root, dirs, files in os.walk(top):
            if Path(root) == service_dir:
                dirs.clear()
                continue
            dirs[:] = [d for d in dirs if Path(root, d) != service_dir]
            os.chown(root, account.pw_uid, account.pw_gid)
            for name in files:
                os.chown(os.path.join(root, name), account.pw_uid, account.pw_gid,
                         follow_symlinks=False)  # fmt: skip


def ensure_server_keys(settings: Any) -> KeysOutcome:
    from pushd import cluster_keys, store

    try:
        return cluster_keys.ensure_server_keys(settings)
    except store.StoreError as err:
        raise CommandFailed(f"database: {err}") from None


def check_sqlite_free(settings: Any) -> None:
    from pushd import sqlite_lock

    try:
        sqlite_lock.check_settings(settings)
    except sqlite_lock.ServerLockHeld as err:
        raise CommandFailed(str(err)) from None


def ensure_database(settings: Any) -> tuple[int | None, int]:
    from pushd import store
    from pushd.store.migrations import schema_version

    if settings.get("postgresql.enable"):
        _ensure_postgres_database(settings)
    try:
        database = store.open_database(settings, migrate=False)
        try:
            before = schema_version(database)
        finally:
            store.close_database()
        database = store.open_database(settings, migrate=True)
        try:
            after = schema_version(database)
        finally:
            store.close_database()
    except store.StoreError as err:
        raise CommandFailed(f"database: {err}") from None
    return before, int(after or 0)


def _ensure_postgres_database(settings: Any) -> None:
    """Create the role and database as postgresql['db_superuser'] when they are missing."""
    import psycopg
    from psycopg import sql

    params = {
        "host": settings.get("postgresql.vip"),
        "port": settings.get("postgresql.port"),
        "user": settings.get("postgresql.db_superuser"),
        "dbname": "postgres",
        "connect_timeout": 10,
    }
    password = settings.get("postgresql.db_superuser_password")
    if password:
        params["password"] = password
    name = settings.get("postgresql.database_name")
    owner = settings.get("postgresql.sql_user")
    try:
        with psycopg.connect(**params, autocommit=True) as conn:
            role = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)).fetchone()
            if role is None:
                statement = sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(owner))
                user_password = settings.get("postgresql.sql_password")
                if user_password:
                    statement = sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(owner), sql.Literal(user_password)
                    )
                conn.execute(statement)
            found = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if found is None:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(name), sql.Identifier(owner)
                    )
                )
    except psycopg.Error as err:
        raise CommandFailed(f"PostgreSQL at {params['host']}:{params['port']}: {err}") from None
