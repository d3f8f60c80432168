"""Reconnect storm: restart the whole server under N online nodes; time until all are back.

    python bench/bench_storm.py --nodes 5000 [--runs 3] [--new-incarnation] [--profile S]
        [--emulator-nice N]

One server, N emulated nodes online. Each run stops the server (SIGINT: arbiter, API workers and
broker), starts it again (same database, same keys), and polls ``GET node_states`` (every second,
every 0.25 s once the emulator sees all its nodes back: the poll itself costs the broker ~10 us per
node) until all N nodes are ``online``/``available`` again. Meanwhile the emulated nodes do what the
stock client does: their DEALERs reconnect by themselves (the broker re-admits the Curve keys it
persisted; a node that judged the server offline reopens its sockets), and a node re-fetches its
config only if it sees a new incarnation id (after a random splay within one interval). A clean
restart keeps the id (pushd.broker.incarnation), so a run is the reconnection herd alone;
`--new-incarnation` deletes the saved id while the server is down, as a changed setting or a
killed broker would, and every node re-fetches -- the config-fetch herd (the storm before the
id was kept). Prints (medians over the runs):

    RESULT name=storm_start_to_all_available value=.. unit=s nodes=N
        from the moment the new server process is started (its start-up included)
    RESULT name=storm_stop_to_all_available value=.. unit=s nodes=N
        from the moment the old server is told to stop
    RESULT name=storm_start_to_all_refetched value=.. unit=s nodes=N
        until every emulated node has fetched a new config and is online again
        (--new-incarnation only)
    RESULT name=storm_config_fetches value=.. unit=fetches nodes=N
        config fetches the emulated nodes made until all were available
    RESULT name=storm_start_to_half_available value=.. unit=s nodes=N
    RESULT name=storm_server_cpu value=.. unit=s nodes=N
        CPU of every server process (arbiter, API workers, broker) from start to all available

and per run a timeline on stderr (seconds from the new start): the server heartbeat's silence as a
subscriber in this process saw it (last heartbeat before the stop -> first after the start: what
a node would hear without the reconnection herd), server up (``/_status`` 200), first
config fetched, 10/50/90/100 % of the configs re-fetched, 10/50/90/100 % available (to the second,
but for 100 %), and the CPU each server process and the emulator used until then. `--profile S`
samples the broker, one API worker and the emulator's workers with py-spy for S seconds from
the first run's start (summaries printed, raw files in the server directory); `--sample S`
(where py-spy cannot read the interpreter) CPU-samples every server and emulator process for
S seconds from each run's start with bench/sampling.py and prints the shares per role.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

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
    online_nodes,
    process_tree,
    result,
    server_online,
)
from pushd_bench.profiling import profile_process
from pushd_bench.server import HeartbeatListener, PushdServer

MARKS = (0.1, 0.5, 0.9, 1.0)


@dataclass
class Timeline:
    """Seconds from the new server's start at which each mark was first seen."""

    nodes: int
    refetch: bool = True  # every node fetches its config again (a new incarnation id)
    up: float = 0.0
    first_config: float | None = None
    refetched: dict[float, float] = field(default_factory=dict)
    available: dict[float, float] = field(default_factory=dict)

    def see(self, now: float, available: int | None, configs: int) -> None:
        if configs >= 1 and self.first_config is None:
            self.first_config = now
        for mark in MARKS:
            if mark not in self.refetched and configs >= mark * self.nodes:
                self.refetched[mark] = now
            # With a re-fetch, "all available" counts once every node is back on its new
            # config (a node is still `available` on its old link until it closes it).
            if available is not None and mark not in self.available and \
                    available >= mark * self.nodes and \
                    (mark < 1.0 or not self.refetch or 1.0 in self.refetched):
                self.available[mark] = now

    def done(self) -> bool:
        return (1.0 in self.refetched or not self.refetch) and 1.0 in self.available

    def render(self) -> str:
        def marks(seen: dict[float, float]) -> str:
            return " ".join(f"{int(m * 100)}%={seen[m]:.1f}" if m in seen else
                            f"{int(m * 100)}%=-" for m in MARKS)

        first = "-" if self.first_config is None else f"{self.first_config:.1f}"
        return (f"up={self.up:.1f} first_config={first} | refetched {marks(self.refetched)}"
                f" | available {marks(self.available)}")


