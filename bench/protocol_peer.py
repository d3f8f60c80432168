"""A scripted protocol test peer: a node that speaks the push-jobs 2.x wire protocol exactly like
the stock Ruby client (original-client-and-knife.md 2.5-2.9), over real ZeroMQ and real Curve,
and that can be told to misbehave. It is a test peer, not a fake server: the broker under test
is always the real one.

    peer = ProtocolPeer(node="n1", org_name="acme", org_id=ORG, command_addr="tcp://127.0.0.1:P",
                        heartbeat_addr="tcp://127.0.0.1:Q", session_key=KEY,
                        server_curve_key=Z85 | None, curve_keys=(public, secret) | None,
                        interval=0.1)
    ProtocolPeer.admitted(client, node=..., org_name=..., org_id=..., ...)   asks the broker's
        control socket for a session key and Curve admission first (what the API does for an
        authenticated config request), then builds the peer
    peer.start() / peer.stop()               background thread: heartbeats every interval while
                                             running, answers commands like the stock client
    peer.kill()                              vanish without a word (process killed)
    peer.restart_process()                   new client incarnation and a new socket
    peer.reconnect()                         new DEALER (new ZMQ identity, sequence from 1)
    peer.carry_over(old)                     before start(): this peer is `old`'s client process
                                             reconfigured (a new config, e.g. from another
                                             server): its incarnation and job are kept

Stock behaviour: `abort` -> `aborted` (job_id of the job it had, else null) and idle; `commit`
-> `ack_commit` when idle and the command is whitelisted (see `commands`), else `nack_commit`;
`run` for the committed job -> `ack_run`, run the scripted command, then `succeeded`/`failed`
(with stdout/stderr when capture was asked); `run` for anything else -> `nack_run`; `ack` is
ignored. Scripted commands: "true"/"succeed" exit 0, "false"/"fail" exit 1, "sleep N" exits 0
after N seconds, "hang" never finishes. Misbehaviour switches (attributes): `answer_commit`
("ack" | "nack" | None = ignore), `answer_run` ("ack" | "nack" | None), `answer_abort` (bool),
`send_heartbeats` (bool), `nack_reason` (str | None: pushd's optional reason field),
`output` ((stdout, stderr) | None: what a finished job with capture sends instead of the
default "<node> says hi").

`stock_liveness` (bool, default False; `peer.online` tells the state): the stock heartbeater's
online/offline rule (2.7): after more than `offline_threshold` (3) of its own heartbeat ticks
without a server heartbeat it goes offline and stops heartbeating; while offline it goes online
again only after more than `online_threshold` (2) server heartbeats. The DEALER is kept, so
heartbeats queued while the server was away (at most 3, SNDHWM) are delivered stale when it
reconnects by itself. (The stock client also reopens its sockets when it goes offline; that
part is not modelled here.)

Low level: peer.send(type, job_id=None, **fields) signs and sends a message with the next
sequence number; peer.send_body(body, key=None, header=None) sends any body; peer.send_frames
(frames) sends raw frames. peer.received(type=None) lists received bodies;
peer.wait_for(type, timeout) waits for one. peer.server_heartbeats counts verified server
heartbeats.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from typing import Any

import zmq

from pushd.protocol.frames import build_header, encode, encode_body, open_frames, verify_signature
from pushd.protocol.timestamps import format_timestamp

SCRIPTED = ("true", "succeed", "false", "fail", "hang")


def whitelisted(command: str) -> bool:
    if command in SCRIPTED:
        return True
    parts = command.split()
    return len(parts) == 2 and parts[0] == "sleep" and parts[1].replace(".", "", 1).isdigit()


class ProtocolPeer:
    def __init__(
        self,
        *,
        node: str,
        org_name: str,
        org_id: str,
        command_addr: str,
        heartbeat_addr: str | None,
        session_key: bytes,
        server_curve_key: str | None,
        interval: float = 0.1,
        curve_keys: tuple[str, str] | None = None,
        server_public_key: Any = None,
        context: zmq.Context | None = None,
    ) -> None:
        self.node = node
        self.org_name = org_name
        self.org_id = org_id
        self.command_addr = command_addr
        self.heartbeat_addr = heartbeat_addr
        self.session_key = session_key
        self.server_curve_key = server_curve_key
        self.curve_keys = curve_keys
        self.server_public_key = server_public_key
        self.interval = interval
        self.incarnation_id = str(uuid.uuid4())
        self._context = context or zmq.Context.instance()
        self._lock = threading.RLock()
        self._received: list[dict[str, Any]] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._dealer: zmq.Socket | None = None
        self._sub: zmq.Socket | None = None
        self._sequence = itertools.count(1)
        self._job_finish_at: float | None = None
        self._job_result: str | None = None
        self._capture = False
        self.server_heartbeats = 0
        self.server_incarnations: set[str] = set()
        # the stock client's job state
        self.state = "idle"
        self.job_id: str | None = None
        self.command: str | None = None
        # misbehaviour switches
        self.answer_commit: str | None = "ack"
        self.answer_run: str | None = "ack"
        self.answer_abort = True
        self.send_heartbeats = True
        self.nack_reason: str | None = None
        self.output: tuple[str, str] | None = None
        # the stock heartbeater's online/offline rule (off unless asked for)
        self.stock_liveness = False
        self.offline_threshold = 3
        self.online_threshold = 2
        self.online = True
        self._offline_counter = 0
        self._online_counter = 0

    @classmethod
    def admitted(cls, client: Any, *, node: str, org_name: str, org_id: str, curve: bool = True,
                 **kwargs: Any) -> ProtocolPeer:
        import base64

        curve_keys = zmq.curve_keypair() if curve else None
        reply = client.admit(org_name, org_id, node,
                             curve_keys[0].decode() if curve_keys else None)
        assert reply.get("ok"), reply
        return cls(
            node=node, org_name=org_name, org_id=org_id,
            session_key=base64.b64decode(reply["session_key"]),
            server_curve_key=reply["curve_public_key"],
            curve_keys=(curve_keys[0].decode(), curve_keys[1].decode()) if curve_keys else None,
            **kwargs,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ProtocolPeer:
        with self._lock:
            self._open()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"peer-{self.node}", daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        """Started and not stopped since."""
        return self._thread is not None

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        with self._lock:
            self._close()

    kill = stop  # sockets closed with linger 0: nothing more is said

    def restart_process(self) -> None:
        """A new client process: new incarnation id, new socket, state idle."""
        with self._lock:
            self.incarnation_id = str(uuid.uuid4())
            self.state, self.job_id, self._job_finish_at = "idle", None, None
            self._reopen_dealer()

    def reconnect(self) -> None:
        """The same process opens a new command socket (the client's reconfigure)."""
        with self._lock:
            self._reopen_dealer()

    def carry_over(self, old: ProtocolPeer) -> None:
        """Continue `old`'s client process with this peer's config (the stock client's
        reconfigure: same process, new sockets, its job still running)."""
        with old._lock:
            self.incarnation_id = old.incarnation_id
            self.state, self.job_id, self.command = old.state, old.job_id, old.command
            self._job_finish_at, self._job_result = old._job_finish_at, old._job_result
            self._capture = old._capture

    def _open(self) -> None:
        self._reopen_dealer()
        if self.heartbeat_addr is not None:
            sub = self._context.socket(zmq.SUB)
            sub.linger = 0
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.connect(self.heartbeat_addr)
            self._sub = sub

    def _reopen_dealer(self) -> None:
        if self._dealer is not None:
            self._dealer.close(0)
        dealer = self._context.socket(zmq.DEALER)
        dealer.linger = 0
        dealer.sndhwm = 3
        dealer.rcvhwm = 0
        if self.curve_keys is not None:
            dealer.curve_serverkey = self.server_curve_key.encode()
            dealer.curve_publickey = self.curve_keys[0].encode()
            dealer.curve_secretkey = self.curve_keys[1].encode()
        dealer.connect(self.command_addr)
        self._dealer = dealer
        self._sequence = itertools.count(1)

    def _close(self) -> None:
        for socket in (self._dealer, self._sub):
            if socket is not None:
                socket.close(0)
        self._dealer = self._sub = None

    # -- sending -----------------------------------------------------------------------------

    def body(self, kind: str, job_id: str | None = None, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "node": self.node,
            "client": f"{self.node}.example",
            "protocol_version": "2.0",
            "org": self.org_name,
            "type": kind,
            "sequence": next(self._sequence),
            "timestamp": format_timestamp(),
            "incarnation_id": self.incarnation_id,
            "job_id": job_id,
        }
        body.update(fields)
        return body

    def send(self, kind: str, job_id: str | None = None, **fields: Any) -> dict[str, Any]:
        with self._lock:
            body = self.body(kind, job_id, **fields)
            self.send_body(body)
            return body

    def send_body(self, body: dict[str, Any], *, key: bytes | None = None,
                  header: bytes | None = None) -> None:
        frames = encode(body, hmac_key=key or self.session_key)
        if header is not None:
            frames = [header, frames[1]]
        self.send_frames(frames)

    def send_frames(self, frames: list[bytes], *, wait: float = 2.0) -> None:
        """Send raw frames. The stock client drops a message when its queue of 3 is full; a
        test's own message instead waits up to `wait` seconds for room (heartbeats: 0)."""
        deadline = time.monotonic() + wait
        while True:
            with self._lock:
                if self._dealer is None:
                    return
                try:
                    self._dealer.send_multipart(frames, zmq.NOBLOCK)
                    return
                except zmq.Again:
                    if time.monotonic() >= deadline:
                        return  # dropped, as the stock client would
            time.sleep(0.005)

    def heartbeat(self) -> None:
        with self._lock:
            body = self.body("heartbeat", self.job_id, job_state=self.state)
            self.send_frames(encode(body, hmac_key=self.session_key), wait=0)

    # -- observing ---------------------------------------------------------------------------

    def received(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self._received if kind is None or m.get("type") == kind]

    def clear(self) -> None:
        with self._lock:
            self._received.clear()

    def wait_for(self, kind: str, timeout: float = 5.0, count: int = 1) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.received(kind)
            if len(got) >= count:
                return got[count - 1]
            time.sleep(0.01)
        raise AssertionError(f"{self.node}: no {kind!r} within {timeout}s; got "
                             f"{[m.get('type') for m in self.received()]}")

    def wait_idle_available(self, timeout: float = 5.0) -> None:
        """Wait until the node answered an abort (the broker now considers it available)."""
        self.wait_for("abort", timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.state != "idle":
            time.sleep(0.01)

    # -- the client loop ---------------------------------------------------------------------

    def _loop(self) -> None:
        next_beat = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            with self._lock:
                if now >= next_beat:
                    next_beat = now + self.interval
                    if self.stock_liveness:
                        self._heartbeater_tick()
                    if self.send_heartbeats and self.online:
                        self.heartbeat()
                self._finish_job_if_due(now)
                self._read_all()
            time.sleep(0.005)

    def _read_all(self) -> None:
        for socket in (self._dealer, self._sub):
            while socket is not None:
                try:
                    frames = socket.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                except zmq.ZMQError:
                    break
                if socket is self._sub:
                    self._on_server_heartbeat(frames)
                else:
                    self._on_command(frames)

    def _on_server_heartbeat(self, frames: list[bytes]) -> None:
        try:
            envelope = open_frames(frames)
            if self.server_public_key is not None:
                verify_signature(envelope, self.server_public_key)
        except Exception:
            return
        self.server_heartbeats += 1
        self.server_incarnations.add(envelope.body.get("incarnation_id"))
        if self.stock_liveness:
            self._offline_counter = 0
            if not self.online:
                if self._online_counter > self.online_threshold:
                    self.online = True
                else:
                    self._online_counter += 1

    def _heartbeater_tick(self) -> None:
        """The stock heartbeater's loop step (heartbeater.rb): count ticks without a server
        heartbeat and go offline after more than `offline_threshold` of them."""
        if self.online and self._offline_counter > self.offline_threshold:
            self.online = False
            self._online_counter = 0
        else:
            self._offline_counter += 1

    def _on_command(self, frames: list[bytes]) -> None:
        try:
            envelope = open_frames(frames)
            verify_signature(envelope, self.session_key)
        except Exception:
            return  # the stock client logs and drops
        body = envelope.body
        self._received.append(body)
        kind = body.get("type")
        if kind == "abort":
            if self.answer_abort:
                job = self.job_id
                self.state, self.job_id, self._job_finish_at = "idle", None, None
                extra = {"reason": self.nack_reason} if self.nack_reason else {}
                self.send("aborted", job, **extra)
        elif kind == "commit":
            job_id = body.get("job_id")
            if self.answer_commit is None:
                return
            command = body.get("command", "")
            if self.answer_commit == "ack" and self.state == "idle" and whitelisted(command):
                self.state, self.job_id, self.command = "committed", job_id, command
                self._capture = bool(body.get("capture"))
                self.send("ack_commit", job_id)
            else:
                extra = {"reason": self.nack_reason} if self.nack_reason else {}
                self.send("nack_commit", job_id, **extra)
        elif kind == "run":
            job_id = body.get("job_id")
            if self.answer_run is None:
                return
            if self.answer_run == "ack" and self.state == "committed" and job_id == self.job_id:
                self.state = "running"
                self.send("ack_run", job_id)
                self._begin(self.command or "")
            else:
                self.send("nack_run", job_id)

    def _begin(self, command: str) -> None:
        now = time.monotonic()
        if command in ("true", "succeed"):
            self._job_finish_at, self._job_result = now, "succeeded"
        elif command in ("false", "fail"):
            self._job_finish_at, self._job_result = now, "failed"
        elif command.startswith("sleep "):
            self._job_finish_at = now + float(command.split()[1])
            self._job_result = "succeeded"
        else:
            self._job_finish_at, self._job_result = None, None  # hang

    def _finish_job_if_due(self, now: float) -> None:
        if self.state != "running" or self._job_finish_at is None or now < self._job_finish_at:
            return
        job, result = self.job_id, self._job_result or "succeeded"
        self.state, self.job_id, self._job_finish_at = "idle", None, None
        extra = {}
        if self._capture and self.output is not None:
            extra = {"stdout": self.output[0], "stderr": self.output[1]}
        elif self._capture:
            extra = {"stdout": f"{self.node} says hi\n", "stderr": "" if result == "succeeded"
                     else "it failed\n"}
        self.send(result, job, **extra)


def forged_header() -> bytes:
    return build_header("hmac_sha256", "AAAA" * 11)


__all__ = ["ProtocolPeer", "encode_body", "forged_header", "whitelisted"]
