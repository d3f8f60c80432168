"""Soak (issue 19 item 5): flat memory and open files over a long run with jobs and node churn.

    python bench/bench_soak.py [--minutes 30] [--sample-every 15] [--nodes 1000] [--clients 3]
                               [--sqlite] [--out DIR]

One real server (PostgreSQL on a fresh database, or ``--sqlite`` for the embedded default),
`--nodes` emulated nodes (each "runs" a command for `--delay` s) and `--clients` real
``push-jobs-client`` processes (whitelist: ``soak`` = ``echo soak``). For `--minutes`:

- every `--job-every` s a job (command ``soak``, ``run_timeout`` 60), alternating: all nodes,
  emulated and real, with a quorum of `--quorum` of them (nodes away in a churn count as
  unavailable), then only the real clients with ``capture_output`` (quorum: all of them);
- every `--churn-every` s the emulator restarts `--churn-fraction` of its nodes (SIGUSR1; see
  bench/emulator.py): they drop their session at once and come back `--churn-down` s later with
  a new config fetch, Curve keypair and incarnation, as a restarted client does;
- every `--sample-every` s: VmRSS, open file descriptors (``/proc/PID/fd``) and threads of the
  gunicorn arbiter, the broker, each API worker (the arbiter's other children) and each client,
  and the posted jobs by status.

Then churn and posting stop and every posted job is polled until it has ended
(`--drain-timeout`); the server's lists of ``new``, ``voting`` and ``running`` jobs must be empty.

Verdict per process (the contract: "a flat RSS, within 5 % after the first 5 minutes, and a flat
count of open files"): the RSS at `--settle` minutes (the sample nearest it) against the last
sample of the run, change in % within `--limit` (5); the largest RSS after the settle point is
shown too, and the slope of a least-squares line through the samples after it (KiB/min). Open
files are flat when the end value is at most max(2, 5 %) above the settle value.

Writes `--out` (default bench/results-2026-12-06-soak): ``samples.csv`` (t, role, pid, rss_kb,
fds, threads), ``jobs.csv`` (per sample: jobs posted and by status, emulated nodes online,
restarts, load), ``job_list.csv`` (each job: id, kind, posted t, final status) and
``summary.json``; prints a table and

    RESULT name=soak_rss_change value=.. unit=% role=ROLE pid=.. settle_kb=.. end_kb=..
    RESULT name=soak_jobs_unfinished value=N unit=jobs posted=.. by_status=..

With ``--memprobe`` (bench/memprobe: tracemalloc in the broker; it inflates the broker's RSS, so
not for the headline figures) the broker reports its memory at the settle point and at the end
(``memprobe-settle.json``, ``memprobe-end.json`` in `--out`), and the lines and object types that
grew most between the two are printed, with each malloc arena's growth (in use and free); a
last probe (``memprobe-trim-end.json``) calls ``malloc_trim(0)`` and says how much RSS that
gave back (memory malloc held free). The API workers are probed the same way at the same points
(``memprobe-PID-LABEL.json``); ``--memprobe-roles workers`` leaves the broker alone.

Exit status 0 when every process is flat and every job ended, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pushd_bench.client_process import ClientProcess
from pushd_bench.common import (
    REPO_ROOT,
    EmulatorProcess,
    bench_server,
    common_arguments,
    fleet_online,
    machine,
    memprobe,
    note,
    result,
)
from pushd_bench.identities import node_name
from pushd_bench.server import PushdServer

ACTIVE = ("new", "voting", "running")
CLIENT_COMMAND = "soak"
DEFAULT_OUT = REPO_ROOT / "bench" / "results-2026-12-06-soak"


@dataclass
class Job:
    id: str
    kind: str  # "all" or "clients"
    posted: float  # seconds since the run's start
    status: str = "new"
    ended: float | None = None


@dataclass
class Sample:
    t: float
    processes: list[tuple[str, int, int, int, int]]  # role, pid, rss_kb, fds, threads
    jobs: dict[str, int]
    posted: int
    online: int
    restarts: int
    load: str


@dataclass
class Run:
    started: float = field(default_factory=time.monotonic)
    jobs: list[Job] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    post_errors: int = 0
    worker_labels: dict[int, str] = field(default_factory=dict)  # API worker pid -> name

    def now(self) -> float:
        return time.monotonic() - self.started


def loadavg() -> str:
    with open("/proc/loadavg") as handle:
        return " ".join(handle.read().split()[:3])


def children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as fh:
                out.extend(int(p) for p in fh.read().split())
    return out


def measure(pid: int) -> tuple[int, int, int] | None:
    """(VmRSS KiB, open fds, threads) of `pid`, or None when it is gone."""
    try:
        rss = threads = 0
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
        return rss, len(os.listdir(f"/proc/{pid}/fd")), threads
    except OSError:
        return None


def watched(server: PushdServer, clients: list[ClientProcess],
            labels: dict[int, str]) -> list[tuple[str, int]]:
    """(role, pid) of every process the verdict is about, found afresh each time. An API worker
    is named by the order its pid first appeared (`labels`), so a worker gunicorn replaces
    shows up as a new api-worker-N and the one it replaced ends early."""
    out: list[tuple[str, int]] = []
    arbiter = server.main_pid()
    broker = server.broker_pid()
    if arbiter is not None:
        out.append(("arbiter", arbiter))
        for pid in sorted(p for p in children(arbiter) if p != broker):
            if pid not in labels:
                labels[pid] = f"api-worker-{len(labels) + 1}"
            out.append((labels[pid], pid))
    if broker is not None:
        out.append(("broker", broker))
    for i, client in enumerate(clients):
        if client.proc is not None and client.proc.poll() is None:
            out.append((f"client-{i + 1}", client.proc.pid))
    return out


def refresh_jobs(server: PushdServer, run: Run) -> None:
    for job in run.jobs:
        if job.status not in ACTIVE:
            continue
        with contextlib.suppress(OSError):
            resp = server.request("GET", f"jobs/{job.id}", timeout=30)
            if resp.status == 200:
                job.status = str(resp.json()["status"])
                if job.status not in ACTIVE:
                    job.ended = run.now()


def take_sample(server: PushdServer, clients: list[ClientProcess], emulator: EmulatorProcess,
                run: Run) -> Sample:
    t = run.now()
    processes = []
    for role, pid in watched(server, clients, run.worker_labels):
        figures = measure(pid)
        if figures is not None:
            processes.append((role, pid, *figures))
    refresh_jobs(server, run)
    counts: dict[str, int] = {}
    for job in run.jobs:
        counts[job.status] = counts.get(job.status, 0) + 1
    status = emulator.status()
    sample = Sample(t=t, processes=processes, jobs=counts, posted=len(run.jobs),
                    online=int(status.get("online", 0)), restarts=int(status.get("restarts", 0)),
                    load=loadavg())
    run.samples.append(sample)
    rss = " ".join(f"{role}={kb / 1024:.1f}M/{fds}fd" for role, _pid, kb, fds, _t in processes)
    note(f"t={t:6.0f}s jobs={counts} online={sample.online} restarts={sample.restarts} "
         f"load={sample.load} {rss}")
    return sample


def post_job(server: PushdServer, run: Run, kind: str, nodes: list[str], quorum: int) -> None:
    body: dict[str, Any] = {"command": CLIENT_COMMAND, "nodes": nodes, "quorum": quorum,
                            "run_timeout": 60}
    if kind == "clients":
        body["capture_output"] = True
    posted = run.now()
    try:
        resp = server.request("POST", "jobs", body, timeout=60)
    except OSError as err:
        run.post_errors += 1
        note(f"POST jobs failed: {err}")
        return
    if resp.status != 201:
        run.post_errors += 1
        note(f"POST jobs: {resp.status} {resp.body[:200]!r}")
        return
    run.jobs.append(Job(id=str(resp.json()["uri"]).rsplit("/", 1)[-1], kind=kind, posted=posted))


def start_clients(server: PushdServer, count: int, base: Path) -> list[ClientProcess]:
    url = f"{server.base_url}/organizations/{server.org_name}"
    clients = []
    for i in range(count):
        name = f"soak-client-{i + 1}"
        key = server.add_client(name)
        client = ClientProcess(base / name, key, url, node=name, log_level="info",
                               file_dir=str(base / name / "files"),
                               whitelist={CLIENT_COMMAND: "echo soak"})
        client.start()
        clients.append(client)
    deadline = time.monotonic() + 120
    for i in range(count):
        name = f"soak-client-{i + 1}"
        while True:
            with contextlib.suppress(OSError):
                resp = server.request("GET", f"node_states/{name}", timeout=30)
                if resp.status == 200 and resp.json().get("availability") == "available":
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not available after 120 s:\n{clients[i].log()[-3000:]}")
            time.sleep(0.5)
    return clients


def drain(server: PushdServer, run: Run, timeout: float) -> float:
    """Poll until every posted job has ended (or `timeout`); seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        refresh_jobs(server, run)
        if all(job.status not in ACTIVE for job in run.jobs):
            break
        time.sleep(2)
    return time.monotonic() - started