def server_processes(server: PushdServer) -> dict[int, str]:
    """pid -> role of every process of the running server."""
    assert server._process is not None
    broker = server.broker_pid()
    roles = {}
    for pid in process_tree(server._process.pid):
        if pid == server._process.pid:
            roles[pid] = "arbiter"
        elif pid == broker:
            roles[pid] = "broker"
        else:
            with contextlib.suppress(OSError):
                if b"supervisor" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                    roles[pid] = f"api-{pid}"
    return roles


def start_profiles(server: PushdServer, emulator: EmulatorProcess,
                   seconds: float) -> list[threading.Thread]:
    roles = server_processes(server)
    api = [pid for pid, role in roles.items() if role.startswith("api")]
    chosen = [pid for pid, role in roles.items() if role == "broker"] + api[:1]
    # The emulated nodes share the cores with the server: their workers are profiled too.
    for pid in process_tree(emulator.pid):
        if pid != emulator.pid:
            roles[pid] = f"emulator-{pid}"
            chosen.append(pid)
    threads = []
    for pid in chosen:
        role = roles[pid]
        suffix = role if role.startswith("emulator") else role.split("-")[0]
        out = server.dir / f"storm-profile-{suffix}.txt"

        def run(pid: int = pid, role: str = role, out: Path = out) -> None:
            profile = profile_process(pid, seconds, out)
            text = profile.render(20) if profile else "py-spy not installed"
            print(f"# storm profile, {role} (pid {pid}), {seconds:.0f} s from start:\n{text}",
                  flush=True)

        thread = threading.Thread(target=run, name=role, daemon=True)
        thread.start()
        threads.append(thread)
    return threads


