#!/usr/bin/env bash
# After the sitting: the storm once more with main's head (the control client's fix included).
R=/work/main/bench/results-2026-12-07c
echo "$(date -u +%H:%M:%S) start storm_head arm=head load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $R/summary.log
(cd /work/wt/s_head && PYTHONPATH=/work/wt/p_head python3 bench/bench_storm.py --nodes 5000 --runs 3) > $R/after/storm_head.log 2>&1
echo "$(date -u +%H:%M:%S) end storm_head rc=$? load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $R/summary.log
grep '^RESULT' $R/after/storm_head.log >> $R/summary.log
