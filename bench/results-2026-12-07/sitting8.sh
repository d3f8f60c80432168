#!/bin/sh
# 2026-12-07, eighth part: the restart storm with the last heartbeat's linger at 2,000 ms
# (`linger` = 8b9a920 + linger.diff) against 200 ms (`head` = 8b9a920), alternated. A first
# `linger` run (storm_linger_1, started by hand at 03:34 on a quieter machine) had 36-273
# config fetches per restart where every other arm had 738-4,375.
set -u
OUT=$1
run() {
    name=$1; arm=$2; shift 2
    echo "== $name [$arm]: $* (start $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT/summary.log"
    (cd /work/wt/s_$arm && PYTHONPATH=/work/wt/p_$arm python3 "$@" > "$OUT/$name.log" 2>&1)
    echo "   exit $? (end $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT/summary.log"
    grep '^RESULT' "$OUT/$name.log" | tee -a "$OUT/summary.log"
}
STORM="bench/bench_storm.py --nodes 5000 --runs 3"
run storm_head_3 head $STORM
run storm_linger_2 linger $STORM
run storm_head_4 head $STORM
run storm_linger_3 linger $STORM