def left_on_server(server: PushdServer) -> dict[str, int]:
    """How many jobs the server itself still lists as new, voting or running."""
    out = {}
    for status in ACTIVE:
        resp = server.request("GET", "jobs", query={"status": status}, timeout=60)
        out[status] = len(resp.json()) if resp.status == 200 else -1
    return out


def slope_kib_per_min(points: list[tuple[float, int]]) -> float:
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / var * 60


def verdicts(run: Run, settle: float, end: float, limit: float) -> list[dict[str, Any]]:
    """Per (role, pid) seen from the settle point to the end: the figures and the verdict."""
    window = [s for s in run.samples if s.t <= end + 1]
    base_sample = min(window, key=lambda s: abs(s.t - settle))
    out = []
    for role, pid, base_kb, base_fds, _threads in base_sample.processes:
        series = [(s.t, kb, fds) for s in window if s.t >= base_sample.t
                  for r, p, kb, fds, _th in s.processes if (r, p) == (role, pid)]
        last_t, end_kb, end_fds = series[-1]
        change = (end_kb - base_kb) / base_kb * 100
        peak = max(kb for _t, kb, _f in series)
        fds_ok = end_fds <= base_fds + max(2, base_fds * 0.05)
        out.append({
            "role": role, "pid": pid, "settle_t": round(base_sample.t), "end_t": round(last_t),
            "rss_settle_kb": base_kb, "rss_end_kb": end_kb, "rss_change_pct": round(change, 2),
            "rss_peak_kb": peak, "rss_peak_pct": round((peak - base_kb) / base_kb * 100, 2),
            "rss_slope_kib_per_min": round(slope_kib_per_min([(t, kb) for t, kb, _ in series]), 1),
            "fds_settle": base_fds, "fds_end": end_fds,
            "fds_max": max(f for _t, _kb, f in series),
            "alive_to_end": last_t >= end - 1,
            "rss_flat": abs(change) <= limit, "fds_flat": fds_ok,
        })
    return out


