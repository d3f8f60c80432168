#!/bin/sh
# 2026-12-07, fifth part: does the garbage-collector schedule change the soak's memory? A pair
# of 12-minute soaks side by side (same conditions for both; their figure is RSS, not time):
# `head` = 8b9a920 (quiet_collector) and `final` = 68be2c5 (CPython's default schedule).
set -u
OUT=$1
echo "== soak_head + soak_final side by side (start $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT/summary.log"
(cd /work/wt/s_head && PYTHONPATH=/work/wt/p_head python3 bench/bench_soak.py --minutes 12 --sample-every 15 --sqlite --out "$OUT/soak_head" > "$OUT/soak_head.log" 2>&1) &
sleep 5
(cd /work/wt/s_final && PYTHONPATH=/work/wt/p_final python3 bench/bench_soak.py --minutes 12 --sample-every 15 --sqlite --out "$OUT/soak_final" > "$OUT/soak_final.log" 2>&1) &
wait
echo "   end $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/summary.log"
for arm in head final; do echo "-- soak_$arm"; grep '^RESULT' "$OUT/soak_$arm.log"; done | tee -a "$OUT/summary.log"
