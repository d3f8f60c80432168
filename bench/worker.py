"""An emulator worker process: thousands of emulated nodes on one epoll loop.

    WorkerSpec(worker, base_url, org, prefix, indices, state_dir, behaviour, fetchers=32,
               report_interval=0.5, ramp=0.0, fetch_timeout=10.0, max_backoff=10.0,
               stock_retry=False, distinct_keys=0)   node i signs with pool key i mod
                                                       distinct_keys (0: key i)
    run_worker(spec, conn) -> None       the process body; `conn` is a multiprocessing
                                         Connection to the parent

Messages to the parent (dicts over `conn`, every `report_interval` seconds):
    {"worker", "nodes", "configured", "online", "fetching", "fetches" (started),
     "configs" (fetched and applied), "fetch_errors", "last_error", "dropped",
     "heartbeats" (sent so far), "restarts" (nodes restarted so far), "reopens" (socket-only
     reconfigures after the server went silent),
     "jobs": {job_id: JobRecord fields as deltas}}
The parent sends "stop" to end the worker (so does closing the pipe), and
{"restart": [node index, ...], "down": seconds} to restart those nodes as a restarted client
process would: sockets closed at once, a new incarnation id and Curve keypair, no job, and a new
config fetch after `down` seconds (nodes in the middle of a fetch are left alone).

Why epoll and not zmq.Poller: zmq_poll over a few thousand sockets rebuilds the whole item list
every turn (O(n) in Python and in libzmq); epoll over each socket's notification FD costs only
for the sockets that fired. ZeroMQ's FD is edge-like: after it fires the socket is read until
EAGAIN; the sockets sent on in a turn are then checked with one zero-timeout zmq_poll over them
(a send can consume the FD's signal of a message that came meanwhile), and once a second every
socket is swept the same way as a safety net.

Config fetches (signed ``GET .../pushy/config/NODE?ccpk=``, RSA sign + decrypt: ~2 ms of CPU each)
run in a pool of `fetchers` threads so the loop keeps heartbeating meanwhile; the pool is large
enough (32) not to queue a reconnect herd that stock clients would send at once. Failed fetches
retry with exponential backoff and full jitter up to `max_backoff` seconds -- faster than the stock
client, whose failed reconfigure waits 108-120 s: `stock_retry` does that. A node reconfigures (new
fetch, new sockets) like the stock client: on a new server incarnation (after a random splay within
one interval, once idle), at 90-100 % of the config's lifetime, or when its command socket stays
silent. After more than `offline_threshold` intervals without a server heartbeat a node closes
and reopens its sockets with the same config and Curve keys (the stock client's socket-only
reconfigure, original-client-and-knife.md 2.7), and re-fetches its config only if no command
message arrives within PROBE_SECONDS of that (2.6: "No messages being received on command
port"). A restarted server that kept its incarnation id is so rejoined without a config fetch.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import itertools
import queue
import random
import select
import signal
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import zmq
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from pushd_bench.identities import KeyPool, node_name
from pushd_bench.node import Behaviour, EmulatedNode, JobStats
from pushd_bench.wire import TIMESTAMPS, CommandDecoder

from pushd.chefauth import sign_request
from pushd.errors import ProtocolError
from pushd.protocol.config import (
    MAX_CONFIG_DOCUMENT,
    NodeConfig,
    decrypt_session_key,
    parse_config,
)
from pushd.protocol.frames import decode

SWEEP_INTERVAL = 1.0
_SEND_MORE = zmq.NOBLOCK | zmq.SNDMORE
_POLLIN = int(zmq.POLLIN)
MAX_TURN_WAIT = 0.05
SERVER_BEAT_CACHE = 16
STOCK_RETRY = 120.0
PROBE_SECONDS = 4.0  # the stock client's "> 3" one-second polls without a command message


@dataclass(frozen=True)
class WorkerSpec:
    worker: int
    base_url: str  # http://host:port/organizations/ORG
    org: str
    prefix: str
    indices: tuple[int, ...]
    state_dir: str
    behaviour: Behaviour
    fetchers: int = 32
    report_interval: float = 0.5
    ramp: float = 0.0
    fetch_timeout: float = 10.0
    max_backoff: float = 10.0
    stock_retry: bool = False  # a failed fetch waits 108-120 s, as the stock client's does
    distinct_keys: int = 0  # node i signs with pool key i mod distinct_keys (0: key i)


class FetchFailed(Exception):
    pass


def fetch_config(base_url: str, node: str, key: RSAPrivateKey, ccpk: str,
                 timeout: float) -> tuple[NodeConfig, bytes]:
    """The node's signed config request, as the stock client makes it."""
    parts = urllib.parse.urlsplit(base_url)
    path = f"{parts.path.rstrip('/')}/pushy/config/{urllib.parse.quote(node, safe='')}"
    query = urllib.parse.urlencode({"ccpk": ccpk, "version": "2.0"})
    headers = sign_request("GET", path, b"", node, key)
    headers["Accept"] = "application/json"
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80,
                                      timeout=timeout)
    try:
        conn.request("GET", f"{path}?{query}", headers=headers)
        response = conn.getresponse()
        body = response.read(MAX_CONFIG_DOCUMENT + 1)
        if response.status != 200:
            raise FetchFailed(f"HTTP {response.status}: {body[:200]!r}")
    except (OSError, http.client.HTTPException) as err:
        raise FetchFailed(f"cannot reach {parts.netloc}: {err}") from None
    finally:
        conn.close()
    try:
        config = parse_config(body)
        return config, decrypt_session_key(key, config.encoded_session_key)
    except ProtocolError as err:
        raise FetchFailed(f"unusable config: {err}") from None


