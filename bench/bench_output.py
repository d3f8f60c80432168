"""Live output: how soon a line printed on a node is on a `--follow` reader's screen, and the
broker CPU it costs.

    python bench/bench_output.py --nodes 100 [--lines-per-second 10] [--duration 30]

Starts a real server (heartbeat_interval 1000 ms, fresh PostgreSQL database unless --sqlite),
brings N emulated nodes online (bench/node.py: they print with pushd_client.output's TailBuffer
and LiveStream, so chunks go out exactly as the real client sends them: at most every 250 ms or
16 KB, as `output` messages), measures the broker's CPU over an idle window of `--duration`
seconds (heartbeats only), then starts one capture job on every node whose command prints
`--lines-per-second` lines a second for `--duration` seconds, each line `NAME N WALL` with
WALL the node's time.time() when it printed it. The reader is the real CLI,
`python -m pushd_knife job output --follow JOB` as a subprocess (prefixing `NAME: `); this
process reads its stdout and takes, per line, time.time() on arrival minus WALL (same host, same
clock). Prints:

    RESULT name=output_line_latency_p50|p95|p99|max value=.. unit=ms nodes=N lines=..
    RESULT name=output_lines_on_screen value=.. unit=% nodes=N    (lines seen / lines printed)
    RESULT name=output_broker_cpu_per_line value=.. unit=us nodes=N
        (broker CPU during the job minus the idle window's, over the lines printed)
    RESULT name=output_broker_core_share value=.. unit=% nodes=N  (during the job)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pushd_bench.common import (
    EmulatorProcess,
    ProcessMeter,
    bench_server,
    common_arguments,
    machine,
    note,
    result,
    server_online,
)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def knife_dir(server: Any) -> Path:
    workdir = server.dir / "operator"
    chef = workdir / ".chef"
    chef.mkdir(parents=True, exist_ok=True)
    shutil.copy(server.admin_key_path, chef / "admin.pem")
    (chef / "knife.rb").write_text(
        "current_dir = File.dirname(__FILE__)\n"
        f"node_name '{server.admin_user}'\n"
        "client_key \"#{current_dir}/admin.pem\"\n"
        f"chef_server_url '{server.base_url}/organizations/{server.org_name}'\n")
    return workdir


class Reader:
    """The CLI following the job; a thread notes each line's latency as it arrives."""

    def __init__(self, workdir: Path, job_id: str, since: float) -> None:
        self.since = since
        self.lines = 0
        env = {"HOME": str(workdir), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pushd_knife", "job", "output", "--follow", job_id],
            cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.latencies: list[float] = []
        self.other = 0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            now = time.time()
            parts = raw.split()
            try:
                printed = float(parts[-1])
            except (IndexError, ValueError):
                self.other += 1
                continue
            self.lines += 1
            if printed >= self.since:
                self.latencies.append(now - printed)

    def wait(self, timeout: float) -> tuple[int, str]:
        code = self.process.wait(timeout)
        self.thread.join(10)
        assert self.process.stderr is not None
        return code, self.process.stderr.read().decode(errors="replace")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--lines-per-second", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="lines printed this long after the job was posted are left out "
                             "of the latency figures (the CLI is still starting)")
    common_arguments(parser)
    args = parser.parse_args()
    n = args.nodes
    note(f"machine: {machine()}; load: {os.getloadavg()}")
    with bench_server(args) as server:
        broker = ProcessMeter(server.broker_pid() or 0)
        emulator = EmulatorProcess(server, n, args.state_dir, "--delay", str(args.duration),
                                   "--lines-per-second", str(args.lines_per_second))
        try:
            emulator.wait_online(timeout=max(180.0, n / 10))
            server_online(server, n, timeout=60)
            time.sleep(args.settle)
            cpu0, t0 = broker.cpu_seconds(), time.monotonic()
            time.sleep(args.duration)
            idle_cpu = broker.cpu_seconds() - cpu0
            idle_rate = idle_cpu / (time.monotonic() - t0)
            note(f"idle window: broker {idle_cpu:.2f} s CPU in {args.duration:g} s")
            nodes = sorted(s["node_name"] for s in server.request("GET", "node_states").json())
            resp = server.request("POST", "jobs", {"command": "print", "nodes": nodes,
                                                   "capture_output": True,
                                                   "run_timeout": int(args.duration * 4)})
            assert resp.status == 201, resp.body
            job_id = str(resp.json()["uri"]).rsplit("/", 1)[-1]
            reader = Reader(knife_dir(server), job_id, since=time.time() + args.warmup)
            cpu1, t1 = broker.cpu_seconds(), time.monotonic()
            code, errors = reader.wait(timeout=args.duration * 4 + 60)
            job_cpu, job_seconds = broker.cpu_seconds() - cpu1, time.monotonic() - t1
            job = server.request("GET", f"jobs/{job_id}").json()
            note(f"job {job_id}: {job.get('status')}, CLI exit {code} {errors.strip()[:300]}")
        finally:
            emulator.stop()
    printed = int(n * args.lines_per_second * args.duration)
    lines = reader.lines
    ms = [v * 1000 for v in reader.latencies]
    for name, share in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0)):
        result(f"output_line_latency_{name}", percentile(ms, share), "ms", nodes=n,
               measured=len(ms), lines_per_second=args.lines_per_second)
    result("output_lines_on_screen", lines / max(1, printed) * 100, "%", nodes=n,
           printed_about=printed, other_lines=reader.other)
    extra_cpu = job_cpu - idle_rate * job_seconds
    result("output_broker_cpu_per_line", extra_cpu / max(1, lines) * 1e6, "us", nodes=n,
           job_cpu_s=round(job_cpu, 2), idle_cpu_s_per_s=round(idle_rate, 4))
    result("output_broker_core_share", job_cpu / job_seconds * 100, "%", nodes=n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
