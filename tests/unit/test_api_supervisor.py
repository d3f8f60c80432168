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


def test_stop_kills_a_broker_that_ignores_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "ignoring"
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"open({str(ready)!r}, 'w').close(); time.sleep(60)"
    )
    sup = BrokerSupervisor([sys.executable, "-c", code])
    sup.start()
    assert wait_for(lambda: sup.pid is not None)
    pid = sup.pid
    # Only once the broker (exec'd by the launcher) ignores SIGTERM does stop() need SIGKILL.
    assert wait_for(ready.exists, timeout=15.0)
    sup.stop(timeout=0.5)
    assert pid is not None and wait_for(lambda: not alive(pid))


def test_broker_command() -> None:
    assert broker_command("/py", "/etc/x.rb") == ["/py", "-m", "pushd.broker", "--config",
                                                  "/etc/x.rb"]


def test_the_broker_dies_with_a_killed_parent(tmp_path: Path) -> None:
    # A parent holding a BrokerSupervisor is SIGKILLed (as `kill -9` of the service's main
    # process): without PR_SET_PDEATHSIG the "broker" would be re-parented and live on.
    pid_file = tmp_path / "broker.pid"
    broker = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    )
    parent_code = (
        "import sys, time\n"
        "from pushd.server.supervisor import BrokerSupervisor\n"
        f"BrokerSupervisor([sys.executable, '-c', {broker!r}]).start()\n"
        "time.sleep(60)\n"
    )
    import subprocess

    parent = subprocess.Popen([sys.executable, "-c", parent_code])
    try:
        assert wait_for(lambda: pid_file.exists() and pid_file.read_text() != "", timeout=15.0)
        broker_pid = int(pid_file.read_text())
        assert alive(broker_pid)
        parent.kill()
        parent.wait()
        assert wait_for(lambda: not alive(broker_pid), timeout=10.0)
    finally:
        parent.kill()
        parent.wait()
        if pid_file.exists() and pid_file.read_text():
            pid = int(pid_file.read_text())
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_the_launcher_refuses_to_run_for_a_parent_already_gone() -> None:
    import subprocess

    # pid 1 is never our parent here, as if the real parent had died before the prctl.
    marker = "launched"
    result = subprocess.run(
        [sys.executable, "-m", "pushd.server.supervisor", "--parent", "1", "--", "echo", marker],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1 and marker not in result.stdout
