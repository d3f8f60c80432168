"""Starting a job's command in its own session, and ending its whole process group.

Public API:

    UserSpec.lookup(name) -> UserSpec             raises KeyError for an unknown user
        .name .uid .gid .groups .home .shell
    spawn(argv, *, user, cwd, env, capture, preexec=None) -> JobProcess
        Runs `argv` (no shell unless argv is ["/bin/sh", "-c", ...]) in a new session, so its
        pid is also its process group id. As `user` (uid, gid, supplementary groups of that
        user as initgroups would set them; needs root unless it is the daemon's own user), in
        `cwd`, with exactly `env`. stdout/stderr are pipes when `capture`, else /dev/null;
        stdin is always /dev/null. `preexec` runs in the child, after the user switch, just
        before exec (pushd_client.proctree: join the job's cgroup). Raises OSError when exec
        fails, subprocess.SubprocessError when `preexec` fails.
    JobProcess
        .pid / .pgid      int
        .stdout_fd / .stderr_fd   int | None (non-blocking pipes; None once closed)
        .read(fd) -> bytes        what is available now (b"" if nothing); closes the fd at EOF
        .reap() -> int | None     exit status once the leader has exited (-N for signal N)
        .signal_group(sig)        no error if the group is already gone
        .close()                  close pipes
    group_alive(pgid) -> bool     any live (non-zombie) process in the group
    process_start_time(pid) -> int | None    from /proc, to tell a reused pid from ours
    kill_group_blocking(pgid, grace) -> bool  TERM, wait up to `grace` s, KILL; True if it is gone

Zombies count as gone: an orphaned grandchild is reparented to init, which reaps it in its own
time; the job is over once nothing in the group can run.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

READ_CHUNK = 65536


@dataclass(frozen=True)
class UserSpec:
    """Who a job runs as."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    shell: str

    @classmethod
    def lookup(cls, name: str) -> UserSpec:
        entry = pwd.getpwnam(name)
        return cls(
            name=entry.pw_name,
            uid=entry.pw_uid,
            gid=entry.pw_gid,
            groups=tuple(os.getgrouplist(entry.pw_name, entry.pw_gid)),
            home=entry.pw_dir,
            shell=entry.pw_shell,
        )

    @classmethod
    def current(cls) -> UserSpec:
        uid = os.geteuid()
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:  # e.g. a container uid with no passwd entry
            name, home, shell = str(uid), os.environ.get("HOME", "/"), "/bin/sh"
        else:
            name, home, shell = entry.pw_name, entry.pw_dir, entry.pw_shell
        return cls(
            name=name,
            uid=uid,
            gid=os.getegid(),
            groups=tuple(os.getgroups()),
            home=home,
            shell=shell,
        )

    def can_switch_to(self) -> bool:
        """The daemon can run a process as this user (root, or already this user)."""
        return os.geteuid() == 0 or os.geteuid() == self.uid


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


class JobProcess:
    """A running (or finished) job command and the pipes it writes to."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.pgid = popen.pid  # start_new_session: the leader's pid is the group id
        self.returncode: int | None = None
        self.stdout_fd = self._take(popen.stdout)
        self.stderr_fd = self._take(popen.stderr)

    @staticmethod
    def _take(stream: object) -> int | None:
        if stream is None:
            return None
        fd = os.dup(stream.fileno())  # type: ignore[attr-defined]
        stream.close()  # type: ignore[attr-defined]
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        return fd

    def read(self, fd: int) -> bytes:
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return b""
        if not data:
            self._close_fd(fd)
        return data

    def _close_fd(self, fd: int) -> None:
        if fd == self.stdout_fd:
            self.stdout_fd = None
        elif fd == self.stderr_fd:
            self.stderr_fd = None
        else:
            return
        os.close(fd)

    def reap(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._popen.poll()
        return self.returncode

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)

    def close(self) -> None:
        for fd in (self.stdout_fd, self.stderr_fd):
            if fd is not None:
                self._close_fd(fd)


def spawn(
    argv: Sequence[str],
    *,
    user: UserSpec,
    cwd: str,
    env: Mapping[str, str],
    capture: bool,
    preexec: Callable[[], None] | None = None,
) -> JobProcess:
    """Start `argv` in a new session (see module docstring)."""
    switching = user.uid != os.geteuid()
    output = subprocess.PIPE if capture else subprocess.DEVNULL
    popen = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=output,
        cwd=cwd,
        env=dict(env),
        start_new_session=True,
        close_fds=True,
        user=user.uid if switching else None,
        group=user.gid if switching else None,
        extra_groups=list(user.groups) if switching else None,
        preexec_fn=preexec,
    )
    return JobProcess(popen)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    return raw[raw.rfind(")") + 2 :].split()


def process_start_time(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot, or None if it does not exist."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    return int(fields[19])


def group_alive(pgid: int) -> bool:
    """True while any non-zombie process belongs to process group `pgid`."""
    if not os.path.isdir("/proc/self"):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        if fields is None or len(fields) < 3:
            continue
        if fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            return True
    return False


def kill_group_blocking(pgid: int, grace: float, leader: JobProcess | None = None) -> bool:
    """TERM the group, wait up to `grace` seconds, then KILL it; True once it is gone."""

    def gone() -> bool:
        if leader is not None:
            leader.reap()
        return not group_alive(pgid)

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if gone():
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if gone():
            return True
        time.sleep(0.05)
    return gone()
