"""libzmq's memory per node, by socket option and malloc setting: a standalone pyzmq probe.

    python bench/bench_zmq_memory.py [--nodes 2000] [--messages 5] [--spacing 1.0]
                                     [--variants base,arena2,...]

For each variant a fresh server process (started with the variant's environment, so glibc malloc
settings such as MALLOC_ARENA_MAX apply) binds what the broker binds for nodes -- a Curve ROUTER
(ZAP handler admitting every key, as the broker's does for granted keys; linger 0, MAXMSGSIZE)
and a PUB -- with the variant's socket options. A client process connects N DEALER + SUB peers.
Traffic is shaped like the protocol: the server sends each DEALER one message after its first
(the broker's ``abort``/``ack``), every DEALER sends `--messages` heartbeat-sized messages
`--spacing` seconds apart, and the PUB sends a server heartbeat every `--spacing` seconds. The
server's RSS growth divided by N is the figure. libzmq's pipes allocate their queues in chunks
of 256 messages (16 KB) and keep one spare chunk, so the pages a connection touches grow with
the messages it has carried until a few hundred: `--messages 600 --spacing 0.05` shows the
steady state of a long-running server (10 minutes of 1 s heartbeats). Prints per variant:

    RESULT name=zmq_rss_per_node value=.. unit=KB variant=NAME nodes=N messages=M

Variants (comma-separated names; `--variants all` runs every one):
    base        as the broker does it today
    arena1      MALLOC_ARENA_MAX=1 in the server's environment
    arena2      MALLOC_ARENA_MAX=2
    trim        MALLOC_ARENA_MAX=2 MALLOC_TRIM_THRESHOLD_=131072 MALLOC_MMAP_THRESHOLD_=131072
    hwm         ROUTER and PUB SNDHWM/RCVHWM 100 (default 1000)
    batch       ZMQ_IN/OUT_BATCH_SIZE 2048 on both (default 8192; draft options: reported as
                unsupported when this libzmq build refuses them)
    nocurve     ROUTER without Curve and without ZAP (Curve's own share)
    nozap       Curve ROUTER without a ZAP handler (libzmq then admits every key): ZAP's share
    router      DEALER peers only (no SUB): the command connection's share
    pub         SUB peers only (no DEALER): the heartbeat connection's share

    measure(variant, nodes, messages, spacing=1.0) -> (KB per node, server figures)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass, field

import zmq

HEADER = b"Version:2.0;SigningMethod:hmac_sha256;Signature:" + b"A" * 44
BODY = b"{" + b'"x":"' + b"y" * 249 + b'"}'  # 257 bytes, like a heartbeat body
ZAP_ENDPOINT = "inproc://zeromq.zap.01"
MAX_MESSAGE = 4 * 65536 + 4096  # the broker's MAXMSGSIZE at the default max_body_size


@dataclass(frozen=True)
class Variant:
    env: dict[str, str] = field(default_factory=dict)
    options: dict[str, int] = field(default_factory=dict)  # zmq option name -> value
    curve: bool = True
    zap: bool = True
    dealers: bool = True
    subs: bool = True


VARIANTS = {
    "base": Variant(),
    "arena1": Variant(env={"MALLOC_ARENA_MAX": "1"}),
    "arena2": Variant(env={"MALLOC_ARENA_MAX": "2"}),
    "trim": Variant(env={"MALLOC_ARENA_MAX": "2", "MALLOC_TRIM_THRESHOLD_": "131072",
                         "MALLOC_MMAP_THRESHOLD_": "131072"}),
    "hwm": Variant(options={"SNDHWM": 100, "RCVHWM": 100}),
    "batch": Variant(options={"IN_BATCH_SIZE": 2048, "OUT_BATCH_SIZE": 2048}),
    "nocurve": Variant(curve=False, zap=False),
    "nozap": Variant(zap=False),
    "router": Variant(subs=False),
    "pub": Variant(dealers=False),
}


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def serve(name: str, public: bytes, secret: bytes, nodes: int, messages: int,
          spacing: float) -> None:
    """The server process: binds, reports ports, counts, reports RSS (JSON lines on stdout)."""
    variant = VARIANTS[name]
    context = zmq.Context(io_threads=1)
    zap = context.socket(zmq.REP)
    zap.linger = 0
    router = context.socket(zmq.ROUTER)
    router.linger = 0
    pub = context.socket(zmq.PUB)
    pub.linger = 0
    if variant.zap:
        zap.bind(ZAP_ENDPOINT)
    if variant.curve:
        router.curve_server = True
        router.curve_secretkey = secret
        router.zap_domain = b"pushd"
    router.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
    refused = []
    for option, value in variant.options.items():
        for sock in (router, pub):
            try:
                sock.setsockopt(getattr(zmq, option), value)
            except zmq.ZMQError as err:
                refused.append(f"{option}:{err.errno}")
    ports = (router.bind_to_random_port("tcp://127.0.0.1"),
             pub.bind_to_random_port("tcp://127.0.0.1"))
    time.sleep(0.5)
    before = _rss()
    _say(ports=ports, refused=refused)
    poller = zmq.Poller()
    poller.register(router, zmq.POLLIN)
    poller.register(zap, zmq.POLLIN)
    greeted: set[bytes] = set()
    received = 0
    expected = nodes * messages if variant.dealers else 0
    deadline = time.monotonic() + 600
    next_beat = time.monotonic()
    subs_ready = not variant.subs
    beats = 0
    while (received < expected or not subs_ready or beats < messages) and \
            time.monotonic() < deadline:
        now = time.monotonic()
        if now >= next_beat:
            pub.send_multipart([HEADER, BODY])
            beats += 1
            next_beat = now + spacing
            # The SUB side is done once the clients say every SUB heard a beat.
            if not subs_ready and _readable():
                subs_ready = sys.stdin.readline().strip() == "subs-ready"
        for sock, _ in poller.poll(100):
            if sock is zap:
                request = zap.recv_multipart()
                zap.send_multipart([request[0], request[1], b"200", b"OK", b"", b""])
                continue
            while True:
                try:
                    frames = router.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                received += 1
                if frames[0] not in greeted:
                    greeted.add(frames[0])
                    router.send_multipart([frames[0], HEADER, BODY], zmq.NOBLOCK)
    time.sleep(1.0)
    _say(before=before, after=_rss(), received=received, peers=len(greeted), beats=beats)
    sys.stdin.readline()  # until the clients are done
    for sock in (router, pub, zap):
        sock.close(0)
    context.term()


def _readable() -> bool:
    return bool(select.select([sys.stdin], [], [], 0)[0])


def _clients(name: str, server_public: bytes, ports: tuple[int, int], nodes: int,
             messages: int, spacing: float, ready: multiprocessing.Queue,
             done: multiprocessing.Queue) -> None:
    variant = VARIANTS[name]
    context = zmq.Context(io_threads=1)
    context.max_sockets = 2 * nodes + 16
    dealers, subs = [], []
    for _ in range(nodes):
        if variant.dealers:
            dealer = context.socket(zmq.DEALER)
            if variant.curve:
                public, secret = zmq.curve_keypair()
                dealer.curve_serverkey = server_public
                dealer.curve_publickey = public
                dealer.curve_secretkey = secret
            dealer.linger = 0
            dealer.connect(f"tcp://127.0.0.1:{ports[0]}")
            dealers.append(dealer)
        if variant.subs:
            sub = context.socket(zmq.SUB)
            sub.linger = 0
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.connect(f"tcp://127.0.0.1:{ports[1]}")
            subs.append(sub)
    for _ in range(messages):
        started = time.monotonic()
        for dealer in dealers:
            dealer.send_multipart([HEADER, BODY], zmq.NOBLOCK)
            while dealer.poll(0):
                dealer.recv_multipart()
        for sub in subs:
            while sub.poll(0):
                sub.recv_multipart()
        time.sleep(max(0.0, spacing - (time.monotonic() - started)))
    # Every SUB has heard the PUB at least once (its connection is up and carried traffic).
    for sub in subs:
        sub.poll(5000)
    ready.put("subs-ready")
    done.get(timeout=900)
    for sock in dealers + subs:
        sock.close(0)
    context.term()


def measure(name: str, nodes: int, messages: int,
            spacing: float = 1.0) -> tuple[float, dict[str, object]]:
    public, secret = zmq.curve_keypair()
    env = dict(os.environ, **VARIANTS[name].env)
    server = subprocess.Popen(
        [sys.executable, "-m", "pushd_bench.bench_zmq_memory", "--serve", name,
         "--nodes", str(nodes), "--messages", str(messages), "--spacing", str(spacing)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )
    assert server.stdin is not None and server.stdout is not None
    server.stdin.write(f"{public.decode()} {secret.decode()}\n")
    server.stdin.flush()
    started = json.loads(server.stdout.readline())
    ctx = multiprocessing.get_context("fork")
    ready, done = ctx.Queue(), ctx.Queue()
    clients = ctx.Process(target=_clients, args=(name, public, tuple(started["ports"]), nodes,
                                                 messages, spacing, ready, done))
    clients.start()
    try:
        ready.get(timeout=900)
        server.stdin.write("subs-ready\n")
        server.stdin.flush()
        figures = json.loads(server.stdout.readline())
    finally:
        done.put("done")
        clients.join(30)
        # The server may already have gone (it exits when its clients have): nothing to tell.
        with contextlib.suppress(BrokenPipeError):
            server.stdin.write("done\n")
            server.stdin.close()
        server.wait(30)
    figures["refused"] = started["refused"]
    return (figures["after"] - figures["before"]) / nodes / 1024, figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=5)
    parser.add_argument("--spacing", type=float, default=1.0)
    parser.add_argument("--variants", default="base,arena2")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        public, secret = sys.stdin.readline().split()
        serve(args.serve, public.encode(), secret.encode(), args.nodes, args.messages,
              args.spacing)
        return 0
    from pushd_bench.common import raise_nofile, result

    raise_nofile()
    names = list(VARIANTS) if args.variants == "all" else args.variants.split(",")
    for name in names:
        per_node, figures = measure(name, args.nodes, args.messages, args.spacing)
        refused = sorted(set(figures["refused"]))  # type: ignore[arg-type]
        extra = {"refused": "|".join(refused)} if refused else {}
        result("zmq_rss_per_node", per_node, "KB", variant=name, nodes=args.nodes,
               messages=args.messages, spacing=args.spacing, peers=figures["peers"],
               received=figures["received"],
               server_rss_mb=round(figures["after"] / 2**20, 1), **extra)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
