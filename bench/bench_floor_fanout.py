"""Floors for the dispatch and storm benchmarks: bare pyzmq CurveZMQ fan-out on this machine.

    python bench/bench_floor_fanout.py [--nodes 1000,5000,8000] [--runs 5] [--workers 4]

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
import multiprocessing
import os
import time
from typing import Any

import zmq
from pushd_bench.bench_floor import BODY, HEADER, curve_dealer, curve_router

POLL_MS = 1000
QUEUE_TIMEOUT = 600  # seconds any process waits for another's word


def _server(public: bytes, secret: bytes, nodes: int, ports: Any, results: Any) -> None:
    context = zmq.Context(io_threads=1)
    router = curve_router(context, public, secret)
    router.linger = 0
    router.rcvhwm = router.sndhwm = 0
    # libzmq's default listen backlog is 100: a herd of connects beyond it loses SYNs and waits
    # for the kernel's 1 s retransmit. The floor uses the kernel's maximum (somaxconn).
    router.setsockopt(zmq.BACKLOG, 4096)
    ports.put(router.bind_to_random_port("tcp://127.0.0.1"))
    started = ports.get(timeout=QUEUE_TIMEOUT)  # the clients' start time (monotonic, same machine)
    identities = _receive(router, nodes, replies=1)
    connected = time.monotonic() - started
    time.sleep(0.5)  # let the clients settle before the timed pattern
    begin = time.monotonic()
    for identity in identities:
        router.send_multipart([identity, HEADER, BODY])
    _receive(router, nodes, replies=1)
    for identity in identities:
        router.send_multipart([identity, HEADER, BODY])
    _receive(router, nodes, replies=2)
    dispatch = time.monotonic() - begin
    results.put((connected, dispatch))
    ports.get(timeout=QUEUE_TIMEOUT)  # wait for the clients to finish before closing
    router.close(0)
    context.term()


def _receive(router: zmq.Socket, nodes: int, replies: int) -> list[bytes]:
    """Receive until every node sent `replies` messages; returns identities in first-seen order."""
    counts: dict[bytes, int] = {}
    complete = 0
    while complete < nodes:
        if not router.poll(POLL_MS * 60):
            raise RuntimeError(f"floor server: {complete} of {nodes} nodes answered")
        while True:
            try:
                identity = router.recv_multipart(zmq.NOBLOCK)[0]
            except zmq.Again:
                break
            seen = counts.get(identity, 0) + 1
            counts[identity] = seen
            if seen == replies:
                complete += 1
    return list(counts)


def _client(server_public: bytes, port: int, count: int, stop: Any) -> None:
    context = zmq.Context(io_threads=1)
    context.max_sockets = count + 16
    poller = zmq.Poller()
    dealers = []
    for _ in range(count):
        dealer = curve_dealer(context, server_public, port)
        dealer.send_multipart([HEADER, BODY])
        poller.register(dealer, zmq.POLLIN)
        dealers.append(dealer)
    answered: dict[zmq.Socket, int] = {}
    while stop.empty():
        for dealer, _ in poller.poll(100):
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
    for dealer in dealers:
        dealer.close(0)
    context.term()


def measure(nodes: int, workers: int) -> tuple[float, float]:
    """One run: (seconds until all N connected, seconds for the dispatch pattern)."""
    ctx = multiprocessing.get_context("fork")
    public, secret = zmq.curve_keypair()
    ports, results, stop = ctx.Queue(), ctx.Queue(), ctx.Queue()
    server = ctx.Process(target=_server, args=(public, secret, nodes, ports, results))
    server.start()
    port = ports.get(timeout=10)
    shares = [nodes // workers + (1 if i < nodes % workers else 0) for i in range(workers)]
    ports.put(time.monotonic())
    clients = [ctx.Process(target=_client, args=(public, port, share, stop))
               for share in shares if share]
    for client in clients:
        client.start()
    try:
        connected, dispatch = results.get(timeout=900)
    finally:
        stop.put("stop")
        ports.put("done")
        for process in [*clients, server]:
            process.join(30)
            if process.is_alive():
                process.kill()
    return connected, dispatch


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
    args = parser.parse_args()
    info = machine()
    print(f"# machine: {info}", flush=True)
    rsa = rsa_per_fetch()
    result("floor_rsa_per_fetch", rsa * 1000, "ms", note="sign+verify+wrap+unwrap")
    for nodes in (int(n) for n in args.nodes.split(",")):
        runs = [measure(nodes, args.workers) for _ in range(args.runs)]
        connect = median([r[0] for r in runs])
        result("floor_connect", connect, "s", nodes=nodes, runs=args.runs,
               all=",".join(f"{r[0]:.2f}" for r in runs))
        result("floor_dispatch", median([r[1] for r in runs]) * 1000, "ms", nodes=nodes,
               runs=args.runs, all=",".join(f"{r[1] * 1000:.0f}" for r in runs))
        cores = max(1, info["nproc"])
        result("floor_storm_estimate", connect + nodes * rsa / cores, "s", nodes=nodes,
               note="connect + RSA per fetch x N / nproc")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
