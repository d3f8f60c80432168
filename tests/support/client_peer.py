"""PushServerPeer: a minimal push-jobs server made of real sockets, to test the node client.

A named test peer, not a mock of the client: it speaks the wire protocol with the real
pushd.protocol code over real ZeroMQ sockets (PUB + ROUTER with CurveZMQ and a ZAP handler that
admits only keys seen in a config request, as the original server does) and serves the signed
config document over real HTTP, verifying the node's Chef signature. It does NOT implement the
server's job engine: tests drive commits/runs/aborts and read what the client sent.

    peer = PushServerPeer(node_public_pem, org="testorg", interval=0.5)
    peer.start()                    binds the ports chosen at construction (kept across restarts)
    peer.url                        chef_server_url for the client's config
    peer.commit(node, job_id, command, **options); peer.run(node, job_id); peer.abort(node)
    peer.wait_for(type, job_id=..., timeout=10) -> dict    next matching message from the node
    peer.received -> list[dict]     every verified message, in order
    peer.config_fetches -> int      config requests answered 200
    peer.refuse_config = True       config requests answered 503 (an API not up yet)
    peer.stop()                     closes everything; start() again = "server restart" with a
                                    new incarnation id (and a new Curve key unless keep_keys)
Options: lifetime (seconds, in the config document); unencrypted=True serves a config
without curve_public_key and an unencrypted ROUTER (1.x protocol); auto_rehab (default True)
answers a node's first message with `abort`, as the server's node FSM does.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import zmq
import zmq.auth.thread

from pushd.chefauth import authenticate_request
from pushd.errors import AuthError, ProtocolError
from pushd.keys import curve_keypair, generate_rsa_key, rsa_public_pem
from pushd.protocol.config import build_config, encrypt_session_key, new_session_key
from pushd.protocol.frames import decode, encode
from pushd.protocol.messages import (
    abort_message,
    ack_message,
    commit_message,
    run_message,
    server_heartbeat,
)
from tests.support.ports import free_ports


class _Admit:
    def __init__(self, allowed: set[bytes]) -> None:
        self.allowed = allowed

    def callback(self, domain: str, key: bytes) -> bool:
        return key in self.allowed


class PushServerPeer:
    def __init__(
        self,
        node_public_pem: str,
        *,
        org: str = "testorg",
        interval: float = 0.5,
        unencrypted: bool = False,
        auto_rehab: bool = True,
        advertise_curve_key: str | None = None,
        lifetime: int = 3600,
    ) -> None:
        self.lifetime = lifetime
        self.node_public_pem = node_public_pem
        self.org = org
        self.interval = interval
        self.unencrypted = unencrypted
        self.auto_rehab = auto_rehab
        self.advertise_curve_key = advertise_curve_key
        self.http_port, self.pub_port, self.cmd_port = free_ports(3)
        self.rsa = generate_rsa_key()
        self.session_key = new_session_key()
        self.curve_public, self.curve_secret = curve_keypair()
        self.incarnation = str(uuid.uuid4())
        self.received: list[dict[str, Any]] = []
        self.config_fetches = 0
        self.refuse_config = False
        self._inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self._outbox: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self._admitted: set[bytes] = set()
        self._addresses: dict[str, bytes] = {}
        self._incarnations: dict[str, Any] = {}
        self._rehab: set[str] = set()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._http: ThreadingHTTPServer | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/organizations/{self.org}"

    # ---------------------------------------------------------------- lifecycle
    def start(self, *, keep_keys: bool = False) -> None:
        if not keep_keys:
            self.curve_public, self.curve_secret = curve_keypair()
        self.incarnation = str(uuid.uuid4())
        self._stop.clear()
        self._ready.clear()
        self._addresses.clear()
        self._incarnations.clear()
        self._rehab.clear()
        self._http = ThreadingHTTPServer(("127.0.0.1", self.http_port), self._handler())
        self._http.daemon_threads = True
        http_thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        zmq_thread = threading.Thread(target=self._zmq_loop, daemon=True)
        self._threads = [http_thread, zmq_thread]
        for thread in self._threads:
            thread.start()
        assert self._ready.wait(10), "peer sockets did not come up"

    def stop(self) -> None:
        self._stop.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        for thread in self._threads:
            thread.join(10)
        self._threads = []

    # ------------------------------------------------------------------ driving
    def commit(self, node: str, job_id: str, command: str, **options: Any) -> None:
        self._outbox.put((node, {"kind": "commit", "job_id": job_id, "command": command,
                                 **options}))

    def run(self, node: str, job_id: str, run_timeout: int | None = None) -> None:
        self._outbox.put((node, {"kind": "run", "job_id": job_id, "run_timeout": run_timeout}))

    def abort(self, node: str) -> None:
        self._outbox.put((node, {"kind": "abort"}))

    def wait_for(
        self, msg_type: str, *, job_id: Any = ..., timeout: float = 30.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [(m.get("type"), m.get("job_id")) for m in self.received[-12:]]
                raise AssertionError(f"no {msg_type} (job {job_id}) from the client; saw {seen}")
            try:
                message = self._inbox.get(timeout=remaining)
            except queue.Empty:
                continue
            if message.get("type") == msg_type and (job_id is ... or
                                                    message.get("job_id") == job_id):
                return message

    def drain(self) -> None:
        while not self._inbox.empty():
            self._inbox.get_nowait()

    # ---------------------------------------------------------------------- HTTP
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, document: dict[str, Any]) -> None:
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                prefix = f"/organizations/{peer.org}/pushy/config/"
                if not parts.path.startswith(prefix):
                    self._reply(404, {"error": ["not found"]})
                    return
                if peer.refuse_config:
                    self._reply(503, {"error": ["the API is not up yet (test peer)"]})
                    return
                node = parts.path[len(prefix):]
                query = urllib.parse.parse_qs(parts.query)
                ccpk = query.get("ccpk", [""])[0]
                if not peer.unencrypted:
                    if not ccpk:
                        self._reply(400, {"error": ["Missing ccpk"]})
                        return
                    if len(ccpk) != 40:
                        self._reply(401, {"error": ["Bad ccpk"]})
                        return
                    peer._admitted.add(ccpk.encode())
                try:
                    verified = authenticate_request(
                        "GET", parts.path, dict(self.headers.items()), b"",
                        lambda user: [peer.node_public_pem] if user == node else None,
                    )
                except AuthError as err:
                    self._reply(err.status, {"error": [err.message]})
                    return
                document = build_config(
                    host="127.0.0.1",
                    heartbeat_port=peer.pub_port,
                    command_port=peer.cmd_port,
                    interval=peer.interval,
                    node=node,
                    organization=peer.org,
                    public_key_pem=rsa_public_pem(peer.rsa),
                    encoded_session_key=encrypt_session_key(verified.public_key,
                                                            peer.session_key),
                    lifetime=peer.lifetime,
                    max_message_skew=300,
                    max_body_size=65536,
                    incarnation_id=peer.incarnation,
                    curve_public_key=None if peer.unencrypted else (
                        peer.advertise_curve_key or peer.curve_public),
                )
                peer.config_fetches += 1
                self._reply(200, document)

        return Handler

    # ---------------------------------------------------------------------- ZMQ
    def _zmq_loop(self) -> None:
        context: zmq.Context[Any] = zmq.Context()
        auth = None
        try:
            pub = context.socket(zmq.PUB)
            pub.linger = 0
            pub.bind(f"tcp://127.0.0.1:{self.pub_port}")
            router = context.socket(zmq.ROUTER)
            router.linger = 0
            if not self.unencrypted:
                auth = zmq.auth.thread.ThreadAuthenticator(context)
                auth.start()
                auth.configure_curve_callback("*", _Admit(self._admitted))
                router.curve_server = True
                router.curve_secretkey = self.curve_secret.encode()
                router.curve_publickey = self.curve_public.encode()
            router.bind(f"tcp://127.0.0.1:{self.cmd_port}")
            self._ready.set()
            self._serve(pub, router)
        finally:
            if auth is not None:
                auth.stop()
            context.destroy(linger=0)

    def _serve(self, pub: zmq.Socket[Any], router: zmq.Socket[Any]) -> None:
        sequence = 0
        node_sequence: dict[str, int] = {}
        next_beat = time.monotonic()
        next_rehab = time.monotonic()

        def send(node: str, body: dict[str, Any]) -> None:
            address = self._addresses.get(node)
            if address is not None:
                router.send_multipart([address, *encode(body, hmac_key=self.session_key)])

        def seq(node: str) -> int:
            node_sequence[node] = node_sequence.get(node, 0) + 1
            return node_sequence[node]

        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_beat:
                body = server_heartbeat(sequence=sequence, server="peer",
                                        incarnation_id=self.incarnation)
                pub.send_multipart(encode(body, rsa_private_key=self.rsa))
                sequence += 1
                next_beat = now + self.interval
            if now >= next_rehab:
                for node in self._rehab:
                    send(node, abort_message(sequence=seq(node)))
                next_rehab = now + 1.0
            while not self._outbox.empty():
                node, order = self._outbox.get_nowait()
                kind = order.pop("kind")
                if kind == "commit":
                    send(node, commit_message(sequence=seq(node), server="peer",
                                              **{("directory" if k == "dir" else k): v
                                                 for k, v in order.items()}))
                elif kind == "run":
                    send(node, run_message(sequence=seq(node), **order))
                else:
                    send(node, abort_message(sequence=seq(node)))
            if router.poll(50):
                frames = router.recv_multipart()
                address, rest = frames[0], frames[1:]
                try:
                    body = decode(rest, key=self.session_key)
                except ProtocolError as err:
                    self.received.append({"type": "_invalid", "error": str(err)})
                    continue
                node = str(body.get("node"))
                incarnation = body.get("incarnation_id")
                if self._incarnations.get(node, incarnation) != incarnation:
                    # A restarted client: the server starts a new node session (and rehab).
                    self._addresses.pop(node, None)
                self._incarnations[node] = incarnation
                first = node not in self._addresses
                moved = not first and self._addresses[node] != address
                self._addresses[node] = address
                if moved:  # a new socket of a known node: confirm it, as the server does
                    send(node, ack_message(sequence=seq(node)))
                self.received.append(body)
                self._inbox.put(body)
                if body.get("type") == "aborted":
                    self._rehab.discard(node)
                elif first and self.auto_rehab:
                    self._rehab.add(node)
                    send(node, abort_message(sequence=seq(node)))
                    next_rehab = time.monotonic() + 1.0
