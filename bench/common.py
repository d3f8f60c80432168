"""Shared parts of the benchmarks: a real server, the emulator, process meters, result lines.

Benchmarks run by hand from the repository root (``python bench/bench_heartbeat.py ...``); they
use the server harness (pushd_bench.server, the tests' too) to start a real pushd server in a
temporary directory, on a fresh PostgreSQL database (``--sqlite`` for the embedded default).

    result(name, value, unit, **extra) -> None     prints ``RESULT name=... value=... unit=...``
    machine() -> dict                              nproc, CPU model, RAM (for RESULTS.md)
    raise_nofile() -> int                          soft fd limit := hard (what the run script does)
    median(values) -> float
    ProcessMeter(pid).cpu_seconds() / .rss_bytes()  from /proc
    process_tree(pid) -> list[int]                 pid and every descendant
    postgres_backends(database) -> list[int]       PostgreSQL backend processes of a database
    bench_server(args, settings=None) -> contextmanager[PushdServer]
    EmulatorProcess(server, nodes, state_dir, *extra_args, nice=0)
                 nice: the emulator's processes (and every thread they start) run at this
                 nice value: 19 gives the server's processes the two cores first, as if
                 the nodes had CPUs of their own (bench_floor_fanout --client-nice does the
                 same to the floor's nodes)
        .wait_online(timeout, stall=120) -> float
                 seconds from the nodes' start until the emulator reports every node online;
                 preparation (RSA key pool, provisioning) is not part of `timeout`: it may take
                 as long as it keeps progressing, and fails after `stall` s without progress;
                 a failure names the phase it was in
        .status() -> dict                its --status-file
        .job(job_id) -> dict             its per-job record (commits, acked_runs, results, times)
        .pid, .stop()
    describe_phase(status) -> str        what the emulator's status file says it is doing
    server_online(server, expected, timeout, poll=0.5) -> float
        seconds until GET node_states lists `expected` nodes online and available
    common_arguments(parser)             --sqlite, --state-dir, --what-if, --memprobe, --sample,
                                         --heartbeat-interval, --setting, --server-env
    memprobe(server, label, timeout=60, *, worker=None) -> dict | None
        with --memprobe: the broker's memory report (bench/memprobe/sitecustomize.py) now
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from pushd_bench.server import SAFE_PATH, PushdServer

REPO_ROOT = Path(__file__).resolve().parents[1]

DEFAULT_STATE_DIR = "/var/tmp/pushd-bench/state"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def result(name: str, value: float, unit: str, **extra: Any) -> None:
    if os.environ.get("PUSHD_BENCH_WHATIF"):
        extra["variant"] = "what-if"
    fields = " ".join(f"{k}={v}" for k, v in extra.items())
    print(f"RESULT name={name} value={value:.6g} unit={unit} {fields}".rstrip(), flush=True)


def note(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    model = "unknown"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as handle:
        total_kb = int(handle.readline().split()[1])
    return {"nproc": os.cpu_count(), "cpu": model, "ram_gib": round(total_kb / 2**20, 1)}


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


class ProcessMeter:
    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.pid}/statm") as handle:
            return int(handle.read().split()[1]) * PAGE_SIZE


def process_tree(pid: int) -> list[int]:
    out = [pid]
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as fh:
            for child in fh.read().split():
                out.extend(process_tree(int(child)))
    return out


def postgres_backends(database: str | None) -> list[int]:
    """PostgreSQL's backend processes serving `database` (``postgres: 15/main: USER DB ...``)."""
    if not database:
        return []
    found = []
    needle = f" {database} ".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            if cmdline.startswith(b"postgres:") and needle in cmdline:
                found.append(int(entry))
    return found


def common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sqlite", action="store_true",
                        help="embedded SQLite instead of a fresh PostgreSQL database")
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                        help="emulator key pool (shared between runs)")
    parser.add_argument("--what-if", action="store_true",
                        help="run the server with bench/whatif/sitecustomize.py (proposed "
                        "broker changes, measured before they are made)")
    parser.add_argument("--memprobe", action="store_true",
                        help="run the broker with bench/memprobe/sitecustomize.py (tracemalloc "
                        "and malloc arena reports; inflates RSS: not for the headline figure)")
    parser.add_argument("--metrics", action="store_true",
                        help="serve Prometheus /metrics (metrics_port on a free port); off by "
                        "default so figures compare with earlier sittings")
    parser.add_argument("--sample", type=float, default=0.0, metavar="SECONDS",
                        help="CPU-sample every server and emulator process for this many "
                        "seconds per measured run (bench/sampling.py; costs a few per cent: "
                        "not for the headline figure)")
    parser.add_argument("--heartbeat-interval", type=int, default=1000, metavar="MS",
                        help="the server's heartbeat_interval (also the nodes' period); 1000 (ten "
                        "times as often as the shipped 10000) in every sitting since issue 8")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                        help="a server setting for this run (VALUE read as JSON, else text), "
                        "e.g. zmq_io_processes=2 (repeatable)")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the server's processes, e.g. "
                        "MALLOC_ARENA_MAX=2 (repeatable)")


