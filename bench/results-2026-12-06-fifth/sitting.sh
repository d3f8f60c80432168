#!/bin/sh
# Issue 19, fifth session (2026-12-06/07 UTC, AMD EPYC VM): A/B of the array statements
# (1622a8d: job node rows, presence, last-seen times; named HMAC digest) against main at the
# start of the session (06ee37e). Arms are git worktrees first on PYTHONPATH (the benchmarks'
# children start with PYTHONSAFEPATH=1, so server, broker, API workers and emulator import the
# arm's pushd); benchmark code is main's for both. One benchmark at a time, arms alternated.
# Usage: sh sitting.sh OUT_DIR
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
BASE=/work/wt/base
NEW=/work/wt/${NEW_ARM:-arrays}
JOB="bench/bench_dispatch.py --nodes 8000 --sizes 8000 --runs 5 --pause 5 --heartbeat-interval 10000"
run floor_fanout $BASE bench/bench_floor_fanout.py --nodes 8000 --runs 5
run job_base_1 $BASE $JOB
run job_new_1 $NEW $JOB
run job_base_2 $BASE $JOB
run job_new_2 $NEW $JOB
run floor_fanout_2 $BASE bench/bench_floor_fanout.py --nodes 8000 --runs 5
