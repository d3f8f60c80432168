#!/bin/sh
# Runs every benchmark once, one after another, as recorded in bench/RESULTS.md (the floors
# first, the restart storm last). PYTHON picks the interpreter (default: scripts/python);
# ONLY="hb1000 api" runs just the named ones. The 30-minute soak (issue 19) is opt-in: it runs
# only when ONLY names it (ONLY=soak).
# Usage: sh bench/run_all.sh [OUT_DIR]   (each benchmark's output in OUT_DIR/NAME.log)
set -u
OUT=${1:-/var/tmp/pushd-bench/results}
mkdir -p "$OUT"
cd "$(dirname "$0")/.." || exit 1
PY=${PYTHON:-$(scripts/python)}
run() {
    name=$1; shift
    case " ${ONLY:-$name} " in *" $name "*) ;; *) return 0 ;; esac
    echo "== $name: $* (start $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT/summary.log"
    "$PY" "$@" > "$OUT/$name.log" 2>&1
    echo "   exit $? (end $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT/summary.log"
    grep '^RESULT' "$OUT/$name.log" | tee -a "$OUT/summary.log"
}
run floor bench/bench_floor.py --runs 5
run floor_fanout bench/bench_floor_fanout.py --nodes 100,1000,5000,8000 --runs 5
run hb1000 bench/bench_heartbeat.py --nodes 1000 --windows 5 --window 12 --profile 15
run hb4000 bench/bench_heartbeat.py --nodes 4000 --windows 5 --window 12 --no-floor
run hb8000 bench/bench_heartbeat.py --nodes 8000 --windows 5 --window 12 --profile 15 --no-floor
run dispatch1000 bench/bench_dispatch.py --nodes 1000 --sizes 100,1000 --runs 5 --profile 20
run api bench/bench_api.py --runs 5
run floor_http bench/bench_floor_http.py --runs 5
run joblist bench/bench_joblist.py
run zmqmem bench/bench_zmq_memory.py --nodes 2000 --messages 600 --spacing 0.05 --variants base,router,pub,arena2
run dispatch8000 bench/bench_dispatch.py --nodes 8000 --sizes 8000 --runs 5 --pause 5
run storm5000 bench/bench_storm.py --nodes 5000 --runs 3
run bigjob bench/bench_dispatch.py --nodes 100 --sizes '' --big-job 100000 --sqlite
run rollout8000 bench/bench_rollout.py --nodes 8000 --sizes 1000,8000 --concurrency 500 --delay 0.2 --runs 2
# Opt-in only: 30 minutes plus setup and drain.
case " ${ONLY:-} " in
    *" soak "*) run soak bench/bench_soak.py --minutes 30 --sample-every 15 --sqlite --out "$OUT/soak" ;;
esac
# Opt-in only, and best beside the soak (its floor: a bare libzmq server with the same traffic).
case " ${ONLY:-} " in
    *" zmqsoak "*) run zmqsoak bench/bench_zmq_soak.py --minutes 30 --sample-every 15 --out "$OUT/zmqsoak" ;;
esac
