"""A pushd cluster for tests and benchmarks: N real servers (``python -m pushd.server``, each
with its own directory, ports and ``cluster_member_name``) sharing ONE fresh PostgreSQL
database, behind a real HAProxy (``haproxy -f CFG -db``, ``mode tcp``) on one free port: the
cluster's one URL that nodes, knife and tests use (issue 16).

    with running_cluster(size=3, nodes=("n1", ...), settings=None, lease=3,
                         heartbeat_ms=500) as cluster:
        cluster.url                        "http://127.0.0.1:<haproxy port>"
        cluster.servers[i]                 ClusterServer: a PushdServer (request, stream, peer,
                                           node_config, log_tail, wait_available...) plus
                                           .index and .member (its cluster_member_name)
        cluster.front                      the same request/stream/node_config/peer API, through
                                           HAProxy (ClusterFront)
        cluster.request(...) / cluster.stream(...) / cluster.peer(node, **kw)
                                           = cluster.front's: whichever server HAProxy picks
        cluster.server_of(peer_or_addr)    index of the server a ProtocolPeer (its command
                                           address), a tcp:// address or a port belongs to; None
        cluster.server_of_config(doc)      the same for a config answer (push_jobs.heartbeat)
        cluster.move(peer, keep_job=True) -> ProtocolPeer   what a node that lost its server
                                           does: stop the peer, fetch the config again through
                                           HAProxy, start a new peer for the same node (see
                                           server_of); keep_job: the same client process
                                           (incarnation, running job) reconfigured, else a
                                           restarted one (new incarnation, idle)
        cluster.kill(i)                    SIGKILL of server i's whole process group (arbiter,
                                           workers, broker launcher and broker) at once
        cluster.restart(i)                 start server i again (same dir, ports, member name);
                                           waits for /_status 200
        cluster.alive(i) -> bool
        cluster.sql(query, params=()) -> list[tuple]   on the cluster's database (autocommit)
        cluster.members() -> {member: lease seconds left}   cluster_members rows (negative:
                                           expired)
        cluster.live_members() -> set[str]
        cluster.holders() -> {node: (member, available)}    cluster_nodes rows of the org
        cluster.coordinator(job_id) -> str | None           jobs.coordinator
        cluster.index_of(member) -> int
        cluster.terminate_doorbells() -> int  pg_terminate_backend of every connection of this
                                           database whose application_name starts with
                                           "pushd-doorbell:" (how many were ended)
        cluster.haproxy_states() -> {server index: "UP" | "DOWN" | ...}   (stats socket)
        cluster.wait_haproxy(i, state="UP", timeout=20)
        cluster.set_routing(i, enabled)    take server i out of (or back into) HAProxy's
                                           rotation ("disable/enable server"), e.g. to steer a
                                           node to chosen servers
        cluster.ctl(i, *args) -> CompletedProcess   push-jobs-server-ctl with server i's config
                                           (a subprocess; text output)
        cluster.status(i) -> list[dict]    ``cluster-status --json`` as seen from server i
        cluster.add_client(name) -> key path   a client in the shared store, its key on every
                                           server object
        cluster.db_params                  the database's connection parameters
        cluster.close()                    peers, HAProxy, servers, the database (dropped)

What it does: creates a database (pushd_bench.databases.postgres_database) unless `db_params`
is given, builds server 0 (which migrates the schema and provisions organization ``pushdorg``,
users ``pivotal-admin``/``normal`` and one client per node name, like bench/server.py), then
the others on the same database without provisioning again (they only write the same key files
under their own directory), with ``postgresql.enable``, ``cluster_member_name`` ``pushd<i>``,
``cluster_lease`` `lease` and ``heartbeat_interval`` `heartbeat_ms`; starts them in parallel and
waits for each ``/_status`` 200; then HAProxy in front of their API ports (``balance
roundrobin``, ``option httpchk GET /_status``, ``check inter 500ms fall 2 rise 1``, ``option
redispatch 1`` with ``retries 3``: a connection refused by a dead server is retried on another
one at once, before the checks have marked it down) and waits until HAProxy has every server UP.
Logs: ``servers[i].log_path`` and ``cluster.haproxy_log``. Fixed node placement needs no
HAProxy: ``servers[i].peer(node)`` configures a peer on server i directly.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pushd_bench.databases import postgres_database
from pushd_bench.ports import free_port
from pushd_bench.server import SAFE_PATH, PushdServer, _keypair

HAPROXY = os.environ.get("PUSHD_HAPROXY", shutil.which("haproxy") or "/usr/sbin/haproxy")
MEMBER_PREFIX = "pushd"
DOORBELL_PREFIX = "pushd-doorbell:"
BACKEND = "pushd_api"
_PORT = re.compile(r":(\d+)$")
# gunicorn's access log lines of answered requests: HAProxy's checks and the tests' polling
# would push everything else out of a log tail.
_ACCESS_OK = re.compile(r'^\S+ \S+ "[A-Z]+ \S+ HTTP/1\.\d" [23]\d\d ')


def haproxy_available() -> bool:
    return os.access(HAPROXY, os.X_OK)


class ClusterServer(PushdServer):
    """One member: a PushdServer on the cluster's database. Only the first provisions the
    organization and its principals; the others reuse them (``provision=False``)."""

    def __init__(
        self,
        *,
        index: int,
        db_backend: tuple[str, dict[str, Any]],
        settings: Mapping[str, Any],
        nodes: Iterable[str],
    ) -> None:
        self.index = index
        self.member = f"{MEMBER_PREFIX}{index}"
        super().__init__(
            db_backend=db_backend,
            settings={**settings, "cluster_member_name": self.member},
            nodes=nodes,
            provision=index == 0,
        )

    def kill(self) -> None:
        """SIGKILL of the whole process group at once (the server is a session leader)."""
        process = self._process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        self.stop()  # the bookkeeping: nothing is left to signal


class ClusterFront(PushdServer):
    """The cluster's one URL: PushdServer's client side (request, stream, node_config, peer,
    signed_headers) aimed at HAProxy. It starts and stops nothing but its peers."""

    def __init__(self, template: PushdServer, port: int) -> None:  # no super(): no server
        self.api_port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.org_name = template.org_name
        self.org_id = template.org_id
        self.admin_user = template.admin_user
        self.users = template.users
        self.node_key_paths = template.node_key_paths
        self.node_names = template.node_names
        self.admin_key_path = template.admin_key_path
        self.dir = template.dir
        self.log_path = template.log_path
        self._process = None
        self._log_file = None
        self._peers = []

    def log_text(self) -> str:
        return ""

    def stop(self, *, graceful: bool = False) -> None:
        return None

    def start(self) -> None:
        raise RuntimeError("the cluster front is HAProxy; start servers with cluster.restart(i)")

    def cleanup(self) -> None:
        self.stop_peers()


class PushdCluster:
    def __init__(
        self,
        *,
        size: int = 3,
        nodes: Iterable[str] = ("node1", "node2", "node3"),
        settings: Mapping[str, Any] | None = None,
        lease: int = 3,
        heartbeat_ms: int = 500,
        db_params: Mapping[str, Any],
    ) -> None:
        self.size = size
        self.db_params = dict(db_params)
        self.dir = Path(tempfile.mkdtemp(prefix="pushd-cluster-", dir="/tmp"))
        self.haproxy_port = free_port()
        self.url = f"http://127.0.0.1:{self.haproxy_port}"
        self.haproxy_config = self.dir / "haproxy.cfg"
        self.haproxy_log = self.dir / "haproxy.log"
        self.haproxy_socket = self.dir / "haproxy.sock"
        self._haproxy: subprocess.Popen[bytes] | None = None
        values = {
            "postgresql.enable": True,
            "cluster_lease": lease,
            "heartbeat_interval": heartbeat_ms,
            **(settings or {}),
        }
        backend = ("postgres", self.db_params)
        self.servers: list[ClusterServer] = []
        try:
            for index in range(size):
                self.servers.append(
                    ClusterServer(index=index, db_backend=backend, settings=values, nodes=nodes)
                )
        except BaseException:
            for server in self.servers:
                server.cleanup()
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        self.front = ClusterFront(self.servers[0], self.haproxy_port)
        self.org_id = self.servers[0].org_id
        self.org_name = self.servers[0].org_name

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.size) as pool:
            for future in [pool.submit(server.start) for server in self.servers]:
                future.result()
        self._start_haproxy()

    def _write_haproxy_config(self) -> None:
        servers = "\n".join(
            f"    server {MEMBER_PREFIX}{s.index} 127.0.0.1:{s.api_port}"
            " check inter 500ms fall 2 rise 1"
            for s in self.servers
        )
        self.haproxy_config.write_text(
            "global\n"
            "    maxconn 4000\n"
            "    log stdout format raw local0 info\n"
            f"    stats socket {self.haproxy_socket} mode 600 level admin\n"
            "defaults\n"
            "    mode tcp\n"
            "    log global\n"
            "    option tcplog\n"
            # A dead server refuses at once (and is redispatched at once); a live one may be
            # slow to accept on a loaded machine.
            "    timeout connect 3s\n"
            # SSE streams and knife's follow stay open long; the servers send keepalives.
            "    timeout client 10m\n"
            "    timeout server 10m\n"
            "    timeout check 2s\n"
            "    retries 3\n"
            # Redispatch on every retry: a connection refused by a dead server goes to
            # another at once, also in the second before the checks mark it down.
            "    option redispatch 1\n"
            "frontend pushd_front\n"
            f"    bind 127.0.0.1:{self.haproxy_port}\n"
            f"    default_backend {BACKEND}\n"
            f"backend {BACKEND}\n"
            "    balance roundrobin\n"
            "    option httpchk GET /_status\n"
            f"{servers}\n"
        )

    def _start_haproxy(self) -> None:
        self._write_haproxy_config()
        check = subprocess.run(
            [HAPROXY, "-c", "-f", str(self.haproxy_config)], capture_output=True, text=True
        )
        if check.returncode != 0:
            raise RuntimeError(f"haproxy -c: {check.stdout}{check.stderr}")
        with open(self.haproxy_log, "ab") as log:
            self._haproxy = subprocess.Popen(
                [HAPROXY, "-f", str(self.haproxy_config), "-db"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        for index in range(self.size):
            self.wait_haproxy(index, "UP", timeout=20)

    def _stop_haproxy(self) -> None:
        process, self._haproxy = self._haproxy, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    def close(self) -> None:
        self.front.stop_peers()
        for server in self.servers:
            server.stop_peers()
        self._stop_haproxy()
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.size) as pool:
            list(pool.map(lambda s: s.cleanup(), self.servers))
        shutil.rmtree(self.dir, ignore_errors=True)

    def kill(self, index: int) -> None:
        self.servers[index].kill()

    def restart(self, index: int) -> None:
        server = self.servers[index]
        if server.is_running():
            server.stop()
        server.start()

    def alive(self, index: int) -> bool:
        return self.servers[index].is_running()

    def log_tails(self, lines: int = 40) -> str:
        """The end of every server's log without its 2xx/3xx access lines, and HAProxy's."""
        parts = []
        for server in self.servers:
            kept = [line for line in server.log_text().splitlines()
                    if not _ACCESS_OK.match(line)]
            parts.append(f"== {server.member} ({server.log_path})\n" + "\n".join(kept[-lines:]))
        with contextlib.suppress(OSError):
            parts.append("== haproxy\n" + self.haproxy_log.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    # -- the one URL ----------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.front.request(method, path, body, **kwargs)

    def stream(self, path: str, **kwargs: Any) -> Any:
        return self.front.stream(path, **kwargs)

    def peer(self, node: str, **kwargs: Any) -> Any:
        return self.front.peer(node, **kwargs)

    def move(self, peer: Any, *, keep_job: bool = True, **kwargs: Any) -> Any:
        """The node lost its server: a new peer for it, configured through HAProxy."""
        peer.stop()
        # Like the clients, it tries again when the fetch fails (e.g. a server that died with
        # the connection open).
        for attempt in range(5):
            try:
                moved = self.front.peer(peer.node, interval=peer.interval, start=False, **kwargs)
                break
            except (OSError, RuntimeError):
                if attempt == 4:
                    raise
                time.sleep(0.5)
        if keep_job:
            moved.carry_over(peer)
        return moved.start()

    def ctl(
        self, index: int, *args: str, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pushd_ctl", "--config", str(self.servers[index].config_path),
             *args],
            capture_output=True, text=True, timeout=timeout, env={**os.environ, **SAFE_PATH},
        )

    def status(self, index: int) -> list[dict[str, Any]]:
        done = self.ctl(index, "cluster-status", "--json")
        if done.returncode != 0:
            raise RuntimeError(f"cluster-status: exit {done.returncode}: {done.stderr}")
        members: list[dict[str, Any]] = json.loads(done.stdout)
        return members

    def add_client(self, name: str) -> Path:
        path = self.servers[0].add_client(name)
        for server in self.servers[1:]:
            server.node_key_paths[name] = server._write_key(
                f"client-{name}", _keypair(f"client:{name}")[0]
            )
        return path

    # -- where things are -----------------------------------------------------------------

    def server_of(self, where: Any) -> int | None:
        """The server a peer (its command address), an address ending in :PORT or a port
        belongs to (any of its API, heartbeat or command ports)."""
        if hasattr(where, "command_addr"):
            where = where.command_addr
        if isinstance(where, str):
            match = _PORT.search(where.rstrip("/"))
            if match is None:
                return None
            where = int(match.group(1))
        for server in self.servers:
            if where in server.ports.values():
                return server.index
        return None

    def server_of_config(self, document: Mapping[str, Any]) -> int | None:
        return self.server_of(document["push_jobs"]["heartbeat"]["command_addr"])

    def index_of(self, member: str) -> int:
        for server in self.servers:
            if server.member == member:
                return server.index
        raise KeyError(member)

    # -- the database ---------------------------------------------------------------------

    def sql(self, query: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        p = self.db_params
        with psycopg.connect(
            host=p["host"], port=p["port"], user=p["user"], password=p.get("password") or None,
            dbname=p["database"], autocommit=True, application_name="pushd-cluster-harness",
        ) as conn:
            cursor = conn.execute(query, tuple(params))
            return list(cursor.fetchall()) if cursor.description else []

    def members(self) -> dict[str, float]:
        rows = self.sql(
            "SELECT member, EXTRACT(EPOCH FROM (lease_expires_at - timezone('utc', now())))"
            " FROM cluster_members ORDER BY member"
        )
        return {row[0]: float(row[1]) for row in rows}

    def live_members(self) -> set[str]:
        return {member for member, left in self.members().items() if left > 0}

    def holders(self) -> dict[str, tuple[str, bool]]:
        rows = self.sql(
            "SELECT node_name, member, available FROM cluster_nodes WHERE org_id = %s",
            (self.org_id,),
        )
        return {row[0]: (row[1], bool(row[2])) for row in rows}

    def coordinator(self, job_id: str) -> str | None:
        rows = self.sql("SELECT coordinator FROM jobs WHERE id = %s", (job_id,))
        return rows[0][0] if rows else None

    def terminate_doorbells(self) -> int:
        rows = self.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name LIKE %s",
            (DOORBELL_PREFIX + "%",),
        )
        return sum(1 for row in rows if row[0])

    # -- HAProxy --------------------------------------------------------------------------

    def _haproxy_command(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.haproxy_socket))
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks).decode(errors="replace")

    def haproxy_states(self) -> dict[int, str]:
        text = self._haproxy_command("show stat").lstrip("# ")
        states: dict[int, str] = {}
        for row in csv.DictReader(io.StringIO(text)):
            name = row.get("svname") or ""
            if row.get("pxname") == BACKEND and name.startswith(MEMBER_PREFIX):
                states[int(name[len(MEMBER_PREFIX):])] = (row.get("status") or "").split()[0]
        return states

    def wait_haproxy(self, index: int, state: str = "UP", timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        seen: str | None = None
        while time.monotonic() < deadline:
            if self._haproxy is not None and self._haproxy.poll() is not None:
                raise RuntimeError("haproxy exited\n" + self.haproxy_log.read_text())
            with contextlib.suppress(OSError):
                seen = self.haproxy_states().get(index)
                if seen == state:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"haproxy never saw {MEMBER_PREFIX}{index} {state} (last {seen})\n"
                           + self.log_tails(20))

    def set_routing(self, index: int, enabled: bool) -> None:
        verb = "enable" if enabled else "disable"
        self._haproxy_command(f"{verb} server {BACKEND}/{MEMBER_PREFIX}{index}")


@contextlib.contextmanager
def running_cluster(
    *,
    size: int = 3,
    nodes: Iterable[str] = ("node1", "node2", "node3"),
    settings: Mapping[str, Any] | None = None,
    lease: int = 3,
    heartbeat_ms: int = 500,
    db_params: Mapping[str, Any] | None = None,
) -> Iterator[PushdCluster]:
    """A started cluster on a fresh database (or `db_params`), closed and dropped afterwards;
    on an error the end of every server's log goes to stderr."""
    with contextlib.ExitStack() as stack:
        if db_params is None:
            db_params = stack.enter_context(postgres_database())
        cluster = PushdCluster(
            size=size, nodes=nodes, settings=settings, lease=lease, heartbeat_ms=heartbeat_ms,
            db_params=db_params,
        )
        stack.callback(cluster.close)
        try:
            cluster.start()
            yield cluster
        except BaseException:
            sys.stderr.write(cluster.log_tails(120) + "\n")
            raise
