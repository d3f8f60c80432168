"""push-jobs-server-ctl driven as a subprocess against a real appliance in a temporary directory.

One appliance per module (reconfigure from the example file, real runsvdir/runsv/svlogd, the real
service on free loopback ports); the tests run in file order and each leaves the service running,
except the last, which cleanses it. The fixture's finalizer cleanses whatever is left.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_ports

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "opscode-push-jobs-server.rb.example"
SERVICE = "opscode-pushy-server"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


class Appliance:
    def __init__(self, root: Path) -> None:
        self.root = root
        ports = free_ports(5)
        self.api_port = ports[0]
        self.config = root / "opscode-push-jobs-server.rb"
        overrides = {
            "dir": str(root / "srv"),
            "log_directory": str(root / "log"),
            "etc_dir": str(root / "etc"),
            "api_port": ports[0],
            "server_heartbeat_port": ports[1],
            "command_port": ports[2],
            "unencrypted_command_port": ports[3],
            "metrics_port": ports[4],
            "zeromq_listen_address": "tcp://127.0.0.1",
            "heartbeat_interval": 500,
        }
        self.base_text = EXAMPLE.read_text() + "\n# test overrides\n" + "".join(
            f"opscode_pushy_server['{key}'] = {json.dumps(value)}\n"
            for key, value in overrides.items()
        )
        self.config.write_text(self.base_text)
        self.service_dir = root / "srv" / "service" / SERVICE
        self.log_current = root / "log" / "current"
        self.running_json = root / "etc" / "opscode-push-jobs-server-running.json"

    def ctl(self, *args: str, timeout: float = 120, config: Path | None = None,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return subprocess.run(
            [sys.executable, "-m", "pushd_ctl", "--config", str(config or self.config), *args],
            capture_output=True, text=True, timeout=timeout,
            input=stdin if stdin is not None else "",
        )  # fmt: skip

    def main_pid(self) -> int | None:
        result = self.ctl("status", SERVICE)
        line = result.stdout.strip()
        if not line.startswith("run:"):
            return None
        return int(line.split("(pid ", 1)[1].split(")", 1)[0])

    def broker_pids(self) -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"pushd.broker" in argv and str(self.config).encode() in argv:
                found.append(int(entry.name))
        return found

    def api_status(self) -> int | None:
        try:
            url = f"http://127.0.0.1:{self.api_port}/_status"
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as err:
            return err.code
        except OSError:
            return None


    def api_answer(self, path: str) -> tuple[int | None, bytes]:
        """Status and body of an unauthenticated GET; waits longer than the API's broker
        timeout (3 s), so a 503 for a silent broker is seen rather than a client timeout."""
        try:
            url = f"http://127.0.0.1:{self.api_port}{path}"
            with urllib.request.urlopen(url, timeout=20) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()
        except OSError as err:
            return None, str(err).encode()


def wait_for(check, timeout: float = 30.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout}s")
        time.sleep(interval)


@pytest.fixture(scope="module")
def appliance() -> Iterator[Appliance]:
    root = Path(tempfile.mkdtemp(prefix="pushd-ctl-", dir="/tmp"))
    app = Appliance(root)
    try:
        yield app
    finally:
        app.ctl("cleanse", "--yes")
        subprocess.run(["rm", "-rf", str(root)], check=False)


@pytest.fixture
def service_up(appliance: Appliance) -> None:
    """Bring the module's appliance up whatever ran before (reconfigure it when no test has yet),
    for a test that only needs a running service: such a test then also passes alone."""
    if not appliance.running_json.exists():
        result = appliance.ctl("reconfigure")
        assert result.returncode == 0, result.stdout + result.stderr
    elif appliance.main_pid() is None:
        assert appliance.ctl("start").returncode == 0
    wait_for(lambda: appliance.api_status() == 200)


def test_reconfigure_from_the_example_file_starts_the_service(appliance: Appliance) -> None:
    result = appliance.ctl("reconfigure")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "first run" in result.stdout
    assert "started runsvdir" in result.stdout
    assert "The API answers" in result.stdout
    assert appliance.api_status() == 200

    status = appliance.ctl("status")
    assert status.returncode == 0, status.stdout
    assert status.stdout.startswith(f"run: {SERVICE}: (pid ")

    run_script = (appliance.service_dir / "run").read_text()
    assert f"{sys.executable} -m pushd.server --config {appliance.config}" in run_script
    assert 'ulimit -n "$(ulimit -Hn)"' in run_script
    assert f"svlogd -tt {appliance.root / 'log'}" in (appliance.service_dir / "log/run").read_text()
    assert (appliance.root / "log" / "config").read_text() == "s104857600\nn10\n"
    running = json.loads(appliance.running_json.read_text())
    assert running["opscode_pushy_server"]["api_port"] == appliance.api_port
    assert appliance.running_json.stat().st_mode & 0o077 == 0
    assert (appliance.root / "srv" / "data" / "keys" / "pushy_priv.pem").exists()


def test_second_reconfigure_changes_nothing(appliance: Appliance) -> None:
    pid = appliance.main_pid()
    run_mtime = (appliance.service_dir / "run").stat().st_mtime_ns
    result = appliance.ctl("reconfigure")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration: unchanged" in result.stdout
    assert "Nothing changed." in result.stdout
    assert "restarted" not in result.stdout
    assert appliance.main_pid() == pid
    assert (appliance.service_dir / "run").stat().st_mtime_ns == run_mtime


@pytest.mark.usefixtures("service_up")
def test_tail_shows_log_lines_and_follows(appliance: Appliance) -> None:
    last = appliance.ctl("tail", "--no-follow", "-n", "50")
    assert last.returncode == 0
    assert "Listening at: http://127.0.0.1:" in last.stdout

    proc = subprocess.Popen(
        [sys.executable, "-m", "pushd_ctl", "--config", str(appliance.config), "tail", "-n", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        time.sleep(1.0)  # let it take its starting offsets before the line we wait for
        assert appliance.ctl("hup").returncode == 0  # gunicorn logs that it handled the HUP
        seen = b""
        deadline = time.monotonic() + 30
        while b"Handling signal: hup" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                seen += os.read(proc.stdout.fileno(), 65536)  # type: ignore[union-attr]
        assert b"Handling signal: hup" in seen, seen[-2000:]
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    wait_for(lambda: appliance.api_status() == 200)


def test_stop_then_status_3_then_start(appliance: Appliance) -> None:
    stop = appliance.ctl("stop")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    status = appliance.ctl("status")
    assert status.returncode == 3
    assert status.stdout.startswith(f"down: {SERVICE}")
    assert appliance.api_status() is None
    wait_for(lambda: not appliance.broker_pids(), timeout=10)

    start = appliance.ctl("start")
    assert start.returncode == 0, start.stdout + start.stderr
    wait_for(lambda: appliance.api_status() == 200)
    assert appliance.ctl("status").returncode == 0


def test_killed_broker_comes_back_and_a_job_succeeds(appliance: Appliance) -> None:
    wait_for(lambda: len(appliance.broker_pids()) == 1)
    (old,) = appliance.broker_pids()
    main_pid = appliance.main_pid()
    os.kill(old, signal.SIGKILL)
    # Until the new broker is up, /_status (which asks the broker) answers 503 JSON or, once it
    # is back, 200: never a 500 and never a hang.
    answers = []
    while not [p for p in appliance.broker_pids() if p != old]:
        answers.append(appliance.api_answer("/_status")[0])
    assert set(answers) <= {200, 503}, answers
    new = wait_for(lambda: [p for p in appliance.broker_pids() if p != old], timeout=10)
    assert len(new) == 1
    assert appliance.main_pid() == main_pid  # the main process restarted it, not runit
    smoke = appliance.ctl("test", "--timeout", "30")
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert "complete, succeeded" in smoke.stdout


def test_api_answers_503_json_while_the_broker_does_not_answer(appliance: Appliance) -> None:
    # A stopped broker is down for the API (its control requests time out) without the
    # supervisor replacing it, so the 503 is seen every time, not only within a restart window.
    wait_for(lambda: len(appliance.broker_pids()) == 1)
    (broker,) = appliance.broker_pids()
    os.kill(broker, signal.SIGSTOP)
    try:
        status, body = appliance.api_answer("/_status")
        assert status == 503, body
        assert json.loads(body)["status"] == "broker unavailable"
        assert "error" in json.loads(body)
    finally:
        os.kill(broker, signal.SIGCONT)
    wait_for(lambda: appliance.api_status() == 200)


def test_killed_main_process_is_restarted_by_runit(appliance: Appliance) -> None:
    old_main = appliance.main_pid()
    assert old_main is not None
    old_brokers = appliance.broker_pids()
    os.kill(old_main, signal.SIGKILL)
    wait_for(lambda: (pid := appliance.main_pid()) is not None and pid != old_main)
    wait_for(lambda: appliance.api_status() == 200, timeout=60)
    # The broker died with its main process (PR_SET_PDEATHSIG; the finish script is the
    # second line of defence), so the new main process could bind the ports.
    wait_for(lambda: not set(appliance.broker_pids()) & set(old_brokers), timeout=10)
    wait_for(lambda: len(appliance.broker_pids()) == 1, timeout=10)


def test_bad_config_fails_with_its_line_and_touches_nothing(appliance: Appliance) -> None:
    pid = appliance.main_pid()
    running = appliance.running_json.read_text()
    bad = appliance.root / "bad.rb"
    lines = appliance.base_text.splitlines()
    lines.append("opscode_pushy_server['heartbeat_interval'] = 'often'")
    bad.write_text("\n".join(lines) + "\n")
    result = appliance.ctl("reconfigure", config=bad)
    assert result.returncode == 2
    assert f"{bad}:{len(lines)}:" in result.stderr
    assert "heartbeat_interval" in result.stderr
    assert appliance.main_pid() == pid
    assert appliance.running_json.read_text() == running
    assert appliance.api_status() == 200


def test_status_and_tail_work_while_the_config_file_is_broken(appliance: Appliance) -> None:
    # An operator fixing a typo in the running service's file must still see whether it is up.
    lines = [*appliance.base_text.splitlines(), "opscode_pushy_server['api_port'] = = 1"]
    appliance.config.write_text("\n".join(lines) + "\n")
    try:
        status = appliance.ctl("status", SERVICE)
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.startswith(f"run: {SERVICE}: (pid ")
        assert status.stderr.startswith(f"push-jobs-server-ctl: {appliance.config}:{len(lines)}:")
        assert status.stderr.rstrip().endswith("(status from the last reconfigure's settings)")
        tail = appliance.ctl("tail", "--no-follow", "-n", "3")
        assert tail.returncode == 0, tail.stderr
        assert tail.stderr.startswith(f"push-jobs-server-ctl: {appliance.config}:{len(lines)}:")
        assert len(tail.stdout.splitlines()) == 3
    finally:
        appliance.config.write_text(appliance.base_text)


def test_status_without_config_finds_the_last_reconfigured_file(appliance: Appliance) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PUSH_JOBS_SERVER_CONFIG"}
    result = subprocess.run([sys.executable, "-m", "pushd_ctl", "status", SERVICE],
                            capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"run: {SERVICE}: (pid ")


def test_changed_setting_is_shown_and_restarts_the_service(appliance: Appliance) -> None:
    pid = appliance.main_pid()
    appliance.config.write_text(
        appliance.base_text + "opscode_pushy_server['heartbeat_interval'] = 700\n"
    )
    result = appliance.ctl("reconfigure")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "heartbeat_interval: 500 -> 700" in result.stdout
    assert f"restarted {SERVICE}" in result.stdout
    assert appliance.main_pid() != pid
    running = json.loads(appliance.running_json.read_text())
    assert running["opscode_pushy_server"]["heartbeat_interval"] == 700


def test_settings_without_effect_are_applied_with_one_warning_each(appliance: Appliance) -> None:
    text = appliance.config.read_text()
    appliance.config.write_text(
        text + "opscode_pushy_server['ha'] = true\n"
        "postgresql['sql_ro_user'] = 'reader'\n"
    )
    line = len(text.splitlines()) + 1
    result = appliance.ctl("reconfigure")
    assert result.returncode == 0, result.stdout + result.stderr
    warnings = [w for w in result.stderr.splitlines() if "warning" in w]
    assert warnings == [
        f"push-jobs-server-ctl: reconfigure: warning: {appliance.config}:{line}: "
        "opscode_pushy_server['ha'] is accepted for compatibility, no effect "
        "(pushd has no high-availability topology of its own)",
        f"push-jobs-server-ctl: reconfigure: warning: {appliance.config}:{line + 1}: "
        "postgresql['sql_ro_user'] is accepted for compatibility, no effect "
        "(pushd connects only as sql_user)",
    ]
    assert "ha: false -> true" in result.stdout
    diff = appliance.ctl("show-config", "--diff")
    assert diff.stdout == ""  # applied: the running config has them
    wait_for(lambda: appliance.api_status() == 200, timeout=60)


def test_restart_and_graceful_kill(appliance: Appliance) -> None:
    pid = appliance.main_pid()
    restart = appliance.ctl("restart")
    assert restart.returncode == 0, restart.stdout + restart.stderr
    assert appliance.main_pid() not in (None, pid)
    wait_for(lambda: appliance.api_status() == 200, timeout=60)

    killed = appliance.ctl("graceful-kill")
    assert killed.returncode == 0, killed.stdout + killed.stderr
    assert appliance.ctl("status").returncode == 3
    wait_for(lambda: not appliance.broker_pids(), timeout=10)
    assert appliance.ctl("start").returncode == 0
    wait_for(lambda: appliance.api_status() == 200, timeout=60)


def test_a_service_that_cannot_start_fails_reconfigure_with_its_log(appliance: Appliance) -> None:
    import socket

    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    try:
        appliance.config.write_text(
            appliance.base_text + f"opscode_pushy_server['api_port'] = {taken}\n"
        )
        result = appliance.ctl("reconfigure", "--timeout", "5")
        assert result.returncode == 1
        assert "the API did not answer" in result.stderr
        assert f"last lines of {appliance.log_current}" in result.stderr
        assert "in use" in result.stderr  # gunicorn's own words about the taken port
    finally:
        blocker.close()
        appliance.config.write_text(appliance.base_text)
    again = appliance.ctl("reconfigure")
    assert again.returncode == 0, again.stdout + again.stderr
    assert appliance.api_status() == 200


def test_enable_false_keeps_the_service_down(appliance: Appliance) -> None:
    appliance.config.write_text(appliance.base_text + "opscode_pushy_server['enable'] = false\n")
    result = appliance.ctl("reconfigure")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "stays down" in result.stdout
    assert appliance.ctl("status").returncode == 3
    assert (appliance.service_dir / "down").exists()
    appliance.config.write_text(appliance.base_text)
    assert appliance.ctl("reconfigure").returncode == 0
    assert appliance.ctl("status").returncode == 0
    assert not (appliance.service_dir / "down").exists()


def test_uninstall_stops_supervision_and_keeps_data(appliance: Appliance) -> None:
    result = appliance.ctl("uninstall")
    assert result.returncode == 0, result.stdout + result.stderr
    assert appliance.ctl("status").returncode == 3
    assert appliance.api_status() is None
    assert appliance.broker_pids() == []
    assert not (appliance.root / "srv" / "run" / "runsvdir.pid").exists()
    assert (appliance.root / "srv" / "data" / "pushd.sqlite3").exists()
    # Another reconfigure holds the lock: this one waits for it, then does the work.
    import fcntl

    with open(appliance.root / "etc" / ".reconfigure.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.Popen(
            [sys.executable, "-m", "pushd_ctl", "--config", str(appliance.config), "reconfigure"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        first_line = proc.stdout.readline()  # type: ignore[union-attr]
        assert first_line.startswith("Waiting for another reconfigure"), first_line
        assert proc.poll() is None
        assert appliance.api_status() is None  # it has not started anything meanwhile
    rest = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, rest
    assert "started runsvdir" in rest
    assert appliance.ctl("status").returncode == 0


def test_cleanse_stops_everything_and_removes_state(appliance: Appliance) -> None:
    refused = appliance.ctl("cleanse")  # no --yes and no terminal: nothing happens
    assert refused.returncode == 1
    assert (appliance.root / "srv").is_dir()
    assert appliance.api_status() == 200

    result = appliance.ctl("cleanse", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (appliance.root / "srv").exists()
    assert not (appliance.root / "log").exists()
    assert not appliance.running_json.exists()
    assert appliance.config.exists()
    assert appliance.api_status() is None
    assert appliance.broker_pids() == []
    assert appliance.ctl("status").returncode == 3
