#!/bin/sh
# 2026-12-07, third part: the broker's garbage-collector schedule (6e821db, `gc`: quiet_collector)
# against the code before it (68be2c5, `final` of the second part), alternated, nodes at nice 0,
# floors before and after. Benchmark code identical in both arms.
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
FLOOR="bench/bench_floor_fanout.py --nodes 8000 --runs 5"
run floor_3a final $FLOOR
run job_gc_1 gc $JOB
run job_final_3 final $JOB
run job_gc_2 gc $JOB
run job_final_4 final $JOB
run floor_3b final $FLOOR
