"""Live output (issue 18) end to end: a real pushd server, real push-jobs-client processes, the
push-jobs CLI as a subprocess and the stock-protocol peer (pushd_bench.protocol_peer)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.client_process import ClientProcess, wait_until
from tests.support.server import PushdServer, SseEvent, running_server

OUTPUT_MAX_BYTES = 256 * 1024


@pytest.fixture(scope="module")
def server() -> Iterator[PushdServer]:
    settings = {"output_max_bytes": OUTPUT_MAX_BYTES}
    with running_server(nodes=("node1", "node2", "peer1"), settings=settings) as srv:
        yield srv


@pytest.fixture(scope="module")
def clients(server: PushdServer) -> Iterator[dict[str, ClientProcess]]:
    base = Path(tempfile.mkdtemp(prefix="pushd-live-"))
    os.chmod(base, 0o711)
    url = f"{server.base_url}/organizations/{server.org_name}"
    started = {}
    try:
        for name in ("node1", "node2"):
            client = ClientProcess(base / name, server.node_key_paths[name], url, node=name,
                                   file_dir=str(base / name / "files"))
            client.start()
            started[name] = client
        for name in started:
            server.wait_available(name, timeout=40)
        yield started
    finally:
        for client in started.values():
            client.stop()
        shutil.rmtree(base, ignore_errors=True)


def start_job(server: PushdServer, command: str, nodes: list[str], **fields: Any) -> str:
    resp = server.request("POST", "jobs", {"command": command, "nodes": nodes, **fields})
    assert resp.status == 201, resp.body
    return str(resp.json()["uri"]).rsplit("/", 1)[-1]


def wait_done(server: PushdServer, job_id: str, timeout: float = 60) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def done() -> bool:
        found.update(server.request("GET", f"jobs/{job_id}").json())
        return found.get("status") not in ("new", "voting", "running")

    wait_until(done, timeout)
    return found


def output(server: PushdServer, job_id: str, node: str, channel: str = "stdout",
           query: dict[str, Any] | None = None) -> Any:
    return server.request("GET", f"jobs/{job_id}/output/{node}/{channel}",
                          headers={"Accept": "application/octet-stream"}, query=query)


def output_events(events: list[SseEvent], node: str, channel: str = "stdout") -> list[SseEvent]:
    return [e for e in events if e.name == "output" and e.data["node"] == node
            and e.data["channel"] == channel]


def joined(chunks: list[SseEvent]) -> str:
    """The chunks' text, checking that each starts where the previous ended."""
    offset = 0
    text = ""
    for event in chunks:
        assert event.data["offset"] == offset, [e.data for e in chunks]
        text += event.data["data"]
        offset += len(event.data["data"].encode())
    return text


def test_first_line_is_on_the_feed_before_the_job_ends(
    server: PushdServer, clients: dict[str, ClientProcess]
) -> None:
    job_id = start_job(server, "twolines", ["node1"], capture_output=True)
    stream = server.stream(f"job_status_feed/{job_id}")
    seen: list[SseEvent] = []
    while True:
        event = stream.next_event(timeout=30)
        assert event is not None, seen
        seen.append(event)
        if event.name == "output":
            break
    # The first line came as an `output` event while the node still ran the job.
    assert event.data == {"timestamp": event.data["timestamp"], "node": "node1",
                          "channel": "stdout", "offset": 0, "data": "first line\n"}
    assert not [e for e in seen if e.name in ("run_complete", "job_complete")]
    assert server.request("GET", f"jobs/{job_id}").json()["status"] == "running"
    # Resuming without the feed: the stored output grows with the chunks.
    partial = output(server, job_id, "node1", query={"offset": 6})
    assert partial.status == 200 and partial.body == b"line\n"
    assert partial.header("X-Output-Size") == "11"
    rest = stream.rest(timeout=30)
    stream.close()
    events = seen + rest
    chunks = output_events(events, "node1")
    assert joined(chunks) == "first line\nsecond line\n"
    names = [e.name for e in events]
    assert names.index("run_complete") > names.index("output")
    assert output(server, job_id, "node1").body == b"first line\nsecond line\n"
    for bad in ("-1", "x", "1.5", "9" * 19):
        refused = output(server, job_id, "node1", query={"offset": bad})
        assert refused.status == 400 and "offset" in refused.json()["error"]


