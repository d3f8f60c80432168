"""Keeps the broker subprocess running, from a thread of the gunicorn arbiter process.

    BrokerSupervisor(command, *, env=None, restart_delay=0.5, max_delay=30.0, stable_after=30.0,
                     started_file=None)
        ``start()`` launches `command` (normally ``python -m pushd.broker --config FILE``) and a
        watcher thread. When the broker exits it is started again after `restart_delay`
        seconds (well within 2 s); a broker that keeps dying within `stable_after` seconds of
        its start waits twice as long each time, up to `max_delay`, so a broken configuration
        does not spin a core. ``stop(timeout=10)`` sends SIGTERM, waits, then SIGKILLs; it does
        nothing in another process than the one that called ``start()`` (a forked gunicorn
        worker unwinding through the code that started the supervisor must not stop the broker).
        ``pid`` is the current broker's pid (None while it is down); ``restarts`` counts restarts.
        With `started_file` (normally ``<run_dir>/broker.started``, `started_file_path`) each
        start writes its wall-clock time there (atomically): API workers read it to tell a broker
        that is still starting from one that does not answer (see pushd.server.wsgi).
    read_started_file(path) -> float | None     the recorded start time (None: none or unreadable)

    The broker never outlives this process: each one is started through
    ``python -m pushd.server.supervisor --parent PID -- COMMAND...``, a launcher that asks the
    kernel for SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``), checks that the parent
    is still the expected one (it may have died before the prctl), and then execs COMMAND in place
    (same pid; the death signal survives exec). So a ``kill -9`` of the service's main process
    also ends the broker, which frees its ports for the main process runit starts next; the
    runit ``finish`` script stays as a second line of defence.

    guarded_command(command, parent_pid) -> list[str]    the launcher wrapping of `command`
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

STARTED_FILE = "broker.started"


def started_file_path(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / STARTED_FILE


def read_started_file(path: str | os.PathLike[str]) -> float | None:
    try:
        return float(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _write_started_file(path: Path, when: float) -> None:
    temporary = path.with_name(path.name + ".tmp")
    try:
        temporary.write_text(repr(when))
        os.replace(temporary, path)
    except OSError as err:  # only a hint for the workers: never a reason not to run the broker
        log.warning("cannot record the broker's start in %s: %s", path, err)


class BrokerSupervisor:
    def __init__(
        self,
        command: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        restart_delay: float = 0.5,
        max_delay: float = 30.0,
        stable_after: float = 30.0,
        started_file: str | os.PathLike[str] | None = None,
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        self._command = list(command)
        # Told the pid of a broker that exited on its own (not stopped by us) before its
        # restart: the service's metrics count restarts and drop the dead broker's gauges.
        self._on_exit = on_exit
        self._started_file = Path(started_file) if started_file is not None else None
        self._env = env
        self._restart_delay = restart_delay
        self._max_delay = max_delay
        self._stable_after = stable_after
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._owner_pid: int | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        process = self._process
        if process is None or process.poll() is not None:
            return None
        return process.pid

    def start(self) -> None:
        self._owner_pid = os.getpid()
        self._spawn()
        self._thread = threading.Thread(target=self._watch, name="broker-supervisor", daemon=True)
        self._thread.start()

    def _spawn(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            # Spawned from the arbiter's main thread or from the watcher thread; both live as
            # long as the process (PR_SET_PDEATHSIG fires when the spawning *thread* exits).
            if self._started_file is not None:
                _write_started_file(self._started_file, time.time())
            # The Chef Server's secrets descriptor (see pushd.chefserver), when the run script
            # opened one: the broker reads the database passwords through it too.
            descriptor = (self._env or os.environ).get("PUSHD_CHEF_SECRETS_FD", "")
            self._process = subprocess.Popen(
                guarded_command(self._command, os.getpid()), env=self._env,
                pass_fds=(int(descriptor),) if descriptor.isdigit() else (),
            )
            log.info("broker started (pid %d)", self._process.pid)

    def _watch(self) -> None:
        delay = self._restart_delay
        while not self._stopping.is_set():
            process = self._process
            if process is None:
                return
            started = time.monotonic()
            code = process.wait()
            if self._stopping.is_set():
                return
            lived = time.monotonic() - started
            if lived >= self._stable_after:
                delay = self._restart_delay
            log.warning(
                "broker exited with %s after %.1f s; restarting in %.1f s", code, lived, delay
            )
            if self._on_exit is not None:
                try:
                    self._on_exit(process.pid)
                except Exception:  # metrics must never keep the broker down
                    log.exception("broker exit hook failed")
            if self._stopping.wait(delay):
                return
            self.restarts += 1
            try:
                self._spawn()
            except OSError:
                log.exception("cannot start the broker")
            delay = min(delay * 2, self._max_delay)

    def stop(self, timeout: float = 10.0) -> None:
        if self._owner_pid is not None and self._owner_pid != os.getpid():
            return  # a forked copy: the broker is not this process's child
        self._stopping.set()
        with self._lock:
            process = self._process
        if process is None or process.poll() is not None:
            return
        try:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("broker ignored SIGTERM for %.0f s; killing it", timeout)
            process.kill()
            process.wait()
        except ProcessLookupError:
            pass
        log.info("broker stopped")


def broker_command(python: str, config_path: str | os.PathLike[str]) -> list[str]:
    return [python, "-m", "pushd.broker", "--config", str(config_path)]


# prctl option number from <linux/prctl.h>.
_PR_SET_PDEATHSIG = 1


def guarded_command(command: Sequence[str], parent_pid: int) -> list[str]:
    return [sys.executable, "-m", "pushd.server.supervisor", "--parent", str(parent_pid), "--"] + [
        str(part) for part in command
    ]


def _exec_guarded(argv: list[str]) -> int:
    """The launcher: die with the parent, then become the command. Returns only on misuse."""
    if len(argv) < 4 or argv[0] != "--parent" or argv[2] != "--":
        print(
            "usage: python -m pushd.server.supervisor --parent PID -- COMMAND...", file=sys.stderr
        )
        return 2
    parent_pid = int(argv[1])
    command = argv[3:]
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            print(f"prctl(PR_SET_PDEATHSIG) failed: errno {ctypes.get_errno()}", file=sys.stderr)
    # The parent may have died between fork and prctl; then nobody would signal us.
    if os.getppid() != parent_pid:
        return 1
    os.execvp(command[0], command)
    return 127  # not reached: execvp raises on failure


if __name__ == "__main__":
    sys.exit(_exec_guarded(sys.argv[1:]))
