#!/bin/sh
# 2026-12-07, second part: the final code (68be2c5, `final`) for every run; the nodes at the
# default priority (nice 0) and at nice 19 (--emulator-nice / --client-nice: the emulator's and
# the floor clients' processes and threads), alternated, floors before and after.
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
run floor_nice0_1 final $FLOOR
run floor_nice19_1 final $FLOOR --client-nice 19
run job_nice0_1 final $JOB
run job_nice19_1 final $JOB --emulator-nice 19
run job_nice0_2 final $JOB
run job_nice19_2 final $JOB --emulator-nice 19
run floor_nice19_2 final $FLOOR --client-nice 19
run floor_nice0_2 final $FLOOR
