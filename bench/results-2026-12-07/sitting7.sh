#!/bin/sh
# 2026-12-07, seventh part: the storm's config fetches. The sixth part (stopped after two of
# its four runs) found 748-4,375 config fetches per restart where the closing sitting had 0:
# same storm with `old` = ec19e3f (the emulator's whole sweep once a second) against `head`
# (8b9a920: the sweep in fifths, 2fdd289), to see whether the emulator's change is the cause.
set -u
OUT=$1
run() {
    name=$1; arm=$2; shift 2
    echo "== $name [$arm]: $* (start $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT/summary.log"
    (cd /work/wt/s_$arm && PYTHONPATH=/work/wt/p_$arm python3 "$@" > "$OUT/$name.log" 2>&1)
    echo "   exit $? (end $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT/summary.log"
    grep '^RESULT' "$OUT/$name.log" | tee -a "$OUT/summary.log"
}
run storm_old_1 old bench/bench_storm.py --nodes 5000 --runs 3
# then the closing sitting's code (b71cacf, `closing`: 6.2 s and no fetch there); as run, this
# line was started by hand with the same run() body right after storm_old_1
run storm_closing_1 closing bench/bench_storm.py --nodes 5000 --runs 3