class Worker:
    def __init__(self, spec: WorkerSpec, conn: Connection) -> None:
        self.spec = spec
        self.conn = conn
        self.rng = random.Random()
        self.stats = JobStats()
        # Shared: a job's commit (and run) differs between nodes only in sequence and time.
        self.decoder = CommandDecoder()
        pool = KeyPool(spec.state_dir)
        keys: dict[int, RSAPrivateKey] = {}
        self.nodes = []
        for i in spec.indices:
            k = i % spec.distinct_keys if spec.distinct_keys else i
            if k not in keys:
                keys[k] = pool.load_private(k)
            self.nodes.append(EmulatedNode(i, node_name(spec.prefix, i), spec.org, keys[k],
                                           spec.behaviour, self.stats, self.decoder))
        self.context = zmq.Context(io_threads=1)
        # Two sockets per node, and room for a second pair while a reconnect herd closes and
        # reopens them all: a closed socket counts against max_sockets until libzmq's reaper
        # has destroyed it, and zmq_socket() then fails with EMFILE ("Too many open files", seen
        # in repeated restarts at 1,000 nodes with 2 * nodes + 64).
        self.context.max_sockets = 4 * len(self.nodes) + 64
        # The SUB sockets on an I/O thread of their own: a real node's heartbeat subscription
        # does not wait behind other nodes' Curve handshakes, as it would on one shared thread
        # in a reconnection herd (and then judge the server offline; see _reopen).
        self.sub_context = zmq.Context(io_threads=1)
        self.sub_context.max_sockets = 2 * len(self.nodes) + 64
        self.epoll = select.epoll()
        self.by_fd: dict[int, tuple[EmulatedNode, zmq.Socket]] = {}
        self.recheck: dict[int, tuple[EmulatedNode, zmq.Socket]] = {}
        self.timestamps = TIMESTAMPS
        self.executor = ThreadPoolExecutor(max_workers=spec.fetchers)
        self.results: queue.SimpleQueue[tuple[EmulatedNode, Any, Any]] = queue.SimpleQueue()
        self.beats: list[tuple[float, int, int]] = []  # (due, seq, slot)
        self.reconfigures: list[tuple[float, int, int]] = []
        self.finishes: list[tuple[float, int, int]] = []
        self.prints: list[tuple[float, int, int]] = []  # running jobs printing lines
        self.flushes: list[tuple[float, int, int]] = []  # live output chunks coming due
        self.probes: list[tuple[float, int, int]] = []  # reopened sockets to check for silence
        self.counter = itertools.count()
        self.beat_cache: dict[bytes, str | None] = {}
        self.fetches = self.configs = self.fetch_errors = self.dropped = self.heartbeats = 0
        self.restarts = 0
        self.reopens = 0  # socket-only reconfigures (server silent)
        self.last_error = ""
        self.running = True
        self._curve: dict[int, tuple[bytes, bytes]] = {}
        self._fd_of: dict[zmq.Socket, int] = {}  # each open DEALER's notification FD

    # -- timers -------------------------------------------------------------------------------

    def _schedule_reconfigure(self, node: EmulatedNode, at: float) -> None:
        if node.reconfigure_at is not None and node.reconfigure_at <= at:
            return
        node.reconfigure_at = at
        heapq.heappush(self.reconfigures, (at, next(self.counter), self._slot(node)))

    def _schedule_flush(self, node: EmulatedNode, now: float, slot: int) -> None:
        due = node.flush_due(now)
        if due is not None and due > now:
            heapq.heappush(self.flushes, (due, next(self.counter), slot))

    def _slot(self, node: EmulatedNode) -> int:
        return node.index - self.spec.indices[0]

    # -- sockets ------------------------------------------------------------------------------

    def _open(self, node: EmulatedNode, config: NodeConfig) -> tuple[zmq.Socket, zmq.Socket]:
        dealer = self.context.socket(zmq.DEALER)
        dealer.linger = 0
        dealer.sndhwm = 100
        dealer.rcvhwm = 0
        if config.curve_public_key is not None:
            public, secret = self._curve[node.index]
            dealer.curve_serverkey = config.curve_public_key.encode()
            dealer.curve_publickey = public
            dealer.curve_secretkey = secret
        dealer.connect(config.command_addr)
        sub = self.sub_context.socket(zmq.SUB)
        sub.linger = 0
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(config.out_addr)
        for sock in (dealer, sub):
            fd = sock.getsockopt(zmq.FD)
            self.by_fd[fd] = (node, sock)
            self.epoll.register(fd, select.EPOLLIN)
        self._fd_of[dealer] = dealer.getsockopt(zmq.FD)
        return dealer, sub

    def _close(self, node: EmulatedNode) -> None:
        for sock in node.detach():
            fd = sock.getsockopt(zmq.FD)
            with contextlib.suppress(OSError):
                self.epoll.unregister(fd)
            self.by_fd.pop(fd, None)
            self.recheck.pop(fd, None)
            self._fd_of.pop(sock, None)
            sock.close(0)

    def _send(self, node: EmulatedNode, frames: list[bytes]) -> None:
        dealer = node.dealer
        if dealer is None:
            return
        try:
            # Frame by frame and copied (small frames: cheaper than send_multipart's zero-copy
            # Frames); a DEALER that took the first part takes the rest.
            dealer.send(frames[0], _SEND_MORE)
        except zmq.Again:
            self.dropped += 1
            return
        dealer.send(frames[1], zmq.NOBLOCK)
        self.recheck[self._fd_of[dealer]] = (node, dealer)

    # -- config fetches -------------------------------------------------------------------------

    def _start_fetch(self, node: EmulatedNode) -> None:
        self._close(node)
        node.fetching = True
        node.reconfigure_at = None
        public, _secret = self._curve.setdefault(node.index, zmq.curve_keypair())
        self.fetches += 1

        def job() -> None:
            try:
                got = fetch_config(self.spec.base_url, node.name, node.key, public.decode(),
                                   self.spec.fetch_timeout)
                self.results.put((node, got, None))
            except Exception as err:  # every failure is retried; the message is reported
                self.results.put((node, None, err))

        self.executor.submit(job)

    def _fetched(self, node: EmulatedNode, got: Any, error: Any, now: float) -> None:
        node.fetching = False
        if error is not None:
            self.fetch_errors += 1
            self.last_error = f"{node.name}: {error}"
            node.fetch_failures += 1
            if self.spec.stock_retry:  # update_reconfigure_deadline(120): 10 % splay
                delay = STOCK_RETRY * self.rng.uniform(0.9, 1.0)
            else:
                cap = min(self.spec.max_backoff, 0.5 * 2 ** min(node.fetch_failures, 10))
                delay = self.rng.uniform(0.1, cap)
            self._schedule_reconfigure(node, now + delay)
            return
        node.fetch_failures = 0
        self.configs += 1
        config, session_key = got
        dealer, sub = self._open(node, config)
        node.configure(config, session_key, dealer, sub)
        node.last_server_beat = now  # grace: a first server heartbeat is due within 1 interval
        self._schedule_reconfigure(node, now + config.lifetime * self.rng.uniform(0.9, 1.0))
        self._send(node, node.heartbeat_frames(self.timestamps))
        heapq.heappush(self.beats, (now + config.interval, next(self.counter), self._slot(node)))

    def _reopen(self, node: EmulatedNode, now: float) -> None:
        config, session_key = node.config, node.session_key
        if config is None or not session_key:
            return
        self._close(node)
        self.reopens += 1
        dealer, sub = self._open(node, config)  # the same Curve keypair: one per process
        node.configure(config, session_key, dealer, sub)
        node.last_server_beat = now  # as after a fetch: a server heartbeat is due within 1 interval
        heapq.heappush(self.probes, (now + PROBE_SECONDS, next(self.counter), self._slot(node)))

    def _restart(self, indices: list[int], down: float) -> None:
        now = time.monotonic()
        for index in indices:
            node = self.nodes[index - self.spec.indices[0]]
            if node.fetching:
                continue  # its fetch result would configure the new process with the old key
            self._close(node)
            node.restart()
            self._curve.pop(node.index, None)  # a new process makes a new Curve keypair
            node.reconfigure_at = None
            self._schedule_reconfigure(node, now + down)
            self.restarts += 1

    # -- inbound ------------------------------------------------------------------------------

    def _drain(self, node: EmulatedNode, sock: zmq.Socket, now: float, wall: float) -> None:
        # Until EAGAIN, frame by frame: pyzmq's EVENTS and RCVMORE reads go through enum
        # conversions (~5 us each), an ended drain's raised Again costs less.
        recv = sock.recv
        try:
            while True:
                try:
                    part = recv(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    return
                frames = [part.bytes]
                while part.more:
                    part = recv(zmq.NOBLOCK, copy=False)
                    frames.append(part.bytes)
                if sock is node.sub:
                    self._on_server_beat(node, frames, now)
                elif sock is node.dealer:
                    for reply in node.on_command(frames, now, wall):
                        self._send(node, reply)
                    if node.finish_at is not None and node.job_state == "running":
                        heapq.heappush(self.finishes,
                                       (node.finish_at, next(self.counter), self._slot(node)))
                        if node.next_print is not None:
                            heapq.heappush(self.prints, (node.next_print, next(self.counter),
                                                         self._slot(node)))
                else:
                    return
        except zmq.ZMQError:
            return

    def _on_server_beat(self, node: EmulatedNode, frames: list[bytes], now: float) -> None:
        config = node.config
        if config is None or len(frames) != 2:
            return
        header = bytes(frames[0])
        if header in self.beat_cache:
            incarnation = self.beat_cache[header]
        else:
            # Every node of this worker gets the same signed heartbeat: verify it once.
            try:
                body = decode(frames, key=config.public_key, max_skew=config.max_message_skew)
                incarnation = body.get("incarnation_id")
                incarnation = incarnation if isinstance(incarnation, str) else None
            except ProtocolError:
                incarnation = None
            if len(self.beat_cache) >= SERVER_BEAT_CACHE:
                self.beat_cache.clear()
            self.beat_cache[header] = incarnation
        if incarnation is None:
            return
        node.last_server_beat = now
        if incarnation != config.incarnation_id and node.job_state == "idle":
            self._schedule_reconfigure(node, now + self.rng.uniform(0, config.interval))

    def _server_silent(self, node: EmulatedNode, now: float, wall: float, limit: float) -> bool:
        """Whether the node has heard no server heartbeat for more than `limit` seconds,
        counting what its SUB socket already holds: a stock client's receive thread reads a
        heartbeat as it arrives, while this loop may be behind on a busy machine (a restart's
        herd) and must not judge the server offline on heartbeats it has not read yet."""
        if now - node.last_server_beat <= limit:
            return False
        if node.sub is not None:
            self._drain(node, node.sub, now, wall)
        return now - node.last_server_beat > limit

    # -- the loop -------------------------------------------------------------------------------

    def _due(self, heap: list[tuple[float, int, int]], now: float) -> list[int]:
        slots = []
        while heap and heap[0][0] <= now:
            slots.append(heapq.heappop(heap)[2])
        return slots

    def _turn(self) -> None:
        now = time.monotonic()
        wall = time.time()
        for slot in self._due(self.reconfigures, now):
            node = self.nodes[slot]
            if node.reconfigure_at is not None and node.reconfigure_at <= now and \
                    not node.fetching:
                self._start_fetch(node)
        while True:
            try:
                node, got, error = self.results.get_nowait()
            except queue.Empty:
                break
            self._fetched(node, got, error, now)
        for slot in self._due(self.beats, now):
            node = self.nodes[slot]
            config = node.config
            if node.dealer is None or config is None:
                continue  # reconfiguring: the next config schedules the next beat
            self._send(node, node.heartbeat_frames(self.timestamps))
            self.heartbeats += 1
            heapq.heappush(self.beats, (now + config.interval, next(self.counter), slot))
            if not node.fetching and self._server_silent(
                    node, now, wall, (config.offline_threshold + 1) * config.interval):
                self._reopen(node, now)  # server gone quiet: new sockets, same config
        for slot in self._due(self.probes, now):
            node = self.nodes[slot]
            if node.dealer is not None and not node.answered and not node.fetching:
                self._drain(node, node.dealer, now, wall)
                if node.dealer is not None and not node.answered:
                    self._schedule_reconfigure(node, now)  # still no word on the command socket
        for slot in self._due(self.prints, now):
            node = self.nodes[slot]
            if node.next_print is None or node.next_print > now:
                continue  # a stale or repeated entry: the node's own is still queued
            for frames in node.print_line(now, wall):
                self._send(node, frames)
            if node.next_print is not None:
                heapq.heappush(self.prints, (node.next_print, next(self.counter), slot))
            self._schedule_flush(node, now, slot)
        for slot in self._due(self.flushes, now):
            node = self.nodes[slot]
            for frames in node.live_chunks(now):
                self._send(node, frames)
            self._schedule_flush(node, now, slot)
        for slot in self._due(self.finishes, now):
            node = self.nodes[slot]
            if node.finish_at is not None and node.finish_at <= now:
                for frames in node.live_chunks(now, final=True):
                    self._send(node, frames)
                result = node.finish_job(wall)
                if result is not None:
                    self._send(node, result)
        timers = [h[0][0] for h in (self.beats, self.reconfigures, self.finishes, self.prints,
                                    self.flushes, self.probes) if h]
        wait = min([MAX_TURN_WAIT, *(t - now for t in timers)])
        for fd, _mask in self.epoll.poll(max(0.0, wait)):
            found = self.by_fd.get(fd)
            if found is not None:
                self._drain(found[0], found[1], now, wall)
        while self.recheck:
            pending, self.recheck = self.recheck, {}
            self._drain_ready(list(pending.values()), now, wall)

    def _drain_ready(self, pairs: list[tuple[EmulatedNode, zmq.Socket]], now: float,
                     wall: float) -> None:
        """Drain those of the sockets that have a message: one zmq_poll over them all (a
        socket's FD may miss a message that arrived while it was sending)."""
        if not pairs:
            return
        node_of = {sock: node for node, sock in pairs}
        for sock, _event in zmq.zmq_poll([(sock, _POLLIN) for _, sock in pairs], 0):
            self._drain(node_of[sock], sock, now, wall)

    def _sweep(self, now: float, wall: float) -> None:
        self._drain_ready(list(self.by_fd.values()), now, wall)

    def _report(self) -> None:
        now = time.monotonic()
        self.conn.send({
            "worker": self.spec.worker,
            "nodes": len(self.nodes),
            "configured": sum(1 for n in self.nodes if n.dealer is not None),
            "online": sum(1 for n in self.nodes if n.online(now)),
            "fetching": sum(1 for n in self.nodes if n.fetching),
            "fetches": self.fetches,
            "configs": self.configs,
            "fetch_errors": self.fetch_errors,
            "last_error": self.last_error,
            "dropped": self.dropped,
            "heartbeats": self.heartbeats,
            "restarts": self.restarts,
            "reopens": self.reopens,
            "jobs": self.stats.take_changes(),
        })

    def run(self) -> None:
        start = time.monotonic()
        for node in self.nodes:
            self._schedule_reconfigure(node, start + self.rng.uniform(0, self.spec.ramp))
        next_report = start
        next_sweep = start + SWEEP_INTERVAL
        try:
            while self.running:
                self._turn()
                now = time.monotonic()
                if now >= next_sweep:
                    self._sweep(now, time.time())
                    next_sweep = now + SWEEP_INTERVAL
                if now >= next_report:
                    self._report()
                    next_report = now + self.spec.report_interval
                    while self.conn.poll():
                        message = self.conn.recv()
                        if message == "stop":
                            self.running = False
                        elif isinstance(message, dict) and "restart" in message:
                            self._restart(message["restart"], float(message.get("down", 0)))
        except (EOFError, BrokenPipeError, ConnectionResetError):
            pass  # the parent is gone
        finally:
            self.executor.shutdown(wait=False, cancel_futures=True)
            for node in self.nodes:
                self._close(node)
            self.context.term()
            self.sub_context.term()


def run_worker(spec: WorkerSpec, conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # churn requests go to the parent
    Worker(spec, conn).run()
