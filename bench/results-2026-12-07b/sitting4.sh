#!/usr/bin/env bash
# Two more pairs of the 8,000-node job, new (c3d7210) and final (ba791bf) alternated: does the
# multiplexed control client (the only server difference) cost the job anything?
R=/work/main/bench/results-2026-12-07b
run() {  # arm label command...
  local arm=$1 label=$2; shift 2
  echo "$(date -u +%H:%M:%S) start $label arm=$arm load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $R/summary.log
  (cd /work/wt/s_$arm && PYTHONPATH=/work/wt/p_$arm "$@") > $R/$label.log 2>&1
  echo "$(date -u +%H:%M:%S) end $label rc=$? load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $R/summary.log
  grep '^RESULT' $R/$label.log >> $R/summary.log
}
JOB="python3 bench/bench_dispatch.py --nodes 8000 --sizes 8000 --runs 5 --pause 5 --heartbeat-interval 10000"
for i in 5 6; do
  run final job_final_$i $JOB
  run new job_new_$i $JOB
done
