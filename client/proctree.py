"""A job's whole process tree, contained so that nothing a job starts outlives it.

Containment.select picks one of two mechanisms when the client starts:

- "cgroup": every job gets a fresh cgroup v2 (pushd_client.cgroup) under the client's own
  cgroup or the configured `job_cgroup`. The command joins it between fork and exec, so all it
  ever starts is inside whatever it does to its session, process group or parent (setsid,
  double fork). SIGKILL is cgroup.kill, which also catches processes forked meanwhile. After a
  client crash the cgroup path in the job record is all recovery needs.
- "subreaper": the client makes itself a child subreaper (PR_SET_CHILD_SUBREAPER), so an
  orphaned descendant (a double-forked daemon) is re-parented to the client instead of init.
  The tree is every descendant of the client except children it had before the job started
  (the agent has none). When the client dies its job's orphans go to init, so the job record
  keeps the members seen (pid and start time, checked again before any signal, and the boot
  id) and the job's environment carries a random token (TOKEN_VAR) that recovery looks for.

Every signal goes through a pidfd opened before the check that the pid is still the job's, so a
pid reused by another process is never signalled.

Public API:

    ContainmentError(Exception)
    MODES = ("auto", "cgroup", "subreaper")
    Containment.select(mode="auto", cgroup_parent=None) -> Containment
        "auto": cgroup when this process can create one (with cgroup.kill) under
        `cgroup_parent` (default: its own cgroup), else subreaper. "cgroup" raises
        ContainmentError when that is not possible; "subreaper" never tries cgroups.
        .mechanism -> "cgroup" | "subreaper"     .reason -> why not cgroup ("" if cgroup)
        .describe() -> str
        .new_tree(job_id) -> JobTree              ContainmentError if the cgroup cannot be made
    JobTree (CgroupTree, SubreaperTree, RecoveredTree)
        .mechanism
        .preexec -> Callable[[], None] | None     spawn() runs it in the child before exec
        .env -> dict[str, str]                    variables the job's environment gets
        .started(pid)                             the command runs as `pid`
        .members() -> list[int]                   live processes of the tree
        .alive() -> bool                          any live process left (zombies do not count)
        .signal(sig)                              every member
        .reap()                                   reap zombies re-parented to the client
        .release()                                once it is empty: remove the cgroup
        .record() -> dict                         for the job record (JSON)
    kill_tree_blocking(tree, grace, leader=None) -> bool     TERM, `grace` s, KILL; True if gone
    recovered_tree(record) -> JobTree | None      the tree a crashed client's job left, from
                                                  record() as saved; None if nothing is safe
    set_child_subreaper(), is_child_subreaper() -> bool
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import secrets
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from pushd_client.cgroup import CgroupError, JobCgroup, check_parent, is_job_cgroup, own_cgroup
from pushd_client.process import JobProcess

log = logging.getLogger("pushd_client.proctree")

MODES = ("auto", "cgroup", "subreaper")
TOKEN_VAR = "PUSHD_JOB_TREE"
KILL_WAIT = 5.0
MAX_RECORDED_MEMBERS = 1000  # keeps job.json well under the state file limit
_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37


class ContainmentError(Exception):
    """The asked containment is not possible here, or a job's cgroup cannot be made."""


# ------------------------------------------------------------------ processes
def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state letter, start time in clock ticks) of `pid`, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    fields = raw[raw.rfind(")") + 2:].split()
    if len(fields) < 20:
        return None
    return int(fields[1]), fields[0], int(fields[19])


def _live(entry: tuple[int, str, int] | None) -> bool:
    return entry is not None and entry[1] not in ("Z", "X")


