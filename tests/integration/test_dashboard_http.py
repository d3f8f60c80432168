"""The dashboard over plain HTTP (no browser), against a real server with stock-protocol peers:
one-time login URLs, the session cookie, the security headers, and refusals."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from pushd.api.dashboard.sessions import hash_token
from tests.support.server import NORMAL_USER, PushdServer, running_server

TTL = 600


@pytest.fixture(scope="module")
def server() -> Iterator[PushdServer]:
    with running_server(nodes=("node1", "node2"),
                        settings={"dashboard_session_ttl": TTL}) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh_peers(server: PushdServer) -> Iterator[None]:
    yield
    server.stop_peers()


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def get(server: PushdServer, path: str, cookie: str | None = None, *,
        method: str = "GET", body: bytes | None = None,
        headers: dict[str, str] | None = None) -> Reply:
    all_headers = dict(headers or {})
    if cookie:
        all_headers["Cookie"] = cookie
    if body is not None:
        all_headers["Content-Type"] = "application/x-www-form-urlencoded"
    conn = http.client.HTTPConnection("127.0.0.1", server.api_port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=all_headers)
        resp = conn.getresponse()
        return Reply(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def login_url(server: PushdServer, user: str | None = None) -> str:
    resp = server.request("POST", "dashboard/login", user=user)
    assert resp.status == 201, resp.body
    doc = resp.json()
    assert doc["expires_in"] == 60
    return doc["url"]


def follow(server: PushdServer, url: str, **headers: str) -> Reply:
    parts = urlsplit(url)
    return get(server, f"{parts.path}?{parts.query}", headers=headers)


def login(server: PushdServer, user: str | None = None) -> str:
    reply = follow(server, login_url(server, user))
    assert reply.status == 303, reply.body
    return reply.headers["Set-Cookie"].split(";")[0]


def csrf_of(page: str) -> str:
    marker = 'name="csrf_token" value="'
    start = page.index(marker) + len(marker)
    return page[start:page.index('"', start)]


def start_job(server: PushdServer, **fields: Any) -> str:
    resp = server.request("POST", "jobs", fields)
    assert resp.status == 201, resp.body
    return resp.json()["uri"].rsplit("/", 1)[1]


def job_status(server: PushdServer, job_id: str) -> str:
    return server.request("GET", f"jobs/{job_id}").json()["status"]


def wait_status(server: PushdServer, job_id: str, wanted: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if job_status(server, job_id) == wanted:
            return
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} is {job_status(server, job_id)}, not {wanted}")


# -- login ------------------------------------------------------------------------------------

def test_login_url_works_once_and_sets_a_strict_http_only_cookie(server: PushdServer) -> None:
    url = login_url(server)
    assert url.startswith(f"{server.base_url}/dashboard/login?token=")
    first = follow(server, url)
    assert first.status == 303
    assert first.headers["Location"] == "/dashboard/"
    cookie = first.headers["Set-Cookie"]
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")}
    assert "httponly" in attributes
    assert attributes["samesite"].lower() == "samesite=strict"
    assert attributes["path"] == "Path=/dashboard"
    assert attributes["max-age"] == f"Max-Age={TTL}"
    assert "secure" not in attributes  # plain http here; https below

    second = follow(server, url)
    assert second.status == 401
    assert "Set-Cookie" not in second.headers
    assert "already used" in second.text

    page = get(server, "/dashboard/", cookie.split(";")[0])
    assert page.status == 200
    assert "pivotal-admin @ pushdorg (read and write)" in page.text


def test_cookie_is_secure_behind_https(server: PushdServer) -> None:
    reply = follow(server, login_url(server), **{"X-Forwarded-Proto": "https"})
    assert reply.status == 303
    assert "Secure" in [part.strip() for part in reply.headers["Set-Cookie"].split(";")]


def test_login_url_expires_after_60_seconds(server: PushdServer) -> None:
    url = login_url(server)
    token = urlsplit(url).query.split("=", 1)[1]
    # 61 seconds later, as far as the database can tell.
    from pushd.store.models import DashboardLogin

    with server._store() as store:
        row = DashboardLogin.get(DashboardLogin.token_hash == hash_token(token))
        assert timedelta(seconds=55) < row.expires_at - store.utcnow() <= timedelta(seconds=60)
        DashboardLogin.update(expires_at=store.utcnow() - timedelta(seconds=1)).execute()
    reply = follow(server, url)
    assert reply.status == 401
    assert "Set-Cookie" not in reply.headers


def test_session_ends_when_it_expires(server: PushdServer) -> None:
    cookie = login(server)
    assert get(server, "/dashboard/nodes", cookie).status == 200
    from pushd.store.models import DashboardSession

    value = cookie.split("=", 1)[1]
    with server._store() as store:
        DashboardSession.update(expires_at=store.utcnow() - timedelta(seconds=1)).where(
            DashboardSession.token_hash == hash_token(value)
        ).execute()
    reply = get(server, "/dashboard/nodes", cookie)
    assert reply.status == 401
    assert "session has ended" in reply.text


def test_no_way_in_without_a_login_url(server: PushdServer) -> None:
    for path in ("/dashboard/", "/dashboard/nodes", "/dashboard/jobs/" + "0" * 32):
        for cookie in (None, "pushd_dashboard=forged", "pushd_dashboard="):
            reply = get(server, path, cookie)
            assert reply.status == 401, (path, cookie)
            assert "push-jobs dashboard" in reply.text
            assert reply.headers["Content-Security-Policy"].startswith("default-src 'none'")
    for path in ("/dashboard/feed", "/dashboard/api/jobs/" + "0" * 32):
        reply = get(server, path, headers={"Accept": "text/event-stream"})
        assert reply.status == 401
        assert reply.headers["Content-Type"] == "application/json"
    assert get(server, "/dashboard/login").status == 401
    assert get(server, "/dashboard/login?token=" + "x" * 43).status == 401


def test_login_endpoint_is_signed_and_for_users_only(server: PushdServer) -> None:
    unsigned = server.request("POST", "dashboard/login", sign=False)
    assert unsigned.status == 400  # the original's answer to missing X-Ops headers
    assert "X-Ops-Sign" in unsigned.json()["error"][0]
    client = server.request("POST", "dashboard/login", user="node1")
    assert client.status == 403
    assert "users" in client.json()["error"][0]


# -- headers and escaping ---------------------------------------------------------------------

def test_every_page_sends_a_csp_without_inline_script(server: PushdServer) -> None:
    cookie = login(server)
    job_id = start_job(server, command="<script>alert(1)</script>", nodes=["node1"])
    wait_status(server, job_id, "quorum_failed")
    for path in ("/dashboard/", "/dashboard/?status=quorum_failed", "/dashboard/nodes",
                 f"/dashboard/jobs/{job_id}", "/dashboard/jobs/nosuchjob"):
        reply = get(server, path, cookie)
        assert reply.status in (200, 400), path
        csp = reply.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "default-src 'none'" in csp
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        assert reply.headers["Referrer-Policy"] == "no-referrer"
        # The only script is the static file: no inline <script> element, no on* handlers.
        assert reply.text.count("<script") == 1
        assert '<script src="/dashboard/static/dashboard.js" defer></script>' in reply.text
        assert " onclick=" not in reply.text
    listing = get(server, "/dashboard/", cookie).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listing
    assert "<script>alert(1)</script>" not in listing
    script = get(server, "/dashboard/static/dashboard.js")
    assert script.status == 200
    assert script.headers["Content-Type"].startswith("text/javascript")
    assert "innerHTML" not in script.text and "insertAdjacentHTML" not in script.text


def test_job_page_escapes_env_and_node_values(server: PushdServer) -> None:
    cookie = login(server)
    server.peer("node1")
    server.wait_available("node1")
    job_id = start_job(server, command="true", nodes=["node1"], capture_output=True,
                       env={"X": "<b>bold</b>\"'"})
    wait_status(server, job_id, "complete")
    page = get(server, f"/dashboard/jobs/{job_id}", cookie).text
    assert "<b>bold</b>" not in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "node1 says hi" in page
    data = get(server, f"/dashboard/api/jobs/{job_id}", cookie)
    assert data.status == 200
    assert data.headers["Content-Type"] == "application/json"
    doc = data.body.decode()
    assert '"succeeded": 1' in doc and "node1 says hi" in doc


# -- abort and CSRF ---------------------------------------------------------------------------

def test_abort_needs_the_csrf_token_and_write_rights(server: PushdServer) -> None:
    cookie = login(server)
    server.peer("node2")
    server.wait_available("node2")
    job_id = start_job(server, command="hang", nodes=["node2"])
    wait_status(server, job_id, "running")
    page = get(server, f"/dashboard/jobs/{job_id}", cookie).text
    assert 'id="abort-button"' in page
    token = csrf_of(page)
    path = f"/dashboard/jobs/{job_id}/abort"

    for body in (b"", urlencode({"csrf_token": "wrong"}).encode(),
                 urlencode({"csrf_token": token[:-1]}).encode()):
        refused = get(server, path, cookie, method="POST", body=body)
        assert refused.status == 403, body
        assert "CSRF" in refused.text
    # Without the session cookie the right token is no use either.
    assert get(server, path, None, method="POST",
               body=urlencode({"csrf_token": token}).encode()).status == 401
    # A read-only user sees no button and cannot abort with its own valid token.
    reader = login(server, NORMAL_USER)
    reader_page = get(server, f"/dashboard/jobs/{job_id}", reader).text
    assert "normal @ pushdorg (read only)" in reader_page
    assert "abort-button" not in reader_page
    forbidden = get(server, path, reader, method="POST",
                    body=urlencode({"csrf_token": csrf_of(reader_page)}).encode())
    assert forbidden.status == 403
    assert job_status(server, job_id) == "running"

    done = get(server, path, cookie, method="POST", body=urlencode({"csrf_token": token}).encode())
    assert done.status == 303
    assert done.headers["Location"] == f"/dashboard/jobs/{job_id}"
    wait_status(server, job_id, "aborted")


def test_dashboard_feeds_stream_with_the_cookie(server: PushdServer) -> None:
    cookie = login(server)
    conn = http.client.HTTPConnection("127.0.0.1", server.api_port, timeout=10)
    try:
        conn.request("GET", "/dashboard/feed",
                     headers={"Cookie": cookie, "Accept": "text/event-stream"})
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert resp.readline() == b":keepalive\n"
        job_id = start_job(server, command="true", nodes=["node1"])
        seen = b""
        deadline = time.monotonic() + 20
        while job_id.encode() not in seen and time.monotonic() < deadline:
            seen += resp.readline()
        assert b"event: start" in seen and job_id.encode() in seen
    finally:
        conn.close()


def test_logout_ends_the_session(server: PushdServer) -> None:
    cookie = login(server)
    page = get(server, "/dashboard/", cookie).text
    assert get(server, "/dashboard/logout", cookie, method="POST", body=b"").status == 403
    out = get(server, "/dashboard/logout", cookie, method="POST",
              body=urlencode({"csrf_token": csrf_of(page)}).encode())
    assert out.status == 200
    assert get(server, "/dashboard/", cookie).status == 401


# -- push-jobs dashboard ----------------------------------------------------------------------

FAKE_BROWSER = """import sys
with open(sys.argv[1], "w") as out:
    out.write(sys.argv[2])
