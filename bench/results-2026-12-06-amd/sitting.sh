#!/bin/sh
# Issue 19, fourth session (2026-12-06, 18:49- UTC): this VM's floors and the 8,000-node job on
# the final code (main), one benchmark at a time on the otherwise idle machine. No A/B arms: no
# server code changed this session. Usage: sh sitting.sh OUT_DIR
set -u
OUT=$1
mkdir -p "$OUT"
cd /work/main || exit 1
run() {
    name=$1; shift
    case " ${ONLY:-$name} " in *" $name "*) ;; *) return 0 ;; esac
    echo "== $name: $* (start $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT/summary.log"
    python3 "$@" > "$OUT/$name.log" 2>&1
    echo "   exit $? (end $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT/summary.log"
    grep '^RESULT' "$OUT/$name.log" | tee -a "$OUT/summary.log"
}
JOB="bench/bench_dispatch.py --nodes 8000 --sizes 8000 --runs 5 --pause 5"
run floor_fanout bench/bench_floor_fanout.py --nodes 8000 --runs 5
run floor_fanout_hb10 bench/bench_floor_fanout.py --nodes 8000 --runs 5 --heartbeat-interval 10000
run floor_fanout_hb1 bench/bench_floor_fanout.py --nodes 8000 --runs 5 --heartbeat-interval 1000
run job8000_hb10 $JOB --heartbeat-interval 10000
run job8000 $JOB
run hb8000 bench/bench_heartbeat.py --nodes 8000 --windows 3 --window 12 --no-floor
# Second part (after the first, same sitting): memory per node at the steady state of libzmq's
# pipes (every busy pipe past 512 messages: 9 minutes of 1 s heartbeats before the windows)
# next to bare libzmq at 600 messages per peer; then the job at 10 s heartbeats again with the
# emulator counting only command messages its epoll loop missed (not server heartbeats).
run zmqmem bench/bench_zmq_memory.py --nodes 2000 --messages 600 --spacing 0.05 --variants base
run hb8000_steady bench/bench_heartbeat.py --nodes 8000 --windows 3 --window 12 --no-floor --settle 540
run job8000_hb10_commands $JOB --heartbeat-interval 10000
