#!/usr/bin/env bash
# After the sitting: the storm alternated between PyPI's pyzmq (libzmq 4.3.5) and pushd's build.
R=/work/main/bench/results-2026-12-07d/after
declare -A PP=([pushd]="" [pypi]=/opt/pyzmq-pypi)
for arm in pypi pushd pypi pushd; do
  n=$((n+1)); label=storm_ab_${n}_$arm
  echo "$(date -u +%H:%M:%S) start $label load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $R/summary.log
  (cd /work/main && PYTHONPATH=${PP[$arm]} python3 bench/bench_storm.py --nodes 5000 --runs 3) > $R/$label.log 2>&1
  echo "$(date -u +%H:%M:%S) end $label rc=$? load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $R/summary.log
  grep '^RESULT name=storm_\(start_to_all\|server_cpu\|config\)' $R/$label.log >> $R/summary.log
done
