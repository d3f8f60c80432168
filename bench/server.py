"""Start a real pushd server (``python -m pushd.server``) for tests and benchmarks, and talk to it.

    with running_server(db_backend=None, settings=None, nodes=("node1", "node2"),
                        wait_for_broker=True, provision=True) as server:
        resp = server.request("GET", "jobs")               # signed as the org's admin user
        resp.status, resp.json(), resp.headers, resp.body
        server.request("POST", "jobs", {"command": "x", "nodes": ["node1"]}, user="normal")

or as a pytest fixture: ``from tests.support.server import pushd_server`` in a test module gives
a fresh server per test on SQLite (parametrize ``db_backend`` yourself to use PostgreSQL). It lives
here, in an installed package, because the benchmarks start their servers with it too.

What it does: makes a short temporary directory (ipc socket paths must stay under 108 bytes),
writes ``opscode-push-jobs-server.rb`` there with ``dir``, ``log_directory``, ``data_dir``,
``run_dir`` under it, every port on a free loopback port, ``heartbeat_interval`` 200 ms,
``keep_alive_time`` 1 s, the database of `db_backend` (``("sqlite"|"postgres", params)`` from the
``db_backend`` fixture; default SQLite in the temp dir) and any extra `settings`
(``{"voting_timeout": 2, "postgresql.enable": True, ...}``). It provisions, in the local principal
store, organization ``pushdorg`` with an admin user ``pivotal-admin``, a non-admin user
``normal``, and one client per node name, each with a fresh RSA key written under ``keys/``;
with `provision` false it provisions nothing and reuses what another server on the same
database provisioned (the same org, users and clients; this process's cached keys): a second
server of a cluster, or a second server refused on one SQLite file. It starts the server as a
subprocess with its output in ``server.log``, and waits until ``/_status`` answers 200 (or any
HTTP answer when `wait_for_broker` is false). On a failed start the exception
carries the end of the log.

    PushdServer attributes: base_url, api_port, ports (dict), dir (Path), config_path, settings,
        org_name, org_id, admin_user, admin_key_path, users {name: key path},
        node_names, node_key_paths {node: key path}, log_path
    PushdServer methods:
        request(method, path, body=None, *, user=None, headers=None, sign=True, version="1.3",
                query=None, timeout=10) -> Response   path relative to
                ``/organizations/ORG/pushy/`` unless it starts with "/"; body dict -> JSON.
        signed_headers(method, path, body=b"", *, user=None, version="1.3") -> dict
        stream(path, *, user=None, last_event_id=None, accept="text/event-stream",
               recv_buffer=None) -> SseStream (raw socket; recv_buffer makes a slow reader)
        node_config(node, *, ccpk) -> Response     the node's signed config request
        peer(node, *, start=True, interval=0.2, **kw) -> ProtocolPeer   a scripted node
            configured through the REST config endpoint like the stock client; stop_peers()
        add_user(name, *, admin=False) -> Path; add_client(name) -> Path
        add_group(name, users=(), clients=(), groups=()); remove_group(name)
        add_org(name) -> org id   (with the admin and normal users as members)
        main_pid() -> int | None (the gunicorn arbiter); broker_pid() -> int | None;
        kill_broker(); wait_for_broker(timeout=20)
        stop(graceful=False); start(); restart(); log_text(); log_tail(lines); is_running();
        set_setting(name, value)   appended to the rb file: in effect from the next start();
        cleanup()
        incarnation_file   the broker's saved incarnation (written by a clean stop)
    HeartbeatListener(server or address): a plain SUB on the server heartbeat channel, as a
        stock client's, in a thread: beats [Beat(at, sequence, incarnation_id)] across the
        server's restarts;
        silence(at) -> seconds between the last heartbeat before `at` and the first after;
        close()
    SseStream: next_event(timeout=10) -> SseEvent(name, id, data: dict, raw_data) | None
        (None = closed); events_until(name, timeout=30); rest(timeout=30) (every event until
        the server closes); comments (comment lines seen); status, headers (lowercase names);
        body() (a non-streaming answer); close().
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlencode

from pushd_bench.ports import free_ports

from pushd import chefauth

ORG_NAME = "pushdorg"
ADMIN_USER = "pivotal-admin"
NORMAL_USER = "normal"
START_TIMEOUT = 40.0
REPO_ROOT = Path(__file__).resolve().parents[1]
# `python -m` puts the working directory first on sys.path, before PYTHONPATH: every child
# started from the repository root imported that checkout's pushd, whatever arm a benchmark put
# on PYTHONPATH (found 2026-12-06: the A/B arms of earlier sittings all ran the checkout's
# code). PYTHONSAFEPATH (Python 3.11) leaves it out: the arm's pushd, else the installed one.
SAFE_PATH = {"PYTHONSAFEPATH": "1"}

_key_cache: dict[str, tuple[str, str]] = {}


# Parsing an RSA private key costs 0.05-0.1 s (cryptography checks the key) and every signed
# request needs one, so a parsed key is kept for the run. The cache is keyed on the file's
# bytes, not only its path: each test server writes the same per-name keys (_keypair) under a
# new directory, and a test that rewrites a key file still signs with the new key.
_private_key_cache: dict[bytes, Any] = {}


def load_private_key_cached(path: Path) -> Any:
    """`chefauth.load_private_key_file(path)`, parsed once per distinct file content."""
    data = path.read_bytes()
    key = _private_key_cache.get(data)
    if key is None:
        try:
            key = chefauth.load_private_key(data)
        except ValueError as exc:  # named like load_private_key_file names it
            raise ValueError(f"{path}: {exc}") from exc
        _private_key_cache[data] = key
    return key


def _keypair(name: str) -> tuple[str, str]:
    """(private PEM, public PEM); cached per name so a test run generates each key once."""
    if name not in _key_cache:
        from pushd.keys import generate_client_keypair

        _key_cache[name] = generate_client_keypair()
    return _key_cache[name]


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class SseEvent:
    name: str | None
    id: str | None
    data: dict[str, Any] | None
    raw_data: str = ""


class Beat(NamedTuple):
    at: float  # time.monotonic() of its arrival
    sequence: int
    incarnation_id: str


class HeartbeatListener:
    def __init__(self, server: PushdServer | str) -> None:
        import zmq

        address = server if isinstance(server, str) else \
            f"tcp://127.0.0.1:{server.ports['server_heartbeat_port']}"
        self._sub = zmq.Context.instance().socket(zmq.SUB)
        self._sub.linger = 0
        self._sub.setsockopt(zmq.SUBSCRIBE, b"")
        self._sub.connect(address)
        self.beats: list[Beat] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="beats", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._sub.poll(100):
                body = json.loads(self._sub.recv_multipart()[-1])
                self.beats.append(Beat(time.monotonic(), int(body["sequence"]),
                                       str(body["incarnation_id"])))

    def silence(self, at: float) -> float | None:
        before, after = self.around(at)
        return after.at - before.at if before is not None and after is not None else None

    def around(self, at: float) -> tuple[Beat | None, Beat | None]:
        """The last beat heard before `at` and the first after it."""
        last = [beat for beat in self.beats if beat.at < at]
        first = [beat for beat in self.beats if beat.at > at]
        return (last[-1] if last else None), (first[0] if first else None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)
        self._sub.close()


class SseStream:
    """A Server-Sent Events reader on a raw socket, decoding HTTP/1.1 chunked framing itself so
    every event is seen the moment it arrives (http.client buffers chunked bodies). Header
    names are lowercase."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self._sock = sock
        self._buffer = b""
        self._chunk_left = 0
        self._chunked = False
        self._eof = False
        self._text = b""
        self.comments: list[str] = []
        self.closed = False
        deadline = time.monotonic() + timeout
        head = self._read_until(b"\r\n\r\n", deadline)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                key, _, value = line.partition(":")
                self.headers[key.strip().lower()] = value.strip()
        self._chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        if not self._chunked:
            self._chunk_left = int(self.headers.get("content-length", "0") or 0)

    def _recv(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no SSE data before the deadline")
        self._sock.settimeout(remaining)
        try:
            data = self._sock.recv(65536)
        except TimeoutError:
            raise TimeoutError("no SSE data before the deadline") from None
        if not data:
            return False
        self._buffer += data
        return True

    def _read_until(self, marker: bytes, deadline: float) -> bytes:
        while marker not in self._buffer:
            if not self._recv(deadline):
                raise ConnectionError("connection closed in the middle of a response head")
        head, _, self._buffer = self._buffer.partition(marker)
        return head

    def _body_bytes(self, deadline: float) -> bool:
        """Move more body bytes into self._text; False once the body has ended."""
        if self._eof:
            return False
        if not self._chunked:
            if self._chunk_left <= 0:
                self._eof = True
                return False
            if not self._buffer and not self._recv(deadline):
                self._eof = True
                return False
            piece, self._buffer = self._buffer[: self._chunk_left], self._buffer[self._chunk_left:]
            self._chunk_left -= len(piece)
            self._text += piece
            return True
        if self._chunk_left == 0:
            size_line = self._read_until(b"\r\n", deadline)
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                self._eof = True
                return False
            self._chunk_left = size
        while not self._buffer:
            if not self._recv(deadline):
                self._eof = True
                return False
        piece = self._buffer[: self._chunk_left]
        self._buffer = self._buffer[len(piece):]
        self._chunk_left -= len(piece)
        self._text += piece
        if self._chunk_left == 0:
            self._read_until(b"\r\n", deadline)
        return True

    def _readline(self, deadline: float) -> str | None:
        while b"\n" not in self._text:
            if not self._body_bytes(deadline):
                if self._text:
                    line, self._text = self._text, b""
                    return line.decode("utf-8")
                return None
        line, _, self._text = self._text.partition(b"\n")
        return line.decode("utf-8").rstrip("\r")

    def body(self, timeout: float = 10.0) -> bytes:
        """The whole (non-streaming) body, e.g. of an error answer."""
        deadline = time.monotonic() + timeout
        while self._body_bytes(deadline):
            pass
        data, self._text = self._text, b""
        return data

    def next_event(self, timeout: float = 10.0) -> SseEvent | None:
        deadline = time.monotonic() + timeout
        name = event_id = None
        data_lines: list[str] = []
        while True:
            line = self._readline(deadline)
            if line is None:
                self.closed = True
                if name is not None or data_lines:
                    break
                return None
            if line == "":
                if name is None and not data_lines:
                    continue
                break
            if line.startswith(":"):
                self.comments.append(line)
                continue
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "event":
                name = value
            elif key == "id":
                event_id = value
            elif key == "data":
                data_lines.append(value)
        raw = "\n".join(data_lines)
        data = json.loads(raw) if raw else None
        return SseEvent(name, event_id, data, raw)

    def events_until(self, name: str, timeout: float = 30.0) -> list[SseEvent]:
        deadline = time.monotonic() + timeout
        events: list[SseEvent] = []
        while True:
            event = self.next_event(max(0.1, deadline - time.monotonic()))
            if event is None:
                raise AssertionError(f"stream closed before {name!r}; got {events}")
            events.append(event)
            if event.name == name:
                return events

    def rest(self, timeout: float = 30.0) -> list[SseEvent]:
        """Every event until the server closes the stream."""
        deadline = time.monotonic() + timeout
        events: list[SseEvent] = []
        while True:
            event = self.next_event(max(0.1, deadline - time.monotonic()))
            if event is None:
                return events
            events.append(event)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()


def _rb_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nil"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _rb_line(name: str, value: Any) -> str:
    namespace, _, key = name.rpartition(".")
    namespace = namespace or "opscode_pushy_server"
    return f"{namespace}['{key}'] = {_rb_value(value)}"


class PushdServer:
    def __init__(
        self,
        *,
        db_backend: tuple[str, dict[str, Any]] | None = None,
        settings: dict[str, Any] | None = None,
        nodes: Iterable[str] = ("node1", "node2"),
        wait_for_broker: bool = True,
        provision: bool = True,
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pushd-", dir="/tmp"))
        ports = free_ports(4)
        self.ports = {
            "api_port": ports[0],
            "server_heartbeat_port": ports[1],
            "command_port": ports[2],
            "unencrypted_command_port": ports[3],
        }
        self.api_port = ports[0]
        self.base_url = f"http://127.0.0.1:{self.api_port}"
        self.org_name = ORG_NAME
        self.admin_user = ADMIN_USER
        self.node_names = list(nodes)
        self.users: dict[str, Path] = {}
        self.node_key_paths: dict[str, Path] = {}
        self.log_path = self.dir / "server.log"
        self.config_path = self.dir / "opscode-push-jobs-server.rb"
        self._wait_for_broker = wait_for_broker
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self._peers: list[Any] = []
        self._write_config(db_backend, settings or {})
        from pushd.config import load_settings

        self.settings = load_settings(self.config_path)
        if provision:
            self._provision()
        else:
            self._reuse()

    # -- setup ----------------------------------------------------------------------------

    def _write_config(
        self, db_backend: tuple[str, dict[str, Any]] | None, extra: dict[str, Any]
    ) -> None:
        values: dict[str, Any] = {
            "dir": str(self.dir / "srv"),
            "log_directory": str(self.dir / "log"),
            "data_dir": str(self.dir / "data"),
            "run_dir": str(self.dir / "run"),
            "api_listen": "127.0.0.1",
            "server_name_advertised": "127.0.0.1",
            "zeromq_listen_address": "tcp://127.0.0.1",
            "heartbeat_interval": 200,
            "keep_alive_time": 1,
            "api_workers": 2,
            "principal_cache_ttl": 0,
            "metrics_port": 0,  # tests that scrape set a free port
            **self.ports,
        }
        if db_backend is not None and db_backend[0] == "postgres":
            params = db_backend[1]
            values.update(
                {
                    "postgresql.enable": True,
                    "postgresql.vip": params["host"],
                    "postgresql.port": int(params["port"]),
                    "postgresql.database_name": params["database"],
                    "postgresql.sql_user": params["user"],
                    "postgresql.sql_password": params.get("password") or "",
                }
            )
        values.update(extra)
        lines = ["# written by pushd_bench.server"]
        lines += [_rb_line(name, value) for name, value in values.items()]
        self.config_path.write_text("\n".join(lines) + "\n")

    def _write_key(self, name: str, private_pem: str) -> Path:
        keys = self.dir / "keys"
        keys.mkdir(exist_ok=True)
        path = keys / f"{name}.pem"
        path.write_text(private_pem)
        path.chmod(0o600)
        return path

    @contextlib.contextmanager
    def _store(self) -> Iterator[Any]:
        from pushd import store

        store.open_database(self.settings, migrate=True)
        try:
            yield store
        finally:
            store.close_database()

    def _provision(self) -> None:
        with self._store() as store:
            org = store.create_organization(ORG_NAME, "pushd test organization")
            self.org_id = org.id
            for name, admin in ((ADMIN_USER, True), (NORMAL_USER, False)):
                private, public = _keypair(name)
                store.create_principal(org.id, name, "user", public, admin=admin)
                self.users[name] = self._write_key(name, private)
                if admin:
                    store.add_group_member(org.id, "admins", "user", name, create_group=True)
            for node in self.node_names:
                private, public = _keypair(f"client:{node}")
                store.create_principal(org.id, node, "client", public)
                self.node_key_paths[node] = self._write_key(f"client-{node}", private)
                store.add_group_member(org.id, "clients", "client", node, create_group=True)
        self.admin_key_path = self.users[ADMIN_USER]

    def _reuse(self) -> None:
        """What another server on the same database provisioned: the org's id, and the key
        files of its users and clients (this process's cached keys, so the same ones)."""
        with self._store() as store:
            org = store.get_organization(ORG_NAME)
        if org is None:
            raise RuntimeError(f"provision=False, but the database has no org {ORG_NAME}")
        self.org_id = org.id
        for name in (ADMIN_USER, NORMAL_USER):
            self.users[name] = self._write_key(name, _keypair(name)[0])
        for node in self.node_names:
            private = _keypair(f"client:{node}")[0]
            self.node_key_paths[node] = self._write_key(f"client-{node}", private)
        self.admin_key_path = self.users[ADMIN_USER]

    def add_user(self, name: str, *, admin: bool = False) -> Path:
        private, public = _keypair(name)
        with self._store() as store:
            store.create_principal(self.org_id, name, "user", public, admin=admin)
            if admin:
                store.add_group_member(self.org_id, "admins", "user", name, create_group=True)
        self.users[name] = self._write_key(name, private)
        return self.users[name]

    def add_client(self, name: str) -> Path:
        private, public = _keypair(f"client:{name}")
        with self._store() as store:
            store.create_principal(self.org_id, name, "client", public)
        self.node_key_paths[name] = self._write_key(f"client-{name}", private)
        return self.node_key_paths[name]

    def add_group(
        self,
        name: str,
        users: Iterable[str] = (),
        clients: Iterable[str] = (),
        groups: Iterable[str] = (),
    ) -> None:
        with self._store() as store:
            store.create_group(self.org_id, name, exist_ok=True)
            for kind, members in (("user", users), ("client", clients), ("group", groups)):
                for member in members:
                    store.add_group_member(self.org_id, name, kind, member)

    def remove_group(self, name: str) -> None:
        with self._store() as store:
            store.delete_group(self.org_id, name)

    def add_org(self, name: str) -> str:
        """A second organization with the same admin/normal users and one client `name`-node."""
        with self._store() as store:
            org = store.create_organization(name)
            for user, admin in ((ADMIN_USER, True), (NORMAL_USER, False)):
                store.create_principal(org.id, user, "user", _keypair(user)[1], admin=admin)
                if admin:
                    store.add_group_member(org.id, "admins", "user", user, create_group=True)
            return org.id

    # -- process --------------------------------------------------------------------------

    def start(self) -> None:
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, **SAFE_PATH, "PYTHONUNBUFFERED": "1"}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "pushd.server", "--config", str(self.config_path)],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=str(REPO_ROOT),
            env=env,
            start_new_session=True,
        )
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        last = "no answer"
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(
                    f"pushd exited with {self._process.returncode} while starting\n"
                    + self.log_tail()
                )
            try:
                resp = self.request("GET", "/_status", sign=False, timeout=2)
            except OSError as err:
                last = str(err)
            else:
                if resp.status == 200 or not self._wait_for_broker:
                    return
                last = f"HTTP {resp.status} {resp.body[:200]!r}"
            time.sleep(0.1)
        raise RuntimeError(f"pushd did not come up ({last})\n" + self.log_tail())

    def wait_for_broker(self, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                resp = self.request("GET", "/_status", sign=False, timeout=2)
                if resp.status == 200:
                    return resp.json()
            time.sleep(0.1)
        raise RuntimeError("broker did not come back\n" + self.log_tail())

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, *, graceful: bool = False) -> None:
        """Stop the service: SIGINT (gunicorn's quick shutdown; the broker still gets SIGTERM
        and stops cleanly), or SIGTERM with `graceful` (workers finish their requests)."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM if graceful else signal.SIGINT)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        if process is not None:
            # Anything the service left behind (it should not) goes with its session.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        self._process = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def incarnation_file(self) -> Path:
        return self.dir / "data" / "broker" / "incarnation.json"

    def set_setting(self, name: str, value: Any) -> None:
        with self.config_path.open("a") as rb:
            rb.write(_rb_line(name, value) + "\n")

    def _children(self, pid: int) -> list[int]:
        out: list[int] = []
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as fh:
                    out.extend(int(p) for p in fh.read().split())
        return out

    def main_pid(self) -> int | None:
        return self._process.pid if self.is_running() and self._process is not None else None

    def broker_pid(self) -> int | None:
        if self._process is None:
            return None
        for child in self._children(self._process.pid):
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
                if b"pushd.broker" in cmdline:
                    return child
        return None

    def kill_broker(self) -> int:
        pid = self.broker_pid()
        if pid is None:
            raise RuntimeError("no broker process to kill\n" + self.log_tail())
        os.kill(pid, signal.SIGKILL)
        return pid

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "---- server.log (tail) ----\n" + "\n".join(self.log_text().splitlines()[-lines:])

    def wait_available(self, node: str, timeout: float = 10.0) -> None:
        """Wait until the named node state reads `available`; fail with the last state and log.

        When a peer made with peer() plays the node, first wait until the broker has answered
        that peer (`abort` for a new session, `ack` for a re-attached one): until then the
        state read may be the session of the node's previous peer, which stays `available`
        until the new peer's first message ends it, and a job started in that window sees the
        node go `down`."""
        deadline = time.monotonic() + timeout
        peer = next((p for p in reversed(self._peers)
                     if p.node == node and p.running), None)
        while peer is not None and time.monotonic() < deadline:
            if any(m.get("type") in ("abort", "ack") for m in peer.received()):
                break
            time.sleep(0.02)
        state: Any = None
        while time.monotonic() < deadline:
            state = self.request("GET", f"node_states/{node}").json()
            if state.get("availability") == "available":
                return
            time.sleep(0.1)
        raise AssertionError(f"{node} never became available: {state}\n{self.log_tail()}")

    def stop_peers(self) -> None:
        """Stop every peer made with peer() (tests sharing a server call it between tests)."""
        for peer in self._peers:
            with contextlib.suppress(Exception):
                peer.stop()
        self._peers.clear()

    def cleanup(self) -> None:
        self.stop_peers()
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- HTTP -----------------------------------------------------------------------------

    def path(self, path: str) -> str:
        return path if path.startswith("/") else f"/organizations/{self.org_name}/pushy/{path}"

    def key_path(self, user: str | None) -> Path:
        name = user or ADMIN_USER
        return self.users.get(name) or self.node_key_paths[name]

    def signed_headers(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        user: str | None = None,
        version: str = "1.3",
        timestamp: Any = None,
    ) -> dict[str, str]:
        name = user or ADMIN_USER
        key = load_private_key_cached(self.key_path(name))
        return chefauth.sign_request(
            method, self.path(path), body, name, key, version=version, timestamp=timestamp
        )

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        user: str | None = None,
        headers: dict[str, str] | None = None,
        sign: bool = True,
        version: str = "1.3",
        query: dict[str, Any] | None = None,
        timeout: float = 10.0,
    ) -> Response:
        full = self.path(path)
        if body is None:
            raw = b""
        elif isinstance(body, bytes):
            raw = body
        else:
            raw = json.dumps(body).encode()
        all_headers = {"Accept": "application/json"}
        if raw:
            all_headers["Content-Type"] = "application/json"
        if sign:
            all_headers.update(self.signed_headers(method, full, raw, user=user, version=version))
        all_headers.update(headers or {})
        target = full + ("?" + urlencode(query) if query else "")
        conn = http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=timeout)
        try:
            conn.request(method, target, body=raw or None, headers=all_headers)
            resp = conn.getresponse()
            return Response(resp.status, dict(resp.getheaders()), resp.read())
        finally:
            conn.close()

    def node_config(self, node: str, *, ccpk: str | None) -> Response:
        """The node's config request, signed with its client key, as the stock client sends it."""
        query = {"ccpk": ccpk, "version": "2.0"} if ccpk else {"version": "2.0"}
        return self.request("GET", f"config/{node}", user=node, query=query)

    def peer(self, node: str, *, start: bool = True, interval: float = 0.2, **kwargs: Any) -> Any:
        """A scripted protocol peer (pushd_bench.protocol_peer) for `node`, configured the
        way the stock client configures itself: through the REST config endpoint (ccpk, session
        key decrypted with the node's key). Started unless `start` is false; stopped at
        cleanup."""
        import zmq
        from pushd_bench.protocol_peer import ProtocolPeer

        from pushd.protocol.config import decrypt_session_key

        public, secret = (k.decode() for k in zmq.curve_keypair())
        resp = self.node_config(node, ccpk=public)
        if resp.status != 200:
            raise RuntimeError(f"config for {node}: HTTP {resp.status} {resp.body!r}")
        config = resp.json()
        private = load_private_key_cached(self.node_key_paths[node])
        heartbeat = config["push_jobs"]["heartbeat"]
        peer = ProtocolPeer(
            node=node,
            org_name=self.org_name,
            org_id=self.org_id,
            command_addr=heartbeat["command_addr"],
            heartbeat_addr=heartbeat["out_addr"],
            session_key=decrypt_session_key(private, config["encoded_session_key"]["key"]),
            server_curve_key=config["curve_public_key"],
            curve_keys=(public, secret),
            interval=interval,
            **kwargs,
        )
        self._peers.append(peer)
        if start:
            peer.start()
        return peer

    def stream(
        self,
        path: str,
        *,
        user: str | None = None,
        last_event_id: str | None = None,
        accept: str = "text/event-stream",
        timeout: float = 10.0,
        recv_buffer: int | None = None,
    ) -> SseStream:
        """An SSE request; `recv_buffer` shrinks the socket's receive buffer (a slow reader)."""
        full = self.path(path)
        headers = {"Host": f"127.0.0.1:{self.api_port}", "Accept": accept}
        headers.update(self.signed_headers("GET", full, b"", user=user))
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if recv_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer)
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", self.api_port))
        head = f"GET {full} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall((head + "\r\n").encode("utf-8"))
        return SseStream(sock, timeout)


@contextlib.contextmanager
def running_server(
    *,
    db_backend: tuple[str, dict[str, Any]] | None = None,
    settings: dict[str, Any] | None = None,
    nodes: Iterable[str] = ("node1", "node2"),
    wait_for_broker: bool = True,
    provision: bool = True,
) -> Iterator[PushdServer]:
    server = PushdServer(
        db_backend=db_backend, settings=settings, nodes=nodes, wait_for_broker=wait_for_broker,
        provision=provision,
    )
    try:
        server.start()
        yield server
    except BaseException:
        sys.stderr.write(server.log_tail(200) + "\n")
        raise
    finally:
        server.cleanup()
