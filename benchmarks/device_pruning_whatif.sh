#!/usr/bin/env bash
if [ "${SETUP:-1}" = 1 ]; then source benchmarks/device_setup.sh; else set -u; export PYTHONUNBUFFERED=1; fi
# Device run for issue 5 (pruning what-if), one call of about 8 minutes. Under $OUT:
#   log.txt             everything printed, with the elapsed seconds of each step
#   state_sweep.json    one mamba_ssm Mamba / Mamba2 layer's forward time vs d_state (kernel behaviour)
#   runs_issue5.tar.gz  run directories (pruning table, points/components/kernels, pareto.png/svg) + train logs
#   summary.json        the benchmark numbers, copied from those tables (benchmarks/issue5_summary.py)
#   pytest_gpu.txt      GPU tests of pruning (pruned == masked on the fused kernels, save/load, decode)
#   env.json
# Steps (each timeout-bounded; a failed step is logged and the next one runs; optional steps are skipped
# when the clock is past their start limit so the call ends before 10 minutes):
#   1. train a byte-level Mamba-1 LM with mamba_ssm on stdlib text + synthetic tasks (d768 x 12 layers, ~2 min)
#   2. prune it: scores delta/energy/magnitude/random x ratios 0.25/0.5 (N 16 -> 12/8), no recovery:
#      which score wins, and prefill/decode/memory/per-component timings at L 1024/4096/8192, batch 8
#   3. prune it with a recovery fine-tune (delta, ratios 0.25/0.375/0.5; the unpruned reference gets the
#      same steps) and save the pruned model: the perplexity target
#   4. GPU tests; 5. train and prune a Mamba-2 LM (shorter; N 128 -> 96/64); 6. the d_state sweep, if time
# is left. Optional steps are skipped once the clock passes their start limit, so the call ends by END s.
# With every part the flow no longer fits one 10-minute call (measured 2026-12-02, benchmarks/pruning_h200.md:
# Mamba-1 parts ~250 s, GPU tests > 75 s, Mamba-2 training ~40 s + its autotuning); choose parts per call with
# I5_PARTS (comma list of m1, tests, m2, sweep), e.g. I5_PARTS=tests,m2 for the second call.
# Sizes can be shrunk through I5_* variables. A CPU dry run of the flow (no device setup, transformers models):
#   SETUP=0 OUT=/tmp/o5 I5_BACKEND=hf I5_D_MODEL=64 I5_LAYERS=2 I5_SEQ=128 I5_TRAIN_BATCH=4 I5_M1_SECONDS=20 \
#   I5_M2_SECONDS=20 I5_M2_STATE=16 I5_HEADDIM=16 I5_CHUNK=64 I5_SEQLENS=128,256 I5_COMP_SEQ=256 \
#   I5_M2_SEQLENS=256 I5_BATCH=1 I5_RECOVER_STEPS=5 bash benchmarks/device_issue5.sh
W=${I5_WORK:-/tmp/i5}
D_MODEL=${I5_D_MODEL:-768}; LAYERS=${I5_LAYERS:-12}; SEQ=${I5_SEQ:-1024}; TBATCH=${I5_TRAIN_BATCH:-16}
M1_SECONDS=${I5_M1_SECONDS:-90}; M2_SECONDS=${I5_M2_SECONDS:-40}; M2_STATE=${I5_M2_STATE:-128}
HEADDIM=${I5_HEADDIM:-64}; CHUNK=${I5_CHUNK:-256}
SEQLENS=${I5_SEQLENS:-1024,4096,8192}; COMP_SEQ=${I5_COMP_SEQ:-4096}; M2_SEQLENS=${I5_M2_SEQLENS:-4096,8192}
M2_SCORES=${I5_M2_SCORES:-delta,random}; M2_COMP_SEQ=${I5_M2_COMP_SEQ:-$COMP_SEQ}
END=${I5_END:-535}; BATCH=${I5_BATCH:-8}; BACKEND=${I5_BACKEND:-mamba_ssm}; RECOVER=${I5_RECOVER_STEPS:-150}; EXTRA=${I5_EXTRA:-}
LOG=$OUT/log.txt
mkdir -p "$W/runs"
step() { echo "=== [${SECONDS}s] $*" | tee -a "$LOG"; }
PARTS=${I5_PARTS:-m1,tests,m2,sweep}
want() { case ",$PARTS," in *",$1,"*) return 0;; esac; step "skipped (not in I5_PARTS): $1"; return 1; }
late() { if [ "$SECONDS" -gt "$1" ]; then step "skipped (past ${1}s): $2"; return 0; fi; return 1; }
pack() {
  (cd "$W" && tar -czf "$OUT/runs_issue5.tar.gz" runs lm/*/train_log.json 2>>"$LOG")
  timeout 60 python3 benchmarks/issue5_summary.py "$W" > "$OUT/summary.json" 2>>"$LOG"
}
date -u +%Y-%m-%dT%H:%M:%SZ | tee -a "$LOG"
python3 -m mambaprof env --json > "$OUT/env.json" 2>&1
PRUNE="python3 -m mambaprof prune --batch $BATCH --calib-seqlen $SEQ --component-seqlen $COMP_SEQ --force $EXTRA"

if want m1; then
step "1. train Mamba-1 (${M1_SECONDS}s budget)"
timeout $((M1_SECONDS + 60)) python3 examples/train_small_lm.py --backend "$BACKEND" --family mamba1 \
  --d-model "$D_MODEL" --layers "$LAYERS" --seqlen "$SEQ" --batch "$TBATCH" --seconds "$M1_SECONDS" --lr 2e-3 \
  --log-every 20 --eval-tokens 262144 --out "$W/lm" >> "$LOG" 2>&1 || step "train Mamba-1 failed ($?)"
tail -1 "$LOG"
python3 -c "from mambaprof.evaluation.text import stdlib_text; open('$W/train.txt', 'wb').write(stdlib_text('train', 8 << 20))"

step "2. Mamba-1: four scores x two ratios, no recovery"
timeout 100 $PRUNE --hf "$W/lm/mamba1" --ratios 0,0.25,0.5 --score delta,energy,magnitude,random \
  --seqlens "$SEQLENS" --out "$W/runs/m1_scores" >> "$LOG" 2>&1 || step "m1_scores failed ($?)"
pack

step "3. Mamba-1: delta with a ${RECOVER}-step recovery fine-tune on stdlib train text; save the pruned model"
timeout 120 $PRUNE --hf "$W/lm/mamba1" --ratios 0,0.25,0.375,0.5 --score delta --recover-steps "$RECOVER" \
  --recover-lr 2e-4 --calib "$W/train.txt" --seqlens "$SEQLENS" --save "$W/m1_pruned" --save-ratio 0.5 \
  --out "$W/runs/m1_recover" >> "$LOG" 2>&1 || step "m1_recover failed ($?)"
pack
fi

# 4. GPU tests (4 pytest workers: most of their time is Triton compiling the SSD kernels for each state size, CPU
#    work that runs in parallel; 100 s on an H200, 2026-12-02). Run beside the Mamba-2 training they starved it
#    (one step in 120 s), so the training waits for them
TESTS_PID=
if want tests && ! late $((END - 250)) "GPU tests"; then
  step "4. GPU tests (background)"
  WORKERS=${I5_TEST_WORKERS:-4}; XDIST=; [ "$WORKERS" -gt 0 ] && XDIST="-n $WORKERS"  # pytest-xdist is on the device
  ( timeout ${I5_TESTS_LIMIT:-270} python3 -m pytest -v -p no:cacheprovider $XDIST --durations=0 \
      tests/gpu/test_gpu_pruning.py > "$OUT/pytest_gpu.txt" 2>&1; echo "pytest exit $?" >> "$OUT/pytest_gpu.txt" ) &
  TESTS_PID=$!
fi
wait_tests() {
  if [ -n "$TESTS_PID" ]; then wait "$TESTS_PID"; TESTS_PID=; step "GPU tests ended"; tail -4 "$OUT/pytest_gpu.txt" | tee -a "$LOG"; fi
}

wait_tests
if want m2 && ! late $((END - 100)) "Mamba-2"; then
  step "5a. train Mamba-2 (${M2_SECONDS}s budget)"
  timeout $((M2_SECONDS + 120)) python3 examples/train_small_lm.py --backend "$BACKEND" --family mamba2 \
    --d-model "$D_MODEL" --layers "$LAYERS" --d-state "$M2_STATE" --headdim "$HEADDIM" --chunk-size "$CHUNK" \
    --seqlen "$SEQ" --batch "$TBATCH" --seconds "$M2_SECONDS" --lr 2e-3 --log-every 20 --eval-tokens 262144 \
    --out "$W/lm" >> "$LOG" 2>&1 || step "train Mamba-2 failed ($?)"
  tail -1 "$LOG"
  left=$((END - SECONDS))
  if [ "$left" -gt 30 ]; then
    step "5b. Mamba-2: scores $M2_SCORES x two ratios (${left}s left)"
    timeout "$left" $PRUNE --hf "$W/lm/mamba2" --ratios 0,0.25,0.5 --score "$M2_SCORES" --component-seqlen "$M2_COMP_SEQ" \
      --seqlens "$M2_SEQLENS" --decode-steps 16 --repeats 6 --out "$W/runs/m2_scores" >> "$LOG" 2>&1 \
      || step "m2_scores failed ($?)"
  else
    step "skipped: Mamba-2 prune (${left}s left)"
  fi
fi
wait_tests
pack

if want sweep && ! late $((END - 45)) "state sweep"; then
  step "6. d_state sweep of single layers"
  timeout $((END - SECONDS)) python3 benchmarks/issue5_state_sweep.py --d-model "$D_MODEL" --seqlen "${COMP_SEQ}" \
    --repeats 12 --out "$OUT/state_sweep.json" >> "$LOG" 2>&1 || step "state sweep failed ($?)"
fi
step "done"
ls -la "$OUT" | tee -a "$LOG"