@contextlib.contextmanager
def bench_server(args: argparse.Namespace,
                 settings: dict[str, Any] | None = None) -> Iterator[PushdServer]:
    raise_nofile()
    # A stopped benchmark still stops its server and drops its database (finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if sum(bool(getattr(args, flag, False)) for flag in ("what_if", "memprobe", "sample")) > 1:
        raise SystemExit("--what-if, --memprobe and --sample each need their own sitecustomize")
    for flag, folder in (("what_if", "whatif"), ("memprobe", "memprobe")):
        if getattr(args, flag, False):
            os.environ["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(REPO_ROOT / "bench" / folder), os.environ.get("PYTHONPATH", ""))
                if p)
    if getattr(args, "what_if", False):
        os.environ["PUSHD_BENCH_WHATIF"] = "1"
    for assignment in getattr(args, "server_env", []):
        name, _, value = assignment.partition("=")
        os.environ[name] = value
        note(f"server environment: {name}={value}")
    values: dict[str, Any] = {"heartbeat_interval": getattr(args, "heartbeat_interval", 1000),
                              "principal_cache_ttl": 60,
                              "api_workers": 2, "metrics_port": 0}
    if getattr(args, "metrics", False):
        from pushd_bench.ports import free_port

        values["metrics_port"] = free_port()
        note(f"metrics on: http://127.0.0.1:{values['metrics_port']}/metrics")
    values.update(settings or {})
    for assignment in getattr(args, "setting", []):
        name, _, text = assignment.partition("=")
        try:
            values[name] = json.loads(text)
        except ValueError:
            values[name] = text
        note(f"server setting: {name}={values[name]!r}")
    with contextlib.ExitStack() as stack:
        backend = None
        if not args.sqlite:
            from pushd_bench.databases import postgres_database

            params = stack.enter_context(postgres_database())
            backend = ("postgres", params)
        server = PushdServer(db_backend=backend, settings=values, nodes=())
        # Which PostgreSQL backends are this server's (their command lines name the database).
        server.bench_database = backend[1]["database"] if backend else None  # type: ignore[attr-defined]
        if getattr(args, "sample", 0.0) > 0:
            from pushd_bench import sampling

            sampling.enable(server.dir / "samples")
        if getattr(args, "memprobe", False):
            os.environ["PUSHD_BENCH_MEMPROBE"] = str(server.dir)
        server.start()
        try:
            yield server
        finally:
            server.stop()


