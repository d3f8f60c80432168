"""Floors for the dispatch and storm benchmarks: bare pyzmq CurveZMQ fan-out on this machine.

    python bench/bench_floor_fanout.py [--nodes 1000,5000,8000] [--runs 5] [--workers 4]
                                       [--heartbeat-interval MS] [--client-nice N]

A server process binds a Curve ROUTER (no ZAP, no JSON, no signatures, no database); `--workers`
client processes hold N Curve DEALERs between them (like the emulator, which spreads its nodes
over processes because of the 20,000-file limit). Per run and per N it measures, on the server:

* connect: from the moment the clients start opening their sockets until every DEALER has
  completed its Curve handshake and its first message has arrived. The transport part of a
  reconnect storm: what is left when config fetches, admission and the node FSM cost nothing.
* dispatch: a job's message pattern with nothing else: the server sends one heartbeat-sized
  message to every node (`commit`), each node answers one (`ack_commit`); when all have
  answered it sends one more (`run`) and each node answers two (`ack_run`, then `succeeded`).
  Time from the first `commit` to the last `succeeded`: the floor of "POST to job_complete".
  With `--heartbeat-interval MS` the heartbeat traffic of bench_dispatch's nodes goes on
  meanwhile (and for 3 s before): every node sends a heartbeat-sized message on its DEALER
  each period, the server drains them and sends one on a clear PUB each period, which every
  node's SUB receives: the floor of the same job at that heartbeat rate.

It also measures on this machine what the storm cannot avoid per node besides the handshake:
one RSA-2048 signature (the node signs its config request), one verify and one RSA-OAEP
encryption of the session key (server), one decryption (node). `storm_floor_estimate` is
connect + that RSA work spread over both cores.

Prints, each the median of --runs:

    RESULT name=floor_connect value=.. unit=s nodes=N
    RESULT name=floor_dispatch value=.. unit=ms nodes=N
    RESULT name=floor_rsa_per_fetch value=.. unit=ms
    RESULT name=floor_storm_estimate value=.. unit=s nodes=N
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import time
from typing import Any

import zmq
from pushd_bench.bench_floor import BODY, HEADER, curve_dealer, curve_router

POLL_MS = 1000
QUEUE_TIMEOUT = 600  # seconds any process waits for another's word
STALL = 60.0  # seconds without a node's answer before a run is given up
SETTLE = 0.5  # seconds between connecting and the timed pattern (with heartbeats: 3 s)
SETTLE_BEATING = 3.0
BEAT_TICK = 0.05  # seconds: a client sends the heartbeats due within a tick together
# A node's heartbeat: the server counts it as nothing (it only drains it), like a job reply else.
BEAT_HEADER = HEADER[:-44] + b"B" * 44


class _Beats:
    """The server side of the heartbeats (interval 0: none): one PUB message every interval."""

    def __init__(self, pub: zmq.Socket | None, interval: float) -> None:
        self.pub = pub
        self.interval = interval
        self.due = time.monotonic()
        self.received = 0  # nodes' heartbeats drained

    def tick(self) -> float:
        """Send the server heartbeat if due; the seconds until the next one (or POLL_MS)."""
        if self.pub is None:
            return POLL_MS / 1000
        now = time.monotonic()
        if now >= self.due:
            self.pub.send_multipart([HEADER, BODY])
            self.due = max(self.due + self.interval, now)
        return max(0.0, self.due - now)


def _server(public: bytes, secret: bytes, nodes: int, interval: float, ports: Any,
            results: Any) -> None:
    context = zmq.Context(io_threads=1)
    router = curve_router(context, public, secret)
    router.linger = 0
    router.rcvhwm = router.sndhwm = 0
    # libzmq's default listen backlog is 100: a herd of connects beyond it loses SYNs and waits
    # for the kernel's 1 s retransmit. The floor uses the kernel's maximum (somaxconn).
    router.setsockopt(zmq.BACKLOG, 4096)
    pub = None
    if interval:
        pub = context.socket(zmq.PUB)  # clear text, as push-jobs' heartbeat channel
        pub.linger = 0
        pub.sndhwm = 0
        pub.setsockopt(zmq.BACKLOG, 4096)
    beats = _Beats(pub, interval)
    ports.put((router.bind_to_random_port("tcp://127.0.0.1"),
               pub.bind_to_random_port("tcp://127.0.0.1") if pub is not None else 0))
    started = ports.get(timeout=QUEUE_TIMEOUT)  # the clients' start time (monotonic, same machine)
    identities = _receive(router, nodes, 1, beats)
    connected = time.monotonic() - started
    # Let the clients settle before the timed pattern (heartbeats: until they flow steadily).
    settle = SETTLE_BEATING if interval else SETTLE
    before = beats.received
    _receive(router, 0, 0, beats, seconds=settle)
    beat_rate = (beats.received - before) / settle
    begin = time.monotonic()
    for identity in identities:
        router.send_multipart([identity, HEADER, BODY])
    _receive(router, nodes, 1, beats)
    for identity in identities:
        router.send_multipart([identity, HEADER, BODY])
    _receive(router, nodes, 2, beats)
    dispatch = time.monotonic() - begin
    results.put((connected, dispatch, beat_rate))
    ports.get(timeout=QUEUE_TIMEOUT)  # wait for the clients to finish before closing
    router.close(0)
    if pub is not None:
        pub.close(0)
    context.term()


def _receive(router: zmq.Socket, nodes: int, replies: int, beats: _Beats,
             seconds: float = 0.0) -> list[bytes]:
    """Receive until every node sent `replies` messages besides heartbeats (or, with `seconds`,
    for that long), sending the server heartbeats meanwhile; returns identities in first-seen
    order."""
    counts: dict[bytes, int] = {}
    complete = 0
    until = time.monotonic() + seconds
    progress = time.monotonic()
    while complete < nodes or time.monotonic() < until:
        # Checked whatever arrives: with heartbeats flowing the poll never comes back empty.
        if complete < nodes and time.monotonic() - progress > STALL:
            raise RuntimeError(f"floor server: {complete} of {nodes} nodes answered")
        remaining = until - time.monotonic()
        wait = min(beats.tick(), remaining if remaining > 0 else POLL_MS / 1000)
        if not router.poll(wait * 1000):
            continue
        while True:
            try:
                frames = router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if frames[1] == BEAT_HEADER:
                beats.received += 1
                continue
            if not nodes:
                continue
            identity = frames[0]
            seen = counts.get(identity, 0) + 1
            counts[identity] = seen
            if seen == replies:
                complete += 1
                progress = time.monotonic()
    return list(counts)


def _client(server_public: bytes, port: int, pub_port: int, count: int, interval: float,
            stop: Any, nice: int = 0) -> None:
    if nice:
        os.nice(nice)  # before the context: its I/O thread inherits it
    context = zmq.Context(io_threads=1)
    context.max_sockets = 2 * count + 16
    poller = zmq.Poller()
    dealers, subs = [], []
    for _ in range(count):
        dealer = curve_dealer(context, server_public, port)
        dealer.send_multipart([HEADER, BODY])
        poller.register(dealer, zmq.POLLIN)
        dealers.append(dealer)
        if interval:
            sub = context.socket(zmq.SUB)
            sub.linger = 0
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.connect(f"tcp://127.0.0.1:{pub_port}")
            subs.append(sub)
    # Heartbeats: each node sends one every interval and reads what its SUB got, a tick's
    # share of the nodes at a time (the SUBs are read only then: polling them all would cost
    # the floor more than reading them).
    per_tick = count * BEAT_TICK / interval if interval else 0.0
    owed, cursor = 0.0, 0
    next_tick = time.monotonic()
    answered: dict[zmq.Socket, int] = {}
    while stop.empty():
        wait = 100.0 if not interval else max(0.0, next_tick - time.monotonic()) * 1000
        for dealer, _ in poller.poll(wait):
            while True:
                try:
                    dealer.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                rounds = answered.get(dealer, 0) + 1
                answered[dealer] = rounds
                dealer.send_multipart([HEADER, BODY])  # ack_commit / ack_run
                if rounds == 2:
                    dealer.send_multipart([HEADER, BODY])  # succeeded
        if interval and time.monotonic() >= next_tick:
            next_tick += BEAT_TICK
            owed += per_tick
            while owed >= 1:
                owed -= 1
                dealers[cursor].send_multipart([BEAT_HEADER, BODY])
                with contextlib.suppress(zmq.Again):
                    while True:
                        subs[cursor].recv_multipart(zmq.NOBLOCK)
                cursor = (cursor + 1) % count
    for sock in [*dealers, *subs]:
        sock.close(0)
    context.term()


def measure(nodes: int, workers: int, interval: float = 0.0,
            nice: int = 0) -> tuple[float, float, float]:
    """One run: (seconds until all N connected, seconds for the dispatch pattern, nodes'
    heartbeats the server drained per second just before it); `interval` (seconds, 0: none):
    every node and the server heartbeat at that period meanwhile; `nice`: the client
    processes' nice value (the server's stays)."""
    ctx = multiprocessing.get_context("fork")
    public, secret = zmq.curve_keypair()
    ports, results, stop = ctx.Queue(), ctx.Queue(), ctx.Queue()
    server = ctx.Process(target=_server, args=(public, secret, nodes, interval, ports, results))
    server.start()
    port, pub_port = ports.get(timeout=10)
    shares = [nodes // workers + (1 if i < nodes % workers else 0) for i in range(workers)]
    ports.put(time.monotonic())
    clients = [ctx.Process(target=_client,
                           args=(public, port, pub_port, share, interval, stop, nice))
               for share in shares if share]
    for client in clients:
        client.start()
    try:
        connected, dispatch, beat_rate = results.get(timeout=900)
    finally:
        stop.put("stop")
        ports.put("done")
        for process in [*clients, server]:
            process.join(30)
            if process.is_alive():
                process.kill()
    return connected, dispatch, beat_rate


def rsa_per_fetch(rounds: int = 200) -> float:
    """Seconds of CPU for the RSA work of one signed config fetch (sign, verify, wrap, unwrap)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    node_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    digest = os.urandom(20)
    session_key = os.urandom(32)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    start = time.process_time()
    for _ in range(rounds):
        signature = node_key.sign(digest, padding.PKCS1v15(), hashes.SHA1())
        node_key.public_key().verify(signature, digest, padding.PKCS1v15(), hashes.SHA1())
        wrapped = node_key.public_key().encrypt(session_key, oaep)
        node_key.decrypt(wrapped, oaep)
    del server_key
    return (time.process_time() - start) / rounds


