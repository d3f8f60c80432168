"""API: job-status GETs per second, and event latency from the broker to 100 SSE readers.

    python bench/bench_api.py [--nodes 100] [--threads 8] [--seconds 5] [--runs 5] [--readers 100]

One server, `--nodes` emulated nodes online, one finished job on all of them.

GETs: `--threads` client threads, each on its own keep-alive connection, GET
``.../pushy/jobs/ID`` (the full job document, 100 node statuses) for `--seconds`; the requests
carry X-Ops headers signed once up front (a signature stays valid for the 15-minute clock skew
window; signing each request would make this client the bottleneck). Every answer must be 200.

SSE: `--readers` org-feed streams (``.../pushy/job_status_feed``) on raw sockets in one selector
loop; then a job is POSTed. For each reader: the time from the moment the broker wrote the
job's ``start`` event (its ``timestamp`` field, microseconds) to the moment the event's bytes
arrived, and from the POST being sent to that moment. Prints (medians over `--runs`):

    RESULT name=api_job_get_rate value=.. unit=req/s threads=T
    RESULT name=api_job_get_latency_p50 value=.. unit=ms
    RESULT name=sse_broker_to_all_readers value=.. unit=ms readers=R   (slowest reader)
    RESULT name=sse_broker_to_reader_p50 value=.. unit=ms readers=R
    RESULT name=sse_post_to_all_readers value=.. unit=ms readers=R
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import re
import selectors
import socket
import statistics
import threading
import time
from typing import Any

from pushd_bench.common import (
    EmulatorProcess,
    bench_server,
    common_arguments,
    machine,
    median,
    note,
    result,
    server_online,
)
from pushd_bench.identities import node_name


def get_load(server: Any, job_id: str, threads: int, seconds: float) -> tuple[float, float]:
    path = server.path(f"jobs/{job_id}")
    headers = {"Accept": "application/json", **server.signed_headers("GET", path, b"")}
    return get_rate(server.api_port, path, headers, threads, seconds)


def get_rate(port: int, path: str, headers: dict[str, str], threads: int,
             seconds: float) -> tuple[float, float]:
    """(GETs per second, median latency in ms) of `threads` keep-alive clients for `seconds`;
    every answer must be 200 (also used by bench_floor_http.py)."""
    counts = [0] * threads
    latencies: list[list[float]] = [[] for _ in range(threads)]
    failures: list[str] = []
    stop_at = time.monotonic() + seconds

    def client(slot: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < stop_at:
            started = time.monotonic()
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as err:
                failures.append(str(err))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            if response.status != 200:
                failures.append(f"HTTP {response.status}")
                continue
            counts[slot] += 1
            latencies[slot].append(time.monotonic() - started)
        conn.close()

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    began = time.monotonic()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - began
    if failures:
        raise RuntimeError(f"{len(failures)} failed GETs, e.g. {failures[:3]}")
    every = [v for per in latencies for v in per]
    return sum(counts) / elapsed, statistics.median(every) * 1000


class Readers:
    """`count` raw-socket SSE readers of the org feed, multiplexed in one thread."""

    def __init__(self, server: Any, count: int) -> None:
        path = server.path("job_status_feed")
        headers = {"Host": f"127.0.0.1:{server.api_port}", "Accept": "text/event-stream",
                   **server.signed_headers("GET", path, b"")}
        request = (f"GET {path} HTTP/1.1\r\n"
                   + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
        self.selector = selectors.DefaultSelector()
        self.buffers: list[bytearray] = []
        self.arrived: list[dict[str, float]] = []
        self.watch: str | None = None
        for index in range(count):
            sock = socket.create_connection(("127.0.0.1", server.api_port), timeout=10)
            sock.sendall(request)
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, index)
            self.buffers.append(bytearray())
            self.arrived.append({})
        self.lock = threading.Lock()
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            for key, _mask in self.selector.select(0.2):
                now = time.time()
                try:
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    self.selector.unregister(key.fileobj)
                    continue
                index = key.data
                buffer = self.buffers[index]
                buffer += data
                with self.lock:
                    watch = self.watch
                    if watch is not None and watch not in self.arrived[index] and \
                            watch.encode() in buffer:
                        self.arrived[index][watch] = now
                if len(buffer) > 1 << 20:
                    del buffer[: len(buffer) - 65536]

    def expect(self, job_id: str) -> None:
        with self.lock:
            self.watch = job_id

    def wait_all(self, job_id: str, timeout: float) -> list[float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                got = [a[job_id] for a in self.arrived if job_id in a]
            if len(got) == len(self.arrived):
                return got
            time.sleep(0.01)
        raise RuntimeError(f"only {len(got)} of {len(self.arrived)} readers saw {job_id}")

    def event_timestamp(self, job_id: str) -> float | None:
        """The broker's timestamp of the job's start event, read from the first buffer."""
        text = bytes(self.buffers[0]).decode("utf-8", "replace")
        for line in text.splitlines():
            if line.startswith("data:") and job_id in line:
                try:
                    data = json.loads(line[5:].strip())
                except ValueError:
                    continue
                stamp = data.get("timestamp") if isinstance(data, dict) else None
                if isinstance(stamp, str) and re.match(r"\d{4}-\d\d-\d\d \d", stamp):
                    when = dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%fZ")
                    return when.replace(tzinfo=dt.UTC).timestamp()
        return None

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--readers", type=int, default=100)
    common_arguments(parser)
    args = parser.parse_args()
    note(f"machine: {machine()}")
    nodes = [node_name("emu-", i) for i in range(args.nodes)]
    rates, p50s, slowest, typical, post_to_all = [], [], [], [], []
    with bench_server(args) as server:
        emulator = EmulatorProcess(server, args.nodes, args.state_dir)
        try:
            emulator.wait_online(timeout=120)
            server_online(server, args.nodes, timeout=60)
            created = server.request("POST", "jobs", {"command": "true", "nodes": nodes})
            job_id = created.json()["uri"].rsplit("/", 1)[-1]
            deadline = time.monotonic() + 60
            while server.request("GET", f"jobs/{job_id}").json()["status"] != "complete":
                if time.monotonic() > deadline:
                    raise RuntimeError("the warm-up job did not complete")
                time.sleep(0.2)
            for _ in range(args.runs):
                rate, p50 = get_load(server, job_id, args.threads, args.seconds)
                rates.append(rate)
                p50s.append(p50)
                note(f"GET job: {rate:.0f} req/s, p50 {p50:.1f} ms")
            readers = Readers(server, args.readers)
            try:
                time.sleep(2)  # every stream has sent its head and replay
                for _ in range(args.runs):
                    sent = time.time()
                    created = server.request("POST", "jobs", {"command": "true",
                                                              "nodes": nodes})
                    job_id = created.json()["uri"].rsplit("/", 1)[-1]
                    readers.expect(job_id)
                    arrivals = readers.wait_all(job_id, timeout=30)
                    stamp = readers.event_timestamp(job_id)
                    if stamp is not None:
                        spread = sorted((a - stamp) * 1000 for a in arrivals)
                        slowest.append(spread[-1])
                        typical.append(statistics.median(spread))
                    post_to_all.append((max(arrivals) - sent) * 1000)
                    note(f"SSE: POST->all {post_to_all[-1]:.0f} ms; event->slowest "
                         f"{slowest[-1] if slowest else float('nan'):.0f} ms")
                    time.sleep(3)
            finally:
                readers.close()
        finally:
            emulator.stop()
    result("api_job_get_rate", median(rates), "req/s", threads=args.threads,
           runs=len(rates), job_nodes=args.nodes, all=",".join(f"{r:.0f}" for r in rates))
    result("api_job_get_latency_p50", median(p50s), "ms", threads=args.threads)
    if slowest:
        result("sse_broker_to_all_readers", median(slowest), "ms", readers=args.readers,
               runs=len(slowest), all=",".join(f"{v:.0f}" for v in slowest))
        result("sse_broker_to_reader_p50", median(typical), "ms", readers=args.readers)
    result("sse_post_to_all_readers", median(post_to_all), "ms", readers=args.readers,
           runs=len(post_to_all), all=",".join(f"{v:.0f}" for v in post_to_all))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
