"""The real push-jobs-client process against PushServerPeer (real HTTP, ZeroMQ, Curve, HMAC).

PushServerPeer (tests/support/client_peer.py) stands in for the server's job engine only; the
client under test is the installed entry point run as its own process.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pushd_client.process import group_alive

from pushd.keys import generate_client_keypair
from tests.support.client_peer import PushServerPeer
from tests.support.client_process import NODE, ClientProcess, leftover_jobs, wait_until

JOB = "0123456789abcdef0123456789abcdef"
JOB2 = "fedcba9876543210fedcba9876543210"


@pytest.fixture
def node_key(tmp_path: Path) -> tuple[Path, str]:
    private_pem, public_pem = generate_client_keypair()
    key_path = tmp_path / "client.pem"
    key_path.write_text(private_pem)
    key_path.chmod(0o600)
    return key_path, public_pem


@pytest.fixture
def peer(node_key: tuple[Path, str]) -> Iterator[PushServerPeer]:
    server = PushServerPeer(node_key[1], interval=0.5)
    yield server
    server.stop()


@pytest.fixture
def client(
    tmp_path: Path, node_key: tuple[Path, str], peer: PushServerPeer
) -> Iterator[ClientProcess]:
    proc = ClientProcess(tmp_path, node_key[0], peer.url)
    yield proc
    proc.stop()


def connected(peer: PushServerPeer, client: ClientProcess) -> None:
    """The client answered the peer's rehab `abort`, as it does on every new connection."""
    peer.start()
    client.start()
    message = peer.wait_for("aborted", timeout=40)
    assert message["job_id"] is None and message["node"] == NODE


def test_echo_job_capture_and_heartbeats(peer: PushServerPeer, client: ClientProcess) -> None:
    connected(peer, client)
    beat = peer.wait_for("heartbeat")
    assert beat["job_state"] == "idle" and beat["job_id"] is None
    assert beat["org"] == "testorg" and beat["protocol_version"] == "2.0"
    peer.commit(NODE, JOB, "hello", capture=True)
    peer.wait_for("ack_commit", job_id=JOB)
    peer.run(NODE, JOB)
    peer.wait_for("ack_run", job_id=JOB)
    result = peer.wait_for("succeeded", job_id=JOB)
    assert result["stdout"] == "hello from the node\n" and result["stderr"] == ""


def test_not_whitelisted_and_busy_carry_reasons(
    peer: PushServerPeer, client: ClientProcess
) -> None:
    connected(peer, client)
    peer.commit(NODE, JOB, "rm -rf /")
    assert peer.wait_for("nack_commit", job_id=JOB)["reason"] == "not_whitelisted"
    peer.commit(NODE, JOB, "sleep 5")
    peer.wait_for("ack_commit", job_id=JOB)
    peer.commit(NODE, JOB2, "hello")
    assert peer.wait_for("nack_commit", job_id=JOB2)["reason"] == "busy"
    beat = peer.wait_for("heartbeat")
    assert beat["job_state"] == "committed" and beat["job_id"] == JOB


def test_abort_kills_the_job_group_before_aborted(
    peer: PushServerPeer, client: ClientProcess
) -> None:
    connected(peer, client)
    peer.commit(NODE, JOB, "sleepy")
    peer.wait_for("ack_commit", job_id=JOB)
    peer.run(NODE, JOB)
    peer.wait_for("ack_run", job_id=JOB)
    pgid = client.job_pid()
    beat = peer.wait_for("heartbeat")
    assert beat["job_state"] == "running" and beat["job_id"] == JOB
    peer.abort(NODE)
    aborted = peer.wait_for("aborted", job_id=JOB)
    assert aborted["reason"] == "abort_requested"
    assert not group_alive(pgid)


