#!/bin/sh
# Same sitting, second part: an experiment arm `switch` = arrays + sys.setswitchinterval(0.0005)
# in the broker (a what-if: does the broker loop lose time waiting for the GIL behind its
# journal thread, with the default 5 ms switch interval?). Arms alternated with `arrays`.
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
run job_switch_1 /work/wt/switch $JOB
run job_new_3 /work/wt/arrays $JOB
run job_switch_2 /work/wt/switch $JOB
run job_new_4 /work/wt/arrays $JOB