def one_run(server: PushdServer, emulator: EmulatorProcess, n: int, timeout: float,
            profile: float, sample: float = 0.0, label: str = "",
            new_incarnation: bool = False) -> tuple[float, float, float, float, float, int]:
    configs0 = emulator.status()["configs"]
    beats = HeartbeatListener(server)
    time.sleep(2.5)  # connected, and a heartbeat or two heard
    t_stop = time.monotonic()
    server.stop()
    if new_incarnation:  # as a killed broker or a changed node setting would
        server.incarnation_file.unlink(missing_ok=True)
    t_start = time.monotonic()
    server.start()
    timeline = Timeline(n, refetch=new_incarnation, up=time.monotonic() - t_start)
    note(f"server back up {timeline.up:.1f} s after start (stop took {t_start - t_stop:.1f} s)")
    meters = {role: ProcessMeter(pid) for pid, role in server_processes(server).items()}
    emulator_meters = [ProcessMeter(pid) for pid in process_tree(emulator.pid)]
    emulator_cpu0 = sum(m.cpu_seconds() for m in emulator_meters)
    threads = start_profiles(server, emulator, profile) if profile > 0 else []
    if sample > 0:  # --sample: every server and emulator process, from the new start
        sampling.request(server.dir / "samples", label, sample)
    deadline = t_start + timeout
    next_poll = 0.0
    while time.monotonic() < deadline and not timeline.done():
        status = emulator.status()
        configs = status.get("configs", 0) - configs0
        # GET node_states costs the broker ~10 us per node (2,000 nodes: ~20 ms; at 4 Hz it
        # was a fifth of the broker's busy samples in the storm): poll once a second until the
        # emulator sees every node re-fetched and online, then every 0.25 s for the end mark.
        near_end = (configs >= n or not timeline.refetch) and status.get("online", 0) >= n
        available = None
        if near_end or time.monotonic() >= next_poll:
            next_poll = time.monotonic() + 1.0
            with contextlib.suppress(OSError):
                available = online_nodes(server)
        timeline.see(time.monotonic() - t_start, available, configs)
        time.sleep(0.25)
    cpu = {}
    for role, meter in meters.items():
        with contextlib.suppress(OSError):
            cpu[role] = meter.cpu_seconds()
    emulator_cpu = sum(m.cpu_seconds() for m in emulator_meters) - emulator_cpu0
    silence = beats.silence(t_start)  # the old broker beats until it has stopped
    before, after = beats.around(t_start)
    beats.close()
    note("server heartbeat silence (s, a subscriber outside the herd): "
         + ("-" if silence is None else f"{silence:.2f}"))
    if before is not None and after is not None:
        # Sequence numbers go on across a clean restart, so a jump counts heartbeats this
        # subscriber missed. One is always missed: the new broker's first, sent at its bind,
        # before any subscriber has reconnected (a SUB retries every 100 ms).
        note(f"heard around the restart: sequence {before.sequence} at {before.at - t_stop:+.2f} s "
             f"from the stop, then {after.sequence} at {after.at - t_start:+.2f} s from the start"
             f" ({after.sequence - before.sequence - 1} missed)")
    note("timeline (s from start): " + timeline.render())
    # Where the silence goes: the old broker's stop and the new one's start, as logged.
    marks = ("signal 15", "broker stopping", "broker stopped", "broker started", " serving: ")
    lines = [line for line in server.log_text().splitlines() if any(m in line for m in marks)]
    note("restart as logged:\n#   " + "\n#   ".join(lines[-len(marks):]))
    note("CPU until then (s; server processes since they started, emulator since the start): "
         + " ".join(f"{role}={seconds:.1f}" for role, seconds in sorted(cpu.items()))
         + f" emulator={emulator_cpu:.1f}")
    for thread in threads:
        thread.join(profile + 60)
    if sample > 0:
        profiles = sampling.collect(server.dir / "samples", label, timeout=sample + 30)
        print(f"# CPU samples, {sample:g} s from the new start ({label}):\n"
              + sampling.render(profiles, 25), flush=True)
    if not timeline.done():
        raise RuntimeError(f"not all back after {timeout}s: {online_nodes(server)} online, "
                           f"{emulator.status()}")
    all_available = timeline.available[1.0]
    fetches = emulator.status()["configs"] - configs0
    note(f"config fetches until then: {fetches}; socket reopens so far: "
         f"{emulator.status().get('reopens', 0)}")
    return (all_available, all_available + t_start - t_stop,
            timeline.refetched.get(1.0, float("nan")), timeline.available[0.5],
            sum(cpu.values()), fetches)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--profile", type=float, default=0.0,
                        help="py-spy the broker, an API worker and the emulator workers for S s "
                        "in the first run")
    parser.add_argument("--fetchers", type=int,
                        help="the emulator's concurrent config fetches per worker")
    parser.add_argument("--new-incarnation", action="store_true",
                        help="delete the incarnation id the stopped server saved: every node "
                        "re-fetches its config (default: a clean restart keeps the id)")
    parser.add_argument("--emulator-nice", type=int, default=0, metavar="N",
                        help="run the emulated nodes at nice N (19: the server gets the cores "
                        "first, as when the nodes are other machines); default 0")
    parser.add_argument("--stock-retry", action="store_true",
                        help="emulated nodes retry a failed config fetch after 108-120 s, as "
                        "the stock client does (default: within 0.1-10 s)")
    common_arguments(parser)
    args = parser.parse_args()
    n = args.nodes
    note(f"machine: {machine()}")
    runs: list[tuple[float, float, float, float, float, int]] = []
    with bench_server(args) as server:
        extra = ["--fetchers", str(args.fetchers)] if args.fetchers else []
        extra += ["--stock-retry"] if args.stock_retry else []
        emulator = EmulatorProcess(server, n, args.state_dir, *extra, nice=args.emulator_nice)
        try:
            fleet_online(server, emulator, n, server_timeout=120, settle=5)
            for number in range(args.runs):
                runs.append(one_run(server, emulator, n, args.timeout,
                                    args.profile if number == 0 else 0.0,
                                    args.sample, f"storm-{number}", args.new_incarnation))
                note(f"all {n} available {runs[-1][0]:.1f} s after start "
                     f"({runs[-1][1]:.1f} s after stop); all re-fetched {runs[-1][2]:.1f} s")
                server_online(server, n, timeout=60)
                time.sleep(10)
        finally:
            emulator.stop()

    def report(name: str, index: int, unit: str = "s") -> None:
        values = [r[index] for r in runs]
        result(name, median(values), unit, nodes=n, runs=len(runs),
               all=",".join(f"{v:.1f}" for v in values),
               incarnation="new" if args.new_incarnation else "kept",
               **({"emulator_nice": args.emulator_nice} if args.emulator_nice else {}))

    report("storm_start_to_all_available", 0)
    report("storm_stop_to_all_available", 1)
    if args.new_incarnation:
        report("storm_start_to_all_refetched", 2)
    report("storm_start_to_half_available", 3)
    report("storm_server_cpu", 4)
    report("storm_config_fetches", 5, "fetches")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
