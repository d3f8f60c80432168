"""The service's main process (`python -m pushd.server`): clean SIGTERM, SIGKILL leaving no
broker behind, configuration errors, the API on PostgreSQL (the other server tests run on
SQLite), an unreachable identity source."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import threading
import time
from typing import Any

import pytest
import zmq

from tests.support.server import running_server


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children") as fh:
                    kids = {int(p) for p in fh.read().split()}
            except OSError:
                continue
            todo.extend(kids - found)
            found |= kids
    return found


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().split()[2]
    except OSError:
        return True
    return state == "Z"


def test_sigterm_stops_workers_broker_and_arbiter() -> None:
    with running_server(nodes=("node1",)) as server:
        process = server._process
        assert process is not None
        children = descendants(process.pid)
        broker = server.broker_pid()
        assert broker in children
        assert len(children) >= 3, "two gevent workers and the broker"
        stream = server.stream("job_status_feed")  # an open stream must not hold up the stop
        assert stream.status == 200
        # Nor must an idle keep-alive connection (a client between two requests).
        idle = http.client.HTTPConnection("127.0.0.1", server.api_port, timeout=10)
        idle.request("GET", "/_status")
        assert idle.getresponse().read()
        process.send_signal(signal.SIGTERM)
        # The stream is ended by the stop (its connection is closed, as gunicorn closes it at
        # the end of its graceful timeout; the client reconnects with Last-Event-ID) without
        # waiting for that timeout.
        with contextlib.suppress(ConnectionError):
            while stream.next_event(timeout=20) is not None:
                pass
        code = process.wait(30)
        stream.close()
        idle.close()
        assert code == 0, server.log_tail()
        assert "graceful timeout" not in server.log_text(), server.log_tail()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(gone(pid) for pid in children):
            time.sleep(0.05)
        assert all(gone(pid) for pid in children), server.log_tail()
        assert "broker stopped" in server.log_text()


def test_a_config_fetch_while_the_broker_starts_waits_for_it() -> None:
    # A stock client whose config fetch gets a 503 waits about two minutes before it asks
    # again: while a (re)started broker is still loading, the API waits for it instead.
    with running_server(nodes=("node1",)) as server:
        old = server.kill_broker()
        deadline = time.monotonic() + 20
        new = None
        while time.monotonic() < deadline and new in (None, old):
            new = server.broker_pid()
            time.sleep(0.01)
        assert new not in (None, old), server.log_tail()
        os.kill(new, signal.SIGSTOP)  # a broker that takes long to start
        answers: list[int] = []
        ccpk = zmq.curve_keypair()[0].decode()
        fetch = threading.Thread(
            target=lambda: answers.append(server.node_config("node1", ccpk=ccpk).status)
        )
        try:
            fetch.start()
            time.sleep(4)  # longer than the API's broker timeout (3 s)
        finally:
            os.kill(new, signal.SIGCONT)
        fetch.join(30)
        assert answers == [200], server.log_tail()
        # Once it has answered, a broker that stops answering is down: 503 as before.
        os.kill(new, signal.SIGSTOP)
        try:
            resp = server.request("GET", "/_status", sign=False, timeout=30)
        finally:
            os.kill(new, signal.SIGCONT)
        assert resp.status == 503 and resp.json()["status"] == "broker unavailable"


def test_sigkill_of_the_main_process_takes_the_broker_with_it() -> None:
    # No runit and no finish script here: only the broker's parent-death signal can end it.
    # (gunicorn's workers notice the new parent themselves.) Otherwise the broker would keep
    # the ports the next main process needs.
    with running_server(nodes=("node1",)) as server:
        process = server._process
        assert process is not None
        broker = server.broker_pid()
        assert broker is not None
        children = descendants(process.pid)
        process.kill()
        process.wait(30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(gone(pid) for pid in children):
            time.sleep(0.05)
        assert gone(broker), server.log_tail()
        assert all(gone(pid) for pid in children), server.log_tail()


def test_bad_config_exits_with_one_line(tmp_path: Any) -> None:
    import subprocess
    import sys

    config = tmp_path / "bad.rb"
    config.write_text("opscode_pushy_server['heartbeat_intervall'] = 5\n")
    result = subprocess.run(
        [sys.executable, "-m", "pushd.server", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.rb:1" in lines[0] and "heartbeat_interval" in lines[0]


@pytest.mark.postgres
@pytest.mark.parametrize("db_backend", ["postgres"], indirect=True)  # SQLite: every other test
def test_jobs_and_feeds_on_postgresql(db_backend: tuple[str, dict[str, Any]]) -> None:
    with running_server(db_backend=db_backend, nodes=("node1", "node2")) as server:
        server.peer("node1")
        deadline = time.monotonic() + 10
        while server.request("GET", "node_states/node1").json()["availability"] != "available":
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.1)
        resp = server.request("POST", "jobs", {"command": "true", "nodes": ["node1", "node2"],
                                               "quorum": 1, "capture_output": True})
        assert resp.status == 201
        job_id = resp.json()["uri"].rsplit("/", 1)[1]
        events = server.stream(f"job_status_feed/{job_id}").rest(timeout=30)
        assert events[-2].name == "job_complete" and events[-2].data["status"] == "complete"
        summary = events[-1].data
        assert summary["nodes"] == {"succeeded": ["node1"], "unavailable": ["node2"]}
        out = server.request("GET", f"jobs/{job_id}/output/node1/stdout",
                             headers={"Accept": "application/octet-stream"})
        assert out.body == b"node1 says hi\n"
        listed = server.request("GET", "jobs", query={"limit": 1})
        assert [j["id"] for j in listed.json()] == [job_id]


def test_unreachable_chef_server_answers_502(tmp_path: Any) -> None:
    from pushd.keys import generate_client_keypair
    from tests.support.ports import free_port

    key_path = tmp_path / "pivotal.pem"
    key_path.write_text(generate_client_keypair()[0])
    settings = {
        "principal_source": "chef_server",
        "chef_server_url": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "chef_server_superuser_name": "pivotal",
        "chef_server_superuser_key": str(key_path),
    }
    with running_server(nodes=("node1",), settings=settings) as server:
        resp = server.request("GET", "jobs")
        assert resp.status == 502, resp.body
        assert resp.json() == {"error": ["identity service unavailable"]}


def test_client_recreated_at_once_gets_a_new_session_key(tmp_path: Any) -> None:
    # `client delete` tells the running broker, which answers config fetches from memory: a
    # client deleted and created again under the same name gets a fresh session key at once,
    # not the deleted one (which the broker's next key reload would cut off).
    import subprocess
    import sys

    import zmq
    from cryptography.hazmat.primitives import serialization

    from pushd.protocol.config import decrypt_session_key
    from tests.support.server import load_private_key_cached

    with running_server(nodes=("node1",), settings={"principal_cache_ttl": 0}) as server:
        private = load_private_key_cached(server.node_key_paths["node1"])

        def session_key() -> bytes:
            resp = server.node_config("node1", ccpk=zmq.curve_keypair()[0].decode())
            assert resp.status == 200, resp.body
            return decrypt_session_key(private, resp.json()["encoded_session_key"]["key"])

        def ctl(*args: str) -> None:
            done = subprocess.run(
                [sys.executable, "-m", "pushd_ctl", "--config", str(server.config_path), *args],
                capture_output=True, text=True, timeout=60,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            assert "warning" not in done.stderr

        first = session_key()
        assert session_key() == first
        public = tmp_path / "node1.pub"
        public.write_bytes(private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        ctl("client-delete", "node1", "--org", server.org_name)
        ctl("client-create", "node1", "--org", server.org_name, "--public-key", str(public))
        assert session_key() != first
