"""One server per SQLite file (pushd.sqlite_lock): another run_dir is refused with one line,
the same server is not, and a holder that dies leaves no lock behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pushd import sqlite_lock
from pushd.sqlite_lock import ADVICE, ServerLockHeld, check, hold, lock_path


def test_another_server_is_refused_and_the_same_one_is_not(tmp_path: Path) -> None:
    database = tmp_path / "pushd.sqlite3"
    check(database, tmp_path / "a")  # nobody ever held it: nothing created
    assert not lock_path(database).exists()
    with hold(database, tmp_path / "a") as held:
        assert held.path == tmp_path / "pushd.sqlite3.server-lock"
        assert lock_path(database).stat().st_mode & 0o777 == 0o600
        check(database, tmp_path / "a")
        with pytest.raises(ServerLockHeld) as refused:
            check(database, tmp_path / "b")
        message = str(refused.value)
        assert message.startswith(f"{lock_path(database)} is held by the pushd server with "
                                  f"run_dir {tmp_path / 'a'} (pid ")  # fmt: skip
        assert message.endswith(ADVICE) and "\n" not in message
        with pytest.raises(ServerLockHeld):
            hold(database, tmp_path / "b")
    check(database, tmp_path / "b")  # released
    hold(database, tmp_path / "b").release()


def test_a_dead_holder_leaves_no_lock(tmp_path: Path) -> None:
    database = tmp_path / "pushd.sqlite3"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pushd.sqlite_lock import hold;"
         f" hold({str(database)!r}, {str(tmp_path / 'a')!r}); print('held', flush=True);"
         " time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(ServerLockHeld, match=f"pid {holder.pid}"):
            check(database, tmp_path / "b")
    finally:
        holder.kill()
        holder.wait()
    check(database, tmp_path / "b")  # the record is still in the file; the lock is gone


def test_postgresql_takes_no_lock(tmp_path: Path) -> None:
    assert sqlite_lock.hold_database(("postgres", {"host": "x"}), tmp_path) is None
