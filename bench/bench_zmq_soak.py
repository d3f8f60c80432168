"""The soak's floor: a bare pyzmq server carrying the soak's traffic, its RSS over time.

    python bench/bench_zmq_soak.py [--minutes 30] [--nodes 1000] [--out DIR]

bench_soak.py asks the broker for "a flat RSS, within 5 % after the first 5 minutes". libzmq's
message pipes keep pages resident as they carry traffic (a chunk of 256 message slots, 16 KiB,
written page by page, and a spare chunk kept for good once a pipe has carried 256 messages:
RESULTS.md, "fourth session"), so part of any libzmq server's memory grows with the messages
each connection has carried. This measures that part alone: one server process binds what the
broker binds for nodes (a Curve ROUTER with a ZAP handler admitting every key, MAXMSGSIZE and
linger as the broker's, and a PUB), with the broker's heap setting (``pushd.heap``: glibc's mmap
threshold at 8 KiB), and runs no pushd code. One client process holds `--nodes` DEALER + SUB
peers and gives it the soak's traffic (bench_soak.py's defaults):

- a server heartbeat on the PUB every `--interval` s, and a heartbeat from every node every
  `--interval` s on its DEALER (the nodes spread over the interval);
- every `--job-every` s a job, alternating as the soak's do: one to every node heard in the last
  three intervals (the server sends each a ``commit``; the node answers ``ack_commit``, gets a
  ``run``, answers ``ack_run`` and, `--delay` s later, its result), then one the emulated nodes
  take no part in (the soak's jobs for its real clients only);
- every `--churn-every` s a random `--churn-fraction` of the nodes close both sockets at once and
  come back `--churn-down` s later with a new Curve keypair, as the emulator's restarts do.

Message sizes are the protocol's (a signed header frame and a JSON body of a few hundred bytes).
The server samples its own RSS and open files every `--sample-every` s. Prints the curve's end
points as bench_soak.py does for the broker (the sample nearest `--settle` minutes against the
last one), and the growth in MiB, which compares with the broker's own:

    RESULT name=zmq_soak_rss_change value=.. unit=% settle_kb=.. end_kb=.. growth_kb=..
        peak_pct=.. nodes=N minutes=M

and writes ``samples.csv`` (t, rss_kb, fds, peers, messages) to `--out`.
"""

from __future__ import annotations

import argparse
import csv
import heapq
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import zmq
from pushd_bench.bench_zmq_memory import HEADER, MAX_MESSAGE, ZAP_ENDPOINT, _rss, _say

# Bodies of the protocol's sizes; their first byte says what they are (the real ones are JSON).
BEAT = b"B" + b"x" * 230  # server heartbeat
NODE_BEAT = b"H" + b"x" * 250  # node heartbeat
COMMIT = b"C" + b"x" * 330
RUN = b"R" + b"x" * 360
ACK_COMMIT = b"c" + b"x" * 260
ACK_RUN = b"r" + b"x" * 260
RESULT_BODY = b"d" + b"x" * 280


