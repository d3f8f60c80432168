"""Keeps the broker subprocess running, from a thread of the gunicorn arbiter process.

    BrokerSupervisor(command, *, env=None, restart_delay=0.5, max_delay=30.0, stable_after=30.0)
        ``start()`` launches `command` (normally ``python -m pushd.broker --config FILE``) and a
        watcher thread. When the broker exits it is started again after `restart_delay`
        seconds (well within 2 s); a broker that keeps dying within `stable_after` seconds of
        its start waits twice as long each time, up to `max_delay`, so a broken configuration
        does not spin a core. ``stop(timeout=10)`` sends SIGTERM, waits, then SIGKILLs.
        ``pid`` is the current broker's pid (None while it is down); ``restarts`` counts restarts.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence

log = logging.getLogger(__name__)


class BrokerSupervisor:
    def __init__(
        self,
        command: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        restart_delay: float = 0.5,
        max_delay: float = 30.0,
        stable_after: float = 30.0,
    ) -> None:
        self._command = list(command)
        self._env = env
        self._restart_delay = restart_delay
        self._max_delay = max_delay
        self._stable_after = stable_after
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        process = self._process
        if process is None or process.poll() is not None:
            return None
        return process.pid

    def start(self) -> None:
        self._spawn()
        self._thread = threading.Thread(target=self._watch, name="broker-supervisor", daemon=True)
        self._thread.start()

    def _spawn(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            self._process = subprocess.Popen(self._command, env=self._env)
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
            if self._stopping.wait(delay):
                return
            self.restarts += 1
            try:
                self._spawn()
            except OSError:
                log.exception("cannot start the broker")
            delay = min(delay * 2, self._max_delay)

    def stop(self, timeout: float = 10.0) -> None:
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
