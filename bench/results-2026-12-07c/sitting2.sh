#!/usr/bin/env bash
# Second part, after the soak pair: the storm A/B of the stop's last heartbeat as its last act
# (lastbeat = 6a639f4) against final (the server code of 552b1d8), alternated, and a floor.
R=/work/main/bench/results-2026-12-07c
while ! grep -q "end soak pair" $R/summary.log; do sleep 10; done
sleep 20
run() {  # arm label command...
  local arm=$1 label=$2; shift 2
  echo "$(date -u +%H:%M:%S) start $label arm=$arm load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $R/summary.log
  (cd /work/wt/s_$arm && PYTHONPATH=/work/wt/p_$arm "$@") > $R/$label.log 2>&1
  echo "$(date -u +%H:%M:%S) end $label rc=$? load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $R/summary.log
  grep '^RESULT' $R/$label.log >> $R/summary.log
}
STORM="python3 bench/bench_storm.py --nodes 5000 --runs 3"
run lastbeat storm_lastbeat_1 $STORM
run final storm_final_3 $STORM
run lastbeat storm_lastbeat_2 $STORM
run final storm_final_4 $STORM
run final floor_4 python3 bench/bench_floor_fanout.py --nodes 5000,8000 --runs 5
echo "$(date -u +%H:%M:%S) part 2 done" >> $R/summary.log