def test_follow_prints_the_first_line_before_the_job_ends(
    server: PushdServer, clients: dict[str, ClientProcess], tmp_path: Path
) -> None:
    cli = Cli(server, tmp_path)
    job_id = start_job(server, "twolines", ["node1", "node2"], capture_output=True)
    proc = cli.popen("job", "output", "--follow", job_id)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first in ("node1: first line\n", "node2: first line\n")
    status = server.request("GET", f"jobs/{job_id}").json()["status"]
    assert status == "running"
    # Not communicate(): it reads the pipe past what readline() already buffered.
    rest = proc.stdout.read()
    assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
    lines = sorted([first, *rest.splitlines(keepends=True)])
    assert lines == ["node1: first line\n", "node1: second line\n",
                     "node2: first line\n", "node2: second line\n"]


def test_start_follow_output_with_one_node_prints_bare_lines(
    server: PushdServer, clients: dict[str, ClientProcess], tmp_path: Path
) -> None:
    cli = Cli(server, tmp_path)
    proc = cli.popen("job", "start", "--follow-output", "twolines", "node1")
    out, errors = proc.communicate(timeout=60)
    assert proc.returncode == 0, errors
    lines = out.splitlines()
    assert lines[0].startswith("Started.  Job ID: ")
    assert lines[1:] == ["first line", "second line"]


def test_watch_shows_the_running_nodes_last_line(
    server: PushdServer, clients: dict[str, ClientProcess], tmp_path: Path
) -> None:
    cli = Cli(server, tmp_path)
    job_id = start_job(server, "twolines", ["node1"], capture_output=True)
    proc = cli.popen("job", "watch", job_id)
    out, errors = proc.communicate(timeout=60)
    assert proc.returncode == 0, errors
    shown = [line for line in out.splitlines() if " output " in line]
    assert [line.split("output", 1)[1].strip() for line in shown] == [
        "node=node1 last_line=first line", "node=node1 last_line=second line"]


def test_a_lost_chunk_still_leaves_the_complete_output_stored(server: PushdServer) -> None:
    peer = server.peer("peer1")
    try:
        server.wait_available("peer1")
        job_id = start_job(server, "hang", ["peer1"], capture_output=True)
        wait_until(lambda: server.request("GET", f"jobs/{job_id}").json()["nodes"].get(
            "running") == ["peer1"])
        stream = server.stream(f"job_status_feed/{job_id}")
        peer.send("output", job_id, channel="stdout", offset=0, data="one\n")
        # The chunk at offset 4 ("two\n") is lost on the way.
        peer.send("output", job_id, channel="stdout", offset=8, data="three\n")
        wait_until(lambda: output(server, job_id, "peer1").status == 200)
        wait_until(lambda: b"three" in output(server, job_id, "peer1").body)
        live = output(server, job_id, "peer1").body.decode()
        assert live.startswith("[push-jobs-client: output truncated, 8 of 14 bytes dropped]")
        assert live.endswith("three\n")
        peer.send("succeeded", job_id, stdout="one\ntwo\nthree\n", stderr="")
        events = stream.rest(timeout=30)
        assert [(e.data["offset"], e.data["data"]) for e in output_events(events, "peer1")] \
            == [(0, "one\n"), (8, "three\n")]
        assert wait_done(server, job_id)["status"] == "complete"
        assert output(server, job_id, "peer1").body == b"one\ntwo\nthree\n"
    finally:
        peer.stop()