def serve(args: argparse.Namespace, secret: bytes) -> None:
    """The server process: JSON lines on stdout (the ports, then one per sample)."""
    from pushd.heap import limit_fragmentation

    limit_fragmentation()  # as the broker does, before libzmq allocates
    context = zmq.Context(io_threads=1)
    zap = context.socket(zmq.REP)
    zap.linger = 0
    zap.bind(ZAP_ENDPOINT)
    router = context.socket(zmq.ROUTER)
    router.linger = 0
    router.curve_server = True
    router.curve_secretkey = secret
    router.zap_domain = b"pushd"
    router.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
    pub = context.socket(zmq.PUB)
    pub.linger = 0
    ports = (router.bind_to_random_port("tcp://127.0.0.1"),
             pub.bind_to_random_port("tcp://127.0.0.1"))
    _say(ports=ports)
    poller = zmq.Poller()
    poller.register(router, zmq.POLLIN)
    poller.register(zap, zmq.POLLIN)
    heard: dict[bytes, float] = {}
    messages = 0
    start = time.monotonic()
    end = start + args.minutes * 60
    next_beat = next_job = next_sample = start
    job_to_nodes = True
    while True:
        now = time.monotonic()
        if now >= next_sample:
            _say(t=round(now - start, 1), rss_kb=_rss() // 1024,
                 fds=len(os.listdir("/proc/self/fd")),
                 peers=sum(1 for t in heard.values() if now - t < 3 * args.interval),
                 messages=messages)
            next_sample += args.sample_every
            if now >= end:
                break
        if now >= next_beat:
            pub.send_multipart([HEADER, BEAT])
            next_beat += args.interval
        if now >= next_job:
            if job_to_nodes:
                for identity, last in heard.items():
                    if now - last < 3 * args.interval:
                        router.send_multipart([identity, HEADER, COMMIT], zmq.NOBLOCK)
            job_to_nodes = not job_to_nodes
            next_job += args.job_every
        timeout = max(0.0, min(next_beat, next_job, next_sample) - time.monotonic())
        for sock, _ in poller.poll(int(timeout * 1000) + 1):
            if sock is zap:
                request = zap.recv_multipart()
                zap.send_multipart([request[0], request[1], b"200", b"OK", b"", b""])
                continue
            for _ in range(1000):
                try:
                    identity, _header, body = router.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                messages += 1
                heard[identity] = time.monotonic()
                if body[:1] == b"c":
                    router.send_multipart([identity, HEADER, RUN], zmq.NOBLOCK)
        # Forget peers gone for good (a churned node comes back as a new identity).
        if len(heard) > args.nodes * 2:
            cutoff = time.monotonic() - 10 * args.interval
            heard = {k: t for k, t in heard.items() if t >= cutoff}
    for sock in (router, pub, zap):
        sock.close(0)
    context.term()


class Nodes:
    """The client process's peers: a DEALER and a SUB per node, the soak's node behaviour."""

    def __init__(self, args: argparse.Namespace, server_public: bytes,
                 ports: tuple[int, int]) -> None:
        self.args = args
        self.server_public = server_public
        self.ports = ports
        self.context = zmq.Context(io_threads=1)
        self.context.max_sockets = 2 * args.nodes + 16
        self.poller = zmq.Poller()
        self.dealers: list[zmq.Socket | None] = [None] * args.nodes
        self.subs: list[zmq.Socket | None] = [None] * args.nodes
        self.owner: dict[zmq.Socket, int] = {}
        self.timers: list[tuple[float, int, str]] = []
        self.rng = random.Random(1)

    def open(self, index: int, now: float) -> None:
        dealer = self.context.socket(zmq.DEALER)
        public, secret = zmq.curve_keypair()
        dealer.curve_serverkey = self.server_public
        dealer.curve_publickey = public
        dealer.curve_secretkey = secret
        dealer.linger = 0
        dealer.connect(f"tcp://127.0.0.1:{self.ports[0]}")
        sub = self.context.socket(zmq.SUB)
        sub.linger = 0
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(f"tcp://127.0.0.1:{self.ports[1]}")
        self.dealers[index], self.subs[index] = dealer, sub
        for sock in (dealer, sub):
            self.owner[sock] = index
            self.poller.register(sock, zmq.POLLIN)
        phase = self.rng.uniform(0, self.args.interval)
        heapq.heappush(self.timers, (now + phase, index, "beat"))

    def close(self, index: int) -> None:
        for sock in (self.dealers[index], self.subs[index]):
            if sock is not None:
                self.poller.unregister(sock)
                del self.owner[sock]
                sock.close(0)
        self.dealers[index] = self.subs[index] = None

    def _send(self, index: int, body: bytes) -> None:
        dealer = self.dealers[index]
        if dealer is not None:
            dealer.send_multipart([HEADER, body], zmq.NOBLOCK)

    def run(self, until: float) -> None:
        args = self.args
        start = time.monotonic()
        for index in range(args.nodes):
            self.open(index, start)
        next_churn = start + args.churn_every if args.churn_every > 0 else until
        while time.monotonic() < until:
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                _, index, what = heapq.heappop(self.timers)
                if what == "beat":
                    if self.dealers[index] is not None:
                        self._send(index, NODE_BEAT)
                        heapq.heappush(self.timers, (now + args.interval, index, "beat"))
                elif what == "result":
                    self._send(index, RESULT_BODY)
                elif what == "reopen":
                    self.open(index, now)
            if now >= next_churn:
                count = round(args.churn_fraction * args.nodes)
                for index in self.rng.sample(range(args.nodes), count):
                    if self.dealers[index] is not None:
                        self.close(index)
                        heapq.heappush(self.timers, (now + args.churn_down, index, "reopen"))
                next_churn += args.churn_every
            wait = min(0.05, max(0.0, (self.timers[0][0] if self.timers else now + 0.05) - now))
            for sock, _ in self.poller.poll(int(wait * 1000)):
                index = self.owner.get(sock)
                if index is None:
                    continue
                while True:
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    kind = frames[-1][:1]
                    if kind == b"C":
                        self._send(index, ACK_COMMIT)
                    elif kind == b"R":
                        self._send(index, ACK_RUN)
                        heapq.heappush(self.timers,
                                       (time.monotonic() + args.delay, index, "result"))
        for index in range(args.nodes):
            self.close(index)
        self.context.term()