def test_run_timeout_from_the_server(peer: PushServerPeer, client: ClientProcess) -> None:
    connected(peer, client)
    peer.commit(NODE, JOB, "sleep 3133", run_timeout=1)
    peer.wait_for("ack_commit", job_id=JOB)
    peer.run(NODE, JOB)
    pgid = client.job_pid()
    assert peer.wait_for("aborted", job_id=JOB)["reason"] == "run_timeout"
    assert not group_alive(pgid)


def test_sigterm_mid_job_kills_group_and_reports(
    peer: PushServerPeer, client: ClientProcess
) -> None:
    connected(peer, client)
    peer.commit(NODE, JOB, "sleepy")
    peer.run(NODE, JOB)
    peer.wait_for("ack_run", job_id=JOB)
    pgid = client.job_pid()
    client.signal(signal.SIGTERM)
    assert peer.wait_for("aborted", job_id=JOB)["reason"] == "shutdown"
    assert client.wait() == 0
    assert not group_alive(pgid)


def test_killed_client_restart_kills_and_reports_orphan(
    peer: PushServerPeer, client: ClientProcess
) -> None:
    connected(peer, client)
    peer.commit(NODE, JOB, "sleepy", file="raw:secret")
    peer.run(NODE, JOB)
    peer.wait_for("ack_run", job_id=JOB)
    pgid = client.job_pid()
    client.signal(signal.SIGKILL)
    client.wait()
    assert group_alive(pgid), "SIGKILL of the client leaves the job running"
    files = client.tmp_path / "files"
    assert [p.name[:43] for p in files.iterdir()] == [f"pushy_file-{JOB}"]
    client.start()
    aborted = peer.wait_for("aborted", job_id=JOB, timeout=40)
    assert aborted["reason"] == "client_restarted"
    assert not group_alive(pgid)
    assert not list(files.iterdir()), "the killed job's data file must be removed"


def test_client_started_before_its_server(
    peer: PushServerPeer, client: ClientProcess
) -> None:
    client.start()
    # Several failed config fetches: the client keeps trying.
    wait_until(lambda: client.log().count("could not download push jobs config") >= 2, 40)
    assert client.proc is not None and client.proc.poll() is None
    wait_until(lambda: "cannot reach" in (client.status().get("last_error") or ""))
    assert client.status()["connection"] == "connecting"
    peer.start()
    assert peer.wait_for("aborted", timeout=40)["job_id"] is None


def test_server_restart_mid_run(peer: PushServerPeer, client: ClientProcess) -> None:
    """A restarted server (new incarnation, new Curve key) is found again; it aborts the job."""
    connected(peer, client)
    peer.commit(NODE, JOB, "sleepy")
    peer.run(NODE, JOB)
    peer.wait_for("ack_run", job_id=JOB)
    pgid = client.job_pid()
    fetches = peer.config_fetches
    peer.stop()
    time.sleep(1.0)
    peer.drain()
    peer.start()
    beat = peer.wait_for("heartbeat", job_id=JOB, timeout=40)
    assert beat["job_state"] == "running"
    assert peer.config_fetches > fetches
    assert peer.wait_for("aborted", job_id=JOB, timeout=40)["reason"] == "abort_requested"
    assert not group_alive(pgid)


def test_usr1_fetches_the_config_again(peer: PushServerPeer, client: ClientProcess) -> None:
    connected(peer, client)
    fetches = peer.config_fetches
    client.signal(signal.SIGUSR1)
    wait_until(lambda: peer.config_fetches > fetches)
    peer.wait_for("heartbeat")


def test_sighup_reopens_the_log_file_and_reconfigures(
    tmp_path: Path, node_key: tuple[Path, str], peer: PushServerPeer
) -> None:
    log_file = tmp_path / "rotated" / "push-jobs-client.log"
    log_file.parent.mkdir()
    client = ClientProcess(tmp_path / "c", node_key[0], peer.url, log_location=str(log_file))
    try:
        connected(peer, client)
        fetches = peer.config_fetches
        log_file.rename(log_file.with_suffix(".1"))  # what logrotate does before the HUP
        client.signal(signal.SIGHUP)
        wait_until(lambda: peer.config_fetches > fetches)
        wait_until(lambda: log_file.exists() and "log file reopened" in log_file.read_text())
    finally:
        client.stop()


