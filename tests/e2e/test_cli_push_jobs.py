"""push-jobs end to end: the CLI as a subprocess, a real pushd server, real push-jobs-client nodes.

One server and three node clients (node1, node2, node3) serve the whole module; each test starts
its own jobs. The CLI finds its configuration the way an operator's would: a `.chef/knife.rb`
in the working directory using knife's `current_dir` idiom.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pushd_knife import exitcodes

from tests.support.server import running_server

pytestmark = pytest.mark.slow

START_LINE = re.compile(r"^Started\.  Job ID: ([0-9a-f]{32})$")
NODES = ("node1", "node2", "node3")

PRINT_ENV = """#!/bin/sh
echo "USER_NAME=$(id -un)"
echo "WORKDIR=$(pwd)"
env | sort
echo "--- file"
cat "$CHEF_PUSH_JOB_FILE"
"""

FILE_DIGEST = """#!/bin/sh
sha256sum < "$CHEF_PUSH_JOB_FILE"
"""


@dataclass
class World:
    server: Any
    workdir: Path
    env: dict[str, str]
    knife_rb: Path

    def cli(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pushd_knife", *args],
            cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=timeout,
        )

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.server.request("GET", f"jobs/{job_id}")
        assert response.status == 200, response.body
        return response.json()


def _whitelist(node: str, scripts: Path) -> dict[str, str]:
    entries = {
        "echo foobar": "echo foobar",
        "print_execution_environment": f"/bin/sh {scripts / 'print_env.sh'}",
        "fail": "false",
        "sleep_long": "sleep 30",
        "sleep_short": "sleep 1",
        "file_digest": f"/bin/sh {scripts / 'file_digest.sh'}",
    }
    if node == "node2":
        entries["only_on_node2"] = "echo only node2"
    return entries


def _start_client(server: Any, node: str, base: Path, scripts: Path) -> subprocess.Popen[bytes]:
    home = base / node
    home.mkdir()
    config = {
        "chef_server_url": f"{server.base_url}/organizations/{server.org_name}",
        "node_name": node,
        "client_key": str(server.node_key_paths[node]),
        "whitelist": _whitelist(node, scripts),
        "file_dir": str(home / "files"),
        "state_dir": str(home / "state"),
        "file_cache_path": str(home / "cache"),
        "log_level": "info",
    }
    path = home / "push-jobs-client.yml"
    path.write_text(yaml.safe_dump(config))
    log = (home / "client.log").open("wb")
    return subprocess.Popen([sys.executable, "-m", "pushd_client.main", "-c", str(path)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_available(server: Any, nodes: tuple[str, ...], timeout: float = 45.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = [server.request("GET", f"node_states/{n}").json() for n in nodes]
        if all(s.get("availability") == "available" for s in states):
            return
        time.sleep(0.2)
    raise AssertionError(f"nodes not available in {timeout}s: {states}")


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    base = Path(tempfile.mkdtemp(prefix="pjcli-"))
    scripts = base / "scripts"
    scripts.mkdir()
    # The job runs as `daemon` in one test: it must be able to read the script.
    for directory in (base, scripts):
        directory.chmod(0o755)
    for name, text in (("print_env.sh", PRINT_ENV), ("file_digest.sh", FILE_DIGEST)):
        script = scripts / name
        script.write_text(text)
        script.chmod(stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
    clients: list[subprocess.Popen[bytes]] = []
    try:
        with running_server(nodes=NODES, settings={"voting_timeout": 5}) as server:
            workdir = base / "operator"
            chef = workdir / ".chef"
            chef.mkdir(parents=True)
            shutil.copy(server.admin_key_path, chef / "admin.pem")
            knife_rb = chef / "knife.rb"
            knife_rb.write_text(
                "# knife.rb as `knife configure` writes it\n"
                "current_dir = File.dirname(__FILE__)\n"
                "log_level                :info\n"
                "log_location             STDOUT\n"
                f"node_name                '{server.admin_user}'\n"
                "client_key               \"#{current_dir}/admin.pem\"\n"
                f"chef_server_url          '{server.base_url}/organizations/{server.org_name}'\n"
                "cookbook_path            [\"#{current_dir}/../cookbooks\"]\n"
            )
            clients = [_start_client(server, node, base, scripts) for node in NODES]
            _wait_available(server, NODES)
            env = {"HOME": str(base / "home"), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
            yield World(server, workdir, env, knife_rb)
    finally:
        for proc in clients:
            proc.terminate()
        for proc in clients:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(base, ignore_errors=True)


def _job_id(result: subprocess.CompletedProcess[str], stream: str = "stdout") -> str:
    first = getattr(result, stream).splitlines()[0]
    match = START_LINE.match(first)
    assert match, f"no start line in {getattr(result, stream)!r} (stderr {result.stderr!r})"
    return match.group(1)


def _progress_lines(stdout: str) -> list[str]:
    """The knife progress lines between `Started.` and the job summary."""
    lines = stdout.splitlines()[1:]
    progress = []
    for line in lines:
        if not line.startswith("."):
            break
        progress.append(line)
    return progress


def _assert_knife_progress(stdout: str, final: str) -> None:
    progress = _progress_lines(stdout)
    assert progress, stdout
    pattern = re.compile(r"^\.+(Voting\.|Running \(\d+/\d+ in progress\) \.\.\.|"
                         + re.escape(final) + ")$")
    assert all(pattern.match(line) for line in progress), progress
    assert progress[-1].endswith(final)


def test_release_notes_capture_transcript(world: World) -> None:
    result = world.cli("job", "start", "--capture", "echo foobar", "node1")
    assert result.returncode == exitcodes.OK, result.stdout + result.stderr
    job_id = _job_id(result)
    _assert_knife_progress(result.stdout, "Complete.")
    assert "status:         complete" in result.stdout
    assert result.stdout.endswith("NODE   STATUS\nnode1  succeeded\n")

    output = world.cli("job", "output", "--channel", "stdout", job_id, "node1")
    assert (output.returncode, output.stdout, output.stderr) == (0, "foobar\n", "")
    empty = world.cli("job", "output", "--channel", "stderr", job_id, "node1")
    assert (empty.returncode, empty.stdout) == (0, "")


def test_release_notes_environment_transcript(world: World) -> None:
    result = world.cli("job", "start", "--file", ".chef/knife.rb", "--capture", "--with-env",
                       '{"test": "foo"}', "--in-dir", "/tmp", "--as-user", "daemon",
                       "print_execution_environment", "node2")
    assert result.returncode == exitcodes.OK, result.stdout + result.stderr
    job_id = _job_id(result)
    output = world.cli("job", "output", "--channel", "stdout", job_id, "node2")
    assert output.returncode == 0, output.stderr
    env_part, _, file_part = output.stdout.partition("--- file\n")
    lines = env_part.splitlines()
    assert "USER_NAME=daemon" in lines
    assert "WORKDIR=/tmp" in lines
    assert "test=foo" in lines
    assert f"CHEF_PUSH_JOB_ID={job_id}" in lines
    assert "CHEF_PUSH_NODE_NAME=node2" in lines
    assert any(line.startswith("CHEF_PUSH_JOB_FILE=") for line in lines)
    assert file_part == world.knife_rb.read_text()
    status = world.cli("job", "status", "--include-file", "--json", job_id)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["file"] == "raw:" + world.knife_rb.read_text()


def test_quorum_percentage_with_an_offline_node(world: World) -> None:
    # 50% of 2 nodes is 1: node1 is enough; `ghost` never connected and is unavailable.
    result = world.cli("job", "start", "-q", "50%", "echo foobar", "node1", "ghost")
    assert result.returncode == exitcodes.OK, result.stdout + result.stderr
    job = world.job(_job_id(result))
    assert job["status"] == "complete"
    assert job["nodes"] == {"succeeded": ["node1"], "unavailable": ["ghost"]}
    assert "ghost  unavailable" in result.stdout

    strict = world.cli("job", "start", "-q", "50%", "--strict", "echo foobar", "node1", "ghost")
    assert strict.returncode == exitcodes.NODES_FAILED, strict.stdout + strict.stderr

    # The default quorum is 100%: the offline node makes the job fail its quorum.
    failed = world.cli("job", "start", "echo foobar", "node1", "ghost")
    assert failed.returncode == exitcodes.QUORUM_FAILED, failed.stdout + failed.stderr
    _assert_knife_progress(failed.stdout, "Quorum_failed.")
    assert world.job(_job_id(failed))["status"] == "quorum_failed"


def test_failing_node_exit_code(world: World) -> None:
    result = world.cli("job", "start", "fail", "node1", "node3")
    assert result.returncode == exitcodes.NODES_FAILED, result.stdout + result.stderr
    _assert_knife_progress(result.stdout, "Complete.")
    assert result.stdout.endswith("NODE   STATUS\nnode1  failed\nnode3  failed\n")
    assert result.stderr == ("exit 3: the job completed but a node failed, crashed, timed out or"
                             " was aborted\n")


def test_nacked_node_does_not_fail_the_job(world: World) -> None:
    # Only node2 whitelists the command: node1 refuses it (nacked), as knife allows.
    result = world.cli("job", "start", "-q", "1", "--json", "only_on_node2", "node1", "node2")
    assert result.returncode == exitcodes.OK, result.stdout + result.stderr
    job = json.loads(result.stdout)
    assert job["status"] == "complete"
    assert job["nodes"] == {"nacked": ["node1"], "succeeded": ["node2"]}
    # --json: the start line and the progress went to stderr
    assert START_LINE.match(result.stderr.splitlines()[0])
    # the table says why a node refused, when its client gave a reason
    plain = world.cli("job", "start", "-q", "1", "only_on_node2", "node1", "node2")
    assert plain.returncode == exitcodes.OK, plain.stdout + plain.stderr
    assert re.search(r"^node1  nacked +not_whitelisted$", plain.stdout, re.MULTILINE), plain.stdout


def test_nowait_then_status_and_watch(world: World) -> None:
    result = world.cli("job", "start", "--nowait", "sleep_short", "node3")
    assert result.returncode == exitcodes.OK, result.stderr
    assert len(result.stdout.splitlines()) == 1
    job_id = _job_id(result)

    watch = world.cli("job", "watch", job_id)
    assert watch.returncode == exitcodes.OK, watch.stdout + watch.stderr
    names = [line.split()[2] for line in watch.stdout.splitlines() if line[:1].isdigit()]
    assert names[0] == "start"
    assert {"quorum_vote", "run_start", "run_complete", "job_complete"} <= set(names)
    assert watch.stdout.endswith(f"Job {job_id}: complete\nNODE   STATUS\nnode3  succeeded\n")

    status = world.cli("job", "status", job_id)
    assert status.returncode == 0
    assert re.search(r"^status: +complete$", status.stdout, re.MULTILINE)
    assert re.search(rf"^id: +{job_id}$", status.stdout, re.MULTILINE)

    listing = world.cli("job", "list", "--json")
    assert job_id in [job["id"] for job in json.loads(listing.stdout)]


def test_abort_a_running_job(world: World) -> None:
    result = world.cli("job", "start", "--nowait", "sleep_long", "node1")
    job_id = _job_id(result)
    deadline = time.monotonic() + 30
    while world.job(job_id)["status"] != "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    abort = world.cli("job", "abort", job_id)
    assert abort.returncode == exitcodes.OK, abort.stderr
    assert abort.stdout.startswith(f"Abort requested for job {job_id}")
    watch = world.cli("job", "watch", "--json", job_id)
    assert watch.returncode == exitcodes.ABORTED, watch.stdout + watch.stderr
    assert world.job(job_id)["status"] == "aborted"
    again = world.cli("job", "abort", job_id)
    assert again.returncode == exitcodes.ERROR
    assert again.stderr.startswith(f"ERROR: cannot abort job {job_id}: ")


def test_run_timeout_exit_code(world: World) -> None:
    result = world.cli("job", "start", "--timeout", "1", "sleep_long", "node3")
    assert result.returncode == exitcodes.TIMED_OUT, result.stdout + result.stderr
    _assert_knife_progress(result.stdout, "Timed_out.")


def test_node_status(world: World) -> None:
    listing = world.cli("node", "status")
    assert listing.returncode == 0, listing.stderr
    lines = set(listing.stdout.splitlines())
    assert {f"{node}\tavailable" for node in NODES} <= lines
    named = world.cli("node", "status", "node2", "ghost")
    assert (named.returncode, named.stdout) == (0, "node2\tavailable\nghost\tunavailable\n")


def test_server_validation_error_shown_as_is(world: World, tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_text("x" * 200_000)
    result = world.cli("job", "start", "--file", str(big), "echo foobar", "node1")
    assert result.returncode == exitcodes.ERROR
    assert result.stderr == ("ERROR: the server refused the job: invalid file size"
                             " (must be <= 100000 bytes)\n")


def _run_on_terminal(world: World, *args: str, timeout: float = 60) -> tuple[int, str]:
    """Run the CLI with stdout on a pseudo-terminal; (exit code, everything it wrote)."""
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "pushd_knife", *args], cwd=world.workdir,
                            env=world.env, stdout=follower, stderr=subprocess.PIPE)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the CLI exited and closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return proc.wait(timeout=10), b"".join(chunks).decode()


def test_live_count_on_a_terminal_only(world: World) -> None:
    code, text = _run_on_terminal(world, "job", "start", "sleep_short", "node1", "node2")
    assert code == exitcodes.OK, text
    assert START_LINE.match(text.splitlines()[0].strip())
    # the live line is rewritten in place and shows per-node counts
    assert "\r\x1b[K  [" in text
    assert re.search(r"2 nodes: (\d+ \w+, )*\d+ running", text), text
    assert "Complete.\r\n" in text
    assert "\r\nNODE   STATUS\r\nnode1  succeeded\r\nnode2  succeeded\r\n" in text
    # no knife dots on a terminal, and no escape codes when the output is not a terminal
    assert "\n." not in text
    plain = world.cli("job", "start", "sleep_short", "node1", "node2")
    assert "\x1b" not in plain.stdout


def test_ctrl_c_leaves_the_job_running(world: World) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "pushd_knife", "job", "start", "sleep_long",
                             "node2"], cwd=world.workdir, env=world.env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    match = START_LINE.match(proc.stdout.readline().rstrip("\n"))
    assert match
    job_id = match.group(1)
    deadline = time.monotonic() + 30
    while world.job(job_id)["status"] != "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == exitcodes.INTERRUPTED, err
    assert err == (f"Interrupted. Job {job_id} continues on the server: follow it with"
                   f" `push-jobs job watch {job_id}`, stop it with"
                   f" `push-jobs job abort {job_id}`.\n")
    assert world.job(job_id)["status"] == "running"
    assert world.cli("job", "abort", job_id).returncode == exitcodes.OK


def test_binary_file_arrives_intact(world: World, tmp_path: Path) -> None:
    import hashlib

    data = bytes(range(256)) * 40
    blob = tmp_path / "blob.bin"
    blob.write_bytes(data)
    result = world.cli("job", "start", "--capture", "--file", str(blob), "file_digest", "node3")
    assert result.returncode == exitcodes.OK, result.stdout + result.stderr
    job_id = _job_id(result)
    status = world.cli("job", "status", "--include-file", "--json", job_id)
    assert json.loads(status.stdout)["file"].startswith("base64:")
    output = world.cli("job", "output", job_id, "node3")
    assert output.stdout.split()[0] == hashlib.sha256(data).hexdigest()


def test_output_of_every_node(world: World) -> None:
    result = world.cli("job", "start", "--capture", "-q", "2", "echo foobar", "node1", "node3",
                       "ghost")
    assert result.returncode == exitcodes.OK, result.stdout + result.stderr
    job_id = _job_id(result)
    both = world.cli("job", "output", job_id, "node3", "node1")
    assert (both.returncode, both.stdout) == (0, "==> node3 <==\nfoobar\n\n==> node1 <==\nfoobar\n")
    every = world.cli("job", "output", job_id)
    assert every.returncode == exitcodes.ERROR
    assert every.stdout == "==> node1 <==\nfoobar\n\n==> node3 <==\nfoobar\n"
    assert every.stderr.startswith(f"ERROR: no stdout for node ghost in job {job_id}")


def test_output_of_a_missing_job_or_node_says_which(world: World) -> None:
    missing = world.cli("job", "output", "f" * 32, "node1")
    assert (missing.returncode, missing.stderr) == (exitcodes.ERROR,
                                                    f"ERROR: job {'f' * 32} not found\n")
    job_id = _job_id(world.cli("job", "start", "echo foobar", "node1"))
    other = world.cli("job", "output", job_id, "node2")
    assert other.stderr == f"ERROR: node node2 is not part of job {job_id}\n"
    uncaptured = world.cli("job", "output", job_id, "node1")
    assert uncaptured.stderr == (f"ERROR: no stdout for node node1 in job {job_id}: the job was"
                                 " started without --capture\n")


def test_bad_with_env_is_a_usage_error(world: World) -> None:
    result = world.cli("job", "start", "--with-env", "[1]", "echo foobar", "node1")
    assert result.returncode == exitcodes.USAGE
    assert result.stderr.startswith("ERROR: --with-env must be a JSON object")


def test_watch_the_organization_feed(world: World) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "pushd_knife", "job", "watch", "--json",
                             "--wait-timeout", "60"], cwd=world.workdir, env=world.env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        assert proc.stderr.readline() == "Watching the organization's jobs (Ctrl-C to stop).\n"
        job_id = _job_id(world.cli("job", "start", "echo foobar", "node1"))
        seen: list[tuple[str, str, dict[str, Any]]] = []
        while not any(e == "job_complete" and j == job_id for e, j, _ in seen):
            line = proc.stdout.readline()
            assert line, "the watcher stopped"
            event = json.loads(line)
            seen.append((event["event"], event["data"].get("job"), event["data"]))
        mine = [(name, data) for name, job, data in seen if job == job_id]
        assert [name for name, _ in mine] == ["start", "job_complete"]
        assert mine[0][1]["command"] == "echo foobar"
        assert mine[1][1]["status"] == "complete"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == exitcodes.OK
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
