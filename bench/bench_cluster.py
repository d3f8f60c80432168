"""Cluster at scale (issue 16 item 6): N emulated nodes over three servers, one job to all of
them, kill -9 of one server; and the same job on one server, for the cluster's cost.

    python bench/bench_cluster.py --nodes 24000 --jobs 3 --kill      # the contract's run
    python bench/bench_cluster.py --nodes 8000 --jobs 3              # cluster, job to 8,000
    python bench/bench_cluster.py --nodes 8000 --jobs 3 --single     # one server, same job

Cluster: ``bench/cluster.py``'s ``running_cluster`` (three servers on one fresh PostgreSQL
database behind HAProxy, ``heartbeat_interval`` `--heartbeat-ms`, ``cluster_lease``
`--lease`). One ``push-jobs-emulator`` (its nodes in worker processes of
`--nodes-per-worker`) fetches every config through **HAProxy's URL** (``balance
roundrobin``: each fetch is a new connection, so the nodes spread evenly; per-server counts
are printed from ``cluster_nodes``), and connects to the server that answered, as stock
clients behind a load balancer do. Jobs are POSTed to server 0 (`--post-to`) and their
``job_complete`` read from server 0's org feed. `--single`: one server (``bench/server.py``,
PostgreSQL, the same settings) and the emulator on its own URL.

Measured (RESULT lines; each also on stderr with the load average):

    cluster_all_available      s   emulator nodes started -> node_states (server 0) lists N
                                   online and available
    cluster_job_complete       ms  POST (to server 0) -> job_complete on its feed, median of
                                   --jobs; all=each run; status and succeeded count per run
    cluster_failover_all       s   kill -9 of server --victim (never the one posted to) -> every
                                   node it held is held, available, by a survivor
                                   (cluster_nodes); also 50 % / 90 % marks, the lease's expiry,
                                   and node_states (server 0) lists N available again
    single_job_complete        ms  the same with --single

The emulated nodes re-fetch their config through the same URL once the server has been silent
for more than ``offline_threshold`` + 1 intervals (bench/worker.py; the stock client: offline
after more than ``offline_threshold`` missed heartbeats, then a socket reopen, then a REST
fetch), failed fetches retrying with jittered backoff.

Limits of this machine: a process may hold 20,000 files (hard limit, no CAP_SYS_RESOURCE). A
broker that also publishes the heartbeat needs two per node (command ROUTER connection,
heartbeat PUB connection) and holds ~9,900 nodes: after a kill at 24,000 the two survivors
(12,000 each) could not take every node. So the servers run with ``heartbeat_process`` (the
default here; ``--no-heartbeat-process`` to compare): the heartbeat relay process holds the
PUB connections and the broker one descriptor per node.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pushd_bench.bench_dispatch import FeedWatcher
from pushd_bench.cluster import running_cluster
from pushd_bench.common import (
    DEFAULT_STATE_DIR,
    EmulatorProcess,
    ProcessMeter,
    machine,
    median,
    note,
    process_tree,
    raise_nofile,
    result,
)
from pushd_bench.identities import node_name
from pushd_bench.profiling import profile_process
from pushd_bench.server import PushdServer

PREFIX = "emu-"


def loadavg() -> str:
    with open("/proc/loadavg") as handle:
        return " ".join(handle.read().split()[:3])


def say(text: str) -> None:
    note(f"[{time.strftime('%H:%M:%S')} load {loadavg()}] {text}")


def tree_cpu(server: PushdServer) -> float:
    """CPU seconds of every process of a server (arbiter, workers, broker launcher, broker)."""
    process = server._process
    if process is None:
        return 0.0
    total = 0.0
    with contextlib.suppress(OSError):
        for pid in process_tree(process.pid):
            with contextlib.suppress(OSError):
                total += ProcessMeter(pid).cpu_seconds()
    return total


def fd_count(pid: int | None) -> int:
    if pid is None:
        return -1
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def available(server: PushdServer, timeout: float = 60) -> int:
    resp = server.request("GET", "node_states", timeout=timeout)
    if resp.status != 200:
        return -1
    return sum(1 for n in resp.json()
               if n.get("status") == "online" and n.get("availability") == "available")


def wait_available(server: PushdServer, emulator: EmulatorProcess, nodes: int,
                   timeout: float) -> float:
    """Seconds from the emulator's nodes starting (phase "running") until node_states on
    `server` lists `nodes` available."""
    started: float | None = None
    last_poll = 0.0
    seen = 0
    deadline: float | None = None
    while True:
        now = time.monotonic()
        status = emulator.status()
        if emulator.process.poll() is not None:
            raise RuntimeError(f"emulator exited: {emulator.log_path.read_text()[-2000:]}")
        if started is None:
            if status.get("phase") == "running":
                started = now
                deadline = now + timeout
                say(f"emulator nodes started (preparation {status.get('prepare_seconds')} s)")
            time.sleep(0.25)
            continue
        if now - last_poll >= 2.0 and status.get("online", 0) >= nodes * 0.99:
            last_poll = now
            with contextlib.suppress(OSError):
                seen = available(server)
            if seen >= nodes:
                return time.monotonic() - started
        assert deadline is not None
        if now > deadline:
            raise RuntimeError(f"{seen}/{nodes} available after {timeout} s; emulator "
                               f"{ {k: v for k, v in status.items() if k != 'jobs'} }")
        time.sleep(0.5)


class Spy:
    """py-spy of some processes for `seconds`, in threads; summaries printed at join()."""

    def __init__(self, targets: dict[str, int | None], seconds: float, out_dir: Path) -> None:
        self.results: dict[str, Any] = {}
        self.threads = []
        for label, pid in targets.items():
            if pid is None:
                continue
            path = out_dir / f"profile-{label}.txt"

            def run(label: str = label, pid: int = pid, path: Path = path) -> None:
                try:
                    self.results[label] = profile_process(pid, seconds, path)
                except Exception as err:  # a profile is a bonus; never fail the run on it
                    self.results[label] = err

            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(300)
        for label, profile in self.results.items():
            text = profile.render(25) if hasattr(profile, "render") else repr(profile)
            print(f"# profile {label}\n{text}", flush=True)


def run_job(post_to: PushdServer, feed: FeedWatcher, nodes: int, servers: list[PushdServer],
            emulator: EmulatorProcess, timeout: float) -> dict[str, Any]:
    names = [node_name(PREFIX, i) for i in range(nodes)]
    cpu0 = {i: tree_cpu(s) for i, s in enumerate(servers)}
    emu0 = sum(ProcessMeter(p).cpu_seconds() for p in process_tree(emulator.pid))
    t0 = time.time()
    created = post_to.request("POST", "jobs", {"command": "true", "nodes": names}, timeout=120)
    posted = time.time()
    if created.status != 201:
        raise RuntimeError(f"POST jobs: {created.status} {created.body[:300]!r}")
    job_id = created.json()["uri"].rsplit("/", 1)[-1]
    completed_at = feed.wait(job_id, timeout)
    cpu = {i: round(tree_cpu(s) - cpu0[i], 2) for i, s in enumerate(servers)}
    emu = round(sum(ProcessMeter(p).cpu_seconds() for p in process_tree(emulator.pid)) - emu0, 2)
    job = post_to.request("GET", f"jobs/{job_id}", timeout=120).json()
    node_counts = {state: len(names) for state, names in job.get("nodes", {}).items()}
    record = emulator.job(job_id)
    return {"job": job_id, "post_ms": round((posted - t0) * 1000),
            "complete_ms": round((completed_at - t0) * 1000), "status": job.get("status"),
            "nodes": node_counts, "server_cpu_s": cpu, "emulator_cpu_s": emu,
            "acked_runs": record.get("acked_runs"),
            "last_ack_run_ms": round((record["last_ack_run"] - t0) * 1000)
            if record.get("last_ack_run") else None}


def jobs_phase(label: str, post_to: PushdServer, servers: list[PushdServer],
               emulator: EmulatorProcess, args: argparse.Namespace) -> list[dict[str, Any]]:
    feed = FeedWatcher(post_to)
    runs: list[dict[str, Any]] = []
    try:
        time.sleep(1)
        for run in range(args.jobs):
            spy = None
            if args.profile and run == 0:
                targets = {f"broker{i}": s.broker_pid() for i, s in enumerate(servers)}
                spy = Spy(targets, args.profile, servers[0].dir)
            say(f"{label}: job {run + 1}/{args.jobs} to {args.nodes} nodes")
            figure = run_job(post_to, feed, args.nodes, servers, emulator,
                             timeout=120 + args.nodes / 100)
            runs.append(figure)
            say(f"{label}: {json.dumps(figure)}")
            if spy is not None:
                spy.join()
            time.sleep(args.pause)
    finally:
        with contextlib.suppress(Exception):
            feed.close()
    completes = [r["complete_ms"] for r in runs]
    result(f"{label}_job_complete", median(completes), "ms", nodes=args.nodes, runs=len(runs),
           all=",".join(str(c) for c in completes),
           status=",".join(str(r["status"]) for r in runs),
           succeeded=",".join(str(r["nodes"].get("succeeded", 0)) for r in runs),
           load=loadavg().split()[0])
    return runs


def failover(cluster: Any, emulator: EmulatorProcess, args: argparse.Namespace) -> None:
    victim = cluster.servers[args.victim]
    survivors = [s for s in cluster.servers if s is not victim]
    holders = cluster.holders()
    held = {n for n, (member, _a) in holders.items() if member == victim.member}
    say(f"kill -9 of {victim.member}, holding {len(held)} nodes; broker fds before: "
        + ", ".join(f"{s.member}={fd_count(s.broker_pid())}" for s in cluster.servers))
    marks: dict[str, float] = {}
    lease_gone: float | None = None
    t0 = time.monotonic()
    cluster.kill(args.victim)
    last_line = 0.0
    moved = 0
    deadline = t0 + args.failover_timeout
    names = {s.member for s in survivors}
    while time.monotonic() < deadline:
        now = time.monotonic() - t0
        with contextlib.suppress(Exception):
            holders = cluster.holders()
            moved = sum(1 for n in held
                        if holders.get(n, ("", False))[0] in names and holders[n][1])
            if lease_gone is None and victim.member not in cluster.live_members():
                lease_gone = now
                say(f"{victim.member}'s lease gone after {now:.1f} s")
        for share in (0.1, 0.5, 0.9, 0.99, 1.0):
            key = f"{int(share * 100)}%"
            if key not in marks and moved >= len(held) * share:
                marks[key] = now
        if now - last_line >= 5:
            last_line = now
            status = emulator.status()
            per = Counter(m for m, _a in holders.values())
            say(f"failover +{now:.1f} s: {moved}/{len(held)} moved; holders {dict(per)}; "
                f"emulator online={status.get('online')} fetches={status.get('fetches')} "
                f"errors={status.get('fetch_errors')} last_error={status.get('last_error')!r}; "
                "broker fds " + ", ".join(f"{s.member}={fd_count(s.broker_pid())}"
                                          for s in survivors))
        if moved >= len(held):
            break
        time.sleep(0.5)
    for key, at in marks.items():
        note(f"failover: {key} of {len(held)} moved after {at:.1f} s")
    if "100%" in marks:
        result("cluster_failover_all", marks["100%"], "s", nodes=len(held),
               half=round(marks.get("50%", -1), 1), p90=round(marks.get("90%", -1), 1),
               lease_gone=round(lease_gone or -1, 1), load=loadavg().split()[0])
    else:
        result("cluster_failover_moved", moved, "nodes", of=len(held),
               after=round(time.monotonic() - t0, 1),
               marks=",".join(f"{k}@{v:.1f}" for k, v in marks.items()),
               lease_gone=round(lease_gone or -1, 1), load=loadavg().split()[0])
    post_to = cluster.servers[args.post_to]
    with contextlib.suppress(Exception):
        count = available(post_to, timeout=60)
        result("cluster_failover_node_states_available", count, "nodes", of=args.nodes,
               after=round(time.monotonic() - t0, 1))
    say("logs of survivors (fd / accept errors): " + " | ".join(
        f"{s.member}: {s.log_text().count('Too many open files')} EMFILE lines"
        for s in survivors))


@contextlib.contextmanager
def single_server(args: argparse.Namespace, settings: dict[str, Any]) -> Iterator[PushdServer]:
    from pushd_bench.databases import postgres_database

    with postgres_database() as params:
        server = PushdServer(db_backend=("postgres", params),
                             settings={**settings, "heartbeat_interval": args.heartbeat_ms},
                             nodes=())
        server.start()
        try:
            yield server
        finally:
            server.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--pause", type=float, default=10.0, help="seconds between jobs")
    parser.add_argument("--single", action="store_true", help="one server, not the cluster")
    parser.add_argument("--kill", action="store_true", help="then kill -9 --victim")
    parser.add_argument("--victim", type=int, default=2)
    parser.add_argument("--post-to", type=int, default=0)
    parser.add_argument("--heartbeat-ms", type=int, default=5000)
    parser.add_argument("--lease", type=int, default=10)
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--heartbeat-process", action=argparse.BooleanOptionalAction,
                        default=True, help="heartbeat_process: a broker holds one descriptor "
                        "per node, so two survivors can take a third server's nodes")
    parser.add_argument("--nodes-per-worker", type=int, default=3000)
    parser.add_argument("--fetchers", type=int, default=8,
                        help="concurrent config fetches per emulator worker (its default 32 "
                        "over 8 workers timed out by thousands on a loaded machine)")
    parser.add_argument("--distinct-keys", type=int, default=7000,
                        help="RSA keys shared round robin by the nodes (emulator option)")
    parser.add_argument("--online-timeout", type=float, default=900)
    parser.add_argument("--failover-timeout", type=float, default=180)
    parser.add_argument("--profile", type=float, default=0.0,
                        help="py-spy every broker for this many seconds from the first job")
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR)
    args = parser.parse_args()
    if args.victim == args.post_to:
        parser.error("--victim must not be the server jobs are posted to")
    raise_nofile()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    say(f"machine: {machine()}; argv: {' '.join(sys.argv)}")
    settings = {"api_workers": args.api_workers, "principal_cache_ttl": 60, "metrics_port": 0,
                "max_request_body": 64 * args.nodes + 100_000,
                "heartbeat_process": args.heartbeat_process}
    extra = ["--distinct-keys", str(args.distinct_keys),
             "--nodes-per-worker", str(args.nodes_per_worker), "--fetchers", str(args.fetchers)]
    if args.single:
        with single_server(args, settings) as server:
            emulator = EmulatorProcess(server, args.nodes, args.state_dir, *extra)
            try:
                took = wait_available(server, emulator, args.nodes, args.online_timeout)
                result("single_all_available", took, "s", nodes=args.nodes)
                say(f"single: all {args.nodes} available after {took:.1f} s")
                time.sleep(5)
                jobs_phase("single", server, [server], emulator, args)
            finally:
                emulator.stop()
        return 0
    with running_cluster(size=3, nodes=(), settings=settings, lease=args.lease,
                         heartbeat_ms=args.heartbeat_ms) as cluster:
        say(f"cluster up: {cluster.url}; members {cluster.members()}")
        post_to = cluster.servers[args.post_to]
        emulator = EmulatorProcess(post_to, args.nodes, args.state_dir, "--url", cluster.url,
                                   *extra)
        try:
            took = wait_available(post_to, emulator, args.nodes, args.online_timeout)
            per = Counter(m for m, _a in cluster.holders().values())
            result("cluster_all_available", took, "s", nodes=args.nodes,
                   per_server=",".join(f"{m}:{c}" for m, c in sorted(per.items())),
                   load=loadavg().split()[0])
            say(f"cluster: all {args.nodes} available after {took:.1f} s; held {dict(per)}")
            time.sleep(5)
            if args.jobs:
                jobs_phase("cluster", post_to, cluster.servers, emulator, args)
            if args.kill:
                failover(cluster, emulator, args)
        finally:
            emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
