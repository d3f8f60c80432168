"""Jobs over the real server: validation, 413, listing with paging, abort, captured output,
cross-organization isolation, node states, the config endpoint and broker restarts."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from pushd.api import validation as v
from tests.support.server import NORMAL_USER, PushdServer, running_server

CCPK = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"


@pytest.fixture(scope="module")
def server() -> Iterator[PushdServer]:
    with running_server(nodes=("node1", "node2", "node3")) as srv:
        srv.other_org_id = srv.add_org("elsewhere")  # type: ignore[attr-defined]
        yield srv


@pytest.fixture(autouse=True)
def _fresh_peers(server: PushdServer) -> Iterator[None]:
    yield
    server.stop_peers()


def start_job(server: PushdServer, **fields: Any) -> str:
    resp = server.request("POST", "jobs", fields)
    assert resp.status == 201, resp.body
    return resp.json()["uri"].rsplit("/", 1)[1]


def wait_status(server: PushdServer, job_id: str, *statuses: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        doc = server.request("GET", f"jobs/{job_id}").json()
        if doc["status"] in statuses:
            return doc
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached {statuses}: {doc}\n{server.log_tail()}")


# -- validation ----------------------------------------------------------------------------

BASE = {"command": "true", "nodes": ["node3"]}
BAD_BODIES = [
    ({"nodes": ["n"]}, v.INVALID_COMMAND),
    ({"command": [], "nodes": ["n"]}, v.INVALID_COMMAND),
    ({"command": None, "nodes": ["n"]}, v.INVALID_COMMAND),
    ({"command": "x"}, v.NO_NODES),
    ({"command": "x", "nodes": []}, v.NO_NODES),
    ({"command": "x", "nodes": "n"}, v.NO_NODES),
    ({**BASE, "quorum": "1"}, v.QUORUM_TYPE),
    ({**BASE, "quorum": -2}, v.QUORUM_RANGE),
    ({**BASE, "quorum": 0.5}, v.QUORUM_RANGE),
    ({**BASE, "run_timeout": "60"}, v.RUN_TIMEOUT_TYPE),
    ({**BASE, "run_timeout": -1}, v.RUN_TIMEOUT_RANGE),
    # The original took 0; our client then refused the commit (bad_message).
    ({**BASE, "run_timeout": 0}, v.RUN_TIMEOUT_RANGE),
    ({**BASE, "capture_output": "true"}, v.CAPTURE_TYPE),
    ({**BASE, "file": "text"}, v.FILE_PREFIX),
    ({**BASE, "file": "base64:***"}, v.FILE_BASE64),
    ({**BASE, "file": "base64:" + base64.b64encode(b"x" * 100_001).decode()},
     "invalid file size (must be <= 100000 bytes)"),
    ({**BASE, "bogus": 1}, v.INVALID_KEY),
    ({**BASE, "dir": "client"}, v.DIR_INVALID),
    ({**BASE, "dir": ".."}, v.DIR_INVALID),
    ({**BASE, "env": {"NOT-A-NAME": "x"}},
     "invalid environment value (env name 'NOT-A-NAME' is not a valid variable name)"),
    ({**BASE, "user": "u" * 33}, v.USER_INVALID),
    (b'{"command":"x","nodes":["n"],"env":{"K":"1","K":"2"}}', v.ENV_DUPLICATE),
    (b"command=x&nodes=n", v.NOT_JSON),
    (b"[1, 2]", v.NOT_OBJECT),
]


@pytest.mark.parametrize(("body", "message"), BAD_BODIES)
def test_every_validation_message(server: PushdServer, body: Any, message: str) -> None:
    before = len(server.request("GET", "jobs").json())
    resp = server.request("POST", "jobs", body)
    assert resp.status == 400
    assert resp.json() == {"error": message}
    assert len(server.request("GET", "jobs").json()) == before


@pytest.mark.parametrize("fields", [{"command": ""}, {"quorum": 999}, {"quorum": 0},
                                    {"run_timeout": 1}, {"run_timeout": 999}])
def test_values_the_original_accepts(server: PushdServer, fields: dict) -> None:
    assert server.request("POST", "jobs", {**BASE, **fields}).status == 201


@pytest.mark.parametrize(
    "fields",
    [
        {"command": "\ud800"},
        {"nodes": ["node3", "\udfff"]},
        {"dir": "/tmp/\ud800"},
        {"user": "\udc80"},
        {"file": "raw:\ud800"},
        {"env": {"A": "\ud800"}},
        {"env": {"\ud800": "x"}},
    ],
    ids=["command", "node", "dir", "user", "file", "env-value", "env-key"],
)
def test_lone_surrogates_are_400_json_in_every_field(server: PushdServer, fields: dict) -> None:
    # Before: 500 for most fields, and 201 with a job stuck in `voting` for env (issue 12).
    before = len(server.request("GET", "jobs").json())
    resp = server.request("POST", "jobs", {**BASE, **fields})
    assert resp.status == 400, resp.body
    assert resp.json() == {"error": v.text_invalid(next(iter(fields)))}
    assert len(server.request("GET", "jobs").json()) == before


def test_duplicate_nodes_run_once(server: PushdServer) -> None:
    peer = server.peer("node1")
    server.wait_available("node1")
    job_id = start_job(server, command="true", nodes=["node1", "node1", "node3", "node1"],
                       quorum=1)
    doc = wait_status(server, job_id, "complete")
    assert doc["nodes"] == {"succeeded": ["node1"], "unavailable": ["node3"]}
    assert len(peer.received("commit")) == 1 and len(peer.received("run")) == 1


def test_quorum_above_the_node_count_fails_at_once_without_a_commit(
    server: PushdServer,
) -> None:
    peer = server.peer("node1")
    server.wait_available("node1")
    org_feed = server.stream("job_status_feed")
    # The job's voting timeout (60 s) is far beyond the wait: only an immediate end passes.
    job_id = start_job(server, command="true", nodes=["node1"], quorum=2)
    feed = server.stream(f"job_status_feed/{job_id}")
    events = feed.events_until("job_complete", timeout=15.0)
    feed.close()
    try:
        while True:
            event = org_feed.next_event(timeout=15.0)
            assert event is not None, "org feed ended before the job's job_complete"
            if event.name == "job_complete" and event.data and event.data["job"] == job_id:
                break
    finally:
        org_feed.close()
    assert event.data["status"] == "quorum_failed" and "quorum 2" in event.data["reason"]
    doc = wait_status(server, job_id, "quorum_failed", timeout=5.0)
    assert [e.name for e in events] == ["start", "job_complete"]
    assert events[-1].data is not None and "quorum 2" in events[-1].data["reason"]
    assert doc["nodes"] == {"unavailable": ["node1"]}
    assert "quorum 2" in doc["node_reasons"]["node1"]
    assert peer.received("commit") == []


def test_body_over_a_million_bytes_is_413(server: PushdServer) -> None:
    body = json.dumps({"command": "x" * 1_000_100, "nodes": ["node3"]}).encode()
    resp = server.request("POST", "jobs", body)
    assert resp.status == 413
    assert resp.json() == {"error": "JSON must be no more than 1000000 bytes."}


def test_wrong_verbs_are_405_json(server: PushdServer) -> None:
    job_id = start_job(server, **BASE)
    for method, path in [("PUT", "jobs"), ("DELETE", "jobs"), ("PUT", f"jobs/{job_id}"),
                         ("POST", f"jobs/{job_id}"), ("DELETE", f"jobs/{job_id}"),
                         ("DELETE", "jobs/" + "0" * 32), ("PUT", "node_states"),
                         ("POST", "node_states/node1"), ("POST", "config/node1"),
                         ("GET", f"jobs/{job_id}/abort")]:
        resp = server.request(method, path)
        assert resp.status == 405, (method, path)
        assert "error" in resp.json()


# -- reading jobs --------------------------------------------------------------------------


def test_offline_node_quorum_fails_with_the_pedant_body(server: PushdServer) -> None:
    job_id = start_job(server, command="sleep 1", nodes=["node3"])
    doc = wait_status(server, job_id, "quorum_failed")
    created = doc.pop("created_at")
    updated = doc.pop("updated_at")
    assert doc == {"command": "sleep 1", "id": job_id, "nodes": {"unavailable": ["node3"]},
                   "run_timeout": 3600, "status": "quorum_failed"}
    assert created.endswith(" GMT") and updated.endswith(" GMT")


def test_unknown_job_is_404(server: PushdServer) -> None:
    resp = server.request("GET", "jobs/" + "0" * 32)
    assert resp.status == 404 and "error" in resp.json()


def test_list_is_paged_newest_first(server: PushdServer) -> None:
    ids = [start_job(server, command=f"page {i}", nodes=["node3"]) for i in range(5)]
    seen: list[str] = []
    query: dict[str, Any] = {"limit": 2}
    while True:
        resp = server.request("GET", "jobs", query=query)
        assert resp.status == 200
        seen += [job["id"] for job in resp.json()]
        cursor = resp.header("X-Next-Cursor")
        if cursor is None or len(seen) >= 5:
            break
        query = {"limit": 2, "cursor": cursor}
    assert seen[:5] == ids[::-1]
    assert server.request("GET", "jobs", query={"limit": "many"}).status == 400
    assert server.request("GET", "jobs", query={"cursor": "nonsense"}).status == 400


def test_list_filters_by_status(server: PushdServer) -> None:
    job_id = start_job(server, command="filter me", nodes=["node3"])
    wait_status(server, job_id, "quorum_failed")
    failed = server.request("GET", "jobs", query={"status": "quorum_failed", "limit": 1000})
    assert job_id in [job["id"] for job in failed.json()]
    assert all(job["status"] == "quorum_failed" for job in failed.json())
    assert server.request("GET", "jobs", query={"status": "sideways"}).status == 400


def test_captured_output_and_options(server: PushdServer) -> None:
    server.peer("node1")
    server.wait_available("node1")
    job_id = start_job(server, command="true", nodes=["node1"], capture_output=True,
                       env={"A": "b"}, file="raw:hello")
    doc = wait_status(server, job_id, "complete")
    assert doc["nodes"] == {"succeeded": ["node1"]}
    assert doc["capture_output"] is True and doc["env"] == {"A": "b"}
    assert doc["file_specified"] is True and "file" not in doc
    with_file = server.request("GET", f"jobs/{job_id}", query={"include_file": "true"}).json()
    assert with_file["file"] == "raw:hello"
    out = server.request("GET", f"jobs/{job_id}/output/node1/stdout",
                         headers={"Accept": "application/octet-stream"})
    assert out.status == 200 and out.body == b"node1 says hi\n"
    assert out.header("Content-Type") == "application/octet-stream"
    err = server.request("GET", f"jobs/{job_id}/output/node1/stderr",
                         headers={"Accept": "application/octet-stream"})
    assert err.status == 200 and err.body == b""
    none = server.request("GET", f"jobs/{job_id}/output/node2/stdout",
                          headers={"Accept": "application/octet-stream"})
    assert none.status == 404 and "error" in none.json()
    json_only = server.request("GET", f"jobs/{job_id}/output/node1/stdout",
                               headers={"Accept": "application/json"})
    assert json_only.status == 406


def test_cross_org_reads_are_404(server: PushdServer) -> None:
    job_id = start_job(server, command="secret", nodes=["node3"])
    wait_status(server, job_id, "quorum_failed")
    other = f"/organizations/elsewhere/pushy/jobs/{job_id}"
    assert server.request("GET", other).status == 404
    assert server.request("GET", other + "/output/node3/stdout").status == 404
    assert server.request("POST", other + "/abort").status == 404
    feed = server.stream(f"/organizations/elsewhere/pushy/job_status_feed/{job_id}")
    assert feed.status == 404
    feed.close()
    listed = server.request("GET", "/organizations/elsewhere/pushy/jobs").json()
    assert job_id not in [job["id"] for job in listed]


def test_voting_timeout_is_stored_and_quorum_fails_a_silent_node(server: PushdServer) -> None:
    # node1 is online and available but never answers `commit`; the server-wide voting_timeout
    # is the default 60 s, so only the job's own 2 s can end the vote within the wait below.
    peer = server.peer("node1")
    server.wait_available("node1")
    peer.answer_commit = None
    job_id = start_job(server, command="true", nodes=["node1"], voting_timeout=2)
    with server._store() as store:
        stored = store.get_job_summary(server.org_id, job_id)
    assert stored is not None and stored.options.voting_timeout == 2
    doc = wait_status(server, job_id, "quorum_failed", timeout=30.0)
    assert doc["nodes"] == {"unavailable": ["node1"]}


# -- abort ---------------------------------------------------------------------------------


def test_abort_a_running_job(server: PushdServer) -> None:
    server.peer("node2")
    server.wait_available("node2")
    job_id = start_job(server, command="hang", nodes=["node2"])
    wait_status(server, job_id, "running")
    assert server.request("POST", f"jobs/{job_id}/abort", user=NORMAL_USER).status == 403
    resp = server.request("POST", f"jobs/{job_id}/abort")
    assert resp.status == 200 and resp.json() == {"id": job_id, "status": "aborted"}
    doc = wait_status(server, job_id, "aborted")
    assert doc["nodes"] == {"aborted": ["node2"]}
    again = server.request("POST", f"jobs/{job_id}/abort")
    assert again.status == 409 and "error" in again.json()
    assert server.request("POST", "jobs/" + "0" * 32 + "/abort").status == 404


# -- node states and config ----------------------------------------------------------------


def test_node_states(server: PushdServer) -> None:
    server.peer("node1")
    server.wait_available("node1")
    named = server.request("GET", "node_states/never-seen").json()
    assert named == {"node_name": "never-seen", "status": "offline",
                     "availability": "unavailable"}
    listed = {s["node_name"]: s for s in server.request("GET", "node_states").json()}
    assert listed["node1"]["availability"] == "available"
    assert listed["node1"]["status"] == "online"


def test_config_document(server: PushdServer) -> None:
    resp = server.node_config("node3", ccpk=CCPK)
    assert resp.status == 200
    doc = resp.json()
    heartbeat = doc["push_jobs"]["heartbeat"]
    assert heartbeat["out_addr"] == f"tcp://127.0.0.1:{server.ports['server_heartbeat_port']}"
    assert heartbeat["command_addr"] == f"tcp://127.0.0.1:{server.ports['command_port']}"
    assert heartbeat["interval"] == 0.2
    assert (heartbeat["offline_threshold"], heartbeat["online_threshold"]) == (3, 2)
    assert doc["node"] == "node3" and doc["organization"] == server.org_name
    assert doc["public_key"].startswith("-----BEGIN PUBLIC KEY-----")
    assert len(doc["curve_public_key"]) == 40
    assert doc["encoded_session_key"]["method"] == "hmac_sha256"
    assert (doc["lifetime"], doc["max_message_skew"], doc["max_body_size"]) == (3600, 300, 65536)
    assert doc["incarnation_id"] == server.request("GET", "/_status", sign=False).json()[
        "incarnation_id"]
    missing = server.node_config("node3", ccpk=None)
    assert (missing.status, missing.json()) == (400, {"error": ["Missing ccpk"]})


def test_ccpk_is_admitted_only_after_authentication(server: PushdServer) -> None:
    """A Curve key sent with an unauthenticated config request must not open the command port."""
    from pushd_bench.protocol_peer import ProtocolPeer

    public, secret = (k.decode() for k in zmq.curve_keypair())
    refused = server.request("GET", "config/node3", sign=False, query={"ccpk": public})
    assert refused.status == 400
    forged = server.request("GET", "config/node3", user="node3", query={"ccpk": public},
                            headers={"X-Ops-Content-Hash": "AAAA"})
    assert forged.status == 401
    server_key = server.node_config("node3", ccpk=CCPK).json()["curve_public_key"]
    intruder = ProtocolPeer(
        node="node3", org_name=server.org_name, org_id=server.org_id,
        command_addr=f"tcp://127.0.0.1:{server.ports['command_port']}", heartbeat_addr=None,
        session_key=b"k" * 32, server_curve_key=server_key, curve_keys=(public, secret),
        interval=0.1,
    )
    intruder.start()
    try:
        time.sleep(1.5)
        assert intruder.received() == [], "the broker talked to an unadmitted Curve key"
    finally:
        intruder.stop()
    # the same key, admitted through an authenticated request, is answered (abort on contact)
    admitted = server.peer("node3")
    admitted.wait_for("abort", timeout=5)
    admitted.stop()


def test_legacy_config_without_ccpk_when_allow_unencrypted() -> None:
    with running_server(nodes=("old1",), settings={"allow_unencrypted": True}) as srv:
        resp = srv.node_config("old1", ccpk=None)
        assert resp.status == 200, resp.body
        doc = resp.json()
        assert "curve_public_key" not in doc
        port = srv.ports["unencrypted_command_port"]
        assert doc["push_jobs"]["heartbeat"]["command_addr"] == f"tcp://127.0.0.1:{port}"
        with_key = srv.node_config("old1", ccpk=CCPK).json()
        assert len(with_key["curve_public_key"]) == 40


# -- the broker dies and comes back --------------------------------------------------------


def test_broker_is_restarted_and_api_answers_503_meanwhile(server: PushdServer) -> None:
    before = server.request("GET", "/_status", sign=False).json()
    killed = server.kill_broker()
    # accepted while the broker is down: stored as `new`, started when the broker is back
    while_down = start_job(server, command="true", nodes=["node3"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pid = server.broker_pid()
        if pid is not None and pid != killed:
            break
        resp = server.request("GET", "node_states")
        assert resp.status in (200, 503), resp.body  # 503 JSON while it is down, never a 500
        if resp.status == 503:
            assert "error" in resp.json()
        time.sleep(0.05)
    else:
        raise AssertionError("broker was not restarted\n" + server.log_tail())
    status = server.wait_for_broker()
    assert status["status"] == "it's alive"
    # a job accepted right after the restart runs (the broker picks up `new` jobs)
    job_id = start_job(server, command="true", nodes=["node3"])
    wait_status(server, job_id, "quorum_failed")
    wait_status(server, while_down, "quorum_failed")
    assert status["incarnation_id"] != before["incarnation_id"]


def chunked_post(server: PushdServer, chunks: list[bytes], signed_body: bytes) -> bytes:
    """POST .../jobs with Transfer-Encoding: chunked; the raw answer."""
    import socket

    path = server.path("jobs")
    headers = server.signed_headers("POST", path, signed_body)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
        "Content-Type: application/json\r\nConnection: close\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + "\r\n"
    )
    answer = b""
    with socket.create_connection(("127.0.0.1", server.api_port), timeout=10) as sock:
        sock.sendall(head.encode())
        try:
            for chunk in chunks:
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server may stop reading once it has refused the body
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                break
            if not data:
                break
            answer += data
    return answer


def test_chunked_body_within_the_limit_is_read(server: PushdServer) -> None:
    body = json.dumps({"command": "chunked", "nodes": ["node3"]}).encode()
    answer = chunked_post(server, [body[:10], body[10:]], body)
    assert answer.startswith(b"HTTP/1.1 201 "), answer[:300]


def test_chunked_body_over_the_limit_is_cut_off_at_413(server: PushdServer) -> None:
    """Without Content-Length the worker reads at most limit + 1 bytes, then answers 413."""
    answer = chunked_post(server, [b"x" * 65536] * 20, b"")  # 1.3 MB offered
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 413 " in status_line, answer[:300]
    assert b'"JSON must be no more than 1000000 bytes."' in rest
