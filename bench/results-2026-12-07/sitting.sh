#!/bin/sh
# 2026-12-07, first part: the emulator's sliced safety sweep (2fdd289, `new`) against the
# whole sweep once a second (ec19e3f, `old`); the server code is the same in both arms
# (ec19e3f's and 2fdd289's pushd/ are identical). Each arm runs from its own worktree with
# its own `pushd` and `pushd_bench` first on PYTHONPATH; alternated, floor before and after.
set -u
OUT=$1
run() {
    name=$1; arm=$2; shift 2
    echo "== $name [$arm]: $* (start $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT/summary.log"
    (cd /work/wt/s_$arm && PYTHONPATH=/work/wt/p_$arm python3 "$@" > "$OUT/$name.log" 2>&1)
    echo "   exit $? (end $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT/summary.log"
    grep '^RESULT' "$OUT/$name.log" | tee -a "$OUT/summary.log"
}
JOB="bench/bench_dispatch.py --nodes 8000 --sizes 8000 --runs 5 --pause 5 --heartbeat-interval 10000"
run floor_fanout_1 old bench/bench_floor_fanout.py --nodes 8000 --runs 5
run job_old_1 old $JOB
run job_new_1 new $JOB
run job_old_2 old $JOB
run job_new_2 new $JOB
run floor_fanout_2 old bench/bench_floor_fanout.py --nodes 8000 --runs 5
