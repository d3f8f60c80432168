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
`--memprobe` (bench/memprobe) prints what the broker's growth per node consists of, from its
reports before the emulator and after the windows: Python (tracemalloc) per node, RSS by mapping
kind ([heap] = glibc's main arena, anon = other arenas and mmap'd blocks), per malloc arena
(system / in use / free), and the tracemalloc lines and object types that grew most. tracemalloc
itself costs memory: the headline RSS figures of a --memprobe run are not comparable.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from pushd_bench.bench_floor import measure_floor
from pushd_bench.common import (
    EmulatorProcess,
    ProcessMeter,
    bench_server,
    common_arguments,
    fleet_online,
    machine,
    median,
    memprobe,
    note,
    online_nodes,
    process_tree,
    result,
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


def memory_breakdown(before: dict[str, Any], after: dict[str, Any], n: int) -> str:
    """What the broker's growth per node consists of, from two memprobe reports (KB/node)."""
    def per(value: float) -> str:
        return f"{value / n / 1024:.1f}"

    lines = [f"memory per node (KB): rss {per(after['rss'] - before['rss'])}, python (traced) "
             f"{per(after['traced'] - before['traced'])}"]
    lines.append("  rss by mapping: " + ", ".join(
        f"{kind} {per(after['smaps'][kind] - before['smaps'].get(kind, 0))}"
        for kind in after["smaps"]))
    for number, arena in enumerate(after["arenas"]):
        old = before["arenas"][number] if number < len(before["arenas"]) else {}
        lines.append(f"  arena {number}: system {per(arena['system'] - old.get('system', 0))}, "
                     f"in use {per(arena['in_use'] - old.get('in_use', 0))}, free "
                     f"{per(arena['free'] - old.get('free', 0))} (now {arena['system'] >> 20} MB,"
                     f" {arena['free'] >> 20} MB free)")
    old_lines = {name: size for name, size, _count in before["by_line"]}
    grown = sorted(((size - old_lines.get(name, 0), count, name)
                    for name, size, count in after["by_line"]), reverse=True)[:15]
    lines.append("  python lines that grew most (bytes/node, objects now):")
    lines += [f"    {size / n:8.0f}  {count:8d}  {name}" for size, count, name in grown]
    old_types = {name: (count, size) for name, count, size in before["by_type"]}
    types = sorted(((size - old_types.get(name, (0, 0))[1], count - old_types.get(name, (0, 0))[0],
                     name) for name, count, size in after["by_type"]), reverse=True)[:15]
    lines.append("  gc-tracked types that grew most (getsizeof bytes/node, objects/node):")
    lines += [f"    {size / n:8.0f}  {count / n:6.2f}  {name}" for size, count, name in types]
    return "\n".join(lines)


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
        probe0 = memprobe(server, "idle")
        emulator = EmulatorProcess(server, n, args.state_dir)
        try:
            fleet_online(server, emulator, n, settle=args.settle)
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
                # RSS keeps growing while libzmq's per-connection queues touch new pages (see
                # bench_zmq_memory.py): a figure per window shows how far from steady state.
                note(f"window: {beats} heartbeats, broker {cpu1 - cpu0:.2f} s CPU "
                     f"({per_beat[-1]:.1f} us/hb, {shares[-1]:.1f}% core), emulator "
                     f"{emulator_shares[-1]:.0f}% core, broker RSS "
                     f"{(broker.rss_bytes() - rss0) / n / 1024:.1f} KB/node")
            online_end = online_nodes(server)
            rss1, tree1 = broker.rss_bytes(), tree_rss(server_pid)
            probe1 = memprobe(server, "online")
            if probe0 is not None and probe1 is not None:
                print(memory_breakdown(probe0, probe1, n), flush=True)
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
