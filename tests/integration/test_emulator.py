"""push-jobs-emulator against a real pushd server: 50 nodes online, one job, identities reused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pushd_bench.common import EmulatorProcess, process_tree
from pushd_bench.wire import HeartbeatEncoder, ReplyEncoder

from pushd.protocol.frames import encode
from pushd.protocol.messages import NodeIdentity, node_heartbeat, node_reply, node_result
from tests.support.server import running_server

NODES = 50


def test_fast_heartbeat_encoding_is_byte_identical_to_the_protocol_encoder() -> None:
    who = NodeIdentity(node="nöde-1", client='c"1', org="acme", incarnation_id="inc-1")
    key = os.urandom(32)
    encoder = HeartbeatEncoder(who, key)
    stamp = "Tue, 24 Nov 2026 04:31:27 GMT"
    for sequence, job_id, state in ((1, None, "idle"), (7, "job\\1", "running")):
        expected = encode(node_heartbeat(who, sequence=sequence, job_id=job_id,
                                         job_state=state, timestamp=stamp), hmac_key=key)
        assert encoder.frames(sequence, job_id, state, stamp) == expected


def test_fast_reply_encoding_is_byte_identical_to_the_protocol_encoder() -> None:
    who = NodeIdentity(node="nöde-1", client='c"1', org="acme", incarnation_id="inc-1")
    key = os.urandom(32)
    encoder = ReplyEncoder(who, key)
    stamp = "Tue, 24 Nov 2026 04:31:27 GMT"
    for sequence, job_id, kind in ((1, "job\\1", "ack_commit"), (2, "j", "ack_run"),
                                   (3, None, "aborted")):
        expected = encode(node_reply(who, kind, sequence=sequence, job_id=job_id,
                                     timestamp=stamp), hmac_key=key)
        assert encoder.frames(kind, sequence, job_id, stamp) == expected
    for succeeded in (True, False):
        expected = encode(node_result(who, succeeded=succeeded, sequence=4, job_id="j",
                                      timestamp=stamp), hmac_key=key)
        kind = "succeeded" if succeeded else "failed"
        assert encoder.frames(kind, 4, "j", stamp) == expected


def _start(server: Any, state_dir: Path, status: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pushd_bench", "--config", str(server.config_path),
         "--org", server.org_name, "--nodes", str(NODES), "--state-dir", str(state_dir),
         "--status-file", str(status), "--report-interval", "0.5", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # Its own process group, so a failing test can end the worker processes too: they hold
        # the output pipe, and reading it would otherwise wait for them forever.
        start_new_session=True,
    )


def _kill_and_read(process: subprocess.Popen[str]) -> str:
    """End the emulator and its workers; return what it printed (for the failure message)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        return process.communicate(timeout=10)[0]
    except subprocess.TimeoutExpired:
        return "(no output: the pipe stayed open)"


def _wait_online(process: subprocess.Popen[str], status: Path, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"emulator exited: {_kill_and_read(process)}")
        if status.exists():
            seen = json.loads(status.read_text())
            if seen["online"] >= NODES:
                return seen
        time.sleep(0.1)
    raise AssertionError(f"not all online: {seen}; {_kill_and_read(process)}")


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output
    return output


