#!/bin/bash
# A/B/C heartbeat cost: pre-metrics code, metrics off, metrics on; twice, interleaved.
out=/tmp/hb-ab.log
: > $out
for round in 1 2; do
  for cfg in pre off on; do
    echo "=== round $round cfg $cfg $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)" >> $out
    case $cfg in
      pre) (cd /work/wt/pre-metrics && .venv/bin/python bench/bench_heartbeat.py --nodes 1000 --windows 3 --window 10 --no-floor) >> $out 2>&1 ;;
      off) (cd /work/main && python3 bench/bench_heartbeat.py --nodes 1000 --windows 3 --window 10 --no-floor) >> $out 2>&1 ;;
      on) (cd /work/main && python3 bench/bench_heartbeat.py --nodes 1000 --windows 3 --window 10 --no-floor --metrics) >> $out 2>&1 ;;
    esac
  done
done
echo "=== done $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)" >> $out
