"""pushd_bench: the node emulator (``push-jobs-emulator``) and the benchmarks (issue 8).

Installed from the folder ``bench/`` as the package ``pushd_bench`` (see setup.py).

Emulator
    emulator.py     ``push-jobs-emulator`` / ``python -m pushd_bench``: main(argv) -> int
    worker.py       WorkerSpec, run_worker(spec, conn): one process, thousands of nodes, epoll
    node.py         Behaviour, EmulatedNode, JobStats/JobRecord: one node's protocol answers
    identities.py   KeyPool (cached RSA client keys), provision(...), node_name(prefix, i)
    wire.py         HeartbeatEncoder (byte-identical fast heartbeats), TimestampCache
    client_process.py  ClientProcess: a real push-jobs-client child process (e2e tests, soak)

Benchmarks (run by hand from the repository root; figures in bench/RESULTS.md)
    bench_heartbeat.py, bench_dispatch.py, bench_storm.py, bench_api.py, bench_floor.py,
    bench_joblist.py (GET .../jobs with 1,000,000 jobs; joblist_data.py loads them),
    bench_decode.py, bench_zmq_memory.py (libzmq's memory per peer by socket option and malloc
    setting), bench_soak.py (30 minutes of jobs and node churn: flat RSS and open files, every
    job ends); common.py (server, emulator process, meters, RESULT lines),
    profiling.py (py-spy summaries), whatif/ (proposed broker changes, benchmarks only),
    memprobe/ (the broker's memory breakdown, benchmarks only), run_all.sh
"""
