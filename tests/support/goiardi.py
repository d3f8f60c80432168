"""A real goiardi (Chef Server 11-compatible, Debian package) for tests, on a free loopback port.

    running_goiardi(directory, *, use_auth=True) -> contextmanager yielding GoiardiServer
        Starts ``goiardi --use-auth`` in memory with its config root in `directory`, waits until
        it answers, and stops it (SIGTERM, then SIGKILL) on exit. Skips the test when the
        goiardi binary is not installed. Retries on another port if the first is taken.
    GoiardiServer
        url                      http://127.0.0.1:PORT
        admin_name, admin_key    the admin user goiardi created at start (name, PEM text)
        request(method, path, body=None, *, user=None, key=None) -> (status, json-or-None)
            a request signed with `pushd.chefauth` (default: as the admin)
        create_client(name, *, admin=False) -> private key PEM
        create_user(name, *, admin=False) -> private key PEM
        log_text() -> str        what goiardi logged (for assertion messages)

goiardi speaks the Chef 11 API: no organizations, no groups, ``/principals/NAME`` answers
``{"name", "public_key", "type"}``, and unknown paths answer 200 with an empty body.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pushd import chefauth
from tests.support.ports import free_port

STARTUP_TIMEOUT = 15.0


@dataclass
class GoiardiServer:
    url: str
    admin_name: str
    admin_key: str
    conf_root: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        user: str | None = None,
        key: str | None = None,
    ) -> tuple[int, Any]:
        data = b"" if body is None else json.dumps(body).encode()
        headers = chefauth.sign_request(
            method, path, data, user or self.admin_name, key or self.admin_key, version="1.1"
        )
        headers.update({"Accept": "application/json", "Content-Type": "application/json",
                        "X-Chef-Version": "11.0.0"})
        request = urllib.request.Request(
            self.url + path, data=data if body is not None else None, method=method,
            headers=headers,
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def create_client(self, name: str, *, admin: bool = False) -> str:
        status, document = self.request("POST", "/clients", {"name": name, "admin": admin})
        assert status == 201, (status, document)
        return document["private_key"]

    def create_user(self, name: str, *, admin: bool = False) -> str:
        status, document = self.request(
            "POST", "/users", {"name": name, "admin": admin, "password": "not-used-123"}
        )
        assert status == 201, (status, document)
        return document["private_key"]

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def _wait_until_serving(server: GoiardiServer) -> bool:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        key_file = server.conf_root / "admin.pem"
        if key_file.exists() and key_file.stat().st_size > 0:
            server.admin_key = key_file.read_text()
            try:
                status, _ = server.request("GET", "/users/admin")
            except (OSError, ValueError):
                status = 0
            if status == 200:
                return True
        time.sleep(0.1)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextlib.contextmanager
def running_goiardi(directory: Path, *, use_auth: bool = True) -> Iterator[GoiardiServer]:
    binary = shutil.which("goiardi")
    if binary is None:
        pytest.skip("goiardi is not installed")
    for attempt in range(3):
        conf_root = directory / f"goiardi-{attempt}"
        conf_root.mkdir(parents=True, exist_ok=True)
        port = free_port()
        log_path = conf_root / "goiardi.log"
        argv = [binary, "--conf-root", str(conf_root), "-I", "127.0.0.1", "-H", "127.0.0.1",
                "-P", str(port), "-g", "info"]
        if use_auth:
            argv.append("--use-auth")
        with open(log_path, "wb") as log:
            process = subprocess.Popen(argv, cwd=conf_root, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        server = GoiardiServer(
            url=f"http://127.0.0.1:{port}", admin_name="admin", admin_key="",
            conf_root=conf_root, log_path=log_path, process=process,
        )
        try:
            if _wait_until_serving(server):
                yield server
                return
        finally:
            _stop(process)
    raise RuntimeError(f"goiardi did not start; last log:\n{server.log_text()}")
