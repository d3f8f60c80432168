#!/bin/sh
# 2026-12-07, sixth part: the 5,000-node restart storm with the collector's schedule (`head` =
# 8b9a920) and without (`final` = 68be2c5), alternated, after the floor estimate.
set -u
OUT=$1
run() {
    name=$1; arm=$2; shift 2
    echo "== $name [$arm]: $* (start $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT/summary.log"
    (cd /work/wt/s_$arm && PYTHONPATH=/work/wt/p_$arm python3 "$@" > "$OUT/$name.log" 2>&1)
    echo "   exit $? (end $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT/summary.log"
    grep '^RESULT' "$OUT/$name.log" | tee -a "$OUT/summary.log"
}
run floor_storm head bench/bench_floor_fanout.py --nodes 5000 --runs 5
run storm_head_1 head bench/bench_storm.py --nodes 5000 --runs 3
run storm_final_1 final bench/bench_storm.py --nodes 5000 --runs 3
run storm_head_2 head bench/bench_storm.py --nodes 5000 --runs 3
run storm_final_2 final bench/bench_storm.py --nodes 5000 --runs 3
# As run: stopped during storm_head_2 (its log is partial) after the first two arms showed the config fetches; see sitting7.sh.
