#!/usr/bin/env bash
# Pre-sitting A/B: the broker's GIL switch interval 0.5 ms (swi) against CPython's 5 ms (base).
R=/work/main/bench/results-2026-12-07c/pre-sitting
mkdir -p $R
run() {  # arm label command...
  local arm=$1 label=$2; shift 2
  echo "$(date -u +%H:%M:%S) start $label arm=$arm load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $R/summary.log
  (cd /work/wt/s_$arm && PYTHONPATH=/work/wt/p_$arm "$@") > $R/$label.log 2>&1
  echo "$(date -u +%H:%M:%S) end $label rc=$? load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $R/summary.log
  grep '^RESULT' $R/$label.log >> $R/summary.log
}
JOB="python3 bench/bench_dispatch.py --nodes 8000 --sizes 8000 --runs 5 --pause 5 --heartbeat-interval 10000"
for i in 1 2; do
  run swi job_swi_$i $JOB
  run base job_base_$i $JOB
done
