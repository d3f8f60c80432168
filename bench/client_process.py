"""ClientProcess: the real push-jobs-client run as a child process, for end-to-end tests and the
soak benchmark (it lives in the installed pushd_bench for the benchmarks' sake, like
pushd_bench.server; tests/support/client_process.py re-exports it).

    client = ClientProcess(tmp_path, key_path, chef_server_url, node="node1", **settings)
    client.start(*extra_flags); client.signal(sig); client.wait(); client.stop()
    client.status() -> dict        its status.json ({} before the first write)
    client.job_pid() -> int        process group of the running job (from its job record)
    client.log() -> str
    wait_until(check, timeout=10)
    leftover_jobs(commands) -> list[str]   job processes started by this test session's clients
                                           whose command line is one of `commands`

Every client gets SESSION_MARK in its environment, which its jobs inherit: the leftover guard
then sees only this session's jobs, not those of another engineer's test run on the machine.

The config is YAML with a short kill grace and backoff cap, and a whitelist used by the tests:
"hello", "both" (writes to stdout and stderr), "sleepy" (a shell with two background sleeps),
"/sleep ([0-9]+)/", "probe" (prints user, dir, env and the data file), "big" (more output than
a message may carry), "locked" (takes a lock file), "twolines" (a line, 2 s of sleep, another
line) and "flood" (50 MB of output as fast as it can).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import yaml

NODE = "node1"
SESSION_MARK = f"PUSHD_TEST_CLIENT_SESSION={uuid4().hex}"

PROBE = (
    'id -un; pwd; echo "FOO=$FOO"; echo "PATH_OK=$([ "$PATH" != /evil ] && echo yes)";'
    ' echo "FILE=$(cat "$CHEF_PUSH_JOB_FILE")"; echo "NODE=$CHEF_PUSH_NODE_NAME";'
    ' echo "JOB=$CHEF_PUSH_JOB_ID"; echo "PATHFILE=$CHEF_PUSH_JOB_FILE"'
)
TWO_LINES = "echo first line; sleep 2; echo second line"
FLOOD = "yes 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz | " \
    "head -c 52428800"
BIG = "i=0; while [ $i -lt 20000 ]; do echo out line $i; echo err line $i >&2; i=$((i+1)); done"


class ClientProcess:
    """push-jobs-client running as a child process with its own config and state dir."""

    def __init__(
        self, tmp_path: Path, key_path: Path, url: str, *, node: str = NODE, **settings: Any
    ) -> None:
        self.tmp_path = tmp_path
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.state_dir = tmp_path / "state"
        self.log_path = tmp_path / "client.log"
        self.lock_path = tmp_path / "job.lock"
        document = {
            "chef_server_url": url,
            "node_name": node,
            "client_key": str(key_path),
            "file_dir": str(tmp_path / "files"),
            "state_dir": str(self.state_dir),
            "kill_grace": 1.0,
            "max_reconnect_delay": 1.0,
            "log_level": "debug",
            "whitelist": {
                "hello": "echo hello from the node",
                "sleepy": {"command_line": "sleep 3131 & sleep 3132", "shell": True},
                "/sleep ([0-9]+)/": "sleep \\1",
                "both": {"command_line": "echo to-out; echo to-err >&2", "shell": True},
                "probe": {"command_line": PROBE, "shell": True},
                "big": {"command_line": BIG, "shell": True},
                "locked": {"command_line": "true", "lock": str(tmp_path / "job.lock")},
                "twolines": {"command_line": TWO_LINES, "shell": True},
                "flood": {"command_line": FLOOD, "shell": True},
            },
            **settings,  # e.g. log_level="info" or a whitelist of its own
        }
        self.config_path = tmp_path / "push-jobs-client.yml"
        self.config_path.write_text(yaml.safe_dump(document))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pushd_client.main", "-c", str(self.config_path), *extra],
            stdout=log, stderr=subprocess.STDOUT,
            # PYTHONSAFEPATH: not the working directory's pushd_client before PYTHONPATH's
            # (pushd_bench.server.SAFE_PATH says why).
            env={**os.environ, SESSION_MARK.split("=")[0]: SESSION_MARK.split("=")[1],
                 "PYTHONSAFEPATH": "1"},
        )
        log.close()

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 40.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def status(self) -> dict[str, Any]:
        """The daemon's status file ({} until it has written one)."""
        try:
            return json.loads((self.state_dir / "status.json").read_text())
        except FileNotFoundError:
            return {}

    def job_pid(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = self.state_dir / "job.json"
            if record.exists():
                return int(json.loads(record.read_text())["pgid"])
            time.sleep(0.05)
        raise AssertionError("the client never recorded a running job")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

def wait_until(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def leftover_jobs(commands: tuple[str, ...]) -> list[str]:
    """Running processes whose command line is one of `commands` and whose environment carries
    this session's SESSION_MARK (so: jobs our clients started)."""
    mark = SESSION_MARK.encode()
    found: list[str] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                args = handle.read().rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
            if args not in commands:
                continue
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environment = handle.read().split(b"\0")
        except OSError:  # gone meanwhile, or a kernel thread
            continue
        if mark in environment:
            found.append(f"{entry}: {args}")
    return found
