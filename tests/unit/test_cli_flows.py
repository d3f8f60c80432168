"""push-jobs command flows against a scripted stand-in for the push jobs REST API.

The stand-in is a real HTTP server on loopback that checks every request's Chef signature with
`pushd.chefauth.verify_request`; it scripts answers the real server cannot be made to give on
demand (a 1.x server's 400, a feed that drops mid-stream, a job that never ends). The behaviour
against the real server and real nodes is covered by tests/e2e/test_cli_*.py.
"""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pushd_knife import exitcodes
from pushd_knife.commands import Io
from pushd_knife.main import main

from pushd.chefauth import verify_request

ORG_PATH = "/organizations/acme"
JOB_ID = "26e98ba162fa7ba6fb2793125553c7ae"


class StandIn:
    """Routes: {(method, path): handler(request) -> (status, headers, body | iterator)}."""

    def __init__(self, public_pem: bytes) -> None:
        self.public_pem = public_pem
        self.routes: dict[tuple[str, str], Callable[[Any], Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self.auth_failures: list[str] = []

    def route(self, method: str, path: str, handler: Callable[[Any], Any]) -> None:
        self.routes[(method, ORG_PATH + path)] = handler


def make_handler(stand_in: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path, _, query = self.path.partition("?")
            try:
                verify_request(method, path, dict(self.headers.items()), body,
                               lambda user: [stand_in.public_pem] if user == "alice" else None)
            except Exception as exc:  # recorded; the test asserts there were none
                stand_in.auth_failures.append(f"{method} {path}: {exc}")
            request = {"method": method, "path": path, "query": query, "body": body,
                       "headers": dict(self.headers.items())}
            stand_in.requests.append(request)
            handler = stand_in.routes.get((method, path))
            if handler is None:
                status, headers, payload = 404, {}, {"error": f"no route {path}"}
            else:
                status, headers, payload = handler(request)
            if isinstance(payload, Iterator):
                self.send_response(status)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    for chunk in payload:
                        self.wfile.write(chunk.encode())
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True
                return
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

    return Handler


@pytest.fixture(scope="module")
def key_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("keys") / "alice.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return path, public


@pytest.fixture
def api(key_pair: tuple[Path, bytes]) -> Iterator[tuple[StandIn, list[str]]]:
    key_path, public = key_pair
    stand_in = StandIn(public)
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(stand_in))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}{ORG_PATH}"
    flags = ["--server-url", url, "-u", "alice", "-k", str(key_path)]
    try:
        yield stand_in, flags
    finally:
        server.shutdown()
        server.server_close()
    assert stand_in.auth_failures == []


class Captured:
    def __init__(self) -> None:
        self.out_bytes = io.BytesIO()
        self.stdout = io.TextIOWrapper(self.out_bytes, encoding="utf-8", write_through=True)
        self.stderr = io.StringIO()

    @property
    def out(self) -> str:
        return self.out_bytes.getvalue().decode()

    @property
    def err(self) -> str:
        return self.stderr.getvalue()


def run(argv: list[str], tmp_path: Path) -> tuple[int, Captured]:
    captured = Captured()
    code = main(argv, Io(captured.stdout, captured.stderr), environ={"HOME": str(tmp_path)})
    return code, captured


def job_doc(status: str, **nodes: list[str]) -> dict[str, Any]:
    return {"id": JOB_ID, "command": "echo foobar", "status": status, "run_timeout": 3600,
            "created_at": "Tue, 24 Nov 2026 04:00:00 GMT",
            "updated_at": "Tue, 24 Nov 2026 04:00:01 GMT", "capture_output": True,
            "nodes": nodes}


def sse(name: str, event_id: int, **data: Any) -> str:
    payload = {"timestamp": "2026-11-24 04:00:00.000000Z", **data}
    return f"event: {name}\nid: {event_id}\ndata: {json.dumps(payload)}\n\n"


def created(request: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    return 201, {}, {"uri": f"http://127.0.0.1{ORG_PATH}/pushy/jobs/{JOB_ID}"}


def script_job(stand_in: StandIn, docs: list[dict[str, Any]]) -> None:
    """GET job answers the docs in order, then keeps answering the last one."""
    remaining = list(docs)

    def get(request: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        return 200, {}, remaining.pop(0) if len(remaining) > 1 else remaining[0]

    stand_in.route("GET", f"/pushy/jobs/{JOB_ID}", get)


def progress_states(lines: list[str]) -> list[str]:
    """The knife progress lines (`..Running ...`) without their dots, and without a first
    `Voting.`: how many ticks fall before the first answer depends on the machine's load,
    not on the CLI, so neither the dot count nor that early state is asserted."""
    states = [re.sub(r"^\.+", "", line) for line in lines[1:] if re.match(r"\.+[A-Z]", line)]
    return states[1:] if states[:1] == ["Voting."] else states


def test_start_follows_feed_and_prints_knife_output(api: Any, tmp_path: Path) -> None:
    stand_in, flags = api
    stand_in.route("POST", "/pushy/jobs", created)
    final = job_doc("complete", succeeded=["node1"])
    script_job(stand_in, [job_doc("voting", new=["node1"]), final])
    feed = [sse("start", 1, command="echo foobar", node_count=1, quorum=1),
            sse("quorum_vote", 2, node="node1", status="success"),
            sse("quorum_succeeded", 3), sse("run_start", 4, node="node1"),
            sse("run_complete", 5, node="node1", status="success"),
            sse("job_complete", 6, status="complete")]
    stand_in.route("GET", f"/pushy/job_status_feed/{JOB_ID}", lambda r: (200, {}, iter(feed)))

    code, out = run(["job", "start", "--capture", "echo foobar", "node1", *flags], tmp_path)

    assert code == exitcodes.OK, out.err
    lines = out.out.splitlines()
    assert lines[0] == f"Started.  Job ID: {JOB_ID}"
    assert progress_states(lines) == ["Complete."]
    assert "status:         complete" in out.out
    assert out.out.endswith("NODE   STATUS\nnode1  succeeded\n")
    post = next(r for r in stand_in.requests if r["method"] == "POST")
    assert json.loads(post["body"]) == {"command": "echo foobar", "nodes": ["node1"],
                                        "quorum": 1, "capture_output": True, "env": {}}
    feed_request = next(r for r in stand_in.requests if "job_status_feed" in r["path"])
    assert feed_request["headers"]["Accept"] == "text/event-stream"
    assert "X-Ops-Authorization-1" in feed_request["headers"]


def test_start_polls_when_server_has_no_feed(api: Any, tmp_path: Path) -> None:
    stand_in, flags = api
    stand_in.route("POST", "/pushy/jobs", created)
    script_job(stand_in, [
        job_doc("voting", new=["a", "b"]),
        job_doc("running", running=["a", "b"]),
        job_doc("running", running=["a", "b"]),
        job_doc("complete", succeeded=["a"], failed=["b"]),
    ])
    # no feed route: the stand-in answers 404, as a server without feeds does

    code, out = run(["job", "start", "cmd", "a", "b", "--poll-interval", "0.05", *flags],
                    tmp_path)

    assert code == exitcodes.NODES_FAILED, out.err
    lines = out.out.splitlines()
    assert lines[0] == f"Started.  Job ID: {JOB_ID}"
    assert progress_states(lines) == ["Running (2/2 in progress) ...", "Complete."]
    assert out.out.endswith("NODE  STATUS\na     succeeded\nb     failed\n")


def test_feed_drop_reconnects_with_last_event_id(api: Any, tmp_path: Path) -> None:
    stand_in, flags = api
    stand_in.route("POST", "/pushy/jobs", created)
    script_job(stand_in, [job_doc("voting", new=["n1"]), job_doc("quorum_failed", nacked=["n1"])])
    streams = [
        [sse("start", 7, command="cmd"), "event: quorum_vote\nid: 8\ndata: {\"node\""],  # cut
        [sse("quorum_vote", 8, node="n1", status="failure"),
         sse("job_complete", 9, status="quorum_failed")],
    ]
    stand_in.route("GET", f"/pushy/job_status_feed/{JOB_ID}",
                   lambda r: (200, {}, iter(streams.pop(0))))

    code, out = run(["job", "start", "cmd", "n1", "--json", *flags], tmp_path)

    assert code == exitcodes.QUORUM_FAILED, out.err
    feeds = [r for r in stand_in.requests if "job_status_feed" in r["path"]]
    assert len(feeds) == 2
    assert "Last-Event-ID" not in feeds[0]["headers"]
    assert feeds[1]["headers"]["Last-Event-ID"] == "7"
    # --json: the final document on stdout, progress on stderr
    assert json.loads(out.out)["status"] == "quorum_failed"
    assert out.err.startswith(f"Started.  Job ID: {JOB_ID}\n.Quorum_failed.")


def test_v1_fallback_only_for_a_1x_server(api: Any, tmp_path: Path) -> None:
    stand_in, flags = api
    posts: list[dict[str, Any]] = []

    def post(request: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        body = json.loads(request["body"])
        posts.append(body)
        if "capture_output" in body:
            return 400, {}, {"error": "invalid key supplied"}
        return created(request)

    stand_in.route("POST", "/pushy/jobs", post)
    code, out = run(["job", "start", "--capture", "cmd", "n1", *flags], tmp_path)
    assert code == exitcodes.ERROR
    assert out.err == ("ERROR: the server refused the job: invalid key supplied (a Push Jobs 1.x"
                       " server?); --capture need Push Jobs 2.x\n")

    posts.clear()
    code, out = run(["job", "start", "--nowait", "--timeout", "30", "cmd", "n1", *flags],
                    tmp_path)
    assert code == exitcodes.OK
    assert out.err == "WARNING: Falling back to Push Jobs v1 mode.\n"
    assert out.out == f"Started.  Job ID: {JOB_ID}\n"
    assert posts[1] == {"command": "cmd", "nodes": ["n1"], "quorum": 1, "run_timeout": 30}


def test_validation_error_is_shown_as_is_without_fallback(api: Any, tmp_path: Path) -> None:
    stand_in, flags = api
    message = "invalid file contents (expected 'base64:...' or 'raw:...')"
    stand_in.route("POST", "/pushy/jobs", lambda r: (400, {}, {"error": message}))
    code, out = run(["job", "start", "cmd", "n1", *flags], tmp_path)
    assert code == exitcodes.ERROR
    assert out.err == f"ERROR: the server refused the job: {message}\n"
    assert len([r for r in stand_in.requests if r["method"] == "POST"]) == 1


def test_wait_timeout_leaves_the_job_running(api: Any, tmp_path: Path) -> None:
    stand_in, flags = api
    stand_in.route("POST", "/pushy/jobs", created)
    script_job(stand_in, [job_doc("running", running=["n1"])])
    code, out = run(["job", "start", "sleep", "n1", "--no-feed", "--poll-interval", "0.05",
                     "--wait-timeout", "0.3", *flags], tmp_path)
    assert code == exitcodes.WAIT_TIMEOUT
    assert out.err == (f"ERROR: stopped waiting after 0.3s; job {JOB_ID} is still running on"
                       " the server\n")


def test_output_is_written_raw_and_missing_output_is_explained(api: Any, tmp_path: Path) -> None:
    stand_in, flags = api
    raw = "foobar\n\u00e9\n".encode()
    stand_in.route("GET", f"/pushy/jobs/{JOB_ID}/output/node1/stdout", lambda r: (200, {}, raw))
    code, out = run(["job", "output", "--channel", "stdout", JOB_ID, "node1", *flags], tmp_path)
    assert code == exitcodes.OK
    assert out.out_bytes.getvalue() == raw
    request = stand_in.requests[-1]
    assert request["headers"]["Accept"] == "application/octet-stream"
    # The server only says "not found": the CLI reads the job to say why.
    stand_in.route("GET", f"/pushy/jobs/{JOB_ID}",
                   lambda r: (200, {}, job_doc("complete", succeeded=["node1", "node2"])))
    code, out = run(["job", "output", JOB_ID, "node2", "--channel", "stderr", *flags], tmp_path)
    assert (code, out.err) == (exitcodes.ERROR, f"ERROR: no stderr for node node2 in job {JOB_ID}:"
                                                " the node sent none\n")
    code, out = run(["job", "output", JOB_ID, "node9", *flags], tmp_path)
    assert (code, out.err) == (exitcodes.ERROR, f"ERROR: node node9 is not part of job {JOB_ID}\n")
    uncaptured = {**job_doc("complete", succeeded=["node2"]), "capture_output": False}
    stand_in.route("GET", f"/pushy/jobs/{JOB_ID}", lambda r: (200, {}, uncaptured))
    code, out = run(["job", "output", JOB_ID, "node2", *flags], tmp_path)
    assert out.err == (f"ERROR: no stdout for node node2 in job {JOB_ID}: the job was started"
                       " without --capture\n")
    other = "0" * 32
    code, out = run(["job", "output", other, "node2", *flags], tmp_path)
    assert (code, out.err) == (exitcodes.ERROR, f"ERROR: job {other} not found\n")


def test_node_status_lines_and_list_paging(api: Any, tmp_path: Path) -> None:
    stand_in, flags = api
    stand_in.route("GET", "/pushy/node_states", lambda r: (200, {}, [
        {"node_name": "n1", "availability": "available"},
        {"node_name": "n2", "availability": "unavailable"}]))
    stand_in.route("GET", "/pushy/node_states/n3", lambda r: (200, {}, {
        "node_name": "n3", "status": "offline", "availability": "unavailable"}))
    code, out = run(["node", "status", *flags], tmp_path)
    assert (code, out.out) == (0, "n1\tavailable\nn2\tunavailable\n")
    code, out = run(["node", "status", "n3", *flags], tmp_path)
    assert (code, out.out) == (0, "n3\tunavailable\n")

    pages = {"": ([{"id": "j2", "status": "running"}], {"X-Next-Cursor": "c1"}),
             "cursor=c1": ([{"id": "j1", "status": "complete"}], {})}
    stand_in.route("GET", "/pushy/jobs",
                   lambda r: (200, pages[r["query"]][1], pages[r["query"]][0]))
    code, out = run(["job", "list", *flags, "--json"], tmp_path)
    assert code == 0
    assert [job["id"] for job in json.loads(out.out)] == ["j2", "j1"]


def test_abort_reports_status_and_conflict(api: Any, tmp_path: Path) -> None:
    stand_in, flags = api
    stand_in.route("POST", f"/pushy/jobs/{JOB_ID}/abort",
                   lambda r: (200, {}, job_doc("aborted", aborted=["n1"])))
    code, out = run(["job", "abort", JOB_ID, *flags], tmp_path)
    assert (code, out.out) == (0, f"Abort requested for job {JOB_ID} (status: aborted).\n")
    stand_in.route("POST", f"/pushy/jobs/{JOB_ID}/abort",
                   lambda r: (409, {}, {"error": f"job '{JOB_ID}' has already finished"}))
    code, out = run(["job", "abort", JOB_ID, *flags], tmp_path)
    assert code == exitcodes.ERROR
    assert out.err == f"ERROR: cannot abort job {JOB_ID}: job '{JOB_ID}' has already finished\n"


def test_usage_errors(api: Any, tmp_path: Path) -> None:
    _, flags = api
    code, out = run(["job", "start", *flags], tmp_path)
    assert code == exitcodes.USAGE
    assert out.err.startswith("ERROR: No job specified.\nusage: push-jobs job start")
    code, out = run(["job", "start", "cmd", *flags], tmp_path)
    assert code == exitcodes.ERROR
    assert out.err == ("ERROR: No nodes to run job on. Specify nodes as arguments or use -s to"
                       " specify a search query.\n")
    code, out = run(["job", "start", "cmd", "n1", "--with-env", "{bad", *flags], tmp_path)
    assert code == exitcodes.USAGE
    assert out.err.startswith("ERROR: --with-env is not valid JSON")
    code, out = run(["job", "start", "cmd", "n1", "-q", "1.5", *flags], tmp_path)
    assert (code, out.err) == (exitcodes.USAGE,
                               "ERROR: Invalid Format please enter integer or percent\n")
    code, out = run(["job", "output", JOB_ID, "n1", "--channel", "both", *flags], tmp_path)
    assert (code, out.err) == (exitcodes.USAGE,
                               "ERROR: Invalid Format please enter stdout or stderr\n")


def test_ctrl_c_says_the_job_continues(api: Any, tmp_path: Path) -> None:
    stand_in, flags = api
    stand_in.route("POST", "/pushy/jobs", created)
    script_job(stand_in, [job_doc("running", running=["n1"])])
    proc = subprocess.Popen(
        [sys.executable, "-m", "pushd_knife", "job", "start", "sleep", "n1", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first == f"Started.  Job ID: {JOB_ID}\n"
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == exitcodes.INTERRUPTED
    assert err == (f"Interrupted. Job {JOB_ID} continues on the server: follow it with"
                   f" `push-jobs job watch {JOB_ID}`, stop it with"
                   f" `push-jobs job abort {JOB_ID}`.\n")


def test_search_pages_through_chef_search(api: Any, tmp_path: Path) -> None:
    stand_in, flags = api
    # Chef search stands in for a Chef Server (outside this machine in production).
    pages = {"0": {"total": 3, "start": 0, "rows": [{"name": "web1"}, {"name": "web2"}]},
             "2": {"total": 3, "start": 2, "rows": [{"data": {"name": "web3"}}]}}

    def search(request: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        from urllib.parse import parse_qs

        query = parse_qs(request["query"])
        assert query["q"] == ["role:web AND chef_environment:prod"]
        return 200, {}, pages[query["start"][0]]

    stand_in.route("GET", "/search/node", search)
    stand_in.route("POST", "/pushy/jobs", created)
    code, out = run(["job", "start", "--nowait", "-s", "role:web AND chef_environment:prod",
                     "-q", "50%", "chef-client", *flags], tmp_path)
    assert code == exitcodes.OK, out.err
    post = next(r for r in stand_in.requests if r["method"] == "POST")
    assert json.loads(post["body"])["nodes"] == ["web1", "web2", "web3"]
    assert json.loads(post["body"])["quorum"] == 2

    stand_in.route("GET", "/search/node", lambda r: (400, {}, {"error": ["invalid search query"]}))
    code, out = run(["node", "status", "role:", *flags], tmp_path)
    assert (code, out.err) == (exitcodes.ERROR,
                               "ERROR: search for nodes failed (400): invalid search query\n")


def test_watch_polls_and_prints_states_without_a_feed(api: Any, tmp_path: Path) -> None:
    stand_in, flags = api
    script_job(stand_in, [job_doc("running", running=["n1"]), job_doc("running", running=["n1"]),
                          job_doc("timed_out", timed_out=["n1"])])
    code, out = run(["job", "watch", JOB_ID, "--poll-interval", "0.05", *flags], tmp_path)
    assert code == exitcodes.TIMED_OUT, out.err
    lines = out.out.splitlines()
    assert lines[0].endswith("  timed_out: n1 timed_out")
    assert lines[1:] == [f"Job {JOB_ID}: timed_out", "NODE  STATUS", "n1    timed_out"]


def test_unreachable_server_and_bad_key_are_one_line(key_pair: tuple[Path, bytes],
                                                     tmp_path: Path) -> None:
    from tests.support.ports import free_port

    key_path, _ = key_pair
    url = f"http://127.0.0.1:{free_port()}/organizations/acme"
    code, out = run(["node", "status", "--server-url", url, "-u", "alice", "-k", str(key_path)],
                    tmp_path)
    assert (code, out.err) == (exitcodes.ERROR,
                               f"ERROR: cannot reach {url}: connection refused\n")
    not_a_key = tmp_path / "key.pem"
    not_a_key.write_text("-----BEGIN RSA PRIVATE KEY-----\nnot base64\n"
                         "-----END RSA PRIVATE KEY-----\n")
    code, out = run(["node", "status", "--server-url", url, "-u", "alice", "-k", str(not_a_key)],
                    tmp_path)
    assert code == exitcodes.ERROR
    assert out.err.startswith("ERROR: the client key is not a usable unencrypted PEM private key")
    assert out.err.count("\n") == 1


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.3"])
def test_signing_version_from_knife_rb(api: Any, tmp_path: Path, version: str) -> None:
    stand_in, flags = api
    url, key = flags[1], flags[5]
    chef = tmp_path / ".chef"
    chef.mkdir()
    (chef / "config.rb").write_text(
        f"chef_server_url '{url}'\nnode_name 'alice'\nclient_key '{key}'\n"
        f"authentication_protocol_version '{version}'\n")
    stand_in.route("GET", "/pushy/node_states", lambda r: (200, {}, []))
    code, out = run(["node", "status"], tmp_path)
    assert code == exitcodes.OK, out.err
    assert f"version={version}" in stand_in.requests[-1]["headers"]["X-Ops-Sign"]


def test_nowait_json_prints_id_and_uri_only(api: Any, tmp_path: Path) -> None:
    stand_in, flags = api
    stand_in.route("POST", "/pushy/jobs", created)
    code, out = run(["job", "start", "--nowait", "--json", "cmd", "n1", *flags], tmp_path)
    assert code == exitcodes.OK
    assert json.loads(out.out) == {"id": JOB_ID,
                                   "uri": f"http://127.0.0.1{ORG_PATH}/pushy/jobs/{JOB_ID}"}
    assert out.err == f"Started.  Job ID: {JOB_ID}\n"