"""


def test_cli_opens_the_login_url_in_the_browser(server: PushdServer, tmp_path: Path) -> None:
    chef = tmp_path / ".chef"
    chef.mkdir()
    (chef / "knife.rb").write_text(
        f"node_name '{NORMAL_USER}'\n"
        f"client_key '{server.users[NORMAL_USER]}'\n"
        f"chef_server_url '{server.base_url}/organizations/{server.org_name}'\n"
    )
    # $BROWSER is how Python's webbrowser module (and so the CLI) picks the browser to run.
    browser = tmp_path / "browser.py"
    browser.write_text(FAKE_BROWSER)
    opened = tmp_path / "opened-url"
    env = {"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "BROWSER": f"{sys.executable} {browser} {opened} %s"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pushd_knife", "dashboard", *args],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)

    result = cli()
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # the link went to the browser, not the terminal
    assert "Opened the dashboard" in result.stderr
    cookie = follow(server, opened.read_text()).headers["Set-Cookie"].split(";")[0]
    assert "normal @ pushdorg (read only)" in get(server, "/dashboard/", cookie).text

    printed = cli("--print-url")
    assert printed.returncode == 0
    assert printed.stdout.startswith(f"{server.base_url}/dashboard/login?token=")
    as_json = json.loads(cli("--json").stdout)
    assert as_json["expires_in"] == 60

    (chef / "knife.rb").write_text(
        (chef / "knife.rb").read_text().replace(str(server.base_url), "http://127.0.0.1:1")
    )
    down = cli("--print-url")
    assert down.returncode != 0
    assert down.stderr.startswith("ERROR: ") and down.stderr.count("\n") == 1
