"""Dispatch: job POST -> every node acked `run`, and -> `job_complete` on the org feed.

    python bench/bench_dispatch.py --nodes 1000 --sizes 100,1000 [--runs 5]

One server, `--nodes` emulated nodes online (1 s heartbeats keep flowing meanwhile); for each
size, `--runs` jobs (command ``true``, quorum 100 %, the first `size` nodes), one after another.
Per job: t0 just before the POST is sent; the last ``ack_run`` any emulated node sent (wall clock
recorded by the emulator on the same machine); the arrival of the job's ``job_complete`` event
on an org feed (SSE) opened before the first job. Prints, per size (medians over the runs):

    RESULT name=dispatch_post_to_all_acked_run value=.. unit=ms nodes=SIZE
    RESULT name=dispatch_post_to_job_complete value=.. unit=ms nodes=SIZE
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import threading
import time
from pathlib import Path
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
from pushd_bench.profiling import parse_profile


class FeedWatcher:
    """Reads the org feed in a thread; remembers when each job's job_complete arrived."""

    def __init__(self, server: Any) -> None:
        self.stream = server.stream("job_status_feed", timeout=30)
        self.completed: dict[str, tuple[float, dict[str, Any]]] = {}
        self.first: list[Any] = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                event = self.stream.next_event(timeout=1)
            except TimeoutError:
                continue
            except OSError:
                return
            if event is None:
                return
            if len(self.first) < 3:
                self.first.append(event)
            if event.name == "job_complete" and isinstance(event.data, dict):
                job_id = event.data.get("job") or event.data.get("job_id") or event.data.get("id")
                if isinstance(job_id, str):
                    self.completed[job_id] = (time.time(), event.data)

    def wait(self, job_id: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if job_id in self.completed:
                return self.completed[job_id][0]
            time.sleep(0.005)
        raise RuntimeError(f"no job_complete for {job_id} in {timeout}s; first: {self.first}")

    def close(self) -> None:
        self._stop = True
        self.stream.close()


def run_job(server: Any, emulator: EmulatorProcess, feed: FeedWatcher, size: int,
            timeout: float) -> tuple[float, float, str]:
    nodes = [node_name("emu-", i) for i in range(size)]
    t0 = time.time()
    created = server.request("POST", "jobs", {"command": "true", "nodes": nodes}, timeout=60)
    if created.status != 201:
        raise RuntimeError(f"POST jobs: {created.status} {created.body[:300]!r}")
    job_id = created.json()["uri"].rsplit("/", 1)[-1]
    completed_at = feed.wait(job_id, timeout)
    status = server.request("GET", f"jobs/{job_id}", timeout=60).json()["status"]
    deadline = time.monotonic() + 30
    record: dict[str, Any] = {}
    while time.monotonic() < deadline:
        record = emulator.job(job_id)
        if record.get("acked_runs", 0) >= size and record.get("last_ack_run"):
            break
        time.sleep(0.1)
    if record.get("acked_runs", 0) < size:
        raise RuntimeError(f"only {record.get('acked_runs')} of {size} acked run ({status})")
    return (record["last_ack_run"] - t0) * 1000, (completed_at - t0) * 1000, status


def start_profile(server: Any, seconds: float) -> tuple[subprocess.Popen[bytes], Path] | None:
    if shutil.which("py-spy") is None:
        print("# py-spy not installed (pip install 'pushd[bench]'): no profile", flush=True)
        return None
    out = server.dir / "broker-dispatch-profile.txt"
    command = ["py-spy", "record", "-p", str(server.broker_pid()), "-d", str(int(seconds)),
               "-r", "200", "-f", "raw", "-o", str(out), "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out


def finish_profile(process: subprocess.Popen[bytes], out: Path) -> str:
    process.wait()
    return parse_profile(out).render(25) if out.exists() else "# no profile (py-spy missing?)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pause", type=float, default=2.0, help="seconds between jobs")
    parser.add_argument("--profile", type=float, default=0.0,
                        help="py-spy the broker for this many seconds during the largest size")
    common_arguments(parser)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if max(sizes) > args.nodes:
        parser.error("a size is larger than --nodes")
    note(f"machine: {machine()}")
    figures: dict[int, list[tuple[float, float, str]]] = {}
    with bench_server(args) as server:
        emulator = EmulatorProcess(server, args.nodes, args.state_dir)
        feed = None
        try:
            took = emulator.wait_online(timeout=max(180.0, args.nodes / 10))
            note(f"emulator: all {args.nodes} online after {took:.1f} s")
            server_online(server, args.nodes, timeout=60)
            time.sleep(3)
            feed = FeedWatcher(server)
            time.sleep(1)
            for size in sizes:
                spy = None
                if args.profile > 0 and size == max(sizes):
                    spy = start_profile(server, args.profile)
                for _ in range(args.runs):
                    figure = run_job(server, emulator, feed, size, timeout=60 + size / 50)
                    figures.setdefault(size, []).append(figure)
                    note(f"{size} nodes: all acked run {figure[0]:.0f} ms, job_complete "
                         f"{figure[1]:.0f} ms ({figure[2]})")
                    time.sleep(args.pause)
                if spy is not None:
                    print(finish_profile(*spy), flush=True)
        finally:
            if feed is not None:
                with contextlib.suppress(Exception):
                    feed.close()
            emulator.stop()
    for size, runs in figures.items():
        statuses = ",".join(sorted({r[2] for r in runs}))
        result("dispatch_post_to_all_acked_run", median([r[0] for r in runs]), "ms",
               nodes=size, runs=len(runs), online=args.nodes,
               all=",".join(f"{r[0]:.0f}" for r in runs))
        result("dispatch_post_to_job_complete", median([r[1] for r in runs]), "ms",
               nodes=size, runs=len(runs), online=args.nodes, status=statuses,
               all=",".join(f"{r[1]:.0f}" for r in runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
