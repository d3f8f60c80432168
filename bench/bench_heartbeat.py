"""Connected nodes at 1 s heartbeats: broker CPU per heartbeat and memory per node.

    python bench/bench_heartbeat.py --nodes 1000 [--windows 5] [--window 10] [--profile 20]

Starts a real server (heartbeat_interval 1000 ms, fresh PostgreSQL database), measures the idle
broker's RSS, brings N emulated nodes online (emulator and server's node_states both agree),
lets it settle, then measures the broker process's CPU (every thread: Python loop and libzmq
I/O thread with its Curve decryption) over `--windows` windows against the heartbeats the
emulator sent in each window. Then, in the same sitting, the bare Curve ROUTER floor
(bench_floor.py). Prints (medians over the windows):

    RESULT name=hb_broker_cpu_per_heartbeat value=.. unit=us nodes=N
    RESULT name=hb_broker_core_share value=.. unit=% nodes=N          (% of one core)
    RESULT name=hb_broker_rss_per_node value=.. unit=KB nodes=N       (RSS growth / N)
    RESULT name=hb_server_rss_per_node value=.. unit=KB nodes=N       (all server processes)
    RESULT name=hb_floor_cpu_per_msg value=.. unit=us
    RESULT name=hb_rate_vs_floor value=.. unit=ratio nodes=N          (floor us / our us)

`--profile S` also samples the broker with py-spy for S seconds and prints the summary.
"""

from __future__ import annotations

import argparse
import time

from pushd_bench.bench_floor import measure_floor
from pushd_bench.common import (
    EmulatorProcess,
    ProcessMeter,
    bench_server,
    common_arguments,
    machine,
    median,
    note,
    online_nodes,
    process_tree,
    result,
    server_online,
)
from pushd_bench.profiling import profile_process


def tree_rss(pid: int) -> int:
    total = 0
    for member in process_tree(pid):
        try:
            total += ProcessMeter(member).rss_bytes()
        except OSError:
            pass
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--profile", type=float, default=0.0)
    parser.add_argument("--no-floor", action="store_true")
    common_arguments(parser)
    args = parser.parse_args()
    n = args.nodes
    note(f"machine: {machine()}")
    with bench_server(args) as server:
        time.sleep(2)
        broker_pid = server.broker_pid()
        assert broker_pid is not None and server._process is not None
        server_pid = server._process.pid
        broker = ProcessMeter(broker_pid)
        rss0, tree0 = broker.rss_bytes(), tree_rss(server_pid)
        emulator = EmulatorProcess(server, n, args.state_dir)
        try:
            took = emulator.wait_online(timeout=max(180.0, n / 10))
            note(f"emulator: all {n} online after {took:.1f} s")
            server_online(server, n, timeout=60)
            time.sleep(args.settle)
            per_beat, shares, emulator_shares = [], [], []
            emulator_meters = [ProcessMeter(p) for p in process_tree(emulator.pid)]
            for _ in range(args.windows):
                beats0, cpu0, t0 = emulator.status()["heartbeats"], broker.cpu_seconds(), \
                    time.monotonic()
                emu0 = sum(m.cpu_seconds() for m in emulator_meters)
                time.sleep(args.window)
                beats1, cpu1, t1 = emulator.status()["heartbeats"], broker.cpu_seconds(), \
                    time.monotonic()
                emu1 = sum(m.cpu_seconds() for m in emulator_meters)
                beats = beats1 - beats0
                per_beat.append((cpu1 - cpu0) / max(1, beats) * 1e6)
                shares.append((cpu1 - cpu0) / (t1 - t0) * 100)
                emulator_shares.append((emu1 - emu0) / (t1 - t0) * 100)
                note(f"window: {beats} heartbeats, broker {cpu1 - cpu0:.2f} s CPU "
                     f"({per_beat[-1]:.1f} us/hb, {shares[-1]:.1f}% core), emulator "
                     f"{emulator_shares[-1]:.0f}% core")
            online_end = online_nodes(server)
            rss1, tree1 = broker.rss_bytes(), tree_rss(server_pid)
            if args.profile > 0:
                profile = profile_process(broker_pid, args.profile,
                                          server.dir / "broker-profile.txt")
                print(profile.render(20) if profile else "# py-spy not installed", flush=True)
        finally:
            emulator.stop()
    result("hb_broker_cpu_per_heartbeat", median(per_beat), "us", nodes=n,
           windows=len(per_beat), all=",".join(f"{v:.1f}" for v in per_beat))
    result("hb_broker_core_share", median(shares), "%", nodes=n, online_end=online_end)
    result("hb_broker_rss_per_node", (rss1 - rss0) / n / 1024, "KB", nodes=n,
           broker_rss_mb=round(rss1 / 2**20, 1))
    result("hb_server_rss_per_node", (tree1 - tree0) / n / 1024, "KB", nodes=n,
           server_rss_mb=round(tree1 / 2**20, 1))
    result("hb_emulator_core_share", median(emulator_shares), "%", nodes=n)
    if not args.no_floor:
        floors = [measure_floor()[0] for _ in range(3)]
        floor = median(floors)
        result("hb_floor_cpu_per_msg", floor, "us", runs=len(floors))
        result("hb_rate_vs_floor", floor / median(per_beat), "ratio", nodes=n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
