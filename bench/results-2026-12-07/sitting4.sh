#!/bin/sh
# 2026-12-07, fourth part: HMAC through hmac.new (`hmac`, the commit in COMMIT-hmac: also the
# emulator's encoders) against the garbage-collector commit before it (6e821db, `gc`),
# alternated, nodes at nice 0, floors before and after; then the in-process step A/Bs.
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
run floor_4a hmac $FLOOR
run job_hmac_1 hmac $JOB
run job_gc_3 gc $JOB
run job_hmac_2 hmac $JOB
run job_gc_4 gc $JOB
run floor_4b hmac $FLOOR
run steps hmac bench/bench_steps.py