class EmulatorProcess:
    def __init__(self, server: PushdServer, nodes: int, state_dir: str, *extra: str,
                 nice: int = 0) -> None:
        self.server = server
        self.nodes = nodes
        self.status_path = server.dir / "emulator-status.json"
        self.log_path = server.dir / "emulator.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        # A previous emulator's status on this server would read as "running, all online".
        self.status_path.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pushd_bench", "--config", str(server.config_path),
             "--org", server.org_name, "--nodes", str(nodes), "--state-dir", state_dir,
             "--status-file", str(self.status_path), "--report-interval", "5", *extra],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=str(REPO_ROOT),
            env={**os.environ, **SAFE_PATH},
            # Set before exec: the worker processes and libzmq's I/O threads inherit it (a
            # renice of the pid afterwards changes that one thread only).
            preexec_fn=(lambda: os.nice(nice)) if nice else None,
        )
        self.pid = self.process.pid
        self.started = time.monotonic()

    def status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return {}

    def job(self, job_id: str) -> dict[str, Any]:
        return self.status().get("jobs", {}).get(job_id, {})

    def wait_online(self, timeout: float, stall: float = 120.0) -> float:
        # A fresh --state-dir makes the emulator generate its RSA key pool first (minutes for
        # thousands of keys on two cores): that must not eat the nodes' online timeout, so the
        # timeout starts when the emulator reports phase "running"; before that only a phase
        # making no progress for `stall` seconds fails.
        progress: tuple[Any, ...] = ()
        progress_at = time.monotonic()
        running_at: float | None = None
        while True:
            now = time.monotonic()
            status = self.status()
            if self.process.poll() is not None:
                self._fail(f"emulator exited (code {self.process.returncode}) while "
                           f"{describe_phase(status)}", status)
            if status.get("phase") == "running":
                if running_at is None:
                    running_at = now
                    note(f"emulator: nodes started after {status.get('prepare_seconds')} s of "
                         f"preparation (key pool, provisioning)")
                if status.get("online", 0) >= self.nodes:
                    return float(status.get("all_online_after") or now - running_at)
                if now - running_at > timeout:
                    self._fail(f"emulator nodes not online {timeout:.0f} s after they started: "
                               f"{describe_phase(status)}", status)
            else:
                marker = (status.get("phase"), status.get("keys_generated"),
                          status.get("clients_provisioned"))
                if marker != progress:
                    progress, progress_at = marker, now
                elif now - progress_at > stall:
                    self._fail(f"emulator made no progress for {stall:g} s while "
                               f"{describe_phase(status)}", status)
            time.sleep(0.25)

    def _fail(self, message: str, status: dict[str, Any]) -> NoReturn:
        brief = {k: v for k, v in status.items() if k != "jobs"}
        raise RuntimeError(f"{message} ({time.monotonic() - self.started:.0f} s after the "
                           f"emulator started)\nstatus: {brief}\nlog {self.log_path}:\n"
                           + self.log_path.read_text()[-3000:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()


def memprobe(server: PushdServer, label: str, timeout: float = 60, *,
             worker: int | None = None) -> dict[str, Any] | None:
    """With --memprobe: the broker's memory report (or API worker `worker`'s, by pid), else
    None. A broker that does not answer fails the benchmark; a worker only gets a note."""
    if not os.environ.get("PUSHD_BENCH_MEMPROBE"):
        return None
    suffix = label if worker is None else f"{worker}-{label}"
    report = server.dir / f"memprobe-{suffix}.json"
    report.unlink(missing_ok=True)
    request = "memprobe-request" if worker is None else "memprobe-worker-request"
    (server.dir / f"{request}-{suffix}").touch()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            return dict(json.loads(report.read_text()))
        time.sleep(0.25)
    if worker is None:
        raise RuntimeError(f"the broker's memory probe did not answer in {timeout:.0f} s")
    note(f"API worker {worker} did not answer its memory probe in {timeout:.0f} s")
    return None


def describe_phase(status: dict[str, Any]) -> str:
    """What the emulator was doing, from its status file, for failure messages."""
    phase = status.get("phase")
    if phase is None:
        return "starting up (no status file yet)"
    if phase == "keys":
        return (f"generating RSA client keys ({status.get('keys_generated', 0)}/"
                f"{status.get('keys_to_generate', 0)} missing ones generated)")
    if phase == "provisioning":
        return (f"provisioning clients ({status.get('clients_provisioned', 0)}/"
                f"{status.get('nodes', '?')} done)")
    text = (f"running nodes: {status.get('online', 0)}/{status.get('nodes', '?')} online, "
            f"{status.get('configured', 0)} configured, {status.get('fetching', 0)} fetching, "
            f"{status.get('fetch_errors', 0)} fetch errors")
    if status.get("last_error"):
        text += f", last error {status['last_error']!r}"
    return text


def online_nodes(server: PushdServer) -> int:
    resp = server.request("GET", "node_states", timeout=30)
    if resp.status != 200:
        return 0
    return sum(1 for n in resp.json()
               if n.get("status") == "online" and n.get("availability") == "available")


def server_online(server: PushdServer, expected: int, timeout: float, poll: float = 0.5) -> float:
    started = time.monotonic()
    deadline = started + timeout
    seen = 0
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            seen = online_nodes(server)
            if seen >= expected:
                return time.monotonic() - started
        time.sleep(poll)
    raise RuntimeError(f"server saw {seen}/{expected} nodes online after {timeout}s")


def fleet_online(server: PushdServer, emulator: EmulatorProcess, nodes: int, *,
                 server_timeout: float = 60.0, settle: float = 3.0) -> None:
    """Wait until the emulator has all `nodes` online and the server agrees, then `settle`."""
    took = emulator.wait_online(timeout=max(180.0, nodes / 10))
    note(f"emulator: all {nodes} online after {took:.1f} s")
    server_online(server, nodes, timeout=server_timeout)
    time.sleep(settle)
