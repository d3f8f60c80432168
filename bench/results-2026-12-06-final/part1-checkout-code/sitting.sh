#!/bin/sh
# Issue 19's closing sitting (2026-12-06, third session), as run: every figure of the issue in
# one sitting on this machine, one benchmark at a time on the otherwise idle machine, except the
# two soak arms at the end, which run side by side (same load for both; RSS, not time, is their
# figure). Arms are git worktrees put first on PYTHONPATH (the server, broker, API workers and
# emulator import `pushd` from there): prestorm = 14b3bde (before the storm work: a new
# incarnation id at every start), base = b791169 (before this session: no heap limit),
# now = COMMIT-now. The benchmark code is main's for every arm.
# Usage: sh sitting.sh OUT_DIR  (logs: OUT_DIR/NAME.log, OUT_DIR/summary.log)
set -u
OUT=$1
mkdir -p "$OUT"
cd /work/main || exit 1
run() {
    name=$1; arm=$2; shift 2
    case " ${ONLY:-$name} " in *" $name "*) ;; *) return 0 ;; esac
    echo "== $name [$arm]: $* (start $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT/summary.log"
    PYTHONPATH=$arm python3 "$@" > "$OUT/$name.log" 2>&1
    echo "   exit $? (end $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT/summary.log"
    grep '^RESULT' "$OUT/$name.log" | tee -a "$OUT/summary.log"
}
PRESTORM=/work/wt/prestorm; BASE=/work/wt/base; NOW=/work/wt/now
JOB="bench/bench_dispatch.py --nodes 8000 --sizes 8000 --runs 5 --pause 5"
run floor_fanout $NOW bench/bench_floor_fanout.py --nodes 5000,8000 --runs 5
run floor_fanout_hb1 $NOW bench/bench_floor_fanout.py --nodes 8000 --runs 5 --heartbeat-interval 1000
run floor_fanout_hb10 $NOW bench/bench_floor_fanout.py --nodes 8000 --runs 5 --heartbeat-interval 10000
run job8000_now $NOW $JOB
run job8000_base $BASE $JOB
run job8000_hb10_now $NOW $JOB --heartbeat-interval 10000
run job8000_hb10_base $BASE $JOB --heartbeat-interval 10000
run storm5000_now $NOW bench/bench_storm.py --nodes 5000 --runs 3
run storm5000_base $BASE bench/bench_storm.py --nodes 5000 --runs 3
run storm5000_prestorm $PRESTORM bench/bench_storm.py --nodes 5000 --runs 3
run hb8000_now $NOW bench/bench_heartbeat.py --nodes 8000 --windows 3 --window 12 --no-floor
run zmqmem $NOW bench/bench_zmq_memory.py --nodes 2000 --messages 600 --spacing 0.05 --variants base,router,pub,arena2
run joblist_now $NOW bench/bench_joblist.py
# The soak pair: both arms at once, 30 minutes (SQLite, the embedded default, as in every soak).
case " ${ONLY:-soak} " in *" soak "*)
    echo "== soak_now + soak_base side by side (start $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT/summary.log"
    PYTHONPATH=$NOW python3 bench/bench_soak.py --minutes 30 --sample-every 15 --sqlite --out "$OUT/soak_now" > "$OUT/soak_now.log" 2>&1 &
    sleep 5
    PYTHONPATH=$BASE python3 bench/bench_soak.py --minutes 30 --sample-every 15 --sqlite --out "$OUT/soak_base" > "$OUT/soak_base.log" 2>&1 &
    wait
    echo "   end $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/summary.log"
    for arm in now base; do echo "-- soak_$arm"; grep '^RESULT' "$OUT/soak_$arm.log"; done | tee -a "$OUT/summary.log"
;; esac