def test_emulator_brings_nodes_online_runs_a_job_and_reuses_identities(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    status = tmp_path / "status.json"
    names = [f"emu-{i:05d}" for i in range(NODES)]
    with running_server(nodes=()) as server:
        emulator = _start(server, state_dir, status, "--output-bytes", "300", "--exit-code", "0")
        try:
            seen = _wait_online(emulator, status, timeout=60)
            # The status file tells preparation from the nodes' run (benchmarks time only the
            # latter): a fresh key pool was generated, then the nodes started.
            assert seen["phase"] == "running"
            assert seen["keys_generated"] == seen["keys_to_generate"] == NODES
            assert seen["clients_provisioned"] == NODES
            assert seen["prepare_seconds"] > 0 and seen["configs"] >= NODES
            # The server sees every emulated node as available.
            listed = {n["node_name"]: n for n in server.request("GET", "node_states").json()}
            assert sorted(listed) == names
            assert {n["availability"] for n in listed.values()} == {"available"}

            created = server.request("POST", "jobs", {"command": "chef-client",
                                                      "nodes": names, "capture_output": True})
            assert created.status == 201, created.body
            job_id = created.json()["uri"].rsplit("/", 1)[-1]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                job = server.request("GET", f"jobs/{job_id}").json()
                if job["status"] not in ("new", "voting", "running"):
                    break
                time.sleep(0.1)
            assert job["status"] == "complete"
            assert job["nodes"] == {"succeeded": names}
            output = server.request("GET", f"jobs/{job_id}/output/emu-00007/stdout",
                                    headers={"Accept": "application/octet-stream"})
            assert output.status == 200
            assert output.body == b"x" * 300
            # The emulator's own per-job figures agree with the server's.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                record = json.loads(status.read_text())["jobs"].get(job_id, {})
                if record.get("results") == NODES:
                    break
                time.sleep(0.1)
            assert record["commits"] == NODES and record["acked_runs"] == NODES
            assert record["results"] == NODES
        finally:
            first_output = _stop(emulator) if emulator.poll() is None else ""
        assert f"{NODES} clients created" in first_output
        assert f"all {NODES} nodes online" in first_output

        # A second run reuses the key pool and the provisioned clients.
        key_times = {p.name: p.stat().st_mtime_ns for p in (state_dir / "keys").iterdir()}
        status.unlink()
        again = _start(server, state_dir, status)
        try:
            assert _wait_online(again, status, timeout=60)["keys_to_generate"] == 0
        finally:
            second_output = _stop(again)
        assert f"0 clients created, 0 re-keyed, {NODES} unchanged" in second_output
        assert {p.name: p.stat().st_mtime_ns for p in (state_dir / "keys").iterdir()} \
            == key_times


def test_a_stop_during_key_generation_ends_the_emulator_at_once(tmp_path: Path) -> None:
    status = tmp_path / "status.json"
    emulator = subprocess.Popen(
        [sys.executable, "-m", "pushd_bench", "--config", str(tmp_path / "unused.rb"),
         "--org", "o", "--nodes", "2000", "--state-dir", str(tmp_path / "state"),
         "--status-file", str(status)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        seen: dict[str, Any] = {}
        while time.monotonic() < deadline and not seen.get("keys_generated"):
            if status.exists():
                seen = json.loads(status.read_text())
            time.sleep(0.05)
        assert seen["phase"] == "keys" and seen["keys_to_generate"] == 2000, seen
        emulator.send_signal(signal.SIGTERM)
        output, _ = emulator.communicate(timeout=15)  # not the minutes 2000 keys would take
    finally:
        _kill_and_read(emulator)
    assert emulator.returncode == 128 + signal.SIGTERM, output
    keys = list((tmp_path / "state" / "keys").iterdir())
    assert 0 < len(keys) < 2000
    assert all(k.name.endswith(".pem") for k in keys)  # no half-written key left behind


def test_bad_arguments_exit_2_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pushd_bench", "--config", str(tmp_path / "x.rb"),
         "--org", "o", "--nodes", "0"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "--nodes must be between 1 and 100000" in result.stderr


def test_a_churn_restarts_a_share_of_the_nodes_and_they_come_back(tmp_path: Path) -> None:
    status = tmp_path / "status.json"
    names = [f"emu-{i:05d}" for i in range(NODES)]
    with running_server(nodes=()) as server:
        emulator = _start(server, tmp_path / "state", status, "--churn-fraction", "0.2",
                          "--churn-down", "1")
        try:
            before = _wait_online(emulator, status, timeout=60)
            emulator.send_signal(signal.SIGUSR1)
            deadline = time.monotonic() + 30
            seen = before
            while time.monotonic() < deadline:
                seen = json.loads(status.read_text())
                if seen["restarts"] == NODES // 5 and seen["online"] == NODES:
                    break
                time.sleep(0.1)
            assert (seen["churns"], seen["restarts"], seen["online"]) == (1, NODES // 5, NODES)
            # Each restarted node fetched its config again (a new Curve key), like a restarted
            # client, and the server runs a job on all of them.
            assert seen["configs"] == before["configs"] + NODES // 5
            created = server.request("POST", "jobs", {"command": "x", "nodes": names})
            job_id = created.json()["uri"].rsplit("/", 1)[-1]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                job = server.request("GET", f"jobs/{job_id}").json()
                if job["status"] not in ("new", "voting", "running"):
                    break
                time.sleep(0.1)
            assert job["status"] == "complete" and job["nodes"] == {"succeeded": names}
        finally:
            output = _stop(emulator) if emulator.poll() is None else _kill_and_read(emulator)
        assert f"churn 1: restarting {NODES // 5} nodes" in output


def _nice_values(pid: int) -> set[int]:
    """The nice value of every thread of `pid` and of its descendants (from /proc)."""
    values = set()
    for member in process_tree(pid):
        for task in Path(f"/proc/{member}/task").iterdir():
            try:
                stat = (task / "stat").read_text()
            except OSError:
                continue  # a thread that ended meanwhile
            values.add(int(stat.rsplit(")", 1)[1].split()[16]))  # field 19: nice
    return values


def test_a_niced_emulator_runs_every_process_and_thread_at_that_nice(tmp_path: Path) -> None:
    # bench_dispatch --emulator-nice: the worker processes and libzmq's I/O threads must
    # inherit it (a renice of the emulator's pid changes its main thread only).
    with running_server(nodes=()) as server:
        emulator = EmulatorProcess(server, 20, str(tmp_path / "state"), nice=7)
        try:
            emulator.wait_online(60)
            assert len(process_tree(emulator.pid)) > 1  # the workers are running
            assert _nice_values(emulator.pid) == {os.nice(0) + 7}
        finally:
            emulator.stop()
