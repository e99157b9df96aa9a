#!/usr/bin/env bash
# Sourced by the device scripts (through device_setup.sh) and by their CPU dry runs.
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
