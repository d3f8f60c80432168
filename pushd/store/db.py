"""Connecting to the database, the shared proxy, transactions and error translation.

Every model is bound to one process-wide `peewee.DatabaseProxy` (`database_proxy`); opening a
database initialises it, so the query functions in the other modules need no database argument.
open_database / open_database_params are pushd.store.opening's: opening may migrate, and
migrations.py builds on this module, so this module imports neither (no import loop).

    bind_database(kind, params, *, pool_size=20) -> peewee.Database
        kind "sqlite": params {"path": FILE} (parent directory created, file created 0600);
        WAL journal, foreign_keys=ON, busy_timeout, synchronous=NORMAL.
        kind "postgres": params {"host", "port", "user", "password", "database"} (+ any other
        psycopg 3 connect keyword); a peewee connection pool of `pool_size` connections.
    release_idle(database)           close a pool's idle connections (after opening)
    database_params_from_settings(settings) -> (kind, params); pool_size_from_settings(settings)
        PostgreSQL when settings.get("postgresql.enable") is true (postgresql.vip / port /
        database_name / sql_user / sql_password, db_pool_size), else SQLite at
        settings.get("sqlite_path") (default <data_dir>/pushd.sqlite3).
    close_database() -> None         close every connection of the open database (in a forked
                                     child it only forgets the parent's connections)
    get_database() -> peewee.Database  the open database (StoreError if none)
    dialect() -> "sqlite" | "postgres"
    transaction()                    context manager for a write transaction; nests (savepoints).
                                     On SQLite it takes the write lock up front (BEGIN IMMEDIATE)
                                     so concurrent writers wait on busy_timeout instead of failing.
    connection()                     context manager: a connection for the current thread/greenlet,
                                     returned to the pool on exit; nests. Every query function
                                     called outside such a block (or a transaction) takes a
                                     connection and returns it itself, so nothing is stranded;
                                     wrap a request or a broker loop iteration in connection()
                                     only to reuse one connection across calls.

Errors: every public store function raises `pushd.errors.StoreError` subclasses, never peewee's:

    ConflictError(StoreError)     a uniqueness / foreign-key / check constraint refused the write
    StoreUnavailable(StoreError)  cannot connect, database locked too long, connection lost
    InvalidValue(StoreError, ValueError)  a value the database or the store cannot hold
    SchemaTooNew(StoreError)      the database was migrated by a newer pushd
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import peewee
from playhouse.pool import MaxConnectionsExceeded, PooledPostgresqlDatabase

from pushd.db_params import database_params_from_settings as database_params_from_settings
from pushd.db_params import setting as _setting
from pushd.errors import StoreError

SQLITE_BUSY_TIMEOUT_MS = 15_000
POSTGRES_CONNECT_TIMEOUT_S = 10
POOL_WAIT_TIMEOUT_S = 30
POOL_STALE_TIMEOUT_S = 600

database_proxy = peewee.DatabaseProxy()
_opened_by_pid: int | None = None


class ConflictError(StoreError):
    """A uniqueness, foreign-key or check constraint refused the write; nothing was changed."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or stayed locked; the caller may retry later."""


class InvalidValue(StoreError, ValueError):
    """A value the store cannot hold (wrong kind, too long, NUL byte on PostgreSQL, ...)."""


class SchemaTooNew(StoreError):
    """The database schema is newer than this code knows; refuse to touch it."""


P = ParamSpec("P")
R = TypeVar("R")


def translate_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator: re-raise peewee / driver errors as StoreError subclasses."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except StoreError:
            raise
        except peewee.IntegrityError as exc:
            message = f"{func.__name__}: constraint violated: {_first_line(exc)}"
            raise ConflictError(message) from exc
        except peewee.DataError as exc:
            raise InvalidValue(f"{func.__name__}: value refused: {_first_line(exc)}") from exc
        except (peewee.OperationalError, peewee.InterfaceError, MaxConnectionsExceeded) as exc:
            message = f"{func.__name__}: database unavailable: {_first_line(exc)}"
            raise StoreUnavailable(message) from exc
        except peewee.PeeweeException as exc:  # DatabaseError and the rest of peewee's tree
            raise StoreError(f"{func.__name__}: {_first_line(exc)}") from exc

    return wrapper


