"""Rollout: a job with `max_concurrency` on emulated nodes whose command takes `--delay` seconds.

    python bench/bench_rollout.py --nodes 8000 --sizes 1000,8000 --concurrency 500 --delay 0.2

One server, `--nodes` emulated nodes online (each "runs" a command for `--delay` seconds); for
each size, `--runs` jobs (command ``true``, quorum 100 %, the first `size` nodes, max_concurrency
`--concurrency`), one after another. From each job's feed (server timestamps):

    running phase = job_complete - quorum_succeeded     (the vote of every node comes first)
    ideal         = ceil(size / concurrency) waves x delay
    overhead per node start = (running phase - ideal) / size
    most running  = the most nodes between run_start and run_complete (must be <= concurrency)

Prints, per size (medians over the runs):

    RESULT name=rollout_running_phase value=.. unit=s nodes=SIZE ideal=..
    RESULT name=rollout_post_to_job_complete value=.. unit=s nodes=SIZE
    RESULT name=rollout_overhead_per_start value=.. unit=ms nodes=SIZE

The per-start overhead at 1,000 and 8,000 nodes shows whether starting the next node costs more
in a bigger job (it must not: the engine pops a deque; tests/unit/test_broker_rollout.py counts
the operations).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
from datetime import datetime
from typing import Any

from pushd_bench.bench_dispatch import FeedWatcher
from pushd_bench.common import (
    EmulatorProcess,
    bench_server,
    common_arguments,
    fleet_online,
    machine,
    median,
    note,
    result,
)
from pushd_bench.identities import node_name


def _stamp(text: str) -> float:
    return datetime.strptime(text.replace("T", " "), "%Y-%m-%d %H:%M:%S.%fZ").timestamp()


def job_feed(server: Any, job_id: str) -> list[Any]:
    stream = server.stream(f"job_status_feed/{job_id}", timeout=60)
    try:
        return [e for e in stream.rest(timeout=120) if e.name != "summary"]
    finally:
        stream.close()


def analyse(events: list[Any], size: int) -> dict[str, float]:
    times: dict[str, float] = {}
    running: set[str] = set()
    most = 0
    starts = 0
    for event in events:
        if event.name in ("quorum_succeeded", "job_complete", "start"):
            times[event.name] = _stamp(event.data["timestamp"])
        elif event.name == "run_start":
            starts += 1
            running.add(event.data["node"])
            most = max(most, len(running))
        elif event.name == "run_complete":
            running.discard(event.data["node"])
    if starts != size:
        raise RuntimeError(f"{starts} run_start events for {size} nodes")
    return {"running": times["job_complete"] - times["quorum_succeeded"],
            "voting": times["quorum_succeeded"] - times["start"], "most": most}


def run_job(server: Any, feed: FeedWatcher, size: int, concurrency: int,
            timeout: float) -> dict[str, Any]:
    nodes = [node_name("emu-", i) for i in range(size)]
    t0 = time.time()
    created = server.request("POST", "jobs", {"command": "true", "nodes": nodes,
                                              "max_concurrency": concurrency}, timeout=60)
    if created.status != 201:
        raise RuntimeError(f"POST jobs: {created.status} {created.body[:300]!r}")
    job_id = created.json()["uri"].rsplit("/", 1)[-1]
    completed_at = feed.wait(job_id, timeout)
    status = feed.completed[job_id][1].get("status")
    if status != "complete":
        # E.g. quorum_failed: a node judged offline on a loaded machine. Say so, measure nothing.
        doc = server.request("GET", f"jobs/{job_id}", timeout=60).json()
        counts = {name: len(nodes) for name, nodes in doc.get("nodes", {}).items()}
        note(f"{size} nodes: job {job_id} ended {status} {counts}; not measured")
        return {"status": status}
    figures: dict[str, Any] = analyse(job_feed(server, job_id), size)
    figures.update(total=completed_at - t0, status=status)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--sizes", default="1000,8000")
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument("--delay", type=float, default=0.2, help="seconds each command runs")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pause", type=float, default=3.0, help="seconds between jobs")
    common_arguments(parser)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if max(sizes) > args.nodes:
        parser.error("a size is larger than --nodes")
    note(f"machine: {machine()}")
    figures: dict[int, list[dict[str, Any]]] = {}
    with bench_server(args) as server:
        emulator = EmulatorProcess(server, args.nodes, args.state_dir, "--delay", str(args.delay))
        feed = None
        try:
            fleet_online(server, emulator, args.nodes, server_timeout=120)
            feed = FeedWatcher(server)
            time.sleep(1)
            for size in sizes:
                ideal = math.ceil(size / args.concurrency) * args.delay
                attempts = 0
                while len(figures.get(size, [])) < args.runs and attempts < args.runs + 2:
                    attempts += 1
                    figure = run_job(server, feed, size, args.concurrency,
                                     timeout=120 + size / 20)
                    if "running" not in figure:
                        time.sleep(args.pause)
                        continue
                    figures.setdefault(size, []).append(figure)
                    note(f"{size} nodes, max_concurrency {args.concurrency}: running phase "
                         f"{figure['running']:.2f} s (ideal {ideal:.1f} s), voting "
                         f"{figure['voting']:.2f} s, POST -> job_complete {figure['total']:.2f}"
                         f" s, most running {figure['most']} ({figure['status']})")
                    if figure["most"] > args.concurrency:
                        raise RuntimeError(f"{figure['most']} nodes ran at once")
                    time.sleep(args.pause)
        finally:
            if feed is not None:
                with contextlib.suppress(Exception):
                    feed.close()
            emulator.stop()
    for size, runs in figures.items():
        ideal = math.ceil(size / args.concurrency) * args.delay
        running = median([r["running"] for r in runs])
        result("rollout_running_phase", running, "s", nodes=size, ideal=round(ideal, 2),
               concurrency=args.concurrency, delay=args.delay, runs=len(runs),
               most_running=max(r["most"] for r in runs),
               all=",".join(f"{r['running']:.2f}" for r in runs))
        result("rollout_post_to_job_complete", median([r["total"] for r in runs]), "s",
               nodes=size, status=",".join(sorted({str(r["status"]) for r in runs})))
        result("rollout_overhead_per_start", (running - ideal) / size * 1000, "ms", nodes=size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
