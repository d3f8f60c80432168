#!/bin/sh
# After the sitting (2026-12-06, ~17:48 UTC): would a higher mmap threshold keep the soak's gain
# without the job's cost? The events arm with glibc's threshold as environment (it wins over the
# code's 8192): 12 KiB keeps libzmq's 16 KiB pipe chunks mapped alone but not its ~9 KiB decoder
# buffers. Job A/B one after another, then a 12-minute soak pair side by side.
set -u
OUT=$1; mkdir -p "$OUT"; cd /work/main || exit 1
EVENTS=/work/wt/events
JOB="bench/bench_dispatch.py --nodes 8000 --sizes 8000 --runs 5 --pause 5 --heartbeat-interval 10000"
for arm in 8k 12k; do
  v=8192; [ $arm = 12k ] && v=12288
  echo "== job8000_hb10_$arm (start $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT/summary.log"
  PYTHONPATH=$EVENTS python3 $JOB --server-env MALLOC_MMAP_THRESHOLD_=$v > "$OUT/job8000_hb10_$arm.log" 2>&1
  grep -E '^RESULT name=dispatch_(post_to_job|cpu_broker)' "$OUT/job8000_hb10_$arm.log" | tee -a "$OUT/summary.log"
done
echo "== soak pair 12 min (start $(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$OUT/summary.log"
PYTHONPATH=$EVENTS python3 bench/bench_soak.py --minutes 12 --sample-every 15 --sqlite --server-env MALLOC_MMAP_THRESHOLD_=8192 --out "$OUT/soak_8k" > "$OUT/soak_8k.log" 2>&1 &
sleep 3
PYTHONPATH=$EVENTS python3 bench/bench_soak.py --minutes 12 --sample-every 15 --sqlite --server-env MALLOC_MMAP_THRESHOLD_=12288 --out "$OUT/soak_12k" > "$OUT/soak_12k.log" 2>&1 &
wait
for arm in 8k 12k; do grep -E '^RESULT.*(broker|unfinished)' "$OUT/soak_$arm.log" | sed "s/^/$arm: /"; done | tee -a "$OUT/summary.log"
