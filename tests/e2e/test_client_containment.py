"""Nothing a job starts outlives it: real push-jobs-client processes, real server, real jobs whose
command escapes its process group (setsid, and a daemon that double-forks into a new session).

Each job gets a token (in the argv of every process it starts, and in its environment); the
survivors are the live processes in /proc that carry it. Both containment mechanisms are run:
a cgroup v2 per job (skipped where this machine gives none) and the child subreaper the client
falls back to.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from pushd_client.cgroup import CgroupError, check_parent, own_cgroup

from tests.e2e.test_client_server import Node, finished, job, start_job
from tests.support.client_process import wait_until
from tests.support.server import PushdServer, running_server

# setsid: a new session (the old client's process-group kill misses it); a classic daemon:
# fork, setsid, fork, the middle process exits (re-parented and in another session); a plain
# double fork; and the foreground command the shell waits for.
ESCAPE = (
    "setsid sleep 1000.\\1 & (setsid sh -c 'sleep 1001.\\1 & exit 0' &);"
    " (sleep 1002.\\1 &) & sleep 1003.\\1"
)
SLEEPS = ("1000", "1001", "1002", "1003")


def _cgroup_unavailable() -> str | None:
    try:
        check_parent(own_cgroup())  # the client runs in this process's cgroup
    except CgroupError as err:
        return str(err)
    return None


MECHANISMS = [
    pytest.param(
        "cgroup",
        marks=pytest.mark.skipif(_cgroup_unavailable() is not None,
                                 reason=f"no cgroup v2 here: {_cgroup_unavailable()}"),
    ),
    "subreaper",
]


@pytest.fixture(scope="module")
def server() -> Iterator[PushdServer]:
    with running_server(nodes=("node1",)) as srv:
        yield srv


@pytest.fixture
def files_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="pushd-containment-"))
    os.chmod(root, 0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def marked(token: str) -> list[str]:
    """Live processes whose argv or environment carries `token` (zombies have neither)."""
    needle = token.encode()
    found: list[str] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read()
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environ = handle.read()
        except OSError:
            continue
        if needle in argv or needle in environ:
            found.append(f"{entry}: " + argv.replace(b"\0", b" ").decode(errors="replace"))
    return found


def kill_marked(token: str) -> None:
    """Safety net for a failing run: end only the processes carrying this test's token."""
    for line in marked(token):
        try:
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
        except ProcessLookupError:
            pass


class Escapee:
    """A node running the ESCAPE job with a fresh token."""

    def __init__(self, server: PushdServer, tmp_path: Path, files_root: Path,
                 mechanism: str) -> None:
        self.server = server
        self.mechanism = mechanism
        self.token = str(secrets.randbelow(10**9)).zfill(9)
        self.node = Node(
            server, tmp_path, files_root, "node1", job_containment=mechanism,
            whitelist={"/escape ([0-9]+)/": {"command_line": ESCAPE, "shell": True}},
        )

    def start_job(self, **fields: object) -> str:
        self.node.start()
        assert self.node.client.status().get("containment") == self.mechanism
        job_id = start_job(self.server, f"escape {self.token}", ["node1"],
                           env={"PUSHD_TEST_MARK": self.token}, **fields)
        # Every escaping process is up before the job is ended.
        wait_until(lambda: all(f"sleep {s}.{self.token}" in self.running() for s in SLEEPS), 40)
        wait_until(lambda: self.node.client.status().get("job", {}).get("job_id") == job_id, 40)
        return job_id

    def wait_job_ended(self) -> None:
        """The client is done with the job (the server may call a job aborted or timed out
        before the node has answered)."""
        wait_until(lambda: self.node.client.status().get("job", {}).get("state") == "idle", 40)

    def survivors(self) -> list[str]:
        return marked(self.token)

    def running(self) -> set[str]:
        """The command lines of the marked processes."""
        return {line.split(": ", 1)[1].strip() for line in self.survivors()}

    def job_cgroup(self) -> str | None:
        record = json.loads((self.node.client.state_dir / "job.json").read_text())
        return record.get("tree", {}).get("cgroup")


@pytest.fixture(params=MECHANISMS)
def escapee(
    request: pytest.FixtureRequest, server: PushdServer, tmp_path: Path, files_root: Path
) -> Iterator[Escapee]:
    node = Escapee(server, tmp_path, files_root, request.param)
    yield node
    node.node.client.stop()
    kill_marked(node.token)
    with contextlib.suppress(OSError, ValueError, AttributeError):  # a failed run's cgroup
        os.rmdir(node.job_cgroup() or "")


def test_abort_ends_every_descendant(server: PushdServer, escapee: Escapee) -> None:
    job_id = escapee.start_job()
    cgroup = escapee.job_cgroup()
    wait_until(lambda: job(server, job_id)["status"] == "running", 40)
    resp = server.request("POST", f"jobs/{job_id}/abort", {})
    assert resp.status == 200, resp.body
    assert finished(server, job_id)["status"] == "aborted"
    escapee.wait_job_ended()
    assert escapee.survivors() == []
    assert cgroup is None or not os.path.exists(cgroup), "the job's cgroup must be removed"


def test_run_timeout_ends_every_descendant(server: PushdServer, escapee: Escapee) -> None:
    job_id = escapee.start_job(run_timeout=5)
    doc = finished(server, job_id)
    assert doc["status"] == "timed_out", doc
    escapee.wait_job_ended()
    assert escapee.survivors() == []


def test_client_shutdown_ends_every_descendant(server: PushdServer, escapee: Escapee) -> None:
    job_id = escapee.start_job()
    escapee.node.client.signal(signal.SIGTERM)
    assert escapee.node.client.wait() == 0
    assert escapee.survivors() == []
    finished(server, job_id)


def test_client_restart_ends_what_a_killed_client_left(
    server: PushdServer, escapee: Escapee
) -> None:
    job_id = escapee.start_job()
    escapee.node.client.signal(signal.SIGKILL)
    escapee.node.client.wait()
    assert len(escapee.survivors()) >= len(SLEEPS), "SIGKILL of the client leaves the job"
    client = escapee.node.client
    client.start()
    # The new client ends the recorded tree before it connects (the killed client's status
    # file still says online until the new one writes its own).
    assert client.proc is not None
    wait_until(lambda: client.status().get("pid") == client.proc.pid
               and client.status().get("connection") == "online", 40)
    assert escapee.survivors() == []
    finished(server, job_id)
    assert "job.json" not in os.listdir(escapee.node.client.state_dir)
