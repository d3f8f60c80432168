"""One server per SQLite database: an exclusive `flock` on a file next to it.

Servers that share a database form a cluster only on PostgreSQL (leases, presence, the mailbox
between brokers live there and nowhere else). Two servers on one SQLite file would each run a
broker that believes it alone drives the jobs in it, so the second is refused, with one line
that says why: the broker holds ``<sqlite_path>.server-lock`` for its whole life and records
its ``run_dir`` and pid in it; reconfigure and the service's main process check it before they
touch anything. Processes of the same server (the same ``run_dir``: the ctl, the API workers,
a broker restarting) are not refused. The kernel drops the lock when its holder dies, however it
dies, so a crashed server never leaves a stale lock behind (the recorded holder may stay in the
file; only the lock counts).

    LOCK_SUFFIX                                  ".server-lock"
    lock_path(sqlite_path) -> Path               <sqlite_path>.server-lock
    sqlite_path_of(database) -> Path | None      the file of a ("sqlite", {"path"}) database,
                                                 None for PostgreSQL
    hold(sqlite_path, run_dir, *, wait=SAME_SERVER_WAIT) -> ServerLock
        the broker, for its lifetime: takes the lock and records (run_dir, pid). While a process
        of the same run_dir holds it (this server's previous broker, still stopping) waits up
        to `wait` seconds; another server's lock raises ServerLockHeld (after BUSY_GRACE, in
        case it was only someone's check).
    hold_database(database, run_dir) -> ServerLock | None    hold() for a SQLite database
    check(sqlite_path, run_dir) -> None
        ServerLockHeld when another server holds the lock; takes nothing for longer than the
        check (a shared lock, released at once), creates nothing
    check_settings(settings) -> None             check() for the settings' SQLite file and
                                                 run_dir; nothing on PostgreSQL
    ServerLock: release() (also a context manager); path, run_dir
    ServerLockHeld(PushdError): path, holder (run_dir or None), pid; str() is the one line
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pushd.db_params import database_params_from_settings
from pushd.errors import PushdError

__all__ = [
    "LOCK_SUFFIX",
    "ServerLock",
    "ServerLockHeld",
    "check",
    "check_settings",
    "hold",
    "hold_database",
    "lock_path",
    "sqlite_path_of",
]

LOCK_SUFFIX = ".server-lock"
ADVICE = "SQLite serves one server; use PostgreSQL (postgresql['enable']) for a cluster"
SAME_SERVER_WAIT = 30.0  # s: this server's previous broker finishing its stop
# A lock held only for someone's check() (microseconds) or by a holder that has not written its
# record yet: look again for this long before calling it another server's.
BUSY_GRACE = 1.0
_POLL = 0.1


class ServerLockHeld(PushdError):
    def __init__(self, path: Path, holder: str | None, pid: int | None) -> None:
        who = f"the pushd server with run_dir {holder}" if holder else "another pushd server"
        if pid:
            who += f" (pid {pid})"
        super().__init__(f"{path} is held by {who}: {ADVICE}")
        self.path = path
        self.holder = holder
        self.pid = pid


class ServerLock:
    def __init__(self, path: Path, run_dir: Path, fd: int) -> None:
        self.path = path
        self.run_dir = run_dir
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> ServerLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_path(sqlite_path: str | os.PathLike[str]) -> Path:
    path = Path(sqlite_path)
    return path.with_name(path.name + LOCK_SUFFIX)


def sqlite_path_of(database: tuple[str, Mapping[str, Any]]) -> Path | None:
    kind, params = database
    return Path(params["path"]) if kind == "sqlite" else None


def _same(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _holder(fd: int) -> tuple[str | None, int | None]:
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"null")
        return str(record["run_dir"]), int(record["pid"])
    except (OSError, ValueError, TypeError, KeyError):
        return None, None


def _try_lock(fd: int, operation: int) -> bool:
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def hold(
    sqlite_path: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    *,
    wait: float = SAME_SERVER_WAIT,
) -> ServerLock:
    path = lock_path(sqlite_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        started = time.monotonic()
        while not _try_lock(fd, fcntl.LOCK_EX):
            holder, pid = _holder(fd)
            waited = time.monotonic() - started
            ours = holder is not None and _same(holder, run_dir)
            if waited >= (wait if ours else BUSY_GRACE):
                raise ServerLockHeld(path, holder, pid)
            time.sleep(_POLL)
        record = json.dumps({"run_dir": os.fspath(run_dir), "pid": os.getpid()}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record + b"\n", 0)
    except BaseException:
        os.close(fd)
        raise
    return ServerLock(path, Path(run_dir), fd)


def hold_database(
    database: tuple[str, Mapping[str, Any]], run_dir: str | os.PathLike[str]
) -> ServerLock | None:
    sqlite_path = sqlite_path_of(database)
    return None if sqlite_path is None else hold(sqlite_path, run_dir)


def check(sqlite_path: str | os.PathLike[str], run_dir: str | os.PathLike[str]) -> None:
    path = lock_path(sqlite_path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # flock needs no write access
    except FileNotFoundError:
        return  # no server has ever held it
    try:
        started = time.monotonic()
        while not _try_lock(fd, fcntl.LOCK_SH):
            holder, pid = _holder(fd)
            if holder is not None and _same(holder, run_dir):
                return  # this server's own broker
            if time.monotonic() - started >= BUSY_GRACE:
                raise ServerLockHeld(path, holder, pid)
            time.sleep(_POLL)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def check_settings(settings: Any) -> None:
    sqlite_path = sqlite_path_of(database_params_from_settings(settings))
    if sqlite_path is not None:
        check(sqlite_path, settings.get("run_dir"))
