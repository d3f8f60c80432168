#!/bin/sh
# Same session, fourth part: `events` = 812b6ba (fill + one feed wake-up per topic per journal
# batch instead of one message per event) against `fill` = e29a25a, alternated, then the floor.
set -u
OUT=$1
cd /work/main || exit 1
run() {
    name=$1; arm=$2; shift 2
    echo "== $name [$arm]: $* (start $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT/summary.log"
    PYTHONPATH=$arm python3 "$@" > "$OUT/$name.log" 2>&1
    echo "   exit $? (end $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT/summary.log"
    grep '^RESULT' "$OUT/$name.log" | tee -a "$OUT/summary.log"
}
JOB="bench/bench_dispatch.py --nodes 8000 --sizes 8000 --runs 5 --pause 5 --heartbeat-interval 10000"
run floor_fanout_4 /work/wt/fill bench/bench_floor_fanout.py --nodes 8000 --runs 5
run job_fill_3 /work/wt/fill $JOB
run job_events_1 /work/wt/events $JOB
run job_fill_4 /work/wt/fill $JOB
run job_events_2 /work/wt/events $JOB
run floor_fanout_5 /work/wt/fill bench/bench_floor_fanout.py --nodes 8000 --runs 5
