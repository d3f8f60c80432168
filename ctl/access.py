"""Can the service account use what the service needs? Asked as that account, before any start.

    check_service_access(settings, user, *, config_path, python) -> None
        As root, for a service account other than root: a child process takes the account's
        uid and gid (and only that group, as ``chpst -u`` does) and checks that it can read the
        config file, write and enter dir, data_dir, run_dir, log_directory and each service's
        log directory, read and write the SQLite file (when used), read chef-server-running.json
        (on a Chef Server host) and execute `python`.
        The first problem raises CommandFailed naming the account and the path in one line,
        with the first directory on the way the account cannot enter. Otherwise (not root, or
        the account is root) there is nothing to check: the service runs as the caller.

Why a child that really becomes the account: permission bits, ACLs, group membership and every
directory above a path all count, and only the kernel knows the answer for all of them.
"""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path
from typing import Any

from pushd_ctl import layout
from pushd_ctl.context import CommandFailed

__all__ = ["check_service_access"]

_WRITABLE_DIRECTORIES = ("dir", "data_dir", "run_dir", "log_directory")

# (what, path, access mode) for each thing the service needs.
_Need = tuple[str, str, int]


def _needs(settings: Any, config_path: Path | None, python: str) -> list[_Need]:
    needs: list[_Need] = []
    if config_path is not None:
        needs.append(("read the config file", str(config_path), os.R_OK))
    for name in _WRITABLE_DIRECTORIES:
        needs.append((f"write {name}", str(settings.get(name)), os.W_OK | os.X_OK))
    for service in layout.SERVICES:
        log_dir = layout.log_dir(settings, service)
        if log_dir.is_dir():
            needs.append(("write the log directory", str(log_dir), os.W_OK | os.X_OK))
    if not settings.get("postgresql.enable"):
        sqlite = Path(settings.get("sqlite_path"))
        if sqlite.exists():
            needs.append(("write the SQLite database", str(sqlite), os.R_OK | os.W_OK))
    running = Path(settings.get("chef_server_running_json"))
    if running.exists():
        # On a Chef Server host the service loads it at every start (its secrets file, root's,
        # is handed over as an open descriptor by the run script instead).
        needs.append(("read the Chef Server's running JSON", str(running), os.R_OK))
    needs.append(("run the Python interpreter", python, os.X_OK))
    return needs


def _first_failure(needs: list[_Need]) -> tuple[str, str, str] | None:
    """(what, path, why) of the first need the current process cannot meet, else None."""
    for what, path, mode in needs:
        if os.access(path, mode):
            continue
        blocked = next(
            (str(parent) for parent in reversed(Path(path).parents)
             if not os.access(parent, os.X_OK)),
            None,
        )  # fmt: skip
        if blocked is not None:
            why = f"cannot enter {blocked}"
        elif not os.path.exists(path):
            why = "it does not exist"
        else:
            why = "permission denied"
        return what, path, why
    return None


def _check_as(account: pwd.struct_passwd, needs: list[_Need]) -> tuple[str, str, str] | None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become the account, answer one JSON line, never return
        status = 0
        try:
            os.close(read_end)
            os.setgroups([account.pw_gid])
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)
            answer = json.dumps(_first_failure(needs)).encode()
            os.write(write_end, answer)
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        answer = reader.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or not answer:
        raise CommandFailed(f"cannot check what service account {account.pw_name!r} may access")
    found = json.loads(answer)
    return None if found is None else (found[0], found[1], found[2])


def check_service_access(
    settings: Any, user: str, *, config_path: Path | None, python: str
) -> None:
    """CommandFailed naming the account and the path when the service could not start."""
    if os.geteuid() != 0 or user == "root":
        return
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        raise CommandFailed(f"service account {user!r} does not exist") from None
    failure = _check_as(account, _needs(settings, config_path, python))
    if failure is not None:
        what, path, why = failure
        raise CommandFailed(
            f"reconfigure: service account {user!r} cannot {what} {path} ({why}); "
            "the service could not start"
        )