def main() -> int:
    from pushd_bench.common import machine, median, result

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="1000,5000,8000",
                        help="comma-separated node counts")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4,
                        help="client processes (each holds nodes/workers DEALERs)")
    parser.add_argument("--heartbeat-interval", type=int, default=0, metavar="MS",
                        help="every node (its DEALER) and the server (a clear PUB to a SUB per "
                        "node) heartbeat at this period meanwhile, as in bench_dispatch's "
                        "--heartbeat-interval; 0 (default): no heartbeats")
    parser.add_argument("--client-nice", type=int, default=0, metavar="N",
                        help="run the client processes (the nodes) at nice N, as "
                        "bench_dispatch --emulator-nice runs the emulator; default 0")
    args = parser.parse_args()
    interval = args.heartbeat_interval / 1000
    # Fields every RESULT line of a run carries: what made it differ from a plain floor.
    tags: dict[str, Any] = {"heartbeat_ms": args.heartbeat_interval} if interval else {}
    if args.client_nice:
        tags["client_nice"] = args.client_nice
    info = machine()
    print(f"# machine: {info}", flush=True)
    rsa = rsa_per_fetch()
    result("floor_rsa_per_fetch", rsa * 1000, "ms", note="sign+verify+wrap+unwrap")
    for nodes in (int(n) for n in args.nodes.split(",")):
        runs = [measure(nodes, args.workers, interval, args.client_nice)
                for _ in range(args.runs)]
        connect = median([r[0] for r in runs])
        result("floor_connect", connect, "s", nodes=nodes, runs=args.runs,
               all=",".join(f"{r[0]:.2f}" for r in runs), **tags)
        result("floor_dispatch", median([r[1] for r in runs]) * 1000, "ms", nodes=nodes,
               runs=args.runs, all=",".join(f"{r[1] * 1000:.0f}" for r in runs), **tags)
        if interval:
            result("floor_heartbeats_in", median([r[2] for r in runs]), "msg/s", nodes=nodes,
                   runs=args.runs, note="drained by the server in the 3 s before the pattern")
        cores = max(1, info["nproc"])
        result("floor_storm_estimate", connect + nodes * rsa / cores, "s", nodes=nodes,
               note="connect + RSA per fetch x N / nproc")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