def _summary(samples: list[dict[str, float]], settle_s: float, limit: float) -> dict[str, float]:
    settle = min(samples, key=lambda s: abs(s["t"] - settle_s))
    after = [s for s in samples if s["t"] >= settle["t"]]
    end = samples[-1]
    change = 100.0 * (end["rss_kb"] - settle["rss_kb"]) / settle["rss_kb"]
    peak = 100.0 * (max(s["rss_kb"] for s in after) - settle["rss_kb"]) / settle["rss_kb"]
    return {"settle_t": settle["t"], "settle_kb": settle["rss_kb"], "end_kb": end["rss_kb"],
            "change_pct": change, "peak_pct": peak, "flat": float(change <= limit)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=1.0, help="heartbeat interval, s")
    parser.add_argument("--job-every", type=float, default=5.0)
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--churn-every", type=float, default=60.0)
    parser.add_argument("--churn-fraction", type=float, default=0.1)
    parser.add_argument("--churn-down", type=float, default=10.0)
    parser.add_argument("--sample-every", type=float, default=15.0)
    parser.add_argument("--settle", type=float, default=5.0, help="minutes")
    parser.add_argument("--limit", type=float, default=5.0, help="allowed RSS change in %%")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args, sys.stdin.readline().strip().encode())
        return 0
    from pushd_bench.common import machine, note, raise_nofile, result

    raise_nofile()
    note(f"machine: {machine()}")
    public, secret = zmq.curve_keypair()
    server = subprocess.Popen(
        [sys.executable, "-m", "pushd_bench.bench_zmq_soak", "--serve", *sys.argv[1:]],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert server.stdin is not None and server.stdout is not None
    server.stdin.write(secret.decode() + "\n")
    server.stdin.flush()
    ports = tuple(json.loads(server.stdout.readline())["ports"])
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the nodes: their own process, as the emulator is the broker's peer
        try:
            Nodes(args, public, (ports[0], ports[1])).run(started + args.minutes * 60 + 5)
        finally:
            os._exit(0)
    samples = []
    for line in server.stdout:
        sample = json.loads(line)
        samples.append(sample)
        note(f"t={sample['t']:>7.1f}s rss={sample['rss_kb'] / 1024:.1f}M fds={sample['fds']} "
             f"peers={sample['peers']} messages={sample['messages']}")
    server.wait()
    os.waitpid(pid, 0)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        with open(args.out / "samples.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(samples[0]))
            writer.writeheader()
            writer.writerows(samples)
    figures = _summary(samples, args.settle * 60, args.limit)
    note(f"RSS {figures['settle_kb'] / 1024:.1f}M at t={figures['settle_t']:.0f}s -> "
         f"{figures['end_kb'] / 1024:.1f}M at the end: {figures['change_pct']:+.2f} % "
         f"(peak after settle {figures['peak_pct']:+.2f} %): "
         + ("within" if figures["flat"] else "NOT within") + f" {args.limit:g} %")
    result("zmq_soak_rss_change", figures["change_pct"], "%", settle_kb=figures["settle_kb"],
           end_kb=figures["end_kb"], growth_kb=figures["end_kb"] - figures["settle_kb"],
           peak_pct=round(figures["peak_pct"], 2), nodes=args.nodes, minutes=args.minutes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