def store_function(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator of every query function: errors translated, and a connection of its own.

    Called outside a `connection()` / `transaction()` block (an SSE greenlet, a thread) the
    function takes a connection and gives it back before returning, so no pooled connection is
    stranded in a greenlet that ends. Inside a block it uses the block's connection.
    """
    translated = translate_errors(func)

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        database = database_proxy.obj
        if database is not None and database.is_closed():
            with _connection_for(translated):
                return translated(*args, **kwargs)
        return translated(*args, **kwargs)

    return wrapper


@contextlib.contextmanager
def _connection_for(func: Callable[..., Any]) -> Iterator[None]:
    database = get_database()
    try:
        database.connect(reuse_if_open=True)
    except (peewee.OperationalError, peewee.InterfaceError, MaxConnectionsExceeded) as exc:
        name = getattr(func, "__name__", "store")
        raise StoreUnavailable(f"{name}: database unavailable: {_first_line(exc)}") from exc
    try:
        yield
    finally:
        if not database.in_transaction():
            database.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# --------------------------------------------------------------------------------------------
# Opening and closing


def _sqlite_database(params: Mapping[str, Any]) -> peewee.SqliteDatabase:
    try:
        path = Path(str(params["path"]))
    except KeyError:
        raise StoreError("sqlite database parameters need a 'path'") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # The file holds node session keys: readable by the service user only.
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    import sqlite3

    returning = sqlite3.sqlite_version_info >= (3, 35, 0)
    return peewee.SqliteDatabase(
        str(path),
        pragmas={
            "journal_mode": "wal",
            "foreign_keys": 1,
            "busy_timeout": SQLITE_BUSY_TIMEOUT_MS,
            "synchronous": "normal",
        },
        timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
        returning_clause=returning,
        check_same_thread=False,
    )


def _postgres_database(params: Mapping[str, Any], pool_size: int) -> peewee.Database:
    connect: dict[str, Any] = dict(params)
    try:
        name = str(connect.pop("database"))
    except KeyError:
        raise StoreError("postgres database parameters need a 'database'") from None
    if not connect.get("password"):
        connect.pop("password", None)
    connect.setdefault("connect_timeout", POSTGRES_CONNECT_TIMEOUT_S)
    return PooledPostgresqlDatabase(
        name,
        prefer_psycopg3=True,
        max_connections=pool_size,
        stale_timeout=POOL_STALE_TIMEOUT_S,
        timeout=POOL_WAIT_TIMEOUT_S,
        **connect,
    )


@translate_errors
def bind_database(kind: str, params: Mapping[str, Any], *, pool_size: int = 20) -> peewee.Database:
    """Open the database described by (kind, params), bind the models to it and return it.

    The caller (pushd.store.opening, which may migrate first) ends with release_idle()."""
    database: peewee.Database
    if kind == "sqlite":
        database = _sqlite_database(params)
    elif kind in ("postgres", "postgresql"):
        database = _postgres_database(params, pool_size)
    else:
        raise StoreError(f"unknown database kind {kind!r} (expected 'sqlite' or 'postgres')")
    if database_proxy.obj is not None and database_proxy.obj is not database:
        close_database()
    database_proxy.initialize(database)
    global _opened_by_pid
    _opened_by_pid = os.getpid()
    database.connect(reuse_if_open=True)  # fail now, with a clear error, if unreachable
    database.close()
    return database


def release_idle(database: peewee.Database) -> None:
    if isinstance(database, PooledPostgresqlDatabase):
        # Leave no idle pooled connection behind: a process that forks after opening (the
        # server's main process) must not hand a live socket to its children.
        database.close_all()


def pool_size_from_settings(settings: Any) -> int:
    return int(_setting(settings, "db_pool_size", 20))


def close_database() -> None:
    """Close every connection of the open database (pooled ones too). Safe to call twice."""
    database = database_proxy.obj
    if database is None:
        return
    if _opened_by_pid != os.getpid():
        # Inherited across fork: the sockets belong to the parent. Closing them here would
        # end the parent's sessions, so just forget them.
        return
    if isinstance(database, PooledPostgresqlDatabase):
        database.close_all()
    else:
        database.close()


def get_database() -> peewee.Database:
    database = database_proxy.obj
    if database is None:
        raise StoreError("no database is open (call pushd.store.open_database first)")
    return database


def dialect() -> str:
    """'sqlite' or 'postgres' for the open database."""
    return "sqlite" if isinstance(get_database(), peewee.SqliteDatabase) else "postgres"


@contextlib.contextmanager
def transaction() -> Iterator[Any]:
    """A write transaction (savepoint when nested). See module docstring."""
    database = get_database()
    if isinstance(database, peewee.SqliteDatabase):
        atomic = database.atomic(lock_type="IMMEDIATE")
    else:
        atomic = database.atomic()
    if database.is_closed():
        # Outside any connection block: own the connection for the transaction's lifetime.
        with _connection_for(transaction), atomic as txn:
            yield txn
    else:
        with atomic as txn:
            yield txn


def connection() -> Any:
    """Hold a connection for the block and give it back afterwards (pool-friendly; nests)."""
    return get_database().connection_context()


# Elements per array parameter of one PostgreSQL statement (`unnest(%b::text[])` inserts and
# upserts): bounds a statement's size, not a parameter count.
ARRAY_CHUNK = 20_000


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    """Successive slices of at most `size` items (keeps statements under parameter limits)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
