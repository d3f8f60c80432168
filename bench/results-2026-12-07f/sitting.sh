#!/usr/bin/env bash
# Issue 19, eleventh session: every figure in one sitting, one benchmark at a time, on main's
# code as the tenth sitting left it (no server change since). Arms (one commit; they differ only
# in what is first on PYTHONPATH):
#   pushd   the installed pyzmq 27.3.0+pushd.pipe32.curveheap (scripts/install-deps builds it)
#   pypi    /opt/pyzmq-pypi: PyPI's pyzmq 27.3.0 (libzmq 4.3.5): the stock memory floor, and
#           the storm's A/B of pushd's libzmq build as a whole (pipe + curve-heap patches)
# Before each benchmark the script waits (at most 90 s) for the 1-minute load to fall under 1.5,
# so a benchmark does not start in the previous one's tail; the load at each start is logged.
R=/work/main/bench/results-2026-12-07f
declare -A PP=([pushd]="" [pypi]=/opt/pyzmq-pypi)
cool() {
  local waited=0
  while [ "$waited" -lt 90 ] && awk '{exit !($1 >= 1.5)}' /proc/loadavg; do
    sleep 5; waited=$((waited + 5))
  done
}
run() {  # arm label command...
  local arm=$1 label=$2; shift 2
  cool
  echo "$(date -u +%H:%M:%S) start $label arm=$arm load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $R/summary.log
  (cd /work/main && PYTHONPATH=${PP[$arm]} "$@") > $R/$label.log 2>&1
  echo "$(date -u +%H:%M:%S) end $label rc=$? load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $R/summary.log
  grep '^RESULT' $R/$label.log >> $R/summary.log
}
cd /work/main && git rev-parse HEAD > $R/COMMIT
JOB="python3 bench/bench_dispatch.py --nodes 8000 --sizes 8000 --runs 5 --pause 5 --heartbeat-interval 10000"
FLOOR="python3 bench/bench_floor_fanout.py --nodes 5000,8000 --runs 5"
STORM="python3 bench/bench_storm.py --nodes 5000 --runs 3"
HB="python3 bench/bench_heartbeat.py --nodes 8000 --windows 3 --window 12 --no-floor --settle 540"
ZMEM="python3 bench/bench_zmq_memory.py --nodes 2000 --messages 600 --spacing 0.05 --variants base"
run pushd job_1 $JOB
run pushd floor_1 $FLOOR
run pushd storm_1 $STORM
run pushd soak python3 bench/bench_soak.py --minutes 30 --sample-every 15 --sqlite --out $R/soak
run pushd hb8000 $HB
run pushd zmqmem_pushd $ZMEM
run pypi zmqmem_pypi $ZMEM
run pypi storm_pypi $STORM
run pushd storm_2 $STORM
run pushd floor_2 $FLOOR
run pushd job_2 $JOB
run pushd joblist python3 bench/bench_joblist.py
echo "$(date -u +%H:%M:%S) sitting done" >> $R/summary.log
