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
# At the shipped heartbeat interval (10 s): a 3-4 s restart is far below the ~40 s after which a
# stock client judges the server offline, so nodes keep their sockets; at 1 s (above) every node
# does (its silence passed ~4 s) and reopens them.
run storm5000_hb10_now $NOW bench/bench_storm.py --nodes 5000 --runs 3 --heartbeat-interval 10000
run storm5000_hb10_now_new $NOW bench/bench_storm.py --nodes 5000 --runs 3 --heartbeat-interval 10000 --new-incarnation
run storm5000_hb10_base $BASE bench/bench_storm.py --nodes 5000 --runs 3 --heartbeat-interval 10000 --new-incarnation
# now2 (COMMIT-now2): a server heartbeat at the broker's stop and four per interval in the first
# offline_threshold intervals after a start, against the 1 s reopen herd above.
NOW2=/work/wt/now2
run storm5000_now2 $NOW2 bench/bench_storm.py --nodes 5000 --runs 3
run storm5000_now2_hbproc $NOW2 bench/bench_storm.py --nodes 5000 --runs 3 --setting heartbeat_process=true
# Later arms (see RESULTS.md): now3 = + a last heartbeat after the shutdown's saving; now4 = + four
# heartbeats per interval after a start; now5 = + the PUB in its own ZeroMQ context. From
# storm5000_now5_subctx on, the emulator's SUB sockets have their own I/O thread per worker
# (main's bench code from commit 5ffb811 on), and every arm below was run with that emulator.
NOW3=/work/wt/now3; NOW4=/work/wt/now4; NOW5=/work/wt/now5
run storm5000_now3 $NOW3 bench/bench_storm.py --nodes 5000 --runs 3
run storm5000_now4 $NOW4 bench/bench_storm.py --nodes 5000 --runs 3
run storm5000_now5 $NOW5 bench/bench_storm.py --nodes 5000 --runs 3
run storm5000_now5_subctx $NOW5 bench/bench_storm.py --nodes 5000 --runs 3
run storm5000_e2_base $BASE bench/bench_storm.py --nodes 5000 --runs 3 --new-incarnation
run storm5000_e2_now $NOW bench/bench_storm.py --nodes 5000 --runs 3
run storm5000_e2_now5_new $NOW5 bench/bench_storm.py --nodes 5000 --runs 3 --new-incarnation
run storm5000_e2_hb10_now5 $NOW5 bench/bench_storm.py --nodes 5000 --runs 3 --heartbeat-interval 10000
run floor_fanout_end $NOW5 bench/bench_floor_fanout.py --nodes 5000 --runs 5
# Does the heartbeat PUB's own context (now5) cost the 8,000-node job anything? (now = without it)
run job8000_now $NOW bench/bench_dispatch.py --nodes 8000 --sizes 8000 --runs 5 --pause 5
run job8000_now5 $NOW5 bench/bench_dispatch.py --nodes 8000 --sizes 8000 --runs 5 --pause 5
# final = the session's last code (the last heartbeat's socket closed with a linger, its
# sequence number reserved in the saved incarnation).
FINAL=/work/wt/final
run storm5000_final $FINAL bench/bench_storm.py --nodes 5000 --runs 3