def test_status_command(peer: PushServerPeer, client: ClientProcess) -> None:
    connected(peer, client)
    peer.commit(NODE, JOB, "sleep 30")
    peer.run(NODE, JOB)
    peer.wait_for("ack_run", job_id=JOB)
    wait_until(lambda: client.status().get("job", {}).get("state") == "running"
               and client.status().get("last_server_heartbeat") is not None)
    out = subprocess.run(
        [sys.executable, "-m", "pushd_client.main", "-c", str(client.config_path), "--status"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert ": online" in out.stdout
    assert "last server heartbeat:" in out.stdout and "never" not in out.stdout
    assert f"job: {JOB} running 'sleep 30'" in out.stdout
    client.stop()
    out = subprocess.run(
        [sys.executable, "-m", "pushd_client.main", "-c", str(client.config_path), "--status"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 3 and "not running" in out.stdout


def test_one_log_line_per_event_with_job_id(peer: PushServerPeer, client: ClientProcess) -> None:
    connected(peer, client)
    peer.commit(NODE, JOB, "hello")
    peer.run(NODE, JOB)
    peer.wait_for("succeeded", job_id=JOB)
    wait_until(lambda: f"job={JOB} sent succeeded" in client.log())
    job_lines = [line for line in client.log().splitlines() if f"job={JOB}" in line]
    for event in ("received commit", "committed", "sent ack_commit", "received run",
                  "started pid", "finished: exit status 0", "sent succeeded"):
        assert any(event in line for line in job_lines), (event, job_lines)


def test_wrong_curve_key_is_detected_and_retried(
    tmp_path: Path, node_key: tuple[Path, str]
) -> None:
    from pushd.keys import curve_keypair

    peer = PushServerPeer(node_key[1], interval=0.5, advertise_curve_key=curve_keypair()[0])
    client = ClientProcess(tmp_path, node_key[0], peer.url)
    try:
        peer.start()
        client.start()
        wait_until(lambda: peer.config_fetches >= 2, timeout=40)
        wait_until(lambda: "Curve key refused" in (client.status().get("last_error") or ""))
        assert not [m for m in peer.received if m.get("type") != "_invalid"]
    finally:
        client.stop()
        peer.stop()


def test_unencrypted_server_needs_allow_unencrypted(
    tmp_path: Path, node_key: tuple[Path, str]
) -> None:
    peer = PushServerPeer(node_key[1], interval=0.5, unencrypted=True)
    refused = ClientProcess(tmp_path / "a", node_key[0], peer.url) if (
        (tmp_path / "a").mkdir() is None) else None
    allowed = ClientProcess(tmp_path / "b", node_key[0], peer.url, allow_unencrypted=True) if (
        (tmp_path / "b").mkdir() is None) else None
    assert refused is not None and allowed is not None
    try:
        peer.start()
        refused.start()
        wait_until(lambda: "allow_unencrypted" in (refused.status().get("last_error") or ""), 40)
        assert not peer.received
        allowed.start()
        assert peer.wait_for("aborted", timeout=40)["job_id"] is None
        wait_until(lambda: allowed.status().get("encrypted") is False)
    finally:
        refused.stop()
        allowed.stop()
        peer.stop()


def test_refused_config_fetch_is_reported_and_retried(
    tmp_path: Path, peer: PushServerPeer
) -> None:
    """A key the server does not know: a clear error in the status, and the client keeps trying."""
    wrong_key = tmp_path / "wrong.pem"
    wrong_key.write_text(generate_client_keypair()[0])
    client = ClientProcess(tmp_path / "wrong", wrong_key, peer.url)
    try:
        peer.start()
        client.start()
        wait_until(lambda: "HTTP 401" in (client.status().get("last_error") or ""), 40)
        assert "Invalid signature" in client.status()["last_error"]
        assert client.proc is not None and client.proc.poll() is None
        assert peer.config_fetches == 0
    finally:
        client.stop()


def test_config_lifetime_triggers_a_refetch(tmp_path: Path, node_key: tuple[Path, str]) -> None:
    peer = PushServerPeer(node_key[1], interval=0.5, lifetime=1)
    client = ClientProcess(tmp_path, node_key[0], peer.url)
    try:
        peer.start()
        client.start()
        peer.wait_for("aborted", timeout=40)
        wait_until(lambda: peer.config_fetches >= 3, 40)
    finally:
        client.stop()
        peer.stop()


def test_new_server_incarnation_triggers_a_reconfigure(
    peer: PushServerPeer, client: ClientProcess
) -> None:
    connected(peer, client)
    fetches = peer.config_fetches
    peer.stop()
    peer.start(keep_keys=True)  # back before the client could miss enough heartbeats
    wait_until(lambda: peer.config_fetches > fetches, 40)
    assert f"-> {peer.incarnation}); reconfiguring in" in client.log()


def test_unusable_state_dir_does_not_stop_jobs(
    tmp_path: Path, node_key: tuple[Path, str], peer: PushServerPeer
) -> None:
    client = ClientProcess(tmp_path, node_key[0], peer.url, state_dir="/dev/null/state")
    try:
        connected(peer, client)
        peer.commit(NODE, JOB, "hello", capture=True)
        peer.run(NODE, JOB)
        assert peer.wait_for("succeeded", job_id=JOB)["stdout"] == "hello from the node\n"
        assert client.log().count("cannot write status file") == 1
        assert f"job={JOB} cannot record the job" in client.log()
    finally:
        client.stop()


def test_result_reaches_a_restarted_server_before_an_idle_heartbeat(
    tmp_path: Path, node_key: tuple[Path, str]
) -> None:
    """A job that ends while the server is down: its result (refused by the full command socket)
    reaches the restarted server on the reconnected link before any idle heartbeat, even while
    the config cannot be fetched (the server's API comes up later than its broker).

    An idle heartbeat first would tell the server the result was lost (`crashed`).
    """
    go = tmp_path / "go"
    peer = PushServerPeer(node_key[1], interval=0.2)
    client = ClientProcess(tmp_path / "c", node_key[0], peer.url, whitelist={
        "wait-for-go": {"command_line": f"while [ ! -e {go} ]; do sleep 0.05; done",
                        "shell": True},
    })
    try:
        connected(peer, client)
        peer.commit(NODE, JOB, "wait-for-go")
        peer.run(NODE, JOB)
        peer.wait_for("ack_run", job_id=JOB)
        peer.stop()
        # Offline, and the command socket's queue full: the result will be refused.
        wait_until(lambda: "offline; reconnecting" in client.log()
                   and "heartbeat: command socket queue full" in client.log(), 40)
        go.touch()
        wait_until(lambda: f"job={JOB} sent succeeded: command socket queue full" in client.log(),
                   40)
        peer.refuse_config = True
        peer.drain()
        fetches, seen_before = peer.config_fetches, len(peer.received)
        peer.start(keep_keys=True)
        peer.wait_for("succeeded", job_id=JOB, timeout=40)
        after_restart = [(m.get("type"), m.get("job_state")) for m in peer.received[seen_before:]]
        assert ("heartbeat", "idle") not in after_restart[:after_restart.index(("succeeded", None))]
        assert peer.config_fetches == fetches  # the old link carried it
    finally:
        client.stop()
        peer.stop()


def test_no_leftover_processes() -> None:
    """Guard for the client e2e tests: none of their job commands is still running.

    Only this session's jobs count: other test runs on the machine use the same commands."""
    mine = leftover_jobs(("sleep 3131", "sleep 3132", "sleep 3133"))
    assert not mine, mine
