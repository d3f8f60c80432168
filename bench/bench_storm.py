"""Reconnect storm: restart the whole server under N online nodes; time until all are back.

    python bench/bench_storm.py --nodes 5000 [--runs 3]

One server, N emulated nodes online. Each run stops the server (SIGTERM: arbiter, API workers
and broker), starts it again (same database, same keys), and polls ``GET node_states`` every
0.25 s until all N nodes are ``online``/``available`` again. Meanwhile the emulated nodes do what
the stock client does: their DEALERs reconnect by themselves (the broker re-admits the Curve keys
it persisted), and every node re-fetches its config once it sees the new incarnation (after a
random splay within one interval) -- the config-fetch herd. Prints (medians over the runs):

    RESULT name=storm_start_to_all_available value=.. unit=s nodes=N
        from the moment the new server process is started (its start-up included)
    RESULT name=storm_stop_to_all_available value=.. unit=s nodes=N
        from the moment the old server is told to stop
    RESULT name=storm_start_to_all_refetched value=.. unit=s nodes=N
        until every emulated node has fetched a new config and is online again
"""

from __future__ import annotations

import argparse
import contextlib
import time

from pushd_bench.common import (
    EmulatorProcess,
    bench_server,
    common_arguments,
    machine,
    median,
    note,
    online_nodes,
    result,
    server_online,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300.0)
    common_arguments(parser)
    args = parser.parse_args()
    n = args.nodes
    note(f"machine: {machine()}")
    runs: list[tuple[float, float, float]] = []
    with bench_server(args) as server:
        emulator = EmulatorProcess(server, n, args.state_dir)
        try:
            took = emulator.wait_online(timeout=max(180.0, n / 10))
            note(f"emulator: all {n} online after {took:.1f} s")
            server_online(server, n, timeout=120)
            time.sleep(5)
            for _ in range(args.runs):
                fetches0 = emulator.status()["fetches"]
                t_stop = time.monotonic()
                server.stop()
                t_start = time.monotonic()
                server.start()
                note(f"server back up {time.monotonic() - t_start:.1f} s after start "
                     f"(stop took {t_start - t_stop:.1f} s)")
                deadline = t_start + args.timeout
                available_at = refetched_at = None
                while time.monotonic() < deadline and (available_at is None
                                                       or refetched_at is None):
                    now = time.monotonic()
                    if available_at is None:
                        with contextlib.suppress(OSError):
                            if online_nodes(server) >= n:
                                available_at = now
                    if refetched_at is None:
                        status = emulator.status()
                        if status.get("fetches", 0) - fetches0 >= n and \
                                status.get("online", 0) >= n:
                            refetched_at = now
                    time.sleep(0.25)
                if available_at is None or refetched_at is None:
                    raise RuntimeError(f"not all back after {args.timeout}s: "
                                       f"{online_nodes(server)} online, {emulator.status()}")
                runs.append((available_at - t_start, available_at - t_stop,
                             refetched_at - t_start))
                note(f"all {n} available {runs[-1][0]:.1f} s after start "
                     f"({runs[-1][1]:.1f} s after stop); all re-fetched {runs[-1][2]:.1f} s")
                server_online(server, n, timeout=60)
                time.sleep(10)
        finally:
            emulator.stop()
    result("storm_start_to_all_available", median([r[0] for r in runs]), "s", nodes=n,
           runs=len(runs), all=",".join(f"{r[0]:.1f}" for r in runs))
    result("storm_stop_to_all_available", median([r[1] for r in runs]), "s", nodes=n,
           runs=len(runs), all=",".join(f"{r[1]:.1f}" for r in runs))
    result("storm_start_to_all_refetched", median([r[2] for r in runs]), "s", nodes=n,
           runs=len(runs), all=",".join(f"{r[2]:.1f}" for r in runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
