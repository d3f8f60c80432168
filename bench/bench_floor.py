"""The floor: a bare pyzmq CurveZMQ ROUTER receive loop on this machine.

    python bench/bench_floor.py [--clients 200] [--seconds 5] [--runs 5]

A server process binds a Curve ROUTER (no ZAP, no parsing, no signature) and drains two-frame
messages shaped like a push-jobs heartbeat (a 76-byte header, a 257-byte body) as fast as they
come, from `--clients` Curve DEALERs in a client process that keep up to 50 messages each in
flight. The server's own CPU time (all threads: the Python loop and libzmq's I/O thread, which
decrypts) divided by the messages it received is the floor for "CPU per heartbeat"; the
`--echo` variant also sends each message back. Prints:

    RESULT name=floor_curve_router_cpu_per_msg value=... unit=us mode=recv
    RESULT name=floor_curve_router_rate value=... unit=msg/s mode=recv
    RESULT name=floor_curve_rss_per_node value=... unit=KB nodes=N
        server RSS growth per peer of a bare Curve ROUTER + PUB with N DEALER + SUB peers
        connected (each DEALER sent one message, each SUB got three): libzmq's own share of
        "memory per node"

    measure_floor(clients=200, seconds=5.0, echo=False) -> (us_per_message, messages_per_second)
        one run, for other benchmarks that want the floor from the same sitting
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from typing import Any

import zmq

HEADER = b"Version:2.0;SigningMethod:hmac_sha256;Signature:" + b"A" * 44
BODY = b"{" + b'"x":"' + b"y" * 249 + b'"}'  # 257 bytes, like a heartbeat body


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def curve_dealer(context: zmq.Context, server_public: bytes, port: int,
                 sndhwm: int | None = None) -> zmq.Socket:
    """A Curve DEALER with its own fresh keypair, connected to 127.0.0.1:port (linger 0)."""
    public, secret = zmq.curve_keypair()
    dealer = context.socket(zmq.DEALER)
    dealer.curve_serverkey = server_public
    dealer.curve_publickey = public
    dealer.curve_secretkey = secret
    dealer.linger = 0
    if sndhwm is not None:
        dealer.sndhwm = sndhwm  # before connect: the pipe is made at connect time
    dealer.connect(f"tcp://127.0.0.1:{port}")
    return dealer


def curve_router(context: zmq.Context, public: bytes, secret: bytes) -> zmq.Socket:
    """A CurveZMQ server ROUTER with the given keypair (no ZAP: every client key is admitted)."""
    router = context.socket(zmq.ROUTER)
    router.curve_server = True
    router.curve_publickey = public
    router.curve_secretkey = secret
    return router


def _server(public: bytes, secret: bytes, port_out: multiprocessing.Queue, stop_at_box: Any,
            echo: bool, results: multiprocessing.Queue) -> None:
    context = zmq.Context(io_threads=1)
    router = curve_router(context, public, secret)
    router.rcvhwm = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")
    port_out.put(port)
    window = stop_at_box.get()  # (start, end) monotonic times of the measured window
    poller = zmq.Poller()
    poller.register(router, zmq.POLLIN)
    count = 0
    cpu0 = None
    while True:
        now = time.monotonic()
        if cpu0 is None and now >= window[0]:
            cpu0, count = _cpu(), 0
        if now >= window[1]:
            break
        if not poller.poll(50):
            continue
        for _ in range(1000):  # bounded, so the window edges are seen under full load
            try:
                frames = router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            count += 1
            if echo:
                router.send_multipart(frames, zmq.NOBLOCK)
    cpu = _cpu() - (cpu0 or _cpu())
    results.put((cpu, count, window[1] - window[0]))
    router.close(0)
    context.term()


def _clients(server_public: bytes, port: int, clients: int, until: float, echo: bool) -> None:
    context = zmq.Context(io_threads=1)
    context.max_sockets = clients + 16
    dealers = []
    for _ in range(clients):
        dealers.append(curve_dealer(context, server_public, port, sndhwm=50))
    frames = [HEADER, BODY]
    while time.monotonic() < until:
        for dealer in dealers:
            for _ in range(10):
                try:
                    dealer.send_multipart(frames, zmq.NOBLOCK)
                except zmq.Again:
                    break
            if echo:
                while True:
                    try:
                        dealer.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
    for dealer in dealers:
        dealer.close(0)
    context.term()


def measure_floor(clients: int = 200, seconds: float = 5.0, echo: bool = False,
                  warmup: float = 2.0) -> tuple[float, float]:
    ctx = multiprocessing.get_context("fork")
    public, secret = zmq.curve_keypair()
    ports, box, results = ctx.Queue(), ctx.Queue(), ctx.Queue()
    server = ctx.Process(target=_server, args=(public, secret, ports, box, echo, results))
    server.start()
    port = ports.get(timeout=10)
    start = time.monotonic() + warmup
    end = start + seconds
    box.put((start, end))
    client = ctx.Process(target=_clients, args=(public, port, clients, end + 0.5, echo))
    client.start()
    cpu, count, window = results.get(timeout=seconds + warmup + 30)
    server.join(5)
    client.join(10)
    if count == 0:
        raise RuntimeError("the floor server received nothing")
    return cpu / count * 1e6, count / window


def _memory_server(public: bytes, secret: bytes, ports: multiprocessing.Queue,
                   expected: int, results: multiprocessing.Queue) -> None:
    context = zmq.Context(io_threads=1)
    router = curve_router(context, public, secret)
    pub = context.socket(zmq.PUB)
    ports.put((router.bind_to_random_port("tcp://127.0.0.1"),
               pub.bind_to_random_port("tcp://127.0.0.1")))
    time.sleep(0.5)
    before = _rss()
    seen: set[bytes] = set()
    deadline = time.monotonic() + 300
    while len(seen) < expected and time.monotonic() < deadline:
        if router.poll(100):
            seen.add(router.recv_multipart()[0])
    for _ in range(3):  # every SUB connection gets traffic too, like the server heartbeat
        pub.send_multipart([HEADER, BODY])
        time.sleep(0.5)
    results.put((before, _rss(), len(seen)))
    ports.get(timeout=600)  # wait until the clients are done
    router.close(0)
    pub.close(0)
    context.term()


def _memory_clients(server_public: bytes, ports: tuple[int, int], count: int,
                    done: multiprocessing.Queue) -> None:
    context = zmq.Context(io_threads=1)
    context.max_sockets = 2 * count + 16
    sockets = []
    for _ in range(count):
        dealer = curve_dealer(context, server_public, ports[0])
        dealer.send_multipart([HEADER, BODY])
        sub = context.socket(zmq.SUB)
        sub.linger = 0
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(f"tcp://127.0.0.1:{ports[1]}")
        sockets += [dealer, sub]
    done.get(timeout=600)
    for sock in sockets:
        sock.close(0)
    context.term()


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure_memory_floor(nodes: int = 2000) -> float:
    """KB of server RSS per node for a bare Curve ROUTER + PUB with `nodes` DEALER + SUB peers,
    each DEALER having sent one heartbeat-sized message (libzmq's per-connection cost)."""
    ctx = multiprocessing.get_context("fork")
    public, secret = zmq.curve_keypair()
    ports, results, done = ctx.Queue(), ctx.Queue(), ctx.Queue()
    server = ctx.Process(target=_memory_server, args=(public, secret, ports, nodes, results))
    server.start()
    addresses = ports.get(timeout=10)
    clients = ctx.Process(target=_memory_clients, args=(public, addresses, nodes, done))
    clients.start()
    before, after, seen = results.get(timeout=600)
    ports.put("done")
    done.put("done")
    server.join(10)
    clients.join(10)
    if seen < nodes:
        raise RuntimeError(f"only {seen} of {nodes} peers connected")
    return (after - before) / nodes / 1024


def main() -> int:
    from pushd_bench.common import machine, median, result

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--echo", action="store_true")
    parser.add_argument("--memory-nodes", type=int, default=2000,
                        help="peers for the memory floor (0: skip)")
    args = parser.parse_args()
    runs = [measure_floor(args.clients, args.seconds, args.echo) for _ in range(args.runs)]
    mode = "echo" if args.echo else "recv"
    info = machine()
    result("floor_curve_router_cpu_per_msg", median([r[0] for r in runs]), "us", mode=mode,
           runs=args.runs, nproc=info["nproc"])
    result("floor_curve_router_rate", median([r[1] for r in runs]), "msg/s", mode=mode,
           runs=args.runs, all=",".join(f"{r[1]:.0f}" for r in runs))
    if args.memory_nodes:
        memory = [measure_memory_floor(args.memory_nodes) for _ in range(3)]
        result("floor_curve_rss_per_node", median(memory), "KB", nodes=args.memory_nodes,
               runs=len(memory), all=",".join(f"{m:.1f}" for m in memory))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
