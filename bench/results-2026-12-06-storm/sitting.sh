#!/bin/sh
# Issue 19's storm sitting (2026-12-06, second session), as run: one benchmark at a time on the
# otherwise idle machine. Arms are git worktrees put first on PYTHONPATH (the server, broker, API
# workers and emulator import `pushd` from there): base = 14b3bde (every start a new incarnation
# id), now = the commit that keeps it (COMMIT-now). The benchmark code is main's for every arm;
# base's emulator is main's too, so both arms' nodes reopen their sockets like the stock client.
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
BASE=/work/wt/base; NOW=/work/wt/now
run floor_fanout $NOW bench/bench_floor_fanout.py --nodes 5000 --runs 5
run storm5000_now $NOW bench/bench_storm.py --nodes 5000 --runs 3
run storm5000_now_new $NOW bench/bench_storm.py --nodes 5000 --runs 3 --new-incarnation
run storm5000_base $BASE bench/bench_storm.py --nodes 5000 --runs 3 --new-incarnation
