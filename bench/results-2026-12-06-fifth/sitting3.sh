#!/bin/sh
# Same session, third part: `fill` = e29a25a (arrays + schema 7's fillfactor 50 on job_nodes,
# + the knife and lost-run fixes, which this benchmark does not exercise) against
# `fillswitch` = fill + sys.setswitchinterval(0.0005) in the broker (switch.diff), alternated,
# then the floor. Fresh PostgreSQL database per benchmark run (schema 7 applies to it).
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
run job_fill_1 /work/wt/fill $JOB
run job_fillswitch_1 /work/wt/fillswitch $JOB
run job_fill_2 /work/wt/fill $JOB
run job_fillswitch_2 /work/wt/fillswitch $JOB
run floor_fanout_3 /work/wt/fill bench/bench_floor_fanout.py --nodes 8000 --runs 5
