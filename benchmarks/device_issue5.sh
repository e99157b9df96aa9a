#!/usr/bin/env bash
source benchmarks/device_setup.sh
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
#   2. prune it: scores delta/energy/magnitude/random x ratios 0.25/0.5/0.75 (N 16 -> 12/8/4), no recovery:
#      which score wins, and prefill/decode/memory/per-component timings at L 1024/4096/8192, batch 8
#   3. prune it with a recovery fine-tune (delta, ratios 0.25/0.5; the unpruned reference gets the same
#      steps) and save the pruned model: the perplexity target
#   4. GPU tests; 5. the d_state sweep; 6. train and prune a Mamba-2 LM (shorter; N 128 -> 96/64/32)
# Sizes can be shrunk through I5_* variables (used for a CPU dry run of the flow).
W=${I5_WORK:-/tmp/i5}
D_MODEL=${I5_D_MODEL:-768}; LAYERS=${I5_LAYERS:-12}; SEQ=${I5_SEQ:-1024}; TBATCH=${I5_TRAIN_BATCH:-16}
M1_SECONDS=${I5_M1_SECONDS:-100}; M2_SECONDS=${I5_M2_SECONDS:-60}; M2_STATE=${I5_M2_STATE:-128}
HEADDIM=${I5_HEADDIM:-64}; CHUNK=${I5_CHUNK:-256}
SEQLENS=${I5_SEQLENS:-1024,4096,8192}; COMP_SEQ=${I5_COMP_SEQ:-4096}; M2_SEQLENS=${I5_M2_SEQLENS:-4096,8192}
BATCH=${I5_BATCH:-8}; RECOVER=${I5_RECOVER_STEPS:-150}; EXTRA=${I5_EXTRA:-}
LOG=$OUT/log.txt
mkdir -p "$W/runs"
step() { echo "=== [${SECONDS}s] $*" | tee -a "$LOG"; }
late() { if [ "$SECONDS" -gt "$1" ]; then step "skipped (past ${1}s): $2"; return 0; fi; return 1; }
pack() {
  (cd "$W" && tar -czf "$OUT/runs_issue5.tar.gz" runs lm/*/train_log.json 2>>"$LOG")
  timeout 60 python3 benchmarks/issue5_summary.py "$W" > "$OUT/summary.json" 2>>"$LOG"
}
date -u +%Y-%m-%dT%H:%M:%SZ | tee -a "$LOG"
python3 -m mambaprof env --json > "$OUT/env.json" 2>&1
PRUNE="python3 -m mambaprof prune --batch $BATCH --calib-seqlen $SEQ --component-seqlen $COMP_SEQ --force $EXTRA"

step "1. train Mamba-1 (${M1_SECONDS}s budget)"
timeout $((M1_SECONDS + 60)) python3 examples/train_small_lm.py --backend mamba_ssm --family mamba1 \
  --d-model "$D_MODEL" --layers "$LAYERS" --seqlen "$SEQ" --batch "$TBATCH" --seconds "$M1_SECONDS" --lr 2e-3 \
  --log-every 20 --eval-tokens 262144 --out "$W/lm" >> "$LOG" 2>&1 || step "train Mamba-1 failed ($?)"
tail -1 "$LOG"
python3 -c "from mambaprof.evaluation.text import stdlib_text; open('$W/train.txt', 'wb').write(stdlib_text('train', 8 << 20))"

step "2. Mamba-1: four scores x three ratios, no recovery"
timeout 130 $PRUNE --hf "$W/lm/mamba1" --ratios 0,0.25,0.5,0.75 --score delta,energy,magnitude,random \
  --seqlens "$SEQLENS" --out "$W/runs/m1_scores" >> "$LOG" 2>&1 || step "m1_scores failed ($?)"
pack

step "3. Mamba-1: delta with a ${RECOVER}-step recovery fine-tune on stdlib train text; save the pruned model"
timeout 110 $PRUNE --hf "$W/lm/mamba1" --ratios 0,0.25,0.5 --score delta --recover-steps "$RECOVER" \
  --recover-lr 2e-4 --calib "$W/train.txt" --seqlens "$SEQLENS" --save "$W/m1_pruned" --save-ratio 0.5 \
  --out "$W/runs/m1_recover" >> "$LOG" 2>&1 || step "m1_recover failed ($?)"
pack

if ! late 400 "GPU tests"; then
  step "4. GPU tests"
  timeout 90 python3 -m pytest -v -p no:cacheprovider tests/gpu/test_gpu_pruning.py > "$OUT/pytest_gpu.txt" 2>&1
  tail -3 "$OUT/pytest_gpu.txt" | tee -a "$LOG"
fi

if ! late 420 "state sweep"; then
  step "5. d_state sweep of single layers"
  timeout 60 python3 benchmarks/issue5_state_sweep.py --d-model "$D_MODEL" --seqlen "${COMP_SEQ}" --repeats 12 \
    --out "$OUT/state_sweep.json" >> "$LOG" 2>&1 || step "state sweep failed ($?)"
fi

if ! late 450 "Mamba-2"; then
  step "6a. train Mamba-2 (${M2_SECONDS}s budget)"
  timeout $((M2_SECONDS + 45)) python3 examples/train_small_lm.py --backend mamba_ssm --family mamba2 \
    --d-model "$D_MODEL" --layers "$LAYERS" --d-state "$M2_STATE" --headdim "$HEADDIM" --chunk-size "$CHUNK" \
    --seqlen "$SEQ" --batch "$TBATCH" --seconds "$M2_SECONDS" --lr 2e-3 --log-every 20 --eval-tokens 262144 \
    --out "$W/lm" >> "$LOG" 2>&1 || step "train Mamba-2 failed ($?)"
  tail -1 "$LOG"
  left=$((570 - SECONDS))
  if [ "$left" -gt 45 ]; then
    step "6b. Mamba-2: three scores x three ratios (${left}s left)"
    timeout "$left" $PRUNE --hf "$W/lm/mamba2" --ratios 0,0.25,0.5,0.75 --score delta,energy,random \
      --seqlens "$M2_SEQLENS" --decode-steps 16 --repeats 6 --out "$W/runs/m2_scores" >> "$LOG" 2>&1 \
      || step "m2_scores failed ($?)"
  else
    step "skipped: Mamba-2 prune (${left}s left)"
  fi
fi
pack
step "done"
ls -la "$OUT" | tee -a "$LOG"
