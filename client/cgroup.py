"""cgroup v2 primitives for containing a job: find where the client may create a cgroup, create
one per job, list, signal and kill everything in it, remove it.

Public API:

    CgroupError(OSError)
    own_cgroup() -> str                 the client's cgroup v2 directory (from /proc/self/cgroup
                                        and /proc/self/mountinfo); CgroupError if v2 is not mounted
    check_parent(path) -> str           `path` is a cgroup v2 directory in which this process can
                                        create a child with cgroup.kill (a probe child is made and
                                        removed); returns the real path; CgroupError otherwise
    is_job_cgroup(path) -> bool         `path` names a job cgroup (JOB_PREFIX) inside a cgroup v2
                                        mount: the only paths recovery after a crash will kill
    JobCgroup(path)                     an existing job cgroup
        .create(parent, job_id) -> JobCgroup      classmethod; a new uniquely named child
        .open_procs() -> int            fd of cgroup.procs, opened by the client: a process that
                                        writes "0" to it joins the cgroup (the kernel checks the
                                        opener's rights, so the job may already run as its user)
        .pids() -> list[int]            every process in it and its sub-cgroups
        .populated() -> bool            anything left (zombies do not count)
        .kill()                         cgroup.kill: SIGKILL to all, including processes forked
                                        while it runs
        .contains(pid) -> bool          `pid` is in it or below
        .remove() -> bool               rmdir it and any sub-cgroups the job made; False if busy
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets

log = logging.getLogger("pushd_client.cgroup")
JOB_PREFIX = "pushd-job-"
_JOB_NAME = re.compile(re.escape(JOB_PREFIX) + r"[A-Za-z0-9_-]{1,100}")


class CgroupError(OSError):
    """cgroup v2 is absent, or this process may not create or use cgroups where asked."""


def _cgroup2_mounts() -> list[tuple[str, str]]:
    """(mount root inside the hierarchy, mount point) of every cgroup2 mount."""
    mounts: list[tuple[str, str]] = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                left, _, right = line.partition(" - ")
                fields = left.split()
                if right.split()[:1] == ["cgroup2"] and len(fields) >= 5:
                    mounts.append((_unescape(fields[3]), _unescape(fields[4])))
    except OSError as err:
        raise CgroupError(f"cannot read /proc/self/mountinfo: {err.strerror}") from None
    return mounts


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def own_cgroup() -> str:
    try:
        with open("/proc/self/cgroup", encoding="utf-8", errors="replace") as handle:
            unified = [line[3:].rstrip("\n") for line in handle if line.startswith("0::")]
    except OSError as err:
        raise CgroupError(f"cannot read /proc/self/cgroup: {err.strerror}") from None
    if not unified:
        raise CgroupError("this process is in no cgroup v2 hierarchy")
    relative = unified[0]
    for root, mount_point in _cgroup2_mounts():
        if relative == root or relative.startswith(root.rstrip("/") + "/"):
            inside = relative[len(root.rstrip("/")):].lstrip("/")
            return os.path.join(mount_point, inside) if inside else mount_point
    raise CgroupError("cgroup v2 is not mounted where this process can see its own cgroup")


def _in_cgroup2_mount(path: str) -> bool:
    try:
        mounts = _cgroup2_mounts()
    except CgroupError:
        return False
    return any(path == point or path.startswith(point.rstrip("/") + "/") for _, point in mounts)


def check_parent(path: str) -> str:
    real = os.path.realpath(path)
    if not _in_cgroup2_mount(real) or not os.path.isfile(os.path.join(real, "cgroup.procs")):
        raise CgroupError(f"{path} is not a cgroup v2 directory")
    probe = JobCgroup.create(real, "probe")
    try:
        if not os.path.exists(os.path.join(probe.path, "cgroup.kill")):
            raise CgroupError("the kernel has no cgroup.kill (Linux 5.14 or later needed)")
        os.close(probe.open_procs())
    finally:
        probe.remove()
    return real


def is_job_cgroup(path: object) -> bool:
    if not isinstance(path, str) or not os.path.isabs(path):
        return False
    return (
        os.path.normpath(path) == path
        and _JOB_NAME.fullmatch(os.path.basename(path)) is not None
        and _in_cgroup2_mount(path)
    )


class JobCgroup:
    """See the module docstring."""

    def __init__(self, path: str) -> None:
        self.path = path

    @classmethod
    def create(cls, parent: str, job_id: str) -> JobCgroup:
        # Several clients may share a parent (and get the same job): the suffix keeps them apart.
        path = os.path.join(parent, f"{JOB_PREFIX}{job_id}-{secrets.token_hex(4)}")
        try:
            os.mkdir(path)
        except OSError as err:
            raise CgroupError(f"cannot create cgroup {path}: {err.strerror}") from None
        return cls(path)

    def open_procs(self) -> int:
        try:
            return os.open(os.path.join(self.path, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
        except OSError as err:
            raise CgroupError(f"cannot open {self.path}/cgroup.procs: {err.strerror}") from None

    def _dirs(self) -> list[str]:
        """This cgroup and every sub-cgroup, deepest first."""
        below = [top for top, _, _ in os.walk(self.path, topdown=False) if top != self.path]
        return [*below, self.path]

    def pids(self) -> list[int]:
        pids: list[int] = []
        for directory in self._dirs():
            procs = os.path.join(directory, "cgroup.procs")
            with contextlib.suppress(OSError), open(procs, encoding="ascii") as handle:
                pids.extend(int(line) for line in handle if line.strip())
        return pids

    def populated(self) -> bool:
        try:
            with open(os.path.join(self.path, "cgroup.events"), encoding="ascii") as handle:
                for line in handle:
                    key, _, value = line.partition(" ")
                    if key == "populated":
                        return value.strip() != "0"
        except FileNotFoundError:
            return False
        except OSError:
            pass
        return bool(self.pids())

    def kill(self) -> None:
        kill = os.path.join(self.path, "cgroup.kill")
        with contextlib.suppress(FileNotFoundError), open(kill, "w", encoding="ascii") as handle:
            handle.write("1")

    def contains(self, pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as handle:
                unified = [line[3:].rstrip("\n") for line in handle if line.startswith("0::")]
        except OSError:
            return False
        if not unified:
            return False
        # By name: the job cgroup's name is unique (random suffix), and the paths in
        # /proc/PID/cgroup are relative to the reader's cgroup namespace.
        return f"/{os.path.basename(self.path)}/" in unified[0].rstrip("/") + "/"

    def remove(self) -> bool:
        log.debug("removing cgroup %s", self.path)
        for directory in self._dirs():
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                continue
            except OSError as err:
                if err.errno == errno.EBUSY:
                    return False
                raise CgroupError(f"cannot remove cgroup {directory}: {err.strerror}") from None
        return True