def probe_all(server: PushdServer, run: Run, label: str,
              probes: dict[str, dict[str, Any] | None]) -> None:
    """--memprobe: the broker's report and each API worker's, as probes[label] and
    probes["api-worker-N:label"]."""
    roles = os.environ.get("PUSHD_BENCH_MEMPROBE_ROLES", "broker").split(",")
    if "broker" in roles or "broker-arenas" in roles:
        probes[label] = memprobe(server, label)
    if "workers" not in roles:
        return
    for pid, role in run.worker_labels.items():
        if measure(pid) is not None:
            probes[f"{role}:{label}"] = memprobe(server, label, worker=pid)


def probe_growth(settle: dict[str, Any], end: dict[str, Any], top: int = 15) -> list[str]:
    """The tracemalloc lines and gc object types that grew most from `settle` to `end`."""
    lines = []
    for key, what in (("by_line", "line"), ("by_type", "type")):
        before = {row[0]: row for row in settle[key]}
        grown = []
        for row in end[key]:
            old = before.get(row[0])
            size = row[1] if key == "by_line" else row[2]
            old_size = 0 if old is None else (old[1] if key == "by_line" else old[2])
            count = row[2] if key == "by_line" else row[1]
            old_count = 0 if old is None else (old[2] if key == "by_line" else old[1])
            grown.append((size - old_size, count - old_count, row[0]))
        grown.sort(reverse=True)
        lines += [f"{what} {name}: {size / 1024:+.0f} KiB, {count:+d} objects"
                  for size, count, name in grown[:top]]
    lines.append(f"rss {(end['rss'] - settle['rss']) / 2**20:+.1f} MiB, tracemalloc traced "
                 f"{(end['traced'] - settle['traced']) / 2**20:+.1f} MiB")
    for i, (old, new) in enumerate(zip(settle["arenas"], end["arenas"], strict=False)):
        lines.append(f"malloc arena {i}: system {new['system'] / 2**20:.1f} MiB "
                     f"({(new['system'] - old['system']) / 2**20:+.1f}), in use "
                     f"{(new['in_use'] - old['in_use']) / 2**20:+.1f}, free "
                     f"{(new['free'] - old['free']) / 2**20:+.1f}")
    return lines


