"""The smoke test behind ``push-jobs-server-ctl test``: one job on one local node, end to end.

    SmokeTest(ctx, *, timeout=60.0, keep=False)
        run() -> bool       prints one line per step ("ok: ...", "FAIL: ...", "not yet: ...")
                            and returns True when every step passed
Steps: the API answers ``/_status``; a throwaway organization member (an admin user) and a
throwaway client are created in the local store with fresh keys in a temporary directory;
a ``push-jobs-client`` subprocess (when the pushd_client package is installed) connects as that
client with a whitelist of ``echo``; the node becomes available; a job ``echo`` starts and
completes on it; everything is removed again (unless keep). Needs principal_source 'local'.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from pushd_ctl import health, identity, layout
from pushd_ctl.context import Context

__all__ = ["SMOKE_ORG", "SmokeTest"]

SMOKE_ORG = "pushd-smoke-test"
MAX_RESPONSE = 1024 * 1024


class _StepFailed(Exception):
    pass


class SmokeTest:
    def __init__(self, ctx: Context, *, timeout: float = 60.0, keep: bool = False) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.timeout = timeout
        self.keep = keep
        suffix = secrets.token_hex(4)
        self.user = f"smoke-user-{suffix}"
        self.node = f"smoke-node-{suffix}"
        self.workdir = Path(tempfile.mkdtemp(prefix="pushd-smoke-"))
        # Jobs may run as another account (the client drops root); let it reach its files.
        self.workdir.chmod(0o755)
        self.user_key = ""
        self.client: subprocess.Popen[bytes] | None = None
        self.created_org = False
        base = layout.status_url(self.settings).rsplit("/_status", 1)[0]
        self.org_url = f"{base}/organizations/{SMOKE_ORG}"

    def _ok(self, text: str) -> None:
        self.ctx.say(f"ok: {text}")

    def run(self) -> bool:
        try:
            self._check_status()
            self._create_principals()
            if importlib.util.find_spec("pushd_client") is None:
                self.ctx.say("not yet: the push-jobs-client package is not installed here; "
                             "no local node can run a job")  # fmt: skip
                return False
            self._start_client()
            self._wait_available()
            self._run_job()
            return True
        except _StepFailed as failure:
            self.ctx.say(f"FAIL: {failure}")
            return False
        finally:
            self._cleanup()

    # -- steps -----------------------------------------------------------------------------

    def _check_status(self) -> None:
        if self.settings.get("principal_source") != "local":
            raise _StepFailed("the smoke test needs principal_source 'local' (it creates "
                              "its own client in the local store)")  # fmt: skip
        status, body = health.probe_status(self.settings, timeout=5)
        if status != 200:
            raise _StepFailed(f"{layout.status_url(self.settings)} answers {status or 'nothing'}"
                              " (run 'push-jobs-server-ctl reconfigure')")  # fmt: skip
        self._ok(f"API answers /_status ({(body or {}).get('status', 'ok')})")

    def _create_principals(self) -> None:
        from pushd.keys import generate_client_keypair

        user_private, user_public = generate_client_keypair()
        node_private, node_public = generate_client_keypair()
        with identity.open_store(self.ctx, changes=True) as store:
            org = store.get_organization(SMOKE_ORG)
            if org is None:
                org = store.create_organization(SMOKE_ORG, "push-jobs-server-ctl test")
                self.created_org = True
            store.create_principal(org.id, self.user, "user", user_public, admin=True)
            store.add_group_member(org.id, "admins", "user", self.user, create_group=True)
            store.create_principal(org.id, self.node, "client", node_public)
            store.add_group_member(org.id, "clients", "client", self.node, create_group=True)
        self.user_key = user_private
        key_path = self.workdir / "client.pem"
        identity.write_private_key(str(key_path), node_private)
        self._ok(f"created user {self.user} and client {self.node} in {SMOKE_ORG}")

    def _start_client(self) -> None:
        import yaml

        config = {
            "chef_server_url": self.org_url,
            "node_name": self.node,
            "client_key": str(self.workdir / "client.pem"),
            "file_dir": str(self.workdir / "files"),
            "state_dir": str(self.workdir / "state"),
            "max_reconnect_delay": 2.0,
            "whitelist": {"echo": "echo pushd-smoke-test"},
        }
        config_path = self.workdir / "push-jobs-client.yml"
        config_path.write_text(yaml.safe_dump(config))
        log = open(self.workdir / "client.log", "wb")  # noqa: SIM115 - the child keeps it
        with log:
            self.client = subprocess.Popen(
                [sys.executable, "-m", "pushd_client.main", "-c", str(config_path)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        self._ok(f"started push-jobs-client for {self.node} (pid {self.client.pid})")

    def _wait_available(self) -> None:
        deadline = time.monotonic() + self.timeout
        seen: Any = None
        while time.monotonic() < deadline:
            if self.client is not None and self.client.poll() is not None:
                raise _StepFailed(f"push-jobs-client exited ({self.client.returncode}): "
                                  f"{self._client_log_tail()}")  # fmt: skip
            status, seen = self._request("GET", f"node_states/{self.node}")
            if status == 200 and isinstance(seen, dict) and seen.get("availability") == "available":
                self._ok(f"node {self.node} is available")
                return
            time.sleep(0.3)
        raise _StepFailed(
            f"node {self.node} not available after {self.timeout:g}s "
            f"(last state {seen}); client log: {self._client_log_tail()}"
        )

    def _run_job(self) -> None:
        status, body = self._request("POST", "jobs", {"command": "echo", "nodes": [self.node]})
        if status != 201 or not isinstance(body, dict):
            raise _StepFailed(f"POST jobs answered {status}: {body}")
        job_id = str(body.get("uri", "")).rsplit("/", 1)[-1]
        deadline = time.monotonic() + self.timeout
        job: Any = None
        while time.monotonic() < deadline:
            status, job = self._request("GET", f"jobs/{job_id}")
            if status == 200 and isinstance(job, dict) and job.get("status") in (
                "complete", "quorum_failed", "crashed", "timed_out", "aborted"
            ):
                break
            time.sleep(0.3)
        if not isinstance(job, dict) or job.get("status") != "complete":
            raise _StepFailed(f"job {job_id} did not complete: {job}")
        nodes = job.get("nodes", {})
        if nodes.get("succeeded") != [self.node]:
            raise _StepFailed(f"job {job_id} completed without success on {self.node}: {nodes}")
        self._ok(f"job {job_id} ran 'echo' on {self.node}: complete, succeeded")

    # -- helpers ---------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Any = None) -> tuple[int | None, Any]:
        from pushd.chefauth import sign_request

        url = f"{self.org_url}/pushy/{path}"
        raw = json.dumps(body).encode() if body is not None else b""
        signed_path = urllib.parse.urlparse(url).path
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        headers.update(sign_request(method, signed_path, raw, self.user, self.user_key))
        request = urllib.request.Request(url, data=raw or None, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, data = response.status, response.read(MAX_RESPONSE)
        except urllib.error.HTTPError as err:
            status, data = err.code, err.read(MAX_RESPONSE)
        except OSError as err:
            return None, str(err)
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, data[:200].decode(errors="replace")

    def _client_log_tail(self) -> str:
        from pushd_ctl.logs import last_lines

        return " | ".join(last_lines(self.workdir / "client.log", 5))

    def _cleanup(self) -> None:
        if self.client is not None and self.client.poll() is None:
            self.client.terminate()
            try:
                self.client.wait(20)
            except subprocess.TimeoutExpired:
                self.client.kill()
                self.client.wait()
        if self.keep:
            self.ctx.say(f"kept: {self.workdir} and the principals")
            return
        with contextlib.suppress(Exception), identity.open_store(self.ctx, changes=True) as store:
            org = store.get_organization(SMOKE_ORG)
            if org is not None:
                store.delete_principal(org.id, self.node, "client")
                store.delete_session_key(org.id, self.node)
                store.delete_principal(org.id, self.user, "user")
                store.remove_group_member(org.id, "admins", "user", self.user)
        shutil.rmtree(self.workdir, ignore_errors=True)

