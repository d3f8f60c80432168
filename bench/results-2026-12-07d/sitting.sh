#!/usr/bin/env bash
# The ninth session's sitting: every figure of issue 19 on main's code (COMMIT), with pushd's
# pyzmq build (arm "pushd": libzmq 4.3.4, 32-message pipe chunks, installed by install-deps)
# against the same code on libzmq 4.3.4 built with its stock 256 (arm "g256":
# PYTHONPATH=/opt/pyzmq-g256, a pyzmq 27.3.0 built against /opt/zmq-g256, the same Debian
# source without the pipe patch), and PyPI's pyzmq 27.3.0 (libzmq 4.3.5) for the bare floor.
# One benchmark at a time but the soak pair (the two arms side by side).
R=/work/main/bench/results-2026-12-07d
declare -A PP=([pushd]="" [g256]=/opt/pyzmq-g256 [pypi]=/opt/pyzmq-pypi)
run() {  # arm label command...
  local arm=$1 label=$2; shift 2
  echo "$(date -u +%H:%M:%S) start $label arm=$arm load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $R/summary.log
  (cd /work/main && PYTHONPATH=${PP[$arm]} "$@") > $R/$label.log 2>&1
  echo "$(date -u +%H:%M:%S) end $label rc=$? load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $R/summary.log
  grep '^RESULT' $R/$label.log >> $R/summary.log
}
cd /work/main && git rev-parse HEAD > $R/COMMIT
JOB="python3 bench/bench_dispatch.py --nodes 8000 --sizes 8000 --runs 5 --pause 5 --heartbeat-interval 10000"
FLOOR="python3 bench/bench_floor_fanout.py --nodes 5000,8000 --runs 5"
SOAK="python3 bench/bench_soak.py --minutes 30 --sample-every 15 --sqlite"
echo "$(date -u +%H:%M:%S) start soak pair (soak_pushd, soak_g256 side by side) load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $R/summary.log
(cd /work/main && $SOAK --out $R/soak_pushd) > $R/soak_pushd.log 2>&1 &
(cd /work/main && PYTHONPATH=/opt/pyzmq-g256 $SOAK --out $R/soak_g256) > $R/soak_g256.log 2>&1 &
wait
echo "$(date -u +%H:%M:%S) end soak pair load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $R/summary.log
grep -H '^RESULT' $R/soak_pushd.log $R/soak_g256.log >> $R/summary.log
HB="python3 bench/bench_heartbeat.py --nodes 8000 --windows 3 --window 12 --no-floor --settle 540"
ZMEM="python3 bench/bench_zmq_memory.py --nodes 2000 --messages 600 --spacing 0.05 --variants base"
run pushd hb8000_pushd $HB
run pushd zmqmem_pushd $ZMEM
run g256 zmqmem_g256 $ZMEM
run pypi zmqmem_pypi $ZMEM
run g256 hb8000_g256 $HB
run pushd job_1 $JOB
run pushd floor_1 $FLOOR
run g256 job_g256 $JOB
run pushd job_2 $JOB
run pushd storm_1 python3 bench/bench_storm.py --nodes 5000 --runs 3
run pushd floor_2 $FLOOR
run g256 storm_g256 python3 bench/bench_storm.py --nodes 5000 --runs 3
run pushd storm_2 python3 bench/bench_storm.py --nodes 5000 --runs 3
run pushd joblist python3 bench/bench_joblist.py
echo "$(date -u +%H:%M:%S) sitting done" >> $R/summary.log