def write_outputs(out: Path, run: Run, summary: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "samples.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["t", "role", "pid", "rss_kb", "fds", "threads"])
        for s in run.samples:
            for role, pid, kb, fds, threads in s.processes:
                writer.writerow([round(s.t, 1), role, pid, kb, fds, threads])
    statuses = sorted({k for s in run.samples for k in s.jobs})
    with open(out / "jobs.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["t", "posted", *statuses, "online", "restarts", "load"])
        for s in run.samples:
            writer.writerow([round(s.t, 1), s.posted, *(s.jobs.get(k, 0) for k in statuses),
                             s.online, s.restarts, s.load])
    with open(out / "job_list.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "kind", "posted_t", "status", "ended_t"])
        for job in run.jobs:
            writer.writerow([job.id, job.kind, round(job.posted, 1), job.status,
                             None if job.ended is None else round(job.ended, 1)])
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def print_table(rows: list[dict[str, Any]], limit: float) -> None:
    print(f"{'process':<13}{'pid':>8}{'RSS@settle':>12}{'RSS@end':>10}{'change':>9}"
          f"{'peak':>8}{'KiB/min':>9}{'fds':>10}  verdict (RSS within {limit:g} %, fds flat)")
    for r in rows:
        verdict = "flat" if r["rss_flat"] and r["fds_flat"] and r["alive_to_end"] else "NOT FLAT"
        print(f"{r['role']:<13}{r['pid']:>8}{r['rss_settle_kb'] / 1024:>11.1f}M"
              f"{r['rss_end_kb'] / 1024:>9.1f}M{r['rss_change_pct']:>+8.2f}%"
              f"{r['rss_peak_pct']:>+7.2f}%{r['rss_slope_kib_per_min']:>9.1f}"
              f"{r['fds_settle']:>5}->{r['fds_end']:<4}  {verdict}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--sample-every", type=float, default=15.0,
                        help="seconds between RSS/fd samples (--sample is the CPU sampler)")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="minutes after which RSS must stay flat (default 5)")
    parser.add_argument("--limit", type=float, default=5.0, help="allowed RSS change in %%")
    parser.add_argument("--nodes", type=int, default=1000, help="emulated nodes")
    parser.add_argument("--clients", type=int, default=3, help="real push-jobs-client processes")
    parser.add_argument("--job-every", type=float, default=5.0, metavar="S",
                        help="seconds between jobs (0: none, to tell growth apart)")
    parser.add_argument("--quorum", type=float, default=0.8,
                        help="quorum of the all-nodes jobs, a share of their nodes")
    parser.add_argument("--delay", type=float, default=0.2,
                        help="seconds an emulated node's command runs")
    parser.add_argument("--churn-every", type=float, default=60.0, metavar="S",
                        help="seconds between churns (0: none)")
    parser.add_argument("--churn-fraction", type=float, default=0.1)
    parser.add_argument("--churn-down", type=float, default=10.0, metavar="S",
                        help="seconds a restarted emulated node stays away (default 10: long "
                        "enough for the server to see it offline)")
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--memprobe-roles", default="broker,workers",
                        help="with --memprobe: where it acts (broker, broker-arenas: "
                        "without tracemalloc, workers)")
    common_arguments(parser)
    args = parser.parse_args()
    if args.settle * 60 >= args.minutes * 60 - args.sample_every:
        parser.error("--settle must leave at least one sample before the end of --minutes")
    info = {"machine": machine(), "load_start": loadavg(), "command": " ".join(sys.argv),
            "backend": "sqlite" if args.sqlite else "postgresql",
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    note(f"{info}")
    emulated = [node_name("emu-", i) for i in range(args.nodes)]
    run = Run()
    probes: dict[str, dict[str, Any] | None] = {}  # --memprobe reports
    if args.memprobe:
        os.environ["PUSHD_BENCH_MEMPROBE_ROLES"] = args.memprobe_roles
    with bench_server(args) as server:
        emulator = EmulatorProcess(server, args.nodes, args.state_dir, "--delay", str(args.delay),
                                   "--churn-fraction", str(args.churn_fraction),
                                   "--churn-down", str(args.churn_down))
        clients: list[ClientProcess] = []
        try:
            fleet_online(server, emulator, args.nodes, server_timeout=120)
            clients = start_clients(server, args.clients, server.dir / "clients")
            client_names = [f"soak-client-{i + 1}" for i in range(args.clients)]
            everyone = emulated + client_names
            note(f"{args.nodes} emulated nodes and {args.clients} clients online; soaking for "
                 f"{args.minutes:g} min (server dir {server.dir})")
            run = Run()
            end = args.minutes * 60
            next_job = 0.0 if args.job_every > 0 else math.inf
            next_sample = 0.0
            next_probe = args.settle * 60  # --memprobe: then every 5 minutes
            next_churn = args.churn_every if args.churn_every > 0 else math.inf
            tick = 0
            while run.now() < end:
                now = run.now()
                if now >= next_sample:
                    take_sample(server, clients, emulator, run)
                    next_sample += args.sample_every
                    if "settle" not in probes and now >= args.settle * 60:
                        probe_all(server, run, "settle", probes)
                    elif args.memprobe and now >= next_probe:
                        probe_all(server, run, f"t{now:.0f}", probes)
                    if now >= next_probe:
                        next_probe = now + 300
                if now >= next_churn:
                    os.kill(emulator.pid, signal.SIGUSR1)
                    next_churn += args.churn_every
                if now >= next_job:
                    if tick % 2 == 0:
                        post_job(server, run, "all", everyone,
                                 max(1, int(len(everyone) * args.quorum)))
                    else:
                        post_job(server, run, "clients", client_names, len(client_names))
                    tick += 1
                    next_job += args.job_every
                time.sleep(max(0.0, min(next_sample, next_job, next_churn, end)
                               - run.now()))
            final = take_sample(server, clients, emulator, run)
            probe_all(server, run, "end", probes)
            probe_all(server, run, "trim-end", probes)
            info["load_end"] = loadavg()
            drained = drain(server, run, args.drain_timeout)
            take_sample(server, clients, emulator, run)
            leftover = left_on_server(server)
            for client in clients:
                if client.proc is not None and client.proc.poll() is not None:
                    note(f"client {client.proc.pid} exited ({client.proc.returncode}):\n"
                         + client.log()[-2000:])
        finally:
            for client in clients:
                client.stop()
            emulator.stop()
    rows = verdicts(run, args.settle * 60, final.t, args.limit)
    by_status: dict[str, int] = {}
    by_kind: dict[str, dict[str, int]] = {}
    for job in run.jobs:
        by_status[job.status] = by_status.get(job.status, 0) + 1
        kind = by_kind.setdefault(job.kind, {})
        kind[job.status] = kind.get(job.status, 0) + 1
    unfinished = sum(1 for job in run.jobs if job.status in ACTIVE)
    expected_posts = int(args.minutes * 60 / args.job_every) if args.job_every > 0 else 0
    summary = {**info, "args": {k: str(v) for k, v in vars(args).items()},
               "jobs_posted": len(run.jobs), "jobs_expected": expected_posts,
               "post_errors": run.post_errors, "jobs_by_status": by_status,
               "jobs_by_kind": by_kind,
               "jobs_unfinished": unfinished, "left_on_server": leftover,
               "drain_seconds": round(drained, 1), "end_t": round(final.t, 1),
               "restarts": run.samples[-1].restarts if run.samples else 0,
               "processes": rows}
    write_outputs(args.out, run, summary)
    for label, report in probes.items():
        if report is not None:
            name = label.replace(":", "-")
            (args.out / f"memprobe-{name}.json").write_text(json.dumps(report) + "\n")
    for who, prefix in [("broker", ""), *((role, f"{role}:") for role in
                                          sorted(set(run.worker_labels.values())))]:
        settle, end, trimmed = (probes.get(f"{prefix}{label}")
                                for label in ("settle", "end", "trim-end"))
        if settle and end:
            note(f"{who}: memory growth from the settle point to the end (tracemalloc):\n  "
                 + "\n  ".join(probe_growth(settle, end)))
        series = [(label.removeprefix(prefix), report) for label, report in probes.items()
                  if report and label.startswith(prefix) and ":" not in label[len(prefix):]]
        for label, report in series:
            arenas = report["arenas"]
            note(f"{who} {label}: rss {report['rss'] / 2**20:.1f} MiB; malloc in use "
                 + " ".join(f"{a['in_use'] / 2**20:.1f}" for a in arenas) + ", free "
                 + " ".join(f"{a['free'] / 2**20:.1f}" for a in arenas) + " (per arena)")
        if trimmed and trimmed.get("rss_before_trim"):
            note(f"{who}: malloc_trim(0) at the end: RSS {trimmed['rss_before_trim'] / 2**20:.1f}"
                 f" -> {trimmed['rss'] / 2**20:.1f} MiB")
    print(f"load {info['load_start']} at the start, {info['load_end']} at the end; "
          f"backend {info['backend']}; samples in {args.out}")
    print_table(rows, args.limit)
    print(f"jobs: {len(run.jobs)} posted (of {expected_posts} due, {run.post_errors} POST "
          f"errors), by status {by_status} (by kind {by_kind}); {unfinished} unfinished after "
          f"a {drained:.0f} s drain; the server lists {leftover}; {summary['restarts']} "
          "emulated node restarts")
    for r in rows:
        result("soak_rss_change", r["rss_change_pct"], "%", role=r["role"], pid=r["pid"],
               settle_kb=r["rss_settle_kb"], end_kb=r["rss_end_kb"],
               peak_pct=r["rss_peak_pct"], fds=f"{r['fds_settle']}->{r['fds_end']}")
    result("soak_jobs_unfinished", unfinished, "jobs", posted=len(run.jobs),
           by_status=",".join(f"{k}:{v}" for k, v in sorted(by_status.items())))
    flat = all(r["rss_flat"] and r["fds_flat"] and r["alive_to_end"] for r in rows)
    return 0 if flat and unfinished == 0 and not any(leftover.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