def test_a_stock_protocol_peer_job_ends_with_its_output(server: PushdServer) -> None:
    peer = server.peer("peer1")
    try:
        server.wait_available("peer1")
        job_id = start_job(server, "true", ["peer1"], capture_output=True)
        assert wait_done(server, job_id)["status"] == "complete"
        assert output(server, job_id, "peer1").body == b"peer1 says hi\n"
        events = server.stream(f"job_status_feed/{job_id}").rest(timeout=30)
        assert "output" not in [e.name for e in events]
        assert "run_complete" in [e.name for e in events]
        # The stock client never sees the new message type.
        assert not [b for b in peer.received() if b.get("type") not in
                    ("abort", "ack", "commit", "run", "heartbeat")]
    finally:
        peer.stop()


def test_replay_after_a_reconnect_gives_every_chunk_once_in_order(
    server: PushdServer, clients: dict[str, ClientProcess]
) -> None:
    job_id = start_job(server, "twolines", ["node1"], capture_output=True)
    first = server.stream(f"job_status_feed/{job_id}")
    while True:
        event = first.next_event(timeout=30)
        assert event is not None
        if event.name == "output":
            break
    first.close()  # the reader drops off after the first chunk
    wait_done(server, job_id)
    resumed = server.stream(f"job_status_feed/{job_id}", last_event_id=event.id).rest(timeout=30)
    chunks = [event, *output_events(resumed, "node1")]
    assert joined(chunks) == "first line\nsecond line\n"
    ids = [int(e.id) for e in chunks]
    assert ids == sorted(set(ids))
    # The full replay holds the same chunks, once each.
    full = server.stream(f"job_status_feed/{job_id}").rest(timeout=30)
    assert [e.id for e in output_events(full, "node1")] == [e.id for e in chunks]


def test_bounds_hold_against_a_command_printing_50_mb(
    server: PushdServer, clients: dict[str, ClientProcess]
) -> None:
    broker = server.broker_pid()
    job_id = start_job(server, "flood", ["node2"], capture_output=True)
    job = wait_done(server, job_id, timeout=120)
    assert job["status"] == "complete", job
    stored = output(server, job_id, "node2").body
    assert len(stored) <= OUTPUT_MAX_BYTES + 100
    assert stored.startswith(b"[push-jobs-client: output truncated, ")
    events = server.stream(f"job_status_feed/{job_id}").rest(timeout=30)
    sent = sum(len(e.data["data"].encode()) for e in output_events(events, "node2"))
    assert 0 < sent <= OUTPUT_MAX_BYTES
    offsets = [e.data["offset"] for e in output_events(events, "node2")]
    assert offsets == sorted(offsets)
    assert server.broker_pid() == broker
    assert server.request("GET", "/_status").status == 200
    # The client's memory stayed bounded (its capture buffer is 1 MiB per stream).
    pid = clients["node2"].proc.pid  # type: ignore[union-attr]
    status = Path(f"/proc/{pid}/status").read_text()
    peak_kb = int(next(line for line in status.splitlines()
                       if line.startswith("VmHWM:")).split()[1])
    assert peak_kb < 200 * 1024, status


class Cli:
    """The push-jobs CLI as a subprocess, configured by a knife.rb for the server's admin."""

    def __init__(self, server: PushdServer, tmp_path: Path) -> None:
        chef = tmp_path / ".chef"
        chef.mkdir()
        shutil.copy(server.admin_key_path, chef / "admin.pem")
        (chef / "knife.rb").write_text(
            "current_dir = File.dirname(__FILE__)\n"
            f"node_name '{server.admin_user}'\n"
            "client_key \"#{current_dir}/admin.pem\"\n"
            f"chef_server_url '{server.base_url}/organizations/{server.org_name}'\n"
        )
        self.cwd = tmp_path
        self.env = {"HOME": str(tmp_path / "home"), "PATH": os.environ.get("PATH", "/bin")}

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "pushd_knife", *args], cwd=self.cwd,
                                env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