def _process_table() -> dict[int, tuple[int, str, int]]:
    table: dict[int, tuple[int, str, int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            entry = _stat(int(name))
            if entry is not None:
                table[int(name)] = entry
    return table


def _children(pid: int) -> list[int] | None:
    """Children of `pid` from /proc/PID/task/*/children; None where the kernel lacks them."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as handle:
                found.extend(int(child) for child in handle.read().split())
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{task}"):
                continue  # the thread ended meanwhile
            return None
        except OSError:
            continue
    return found


def _child_pids(pid: int) -> list[int]:
    kids = _children(pid)
    if kids is None:
        kids = [child for child, entry in _process_table().items() if entry[0] == pid]
    return kids


Table = Mapping[int, tuple[int, str, int]]


def _descendants(roots: Iterable[int], table: Table | None) -> set[int]:
    """`roots` and everything below them: from `table` if given, else from the children files
    (cheap, but may miss a child forked during the walk, so a final answer uses a table)."""
    kids: dict[int, list[int]] | None = None
    if table is not None:
        kids = {}
        for pid, (ppid, _, _) in table.items():
            kids.setdefault(ppid, []).append(pid)
    seen: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        below = kids.get(pid, []) if kids is not None else _children(pid)
        if below is None:
            return _descendants(roots, _process_table())
        todo.extend(below)
    return seen


def _signal_checked(pid: int, sig: int, check: Callable[[int], bool]) -> None:
    """Send `sig` to `pid` only if `check(pid)` holds for the process the pidfd pins."""
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError as err:
        if err.errno not in (errno.ENOSYS, errno.EINVAL):
            return
        pidfd = None  # kernel < 5.3: a plain kill after the check is the best we can do
    try:
        if not check(pid):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if pidfd is None:
                os.kill(pid, sig)
            else:
                signal.pidfd_send_signal(pidfd, sig)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _started_at(start: int) -> Callable[[int], bool]:
    def check(pid: int) -> bool:
        entry = _stat(pid)
        return entry is not None and entry[2] == start

    return check


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def _libc_prctl(option: int, arg: Any) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, arg, 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def set_child_subreaper() -> None:
    _libc_prctl(_PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(1))


def is_child_subreaper() -> bool:
    value = ctypes.c_int(0)
    _libc_prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(value))
    return value.value != 0


# ---------------------------------------------------------------------- trees
class JobTree(Protocol):
    mechanism: str
    preexec: Callable[[], None] | None
    env: dict[str, str]

    def started(self, pid: int) -> None: ...
    def members(self) -> list[int]: ...
    def alive(self) -> bool: ...
    def signal(self, sig: int) -> None: ...
    def reap(self) -> None: ...
    def release(self) -> None: ...
    def record(self) -> dict[str, Any]: ...


class CgroupTree:
    """A job in its own cgroup v2."""

    mechanism = "cgroup"

    def __init__(self, group: JobCgroup, procs_fd: int | None) -> None:
        self.group = group
        self._procs_fd = procs_fd
        self.env: dict[str, str] = {}
        self.preexec: Callable[[], None] | None = None if procs_fd is None else self._join

    def _join(self) -> None:
        # In the child between fork and exec, after it became the job's user: one write to an
        # fd the client opened (the kernel checks the opener's rights), and nothing that takes
        # a lock another thread of the client could have held at fork.
        assert self._procs_fd is not None
        os.write(self._procs_fd, b"0")

    def _close_procs(self) -> None:
        if self._procs_fd is not None:
            os.close(self._procs_fd)
            self._procs_fd = None
        self.preexec = None

    def started(self, pid: int) -> None:
        self._close_procs()

    def members(self) -> list[int]:
        return self.group.pids()

    def alive(self) -> bool:
        return self.group.populated()

    def signal(self, sig: int) -> None:
        if sig == signal.SIGKILL:
            self.group.kill()
            return
        for pid in self.group.pids():
            _signal_checked(pid, sig, self.group.contains)

    def reap(self) -> None:
        pass  # the client is no subreaper here: orphans go to init

    def release(self) -> None:
        self._close_procs()
        try:
            if not self.group.remove():
                log.error("cgroup %s still holds processes; left in place", self.group.path)
        except CgroupError as err:
            log.error("%s", err)

    def record(self) -> dict[str, Any]:
        return {"mechanism": self.mechanism, "cgroup": self.group.path}


class SubreaperTree:
    """A job under a client that is a child subreaper."""

    mechanism = "subreaper"
    preexec: Callable[[], None] | None = None

    def __init__(self) -> None:
        self._me = os.getpid()
        self._token = secrets.token_hex(16)
        self.env = {TOKEN_VAR: self._token}
        # Children the client had before the job (none in the agent; a test process may have
        # some) are not the job's.
        self._before = {
            (pid, entry[2]) for pid in _child_pids(self._me) if (entry := _stat(pid)) is not None
        }
        self._leader: int | None = None
        self._leader_start = 0
        self._boot_id = boot_id()

    def started(self, pid: int) -> None:
        self._leader = pid
        entry = _stat(pid)
        self._leader_start = 0 if entry is None else entry[2]

    def _scan(self, exact: bool = False) -> dict[int, tuple[int, str, int]]:
        table = _process_table() if exact else None
        mine = (
            [pid for pid, entry in table.items() if entry[0] == self._me]
            if table is not None else _child_pids(self._me)
        )
        roots = []
        for pid in mine:
            entry = table.get(pid) if table is not None else _stat(pid)
            if entry is not None and (pid, entry[2]) not in self._before:
                roots.append(pid)
        found: dict[int, tuple[int, str, int]] = {}
        for pid in _descendants(roots, table):
            entry = table.get(pid) if table is not None else _stat(pid)
            if entry is not None:
                found[pid] = entry
        return found

    def _live_members(self, exact: bool = False) -> dict[int, int]:
        return {pid: e[2] for pid, e in self._scan(exact).items() if _live(e)}

    def members(self) -> list[int]:
        return sorted(self._live_members())

    def alive(self) -> bool:
        # The cheap walk may miss a process forked during it; "gone" is confirmed on a table.
        return bool(self._live_members()) or bool(self._live_members(exact=True))

    def signal(self, sig: int) -> None:
        for pid, start in self._live_members().items():
            _signal_checked(pid, sig, _started_at(start))

    def reap(self) -> None:
        for pid in _child_pids(self._me):
            entry = _stat(pid)
            if entry is None or entry[1] != "Z" or pid == self._leader:
                continue  # the leader is reaped by its Popen, which wants its status
            if (pid, entry[2]) in self._before:
                continue
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)

    def release(self) -> None:
        self.reap()

    def record(self) -> dict[str, Any]:
        members = sorted(self._live_members().items())[:MAX_RECORDED_MEMBERS]
        return {
            "mechanism": self.mechanism,
            "token": self._token,
            "boot_id": self._boot_id,
            "since": self._leader_start,
            "members": [[pid, start] for pid, start in members],
        }


class RecoveredTree:
    """What a crashed client's subreaper job left: recorded members (same pid and start time),
    processes carrying the job's token, and everything below them."""

    mechanism = "subreaper"
    preexec: Callable[[], None] | None = None

    def __init__(self, members: Mapping[int, int], token: str, since: int) -> None:
        self._members = dict(members)
        self._needle = f"{TOKEN_VAR}={token}".encode()
        self._since = since
        self.env: dict[str, str] = {}

    def _has_token(self, pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                return self._needle in handle.read().split(b"\0")
        except OSError:
            return False

    def _live_members(self) -> dict[int, int]:
        table = _process_table()
        table.pop(os.getpid(), None)  # never this client, whatever it inherited
        roots = [
            pid for pid, (_, _, start) in table.items()
            if self._members.get(pid) == start or (start >= self._since and self._has_token(pid))
        ]
        return {
            pid: table[pid][2] for pid in _descendants(roots, table)
            if pid in table and _live(table[pid])
        }

    def started(self, pid: int) -> None:
        pass

    def members(self) -> list[int]:
        return sorted(self._live_members())

    def alive(self) -> bool:
        return bool(self._live_members())

    def signal(self, sig: int) -> None:
        for pid, start in self._live_members().items():
            _signal_checked(pid, sig, _started_at(start))

    def reap(self) -> None:
        pass

    def release(self) -> None:
        pass

    def record(self) -> dict[str, Any]:
        return {}


def recovered_tree(record: Mapping[str, Any]) -> JobTree | None:
    mechanism = record.get("mechanism")
    if mechanism == "cgroup":
        path = record.get("cgroup")
        if not is_job_cgroup(path):
            log.error("job record names %r, which is not a job cgroup; not touched", path)
            return None
        assert isinstance(path, str)
        return CgroupTree(JobCgroup(path), None) if os.path.isdir(path) else None
    if mechanism == "subreaper":
        if record.get("boot_id") != boot_id():
            return None  # the machine rebooted since: nothing of that job runs
        try:
            members = {int(pid): int(start) for pid, start in record.get("members") or []}
            token, since = str(record["token"]), int(record.get("since") or 0)
        except (KeyError, TypeError, ValueError):
            return None
        if len(token) < 16:
            return None
        return RecoveredTree(members, token, since)
    return None


def kill_tree_blocking(tree: JobTree, grace: float, leader: JobProcess | None = None) -> bool:
    def reap() -> None:
        if leader is not None:
            leader.reap()
        tree.reap()

    def gone() -> bool:
        reap()
        if tree.alive():
            return False
        # A member that died between the reap and the check is a zombie now (and its orphans
        # were handed to us before it died): collect those too, or they stay until the next job.
        reap()
        return True

    tree.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if gone():
            return True
        time.sleep(0.05)
    deadline = time.monotonic() + KILL_WAIT
    while time.monotonic() < deadline:
        tree.signal(signal.SIGKILL)
        if gone():
            return True
        time.sleep(0.05)
    return gone()


# ---------------------------------------------------------------- containment
class Containment:
    """The mechanism chosen for this client's jobs (see the module docstring)."""

    def __init__(self, mechanism: str, cgroup_parent: str | None, reason: str = "") -> None:
        self.mechanism = mechanism
        self.cgroup_parent = cgroup_parent
        self.reason = reason

    @classmethod
    def select(cls, mode: str = "auto", cgroup_parent: str | None = None) -> Containment:
        if mode not in MODES:
            raise ContainmentError(f"job_containment must be one of {', '.join(MODES)}")
        reason = "job_containment is subreaper"
        if mode in ("auto", "cgroup"):
            try:
                parent = check_parent(cgroup_parent or own_cgroup())
            except CgroupError as err:
                if mode == "cgroup":
                    raise ContainmentError(f"job_containment cgroup: {err}") from None
                reason = str(err)
            else:
                return cls("cgroup", parent)
        try:
            set_child_subreaper()
        except OSError as err:
            raise ContainmentError(f"cannot become a child subreaper: {err.strerror}") from None
        return cls("subreaper", None, reason)

    def describe(self) -> str:
        if self.mechanism == "cgroup":
            return f"a cgroup v2 per job under {self.cgroup_parent}"
        return f"child subreaper ({self.reason})"

    def new_tree(self, job_id: str) -> JobTree:
        if self.mechanism != "cgroup":
            return SubreaperTree()
        assert self.cgroup_parent is not None
        try:
            group = JobCgroup.create(self.cgroup_parent, job_id)
        except CgroupError as err:
            raise ContainmentError(str(err)) from None
        try:
            return CgroupTree(group, group.open_procs())
        except CgroupError as err:
            group.remove()
            raise ContainmentError(str(err)) from None
