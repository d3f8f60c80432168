"""Talking to runit: the appliance's own ``runsvdir`` and ``sv`` on its service directories.

    ServiceStatus(service, state, pid, seconds, log_state, text)
        state: "run" | "down" | "finish" | "unsupervised" (no runsv watches the directory);
        ``running`` is state == "run"; ``text`` is sv's own line (or the reason it failed).
    service_status(settings, service) -> ServiceStatus
    sv(settings, action, service, *, log=False, wait=30) -> SvResult(returncode, output)
        Runs ``sv -w WAIT ACTION <service_dir>/<service>[/log]``. Actions are sv's: up, down,
        once, start, stop, restart, force-stop, hup, term, int, kill, usr1, usr2, exit, status.
    runsvdir_pid(settings) -> int | None
        The recorded runsvdir (``<run_dir>/runsvdir.pid``) when that process still runs runsvdir
        on our service_dir; a stale pid file is ignored.
    is_supervised(settings, service) -> bool       a runsv watches the service directory
    ensure_runsvdir(settings) -> tuple[int, bool]        (pid, started now)
        Starts ``runsvdir -P <service_dir>`` detached (own session, no terminal) when none runs,
        records its pid, and waits until it has started a runsv for every service directory.
    stop_supervision(settings, *, wait=30) -> list[str]
        Stops every service cleanly (``sv force-stop``: TERM, then KILL after `wait`), sends
        runsvdir TERM (it exits leaving its runsv children), then tells each runsv to exit;
        returns the problems it saw (empty when all went down). Safe when nothing runs.
    wait_until(predicate, timeout, interval=0.1) -> bool

Without runit on PATH, ``sv`` and ``ensure_runsvdir`` raise CommandFailed saying so.
Exit statuses of `status` follow LSB: 0 all running, 3 something not running.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pushd_ctl import layout
from pushd_ctl.context import CommandFailed

__all__ = [
    "ServiceStatus",
    "SvResult",
    "ensure_runsvdir",
    "is_supervised",
    "runsvdir_pid",
    "service_status",
    "stop_supervision",
    "sv",
    "wait_until",
]

SV_ACTIONS = frozenset(
    ("up", "down", "once", "start", "stop", "restart", "force-stop", "force-restart",
     "hup", "term", "int", "kill", "usr1", "usr2", "exit", "status")
)  # fmt: skip
RUNIT_MISSING = "runit is not installed (no sv/runsvdir on PATH): apt-get install runit"
_STATUS_RE = re.compile(r"^(run|down|finish): [^:]+: (?:\(pid (\d+)\) )?(\d+)s")
_LOG_RE = re.compile(r"; (run|down|finish): log:")


@dataclass(frozen=True)
class SvResult:
    returncode: int
    output: str


@dataclass(frozen=True)
class ServiceStatus:
    service: str
    state: str
    pid: int | None
    seconds: int | None
    log_state: str | None
    text: str

    @property
    def running(self) -> bool:
        return self.state == "run"


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def sv(
    settings: Any, action: str, service: str, *, log: bool = False, wait: int = 30
) -> SvResult:
    if action not in SV_ACTIONS:
        raise ValueError(f"unknown sv action {action!r}")
    target = layout.service_path(settings, service)
    if log:
        target = target / "log"
    try:
        proc = subprocess.run(
            ["sv", "-w", str(wait), action, str(target)],
            capture_output=True,
            text=True,
            timeout=wait + 15,
            env=_sv_env(),
        )
    except FileNotFoundError:
        raise CommandFailed(RUNIT_MISSING) from None
    except subprocess.TimeoutExpired:
        return SvResult(1, f"timeout: sv {action} {target} did not return")
    return SvResult(proc.returncode, (proc.stdout + proc.stderr).strip())


def _sv_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SVDIR", None)
    env.pop("SVWAIT", None)
    return env


def service_status(settings: Any, service: str) -> ServiceStatus:
    path = layout.service_path(settings, service)
    if not path.is_dir():
        return ServiceStatus(service, "unsupervised", None, None, None, f"{path}: not configured")
    result = sv(settings, "status", service, wait=5)
    text = result.output.splitlines()[0] if result.output else ""
    match = _STATUS_RE.match(text)
    if match is None:
        return ServiceStatus(service, "unsupervised", None, None, None, text)
    log_match = _LOG_RE.search(text)
    return ServiceStatus(
        service=service,
        state=match.group(1),
        pid=int(match.group(2)) if match.group(2) else None,
        seconds=int(match.group(3)),
        log_state=log_match.group(1) if log_match else None,
        text=text,
    )


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def runsvdir_pid(settings: Any) -> int | None:
    try:
        pid = int(layout.runsvdir_pid_path(settings).read_text().strip())
    except (OSError, ValueError):
        return None
    argv = _cmdline(pid)
    service_dir = str(settings.get("service_dir"))
    if argv and os.path.basename(argv[0]) == "runsvdir" and service_dir in argv:
        return None if _is_zombie(pid) else pid
    return None


def _unsupervised(settings: Any, service: str) -> bool:
    return not is_supervised(settings, service)


def is_supervised(settings: Any, service: str) -> bool:
    # runsv creates supervise/ok (a fifo) and keeps it open while it runs.
    ok = layout.service_path(settings, service) / "supervise" / "ok"
    try:
        fd = os.open(ok, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return False
    os.close(fd)
    return True


def ensure_runsvdir(settings: Any) -> tuple[int, bool]:
    pid = runsvdir_pid(settings)
    if pid is not None:
        return pid, False
    service_dir = Path(settings.get("service_dir"))
    service_dir.mkdir(parents=True, exist_ok=True)
    pid_path = layout.runsvdir_pid_path(settings)
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    with open(os.devnull, "rb") as devnull_in, open(os.devnull, "wb") as devnull_out:
        if shutil.which("runsvdir") is None:
            raise CommandFailed(RUNIT_MISSING)
        proc = subprocess.Popen(
            ["runsvdir", "-P", str(service_dir)],
            stdin=devnull_in,
            stdout=devnull_out,
            stderr=devnull_out,
            start_new_session=True,
            close_fds=True,
            env=_sv_env(),
        )
    pid_path.write_text(f"{proc.pid}\n")
    configured = [s for s in layout.SERVICES if layout.service_path(settings, s).is_dir()]
    wait_until(lambda: all(is_supervised(settings, s) for s in configured), timeout=10)
    return proc.pid, True


def stop_supervision(settings: Any, *, wait: int = 30) -> list[str]:
    problems: list[str] = []
    supervised = [s for s in reversed(layout.SERVICES) if is_supervised(settings, s)]
    for service in supervised:
        result = sv(settings, "force-stop", service, wait=wait)
        if service_status(settings, service).state == "run":
            problems.append(f"{service}: still running after stop: {result.output}")
    # runsvdir first (TERM makes it exit without touching its runsv children): it would
    # otherwise start a new runsv for each one told to exit below.
    pid = runsvdir_pid(settings)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not wait_until(lambda: runsvdir_pid(settings) is None, timeout=10):
            problems.append(f"runsvdir (pid {pid}) did not exit")
    for service in supervised:
        sv(settings, "exit", service, wait=wait)
    for service in layout.SERVICES:
        if not wait_until(functools.partial(_unsupervised, settings, service), timeout=wait):
            problems.append(f"{service}: runsv did not exit")
    with contextlib.suppress(FileNotFoundError):
        layout.runsvdir_pid_path(settings).unlink()
    return problems
