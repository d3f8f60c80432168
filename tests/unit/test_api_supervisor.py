"""BrokerSupervisor with real child processes: restart after a death, backoff, clean stop."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from pushd.server.supervisor import BrokerSupervisor, broker_command


def wait_for(predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still "exists"; it is dead for our purposes
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_a_killed_broker_is_restarted() -> None:
    sup = BrokerSupervisor([sys.executable, "-c", "import time; time.sleep(60)"])
    sup.start()
    try:
        assert wait_for(lambda: sup.pid is not None)
        first = sup.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        # the default delay before a restart is 0.5 s; the bound here only guards a hang
        assert wait_for(lambda: sup.pid not in (None, first), timeout=10.0)
        assert sup.restarts == 1
    finally:
        sup.stop()


def test_a_crashing_broker_backs_off(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    script = f"open({str(starts)!r}, 'a').write('x'); raise SystemExit(3)"
    sup = BrokerSupervisor(
        [sys.executable, "-c", script], restart_delay=0.1, max_delay=0.8, stable_after=30
    )
    sup.start()
    try:
        time.sleep(2.0)
    finally:
        sup.stop()
    count = len(starts.read_text())
    # delays 0.1, 0.2, 0.4, 0.8, 0.8 ... leave room for about five starts in two seconds;
    # without backoff there would be about fifteen.
    assert 1 <= count <= 7, count


def test_stop_terminates_the_broker_and_does_not_restart_it() -> None:
    sup = BrokerSupervisor([sys.executable, "-c", "import time; time.sleep(60)"])
    sup.start()
    assert wait_for(lambda: sup.pid is not None)
    pid = sup.pid
    assert pid is not None
    sup.stop(timeout=5)
    assert wait_for(lambda: not alive(pid))
    time.sleep(0.8)
    assert sup.pid is None and sup.restarts == 0


def test_stop_kills_a_broker_that_ignores_sigterm() -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    sup = BrokerSupervisor([sys.executable, "-c", code])
    sup.start()
    assert wait_for(lambda: sup.pid is not None)
    pid = sup.pid
    time.sleep(0.3)  # let the child install its handler
    sup.stop(timeout=0.5)
    assert pid is not None and wait_for(lambda: not alive(pid))


def test_broker_command() -> None:
    assert broker_command("/py", "/etc/x.rb") == ["/py", "-m", "pushd.broker", "--config",
                                                  "/etc/x.rb"]
