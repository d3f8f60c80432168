#!/usr/bin/env bash
# Issue 19, seventh session: every figure of the issue in one sitting on this machine, one
# benchmark at a time on the otherwise idle machine, except the soak pair at the end (both arms
# side by side: RSS and open files, not time, are its figures). Arms are git worktrees:
# old = 994279c (this session's start), final = this session's server code (COMMIT-final).
# Each runs from its own worktree with its pushd and pushd_bench first on PYTHONPATH.
R=/work/main/bench/results-2026-12-07b
run() {  # arm label command...
  local arm=$1 label=$2; shift 2
  echo "$(date -u +%H:%M:%S) start $label arm=$arm load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $R/summary.log
  (cd /work/wt/s_$arm && PYTHONPATH=/work/wt/p_$arm "$@") > $R/$label.log 2>&1
  echo "$(date -u +%H:%M:%S) end $label rc=$? load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $R/summary.log
  grep '^RESULT' $R/$label.log >> $R/summary.log
}
JOB="python3 bench/bench_dispatch.py --nodes 8000 --sizes 8000 --runs 5 --pause 5 --heartbeat-interval 10000"
run final floor_fanout python3 bench/bench_floor_fanout.py --nodes 5000,8000 --runs 5
run final job_final_1 $JOB
run old job_old_1 $JOB
run final job_final_2 $JOB
run old job_old_2 $JOB
run final floor_fanout_2 python3 bench/bench_floor_fanout.py --nodes 8000 --runs 5
run final hb8000_steady python3 bench/bench_heartbeat.py --nodes 8000 --windows 3 --window 12 --no-floor --settle 540
run final zmqmem python3 bench/bench_zmq_memory.py --nodes 2000 --messages 600 --spacing 0.05 --variants base
run final joblist python3 bench/bench_joblist.py
echo "$(date -u +%H:%M:%S) start soak pair (final + old side by side) load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $R/summary.log
(cd /work/wt/s_final && PYTHONPATH=/work/wt/p_final python3 bench/bench_soak.py --minutes 30 --sample-every 15 --sqlite --out $R/soak_final > $R/soak_final.log 2>&1) &
sleep 5
(cd /work/wt/s_old && PYTHONPATH=/work/wt/p_old python3 bench/bench_soak.py --minutes 30 --sample-every 15 --sqlite --out $R/soak_old > $R/soak_old.log 2>&1) &
wait
echo "$(date -u +%H:%M:%S) end soak pair load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $R/summary.log
for arm in final old; do echo "-- soak_$arm"; grep '^RESULT' $R/soak_$arm.log; done >> $R/summary.log
