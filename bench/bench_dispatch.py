"""Dispatch: job POST -> every node acked `run`, and -> `job_complete` on the org feed.

    python bench/bench_dispatch.py --nodes 1000 --sizes 100,1000 [--runs 5]

One server, `--nodes` emulated nodes online (1 s heartbeats keep flowing meanwhile); for each
size, `--runs` jobs (command ``true``, quorum 100 %, the first `size` nodes), one after another.
Per job: t0 just before the POST is sent; the last ``ack_run`` any emulated node sent (wall clock
recorded by the emulator on the same machine); the arrival of the job's ``job_complete`` event
on an org feed (SSE) opened before the first job. Prints, per size (medians over the runs):

    RESULT name=dispatch_post_to_all_acked_run value=.. unit=ms nodes=SIZE
    RESULT name=dispatch_post_to_job_complete value=.. unit=ms nodes=SIZE
    RESULT name=dispatch_cpu_{broker,api,emulator,postgres} value=.. unit=s
        CPU each part used from just before the POST until the job's end was seen (the
        broker: all its threads, libzmq's included; api: the arbiter and its workers;
        emulator: all its processes; postgres: the backends serving the server's database);
        with 1 s heartbeats of every online node included.
        Less sensitive to other load on the machine than the wall-clock figures.

With ``--big-job N`` (and ``--sizes ''`` to skip the above), one job of N node names (the
`--nodes` emulated ones, the rest names the server never saw) with quorum 1, while `--pollers`
threads GET ``node_states`` back to back (signed, a new connection each, 30 s timeout); first
the same polling for `--floor-seconds` with no job (the floor, same sitting). Prints:

    RESULT name=big_job_node_states_floor_p99 value=.. unit=ms requests=.. errors=..
    RESULT name=big_job_node_states_fanout_p99 value=.. unit=ms nodes=N requests=.. errors=..
        the GETs started between the POST's answer (the broker took the job) and the job's end
    RESULT name=big_job_node_states_post_p99 value=.. unit=ms nodes=N requests=.. errors=..
        the GETs started while the POST was in flight (the API worker parses the body and
        writes N job rows; the broker is asked to start it at the end)
    RESULT name=big_job_post value=.. unit=ms nodes=N
    RESULT name=big_job_post_to_end value=.. unit=ms nodes=N status=..
errors counts answers other than 200 (a 503 is the broker not answering the API in 3 s).

``--emulator-nice N`` runs the emulator's processes and threads at nice N (the RESULT lines then
carry ``emulator_nice=N``): with 19 the server's processes get the two cores first, as if the
nodes had CPUs of their own; compare with ``bench_floor_fanout.py --client-nice`` (the same for
the floor's nodes).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from pushd_bench import sampling
from pushd_bench.common import (
    EmulatorProcess,
    ProcessMeter,
    bench_server,
    common_arguments,
    fleet_online,
    machine,
    median,
    note,
    postgres_backends,
    process_tree,
    result,
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


class CpuMeters:
    """CPU seconds of the broker, the rest of the server and the emulator (process trees)."""

    def __init__(self, server: Any, emulator: EmulatorProcess) -> None:
        self.database = getattr(server, "bench_database", None)
        broker = server.broker_pid()
        self.parts = {
            "broker": [broker],
            "api": [pid for pid in process_tree(server._process.pid) if pid != broker],
            "emulator": process_tree(emulator.pid),
        }

    def read(self) -> dict[str, float]:
        out = {}
        # Backends come and go with the pools: found afresh each time (a backend that exited
        # during the job is not counted).
        self.parts["postgres"] = postgres_backends(self.database)
        for part, pids in self.parts.items():
            total = 0.0
            for pid in pids:
                with contextlib.suppress(OSError):
                    total += ProcessMeter(pid).cpu_seconds()
            out[part] = total
        return out


def run_job(server: Any, emulator: EmulatorProcess, feed: FeedWatcher, size: int,
            timeout: float, meters: CpuMeters) -> tuple[float, float, str, dict[str, float]]:
    nodes = [node_name("emu-", i) for i in range(size)]
    cpu0 = meters.read()
    t0 = time.time()
    created = server.request("POST", "jobs", {"command": "true", "nodes": nodes}, timeout=60)
    if created.status != 201:
        raise RuntimeError(f"POST jobs: {created.status} {created.body[:300]!r}")
    job_id = created.json()["uri"].rsplit("/", 1)[-1]
    completed_at = feed.wait(job_id, timeout)
    cpu1 = meters.read()
    cpu = {part: cpu1[part] - cpu0.get(part, 0.0) for part in cpu1}
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
    # Where the time went, as the nodes saw it (ms after the POST): the commit fan-out's first
    # and last arrival, then the run's, then the last result sent.
    phases = ("first_commit", "last_commit", "first_run", "last_ack_run", "last_result")
    note("phases ms: " + " ".join(
        f"{name}={(record[name] - t0) * 1000:.0f}" for name in phases if record.get(name)))
    return (record["last_ack_run"] - t0) * 1000, (completed_at - t0) * 1000, status, cpu


class NodeStatesPoller:
    """`threads` threads GET node_states back to back; each answer is (start, seconds, status)."""

    def __init__(self, server: Any, threads: int) -> None:
        self.server = server
        self.samples: list[tuple[float, float, int]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                status = self.server.request("GET", "node_states", timeout=30).status
            except OSError:
                status = 0
            self.samples.append((started, time.monotonic() - started, status))

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def window(self, start: float, end: float) -> tuple[float, int, str]:
        """p99 in ms, request count and the non-200 answers (``503x2``; 0 = no HTTP answer)
        of the GETs started in [start, end)."""
        inside = [(secs, status) for t, secs, status in self.samples if start <= t < end]
        if not inside:
            return float("nan"), 0, "-"
        ordered = sorted(secs for secs, _ in inside)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        bad = collections.Counter(status for _, status in inside if status != 200)
        return p99 * 1000, len(inside), ",".join(f"{s}x{n}" for s, n in sorted(bad.items())) or "0"


def big_job(server: Any, online: int, total: int, pollers: int, floor_seconds: float) -> None:
    """One `total`-node job (the first `online` emulated, the rest never seen) with node_states
    polled throughout; the floor is the same polling with no job, just before."""
    poller = NodeStatesPoller(server, pollers)
    try:
        floor_start = time.monotonic()
        time.sleep(floor_seconds)
        floor_end = time.monotonic()
        nodes = [node_name("emu-", i) for i in range(online)]
        nodes += [f"never-seen-{i:06d}" for i in range(total - online)]
        posted = time.monotonic()
        created = server.request("POST", "jobs", {"command": "true", "nodes": nodes,
                                                  "quorum": 1}, timeout=300)
        answered = time.monotonic()
        if created.status != 201:
            raise RuntimeError(f"POST jobs: {created.status} {created.body[:300]!r}")
        job_id = created.json()["uri"].rsplit("/", 1)[-1]
        deadline = answered + 600
        while True:
            # The job list's first page (summaries): GET jobs/ID would render 100,000 nodes
            # per poll, and that work in an API worker would be measured as node_states delay.
            listed = server.request("GET", "jobs", query={"limit": "1"}, timeout=60).json()
            if listed[0]["id"] != job_id:
                raise RuntimeError(f"newest job is {listed[0]['id']}, not {job_id}")
            status = listed[0]["status"]
            if status not in ("new", "voting", "running"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job_id} still {status} after 600 s")
            time.sleep(0.2)
        ended = time.monotonic()
    finally:
        poller.stop()
    p99, count, errors = poller.window(floor_start, floor_end)
    result("big_job_node_states_floor_p99", p99, "ms", requests=count, errors=errors,
           pollers=pollers)
    p99, count, errors = poller.window(answered, ended)
    result("big_job_node_states_fanout_p99", p99, "ms", nodes=total, requests=count,
           errors=errors, pollers=pollers)
    p99, count, errors = poller.window(posted, answered)
    result("big_job_node_states_post_p99", p99, "ms", nodes=total, requests=count,
           errors=errors, pollers=pollers)
    result("big_job_post", (answered - posted) * 1000, "ms", nodes=total)
    result("big_job_post_to_end", (ended - posted) * 1000, "ms", nodes=total, status=status)
    log_text = server.log_text()
    note(f"API lines 'no answer yet from the broker': "
         f"{log_text.count('no answer yet from the broker')}")
    turns = [float(m) for m in re.findall(r"loop turn took ([0-9.]+) s", log_text)]
    note(f"broker turns over half an interval: {len(turns)}, longest {max(turns, default=0):.2f} s")
    for line in log_text.splitlines():
        if job_id in line and ("starting" in line or "running on" in line or "finished" in line):
            note(line)


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
    parser.add_argument("--big-job", type=int, default=0, metavar="N",
                        help="also run one N-node job (mostly never-seen nodes) and measure "
                        "concurrent node_states GETs")
    parser.add_argument("--pollers", type=int, default=4, help="node_states threads (--big-job)")
    parser.add_argument("--floor-seconds", type=float, default=10.0,
                        help="node_states polling with no job first (--big-job)")
    parser.add_argument("--emulator-nice", type=int, default=0, metavar="N",
                        help="run the emulator at nice N (19: the server gets the cores "
                        "first); default 0")
    common_arguments(parser)
    args = parser.parse_args()
    niced = {"emulator_nice": args.emulator_nice} if args.emulator_nice else {}
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if sizes and max(sizes) > args.nodes:
        parser.error("a size is larger than --nodes")
    note(f"machine: {machine()}")
    figures: dict[int, list[tuple[float, float, str, dict[str, float]]]] = {}
    # A 100,000-name body is ~2 MB: above the default max_request_body (1 MB).
    settings = {"max_request_body": 64 * args.big_job + 100_000} if args.big_job else None
    with bench_server(args, settings) as server:
        emulator = EmulatorProcess(server, args.nodes, args.state_dir, nice=args.emulator_nice)
        feed = None
        try:
            fleet_online(server, emulator, args.nodes)
            feed = FeedWatcher(server)
            meters = CpuMeters(server, emulator)
            time.sleep(1)
            for size in sizes:
                spy = None
                if args.profile > 0 and size == max(sizes):
                    spy = start_profile(server, args.profile)
                samples: list[Any] = []
                for run in range(args.runs):
                    label = f"dispatch{size}-{run}"
                    if args.sample > 0 and size == max(sizes):
                        sampling.request(server.dir / "samples", label, args.sample)
                        time.sleep(0.5)  # every process polls for requests every 0.2 s
                    figure = run_job(server, emulator, feed, size, timeout=60 + size / 50,
                                     meters=meters)
                    if args.sample > 0 and size == max(sizes):
                        samples += sampling.collect(server.dir / "samples", label,
                                                    timeout=args.sample + 30)
                    figures.setdefault(size, []).append(figure)
                    note(f"{size} nodes: all acked run {figure[0]:.0f} ms, job_complete "
                         f"{figure[1]:.0f} ms ({figure[2]}); CPU s "
                         + " ".join(f"{k}={v:.2f}" for k, v in figure[3].items())
                         + f"; load {os.getloadavg()[0]:.1f}")
                    time.sleep(args.pause)
                if spy is not None:
                    print(finish_profile(*spy), flush=True)
                if samples:
                    print(f"# CPU samples, {len(samples)} process windows of {args.sample:g} s "
                          f"starting 0.5 s before each POST (all {args.runs} jobs of {size} "
                          "nodes):\n"
                          + sampling.render(samples, 25), flush=True)
            if args.big_job:
                big_job(server, min(args.nodes, args.big_job), args.big_job, args.pollers,
                        args.floor_seconds)
        finally:
            if feed is not None:
                with contextlib.suppress(Exception):
                    feed.close()
            emulator.stop()
    for size, runs in figures.items():
        statuses = ",".join(sorted({r[2] for r in runs}))
        result("dispatch_post_to_all_acked_run", median([r[0] for r in runs]), "ms",
               nodes=size, runs=len(runs), online=args.nodes,
               all=",".join(f"{r[0]:.0f}" for r in runs), **niced)
        result("dispatch_post_to_job_complete", median([r[1] for r in runs]), "ms",
               nodes=size, runs=len(runs), online=args.nodes, status=statuses,
               all=",".join(f"{r[1]:.0f}" for r in runs), **niced)
        for part in ("broker", "api", "emulator", "postgres"):
            result(f"dispatch_cpu_{part}", median([r[3][part] for r in runs]), "s",
                   nodes=size, runs=len(runs), online=args.nodes,
                   all=",".join(f"{r[3][part]:.2f}" for r in runs), **niced)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
