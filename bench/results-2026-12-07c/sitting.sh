#!/usr/bin/env bash
# The eighth session's sitting: every figure of issue 19 with main's code (final = the commit in
# COMMIT-final: the server code of 552b1d8 plus bench_zmq_soak.py), one benchmark at a time but
# the last pair (the soak and its floor, side by side).
R=/work/main/bench/results-2026-12-07c
run() {  # arm label command...
  local arm=$1 label=$2; shift 2
  echo "$(date -u +%H:%M:%S) start $label arm=$arm load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $R/summary.log
  (cd /work/wt/s_$arm && PYTHONPATH=/work/wt/p_$arm "$@") > $R/$label.log 2>&1
  echo "$(date -u +%H:%M:%S) end $label rc=$? load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $R/summary.log
  grep '^RESULT' $R/$label.log >> $R/summary.log
}
JOB="python3 bench/bench_dispatch.py --nodes 8000 --sizes 8000 --runs 5 --pause 5 --heartbeat-interval 10000"
FLOOR="python3 bench/bench_floor_fanout.py --nodes 5000,8000 --runs 5"
run final storm_1 python3 bench/bench_storm.py --nodes 5000 --runs 3
run final floor_1 $FLOOR
run final storm_2 python3 bench/bench_storm.py --nodes 5000 --runs 3
run final job_1 $JOB
run final job_2 $JOB
run final floor_2 $FLOOR
run final job_3 $JOB
run final job_4 $JOB
run final floor_3 $FLOOR
run final hb8000_steady python3 bench/bench_heartbeat.py --nodes 8000 --windows 3 --window 12 --no-floor --settle 540
run final zmqmem python3 bench/bench_zmq_memory.py --nodes 2000 --messages 600 --spacing 0.05 --variants base
run final joblist python3 bench/bench_joblist.py
echo "$(date -u +%H:%M:%S) start soak pair (soak: pushd; zmqsoak: its floor) load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $R/summary.log
(cd /work/wt/s_final && PYTHONPATH=/work/wt/p_final python3 bench/bench_soak.py --minutes 30 --sample-every 15 --sqlite --out $R/soak) > $R/soak.log 2>&1 &
(cd /work/wt/s_final && PYTHONPATH=/work/wt/p_final python3 bench/bench_zmq_soak.py --minutes 30 --sample-every 15 --out $R/zmqsoak) > $R/zmqsoak.log 2>&1 &
wait
echo "$(date -u +%H:%M:%S) end soak pair load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $R/summary.log
grep -h '^RESULT' $R/soak.log $R/zmqsoak.log >> $R/summary.log
