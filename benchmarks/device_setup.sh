#!/usr/bin/env bash
# Source this at the start of a device run: installs the carried wheels (.whl) and mambaprof itself.
# The device machine (H100/H200, Python 3.12, torch 2.11+cu130) reaches no registry.
set -u
export PYTHONUNBUFFERED=1 KINETO_LOG_LEVEL=5
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
python3 -m pip install -q --no-deps --no-build-isolation -e . >/tmp/pip-e.log 2>&1 || { cat /tmp/pip-e.log; exit 1; }
export PATH=$HOME/.local/bin:/usr/local/bin:$PATH
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > "$OUT/nvidia_smi.csv" 2>&1

# step LIMIT_S OUTFILE CMD... : run CMD within min(LIMIT_S, what is left of $BUDGET seconds since the script
# started), appending its output to OUTFILE and its exit status to $LOG; never fails, so later steps and the
# packing of results always run.
step() {
  local limit=$1 out=$2; shift 2
  local left=$((BUDGET - SECONDS))
  if [ "$left" -lt 20 ]; then echo "=== SKIPPED (budget spent at ${SECONDS}s): $*" | tee -a "$LOG"; return 0; fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "=== $(date -u +%H:%M:%S) t=${SECONDS}s limit=${limit}s: $*" | tee -a "$LOG"
  timeout "$limit" "$@" >>"$out" 2>&1
  local rc=$?
  echo "=== rc=$rc after ${SECONDS}s$([ $rc -eq 124 ] && echo ' (timed out)')" | tee -a "$LOG"
  [ "$out" != "$LOG" ] && tail -3 "$out" | tee -a "$LOG"
  return 0
}
