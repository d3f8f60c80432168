#!/usr/bin/env bash
# Storm A/B of the early heartbeat (old = 994279c, before it; new = c3d7210), alternated.
# Each arm runs from its own worktree with its pushd and pushd_bench first on PYTHONPATH.
R=/work/main/bench/results-2026-12-07b
run() {  # arm label command...
  local arm=$1 label=$2; shift 2
  echo "$(date -u +%H:%M:%S) start $label arm=$arm load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $R/summary.log
  (cd /work/wt/s_$arm && PYTHONPATH=/work/wt/p_$arm "$@") > $R/$label.log 2>&1
  echo "$(date -u +%H:%M:%S) end $label rc=$? $(grep '^RESULT' $R/$label.log | grep -E 'start_to_all|fetches' | tr '\n' ' ')" >> $R/summary.log
}
for i in 1 2; do
  run old storm_old_$i python3 bench/bench_storm.py --nodes 5000 --runs 3
  run new storm_new_$i python3 bench/bench_storm.py --nodes 5000 --runs 3
done
