#!/usr/bin/env bash
# Issue 19, tenth session: every figure in one sitting, one benchmark at a time.
# Arms (one commit; they differ only in what is first on PYTHONPATH):
#   pushd   the installed pyzmq 27.3.0+pushd.pipe32.curveheap (this session's build)
#   pipe32  /opt/pyzmq-pipe32: the ninth session's build (same libzmq 4.3.4 and pipe patch,
#           libsodium's guarded handshake buffers): the A/B of curve-heap-buffers.patch
#   pypi    /opt/pyzmq-pypi: PyPI's pyzmq 27.3.0 (libzmq 4.3.5): the stock memory floor
#   oldemu  pushd's server with the emulator before this session's fix (bench/ of 79942ca
#           through /work/wt/p_oldemu): the A/B of the emulator reading its SUB/DEALER
#           before judging its server silent
R=/work/main/bench/results-2026-12-07e
declare -A PP=([pushd]="" [pipe32]=/opt/pyzmq-pipe32 [pypi]=/opt/pyzmq-pypi [oldemu]=/work/wt/p_oldemu)
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
STORM="python3 bench/bench_storm.py --nodes 5000 --runs 3"
HB="python3 bench/bench_heartbeat.py --nodes 8000 --windows 3 --window 12 --no-floor --settle 540"
ZMEM="python3 bench/bench_zmq_memory.py --nodes 2000 --messages 600 --spacing 0.05 --variants base"
run pushd soak python3 bench/bench_soak.py --minutes 30 --sample-every 15 --sqlite --out $R/soak
run pushd hb8000 $HB
run pushd zmqmem_pushd $ZMEM
run pypi zmqmem_pypi $ZMEM
run pushd job_1 $JOB
run pushd floor_1 $FLOOR
run pushd storm_1 $STORM
run pipe32 storm_pipe32 $STORM
run pushd storm_2 $STORM
run oldemu storm_oldemu $STORM
run pushd floor_2 $FLOOR
run pushd job_2 $JOB
run pushd joblist python3 bench/bench_joblist.py
echo "$(date -u +%H:%M:%S) sitting done" >> $R/summary.log
