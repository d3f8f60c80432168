#!/usr/bin/env bash
# After the soak pair: the storm on the final code, then the 8,000-node job in three arms
# rotated (old = 994279c, new = c3d7210: + the early heartbeat, final = ba791bf: + the
# multiplexed control client), to tell which change carries sitting2's +0.1 s.
R=/work/main/bench/results-2026-12-07b
run() {  # arm label command...
  local arm=$1 label=$2; shift 2
  echo "$(date -u +%H:%M:%S) start $label arm=$arm load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $R/summary.log
  (cd /work/wt/s_$arm && PYTHONPATH=/work/wt/p_$arm "$@") > $R/$label.log 2>&1
  echo "$(date -u +%H:%M:%S) end $label rc=$? load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $R/summary.log
  grep '^RESULT' $R/$label.log >> $R/summary.log
}
JOB="python3 bench/bench_dispatch.py --nodes 8000 --sizes 8000 --runs 5 --pause 5 --heartbeat-interval 10000"
run final storm_final_1 python3 bench/bench_storm.py --nodes 5000 --runs 3
for i in 3 4; do
  run new job_new_$i $JOB
  run final job_final_$i $JOB
  run old job_old_$i $JOB
done
run final floor_fanout_3 python3 bench/bench_floor_fanout.py --nodes 8000 --runs 5
