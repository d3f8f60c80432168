#!/bin/sh
# Issue 19's sitting (2026-12-06), as run: one benchmark at a time on the otherwise idle machine.
# Arms are git worktrees of the commits under test (COMMIT-<arm> here; `git worktree add
# /work/wt/<arm> <commit>` first), put first on PYTHONPATH (the server, broker,
# API workers and emulator import `pushd` from there); the benchmark code is main's (the same
# for every arm). Usage: sh sitting.sh OUT_DIR  (logs: OUT_DIR/NAME.log, OUT_DIR/summary.log)
set -u
OUT=$1
mkdir -p "$OUT"
cd /work/main || exit 1
run() {
    name=$1; arm=$2; shift 2
    case " ${ONLY:-$name} " in *" $name "*) ;; *) return 0 ;; esac
    echo "== $name [$arm]: $* (start $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT/summary.log"
    PYTHONPATH=$arm python3 "$@" > "$OUT/$name.log" 2>&1
    echo "   exit $? (end $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT/summary.log"
    grep '^RESULT' "$OUT/$name.log" | tee -a "$OUT/summary.log"
}
BASE=/work/wt/base; C1=/work/wt/c1; C2=/work/wt/c2; NOW=/work/wt/now
run floor $NOW bench/bench_floor.py --runs 5
run floor_fanout $NOW bench/bench_floor_fanout.py --nodes 1000,5000,8000 --runs 5
run job8000_base $BASE bench/bench_dispatch.py --nodes 8000 --sizes 8000 --runs 5 --pause 5
run job8000_c1 $C1 bench/bench_dispatch.py --nodes 8000 --sizes 8000 --runs 5 --pause 5
run job8000_c2 $C2 bench/bench_dispatch.py --nodes 8000 --sizes 8000 --runs 5 --pause 5
run job8000_now $NOW bench/bench_dispatch.py --nodes 8000 --sizes 8000 --runs 5 --pause 5
run job8000_io2 $NOW bench/bench_dispatch.py --nodes 8000 --sizes 8000 --runs 5 --pause 5 --setting zmq_io_processes=2
run job8000_hb10_base $BASE bench/bench_dispatch.py --nodes 8000 --sizes 8000 --runs 5 --pause 5 --heartbeat-interval 10000
run job8000_hb10_now $NOW bench/bench_dispatch.py --nodes 8000 --sizes 8000 --runs 5 --pause 5 --heartbeat-interval 10000
run job8000_hb10_io2 $NOW bench/bench_dispatch.py --nodes 8000 --sizes 8000 --runs 5 --pause 5 --heartbeat-interval 10000 --setting zmq_io_processes=2
run storm5000_base $BASE bench/bench_storm.py --nodes 5000 --runs 3
run storm5000_now $NOW bench/bench_storm.py --nodes 5000 --runs 3
run storm5000_io2 $NOW bench/bench_storm.py --nodes 5000 --runs 3 --setting zmq_io_processes=2
run hb8000_now $NOW bench/bench_heartbeat.py --nodes 8000 --windows 3 --window 12 --no-floor
run zmqmem $NOW bench/bench_zmq_memory.py --nodes 2000 --messages 600 --spacing 0.05 --variants base,router,pub,arena2
run joblist_now $NOW bench/bench_joblist.py
