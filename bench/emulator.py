"""``push-jobs-emulator``: N simulated push-jobs nodes against a real pushd appliance.

    push-jobs-emulator --config SERVER_CONFIG --org ORG --nodes N [options]

brings N nodes online against the appliance SERVER_CONFIG (opscode-push-jobs-server.rb)
describes, and keeps them there until SIGINT/SIGTERM (or --duration). Each node is a real
protocol peer: its own RSA client key (a cached pool under --state-dir, so a second run reuses
every identity), its own signed config fetch from the REST API, its own Curve keypair, SUB and
DEALER sockets, heartbeats and job handling (every command "runs" instantly or after --delay,
exiting with --exit-code and printing --output-bytes bytes when the job captures output).

Provisioning (skipped with --no-provision): the organization and one client per node
(``PREFIX00000`` ...) are created in the appliance's local principal store with the same store
calls as ``push-jobs-server-ctl org-create`` / ``client-create``; existing clients keep theirs.
``--admin-user NAME`` also creates an admin user (its key in the state dir as ``NAME.pem``) for
tools that POST jobs.

Churn (nodes that restart): SIGUSR1, and every ``--churn-every`` seconds when set, restarts a
random ``--churn-fraction`` of the nodes the way a restarted client process comes back: its
sockets close at once (the server hears nothing more from that session), and after
``--churn-down`` seconds it fetches its config again with a new Curve keypair and a new
incarnation id; a job it had is lost with the old process. Keep ``--churn-down`` longer than one
heartbeat interval (a node's old heartbeat timer is dropped only while it is down).

Nodes are spread over worker processes (``--nodes-per-worker``, default 2000: each node holds
two ZeroMQ sockets, about four file descriptors, and a process may hold at most 20,000).
``--distinct-keys K`` lets node i sign with pool key i mod K (each node is still its own client),
so 24,000 nodes need not wait for 24,000 fresh RSA keys.

Output: a status line every --report-interval seconds on stdout,
``online=N configured=N nodes=N fetching=N fetch_errors=N elapsed=S``, one line when every node
is online for the first time (``all N nodes online after S s``), and the same figures plus
per-job counts as JSON in --status-file (rewritten atomically) for scripts:
    {"phase", "keys_generated", "keys_to_generate", "clients_provisioned", "prepare_seconds",
     "nodes", "online", "configured", "fetching", "fetches" (started), "configs" (fetched and
     applied), "fetch_errors", "last_error",
     "dropped", "heartbeats" (sent so far), "churns" (churn rounds), "restarts" (nodes
     restarted), "reopens" (socket-only reconfigures after the server went silent), "elapsed",
     "all_online_after", "updated",
     "jobs": {job_id: {"commits", "acked_runs", "results", "first_commit", "last_commit",
                       "first_run", "last_ack_run", "last_result"}}}
     (the last 200 jobs; times are POSIX wall-clock seconds)
The file exists from the start: "phase" is "keys" (generating missing RSA keys: on a fresh
--state-dir this takes minutes for thousands of nodes; keys_generated/keys_to_generate count
them), then "provisioning" (clients_provisioned counts them), then "running" (the nodes have
started; "elapsed" and "all_online_after" count from here, "prepare_seconds" is the time
before). Waiters use the phase and these counters to tell slow preparation from a stall.

    main(argv=None) -> int      exit 0 after a clean stop, 2 for bad arguments/config,
                                128+signal when stopped while still generating keys/provisioning
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import random
import signal
import sys
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from pushd_bench.identities import KeyPool, node_name, provision
from pushd_bench.node import Behaviour, JobRecord
from pushd_bench.worker import WorkerSpec, run_worker

from pushd.errors import ConfigError, StoreError

DEFAULT_STATE_DIR = "/var/tmp/push-jobs-emulator"
FD_PER_NODE = 4
FD_LIMIT = 20_000
MAX_JOBS_REPORTED = 200


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="push-jobs-emulator", description="Run N emulated push-jobs nodes."
    )
    parser.add_argument("--config", required=True, metavar="FILE",
                        help="the server's opscode-push-jobs-server.rb")
    parser.add_argument("--org", required=True, help="organization of the nodes")
    parser.add_argument("--nodes", required=True, type=int, metavar="N")
    parser.add_argument("--prefix", default="emu-", help="node name prefix (default emu-)")
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                        help=f"key pool and admin key (default {DEFAULT_STATE_DIR})")
    parser.add_argument("--url", help="REST base URL (default from the config: "
                        "http://SERVER_NAME_ADVERTISED:API_PORT)")
    parser.add_argument("--nodes-per-worker", type=int, default=2000)
    # RSA-2048 key generation is ~50-100 ms a key: 24,000 fresh keys are most of an hour of
    # CPU on two cores. Several clients may share one key pair (each is still its own client
    # with its own name; the server verifies every signature the same way).
    parser.add_argument("--distinct-keys", type=int, default=0, metavar="K",
                        help="node i signs with pool key i mod K (default: one key per node)")
    # Stock clients fetch independently, each right after its own splay: the emulator must not
    # queue the herd behind a few threads (4 per worker held a 2,000-node storm to ~150
    # fetches/s: 12.4-16.6 s to all available, 9.7 s with 32).
    parser.add_argument("--fetchers", type=int, default=32,
                        help="concurrent config fetches per worker (default 32)")
    parser.add_argument("--ramp", type=float, default=0.0,
                        help="spread the first config fetches over this many seconds")
    parser.add_argument("--stock-retry", action="store_true",
                        help="retry a failed config fetch after 108-120 s as the stock client "
                        "does (default: 0.1-10 s backoff with jitter, faster than it)")
    parser.add_argument("--exit-code", type=int, default=0)
    parser.add_argument("--output-bytes", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds a command runs")
    parser.add_argument("--lines-per-second", type=float, default=0.0,
                        help="lines a running command prints (capture jobs; sent live when "
                             "the server takes `output`)")
    parser.add_argument("--no-provision", action="store_true")
    parser.add_argument("--admin-user", help="also provision this admin user")
    parser.add_argument("--status-file")
    parser.add_argument("--report-interval", type=float, default=2.0)
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--churn-every", type=float, default=0.0, metavar="S",
                        help="restart --churn-fraction of the nodes every S seconds (default "
                        "0: only on SIGUSR1)")
    parser.add_argument("--churn-fraction", type=float, default=0.1,
                        help="share of the nodes one churn restarts (default 0.1)")
    parser.add_argument("--churn-down", type=float, default=5.0, metavar="S",
                        help="seconds a restarted node stays away before it fetches its "
                        "config again (default 5)")
    args = parser.parse_args(argv)
    if args.nodes < 1 or args.nodes > 100_000:
        parser.error("--nodes must be between 1 and 100000")
    if not 1 <= args.nodes_per_worker <= (FD_LIMIT - 1000) // FD_PER_NODE:
        parser.error(f"--nodes-per-worker must be between 1 and "
                     f"{(FD_LIMIT - 1000) // FD_PER_NODE} (file descriptor limit)")
    if args.distinct_keys < 0:
        parser.error("--distinct-keys must be >= 0")
    if args.fetchers < 1 or args.fetchers > 64:
        parser.error("--fetchers must be between 1 and 64")
    if not 0 <= args.churn_fraction <= 1 or args.churn_every < 0 or args.churn_down < 0:
        parser.error("--churn-fraction must be within 0..1, --churn-every and --churn-down >= 0")
    if args.output_bytes < 0 or args.delay < 0 or not 0 <= args.exit_code <= 255:
        parser.error("--output-bytes and --delay must be >= 0, --exit-code 0..255")
    return args


def base_url(args: argparse.Namespace) -> str:
    if args.url:
        return f"{args.url.rstrip('/')}/organizations/{args.org}"
    from pushd.config import load_settings

    settings = load_settings(args.config)
    host = settings.get("server_name_advertised") or settings.get("api_listen")
    if host in ("0.0.0.0", "::", "*"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.get('api_port')}/organizations/{args.org}"


def write_status(path: str, status: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        json.dump(status, handle)
    os.replace(tmp, path)


class Emulator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stopping = False
        self.workers: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
        self.latest: dict[int, dict[str, Any]] = {}
        self.jobs: dict[str, JobRecord] = {}
        self.started = time.monotonic()
        self.phase = "keys"
        self.prepare_seconds: float | None = None
        self.counters = {"keys_generated": 0, "keys_to_generate": 0, "clients_provisioned": 0}
        self.per_worker = args.nodes_per_worker
        self.churn_requested = False
        self.churns = 0

    def say(self, text: str) -> None:
        print(f"push-jobs-emulator: {text}", flush=True)

    def preparing(self, phase: str, **counters: int) -> None:
        """Record a preparation phase and its progress in the status file (before the nodes)."""
        self.phase = phase
        self.counters.update(counters)
        if self.args.status_file:
            write_status(self.args.status_file, self.status(0.0, None))

    def _key_generated(self, done: int, total: int) -> None:
        self.preparing("keys", keys_generated=done, keys_to_generate=total)
        if done and (done % 250 == 0 or done == total):
            self.say(f"generated {done}/{total} RSA client keys "
                     f"({time.monotonic() - self.started:.1f} s)")

    def prepare(self) -> None:
        args = self.args
        pool = KeyPool(args.state_dir)
        self.preparing("keys")
        keys = min(args.nodes, args.distinct_keys or args.nodes)
        pool.ensure(keys, progress=self._key_generated)
        if args.no_provision:
            return
        self.preparing("provisioning")
        user = None
        if args.admin_user:
            user_pool = KeyPool(Path(args.state_dir) / "users")
            user_pool.ensure(1)
            Path(args.state_dir, f"{args.admin_user}.pem").write_bytes(user_pool.private_pem(0))
            os.chmod(Path(args.state_dir, f"{args.admin_user}.pem"), 0o600)
            user = (args.admin_user, user_pool.public_pem(0))
        pairs = [(node_name(args.prefix, i), pool.public_pem(i % keys))
                 for i in range(args.nodes)]
        report = provision(args.config, args.org, pairs, user=user,
                           progress=lambda done, _total: self.preparing(
                               "provisioning", clients_provisioned=done))
        self.say(f"provisioned org {args.org}: {report.created} clients created, "
                 f"{report.updated} re-keyed, {report.unchanged} unchanged "
                 f"({time.monotonic() - self.started:.1f} s)")

    def start_workers(self) -> None:
        args = self.args
        self.phase = "starting"  # from here a signal only sets `stopping` (see main)
        url = base_url(args)
        count = math.ceil(args.nodes / args.nodes_per_worker)
        per = self.per_worker = math.ceil(args.nodes / count)
        behaviour = Behaviour(args.exit_code, args.output_bytes, args.delay,
                              args.lines_per_second)
        context = multiprocessing.get_context("fork")  # the parent holds no ZeroMQ context
        for worker in range(count):
            indices = tuple(range(worker * per, min(args.nodes, (worker + 1) * per)))
            spec = WorkerSpec(worker=worker, base_url=url, org=args.org, prefix=args.prefix,
                              indices=indices, state_dir=args.state_dir, behaviour=behaviour,
                              fetchers=args.fetchers, ramp=args.ramp,
                              stock_retry=args.stock_retry, distinct_keys=args.distinct_keys)
            parent_end, child_end = context.Pipe()
            process = context.Process(target=run_worker, args=(spec, child_end),
                                      name=f"emulator-worker-{worker}", daemon=True)
            process.start()
            child_end.close()
            self.workers.append((process, parent_end))
        self.say(f"{args.nodes} nodes in {count} worker processes against {url}")

    def status(self, elapsed: float, all_online_after: float | None) -> dict[str, Any]:
        keys = ("online", "configured", "fetching", "fetches", "configs", "fetch_errors",
                "dropped", "heartbeats", "restarts", "reopens")
        status: dict[str, Any] = {k: sum(s.get(k, 0) for s in self.latest.values())
                                  for k in keys}
        errors = [s["last_error"] for s in self.latest.values() if s.get("last_error")]
        status.update(self.counters)
        status.update({
            "phase": self.phase,
            "prepare_seconds": self.prepare_seconds,
            "churns": self.churns,
            "nodes": self.args.nodes,
            "last_error": errors[-1] if errors else "",
            "elapsed": round(elapsed, 3),
            "all_online_after": all_online_after,
            "updated": time.time(),
            "jobs": {job_id: dict(r.__dict__) for job_id, r in self.jobs.items()},
        })
        return status

    def churn(self) -> None:
        """Restart a random --churn-fraction of the nodes (each worker restarts its own)."""
        args = self.args
        chosen = random.sample(range(args.nodes), round(args.nodes * args.churn_fraction))
        by_worker: dict[int, list[int]] = {}
        for index in chosen:
            by_worker.setdefault(index // self.per_worker, []).append(index)
        for worker, indices in by_worker.items():
            try:
                self.workers[worker][1].send({"restart": sorted(indices),
                                              "down": args.churn_down})
            except OSError:
                pass  # that worker has ended (reported by run)
        self.churns += 1
        self.say(f"churn {self.churns}: restarting {len(chosen)} nodes "
                 f"(back after {args.churn_down:g} s)")

    def run(self) -> None:
        args = self.args
        started = time.monotonic()
        next_churn = started + args.churn_every if args.churn_every > 0 else math.inf
        self.phase, self.prepare_seconds = "running", round(started - self.started, 3)
        all_online_after: float | None = None
        next_line = started
        live = {conn: process for process, conn in self.workers}
        while not self.stopping and live:
            elapsed = time.monotonic() - started
            if args.duration is not None and elapsed >= args.duration:
                break
            if self.churn_requested or time.monotonic() >= next_churn:
                self.churn_requested = False
                self.churn()
                if args.churn_every > 0:
                    next_churn = time.monotonic() + args.churn_every
            for conn in wait(list(live), timeout=0.2):
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    process = live.pop(conn)
                    self.say(f"worker {process.name} ended (exit code {process.exitcode})")
                    continue
                for job_id, delta in message.pop("jobs", {}).items():
                    self.jobs.setdefault(job_id, JobRecord()).merge(delta)
                while len(self.jobs) > MAX_JOBS_REPORTED:
                    self.jobs.pop(next(iter(self.jobs)))  # the oldest job first
                self.latest[message["worker"]] = message
            status = self.status(elapsed, all_online_after)
            if all_online_after is None and status["online"] >= args.nodes:
                all_online_after = round(elapsed, 3)
                status["all_online_after"] = all_online_after
                self.say(f"all {args.nodes} nodes online after {elapsed:.1f} s")
            if args.status_file:
                write_status(args.status_file, status)
            if time.monotonic() >= next_line:
                self.say(f"online={status['online']} configured={status['configured']} "
                         f"nodes={args.nodes} fetching={status['fetching']} "
                         f"fetch_errors={status['fetch_errors']} elapsed={elapsed:.1f}"
                         + (f" last_error={status['last_error']!r}"
                            if status["fetch_errors"] else ""))
                next_line = time.monotonic() + args.report_interval

    def stop(self) -> None:
        for _process, conn in self.workers:
            try:
                conn.send("stop")
            except OSError:
                pass
        deadline = time.monotonic() + 5
        for process, _conn in self.workers:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
                process.join(2)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    emulator = Emulator(args)

    def on_signal(signum: int, _frame: Any) -> None:
        emulator.stopping = True
        if emulator.phase in ("keys", "provisioning"):
            # Key generation and provisioning do not poll `stopping`: end them now (the key
            # pool's processes are terminated on the way out, a key file is written atomically
            # and a provisioning batch is one transaction).
            raise SystemExit(128 + signum)

    def on_churn(_signum: int, _frame: Any) -> None:
        emulator.churn_requested = True  # acted on by run(), once the nodes are running

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGUSR1, on_churn)
    try:
        emulator.prepare()
    except ConfigError as err:
        print(f"push-jobs-emulator: {err}", file=sys.stderr)
        return 2
    except StoreError as err:
        print(f"push-jobs-emulator: cannot provision in the server's database: {err}",
              file=sys.stderr)
        return 1
    emulator.start_workers()
    try:
        emulator.run()
    finally:
        emulator.stop()
    emulator.say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
