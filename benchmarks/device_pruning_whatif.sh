#!/usr/bin/env bash
# What does pruning SSM states buy on a GPU, and which score keeps a trained LM best? Trains byte-level
# Mamba-1 / Mamba-2 LMs with mamba_ssm, prunes them with `mambaprof prune` (scores, ratios, recovery
# fine-tune), runs the pruning GPU tests and a d_state sweep of single layers. One call of about 8 minutes.
# Renamed from device_issue5.sh; its I5_* variables are now named for what they are ('Variables' below, with
# the old name of each in brackets). An I5_* variable in the environment stops the script with its new name.
renamed() {  # the old I5_* name -> the new one
  case $1 in
    I5_WORK) echo WORK_DIR;; I5_SEQ) echo TRAIN_SEQLEN;; I5_M1_SECONDS) echo M1_TRAIN_SECONDS;;
    I5_M2_SECONDS) echo M2_TRAIN_SECONDS;; I5_M2_STATE) echo M2_D_STATE;; I5_HEADDIM) echo M2_HEADDIM;;
    I5_CHUNK) echo M2_CHUNK_SIZE;; I5_SEQLENS) echo M1_SEQLENS;; I5_COMP_SEQ) echo COMPONENT_SEQLEN;;
    I5_M2_COMP_SEQ) echo M2_COMPONENT_SEQLEN;; I5_END) echo END_S;; I5_EXTRA) echo PRUNE_ARGS;;
    I5_TESTS_LIMIT) echo TESTS_LIMIT_S;; *) echo "${1#I5_}";;
  esac
}
for old in $(compgen -e | grep '^I5_' || true); do
  echo "error: $old is now $(renamed "$old") (benchmarks/device_pruning_whatif.sh, 'Variables')" >&2
  exit 2
done
if [ "${SETUP:-1}" = 1 ]; then source benchmarks/device_setup.sh; else set -u; export PYTHONUNBUFFERED=1; fi
# Under $OUT:
#   log.txt             the provenance line, everything printed, with the elapsed seconds of each step
#   provenance.json     benchmarks/provenance.py: device, driver, versions, code, date, the command and variables
#   state_sweep.json    one mamba_ssm Mamba / Mamba2 layer's forward time vs d_state (benchmarks/state_size_sweep.py)
#   runs.tar.gz         run directories (pruning table, points/components/kernels, pareto.png/svg) + train logs
#   summary.json        the benchmark numbers, copied from those tables (benchmarks/summarize_pruning.py)
#   pytest_gpu.txt      GPU tests of pruning (pruned == masked on the fused kernels, save/load, decode)
# Steps (each timeout-bounded; a failed step is logged and the next one runs; optional steps are skipped
# when the clock is past their start limit so the call ends before 10 minutes):
#   1. train a byte-level Mamba-1 LM with mamba_ssm on stdlib text + synthetic tasks (d768 x 12 layers, ~2 min)
#   2. prune it: scores delta/energy/magnitude/random x ratios 0.25/0.5 (N 16 -> 12/8), no recovery:
#      which score wins, and prefill/decode/memory/per-component timings at L 1024/4096/8192, batch 8
#   3. prune it with a recovery fine-tune (delta, ratios 0.25/0.375/0.5; the unpruned reference gets the
#      same steps) and save the pruned model: the perplexity target
#   4. GPU tests; 5. train and prune a Mamba-2 LM (shorter; N 128 -> 96/64); 6. the d_state sweep, if time
# is left. Optional steps are skipped once the clock passes their start limit, so the call ends by END_S s.
# With every part the flow no longer fits one 10-minute call (measured 2026-12-02,
# benchmarks/results/2026-12-02-h200-pruning.md: Mamba-1 parts ~250 s, GPU tests > 75 s, Mamba-2 training ~40 s
# + its autotuning); choose parts per call with PARTS (comma list of m1, tests, m2, sweep), e.g. PARTS=tests,m2
# for the second call.
# Variables (default) [was]:
#   WORK_DIR (/tmp/pruning_whatif) [I5_WORK]   models, checkpoints and run directories
#   D_MODEL (768) [I5_D_MODEL], LAYERS (12) [I5_LAYERS]   both LMs' width and depth
#   TRAIN_SEQLEN (1024) [I5_SEQ]   training and calibration sequence length; TRAIN_BATCH (16) [I5_TRAIN_BATCH]
#   M1_TRAIN_SECONDS (90) [I5_M1_SECONDS], M2_TRAIN_SECONDS (40) [I5_M2_SECONDS]   training budgets
#   M2_D_STATE (128) [I5_M2_STATE], M2_HEADDIM (64) [I5_HEADDIM], M2_CHUNK_SIZE (256) [I5_CHUNK]   Mamba-2 shape
#   M1_SEQLENS (1024,4096,8192) [I5_SEQLENS], M2_SEQLENS (4096,8192) [I5_M2_SEQLENS]   timed prefill lengths
#   COMPONENT_SEQLEN (4096) [I5_COMP_SEQ], M2_COMPONENT_SEQLEN (COMPONENT_SEQLEN) [I5_M2_COMP_SEQ]   per-component
#     profile length (COMPONENT_SEQLEN is also the state sweep's length)
#   M2_SCORES (delta,random) [I5_M2_SCORES]; BATCH (8) [I5_BATCH]; BACKEND (mamba_ssm) [I5_BACKEND]
#   RECOVER_STEPS (150) [I5_RECOVER_STEPS]; PRUNE_ARGS (none) [I5_EXTRA]   more `mambaprof prune` options
#   END_S (535) [I5_END]   seconds after which nothing new starts; PARTS (m1,tests,m2,sweep) [I5_PARTS]
#   TEST_WORKERS (4) [I5_TEST_WORKERS], TESTS_LIMIT_S (270) [I5_TESTS_LIMIT]   the GPU tests' pytest workers, limit
# A CPU dry run of the flow (no device setup, transformers models):
#   SETUP=0 OUT=/tmp/o5 BACKEND=hf D_MODEL=64 LAYERS=2 TRAIN_SEQLEN=128 TRAIN_BATCH=4 M1_TRAIN_SECONDS=20 \
#   M2_TRAIN_SECONDS=20 M2_D_STATE=16 M2_HEADDIM=16 M2_CHUNK_SIZE=64 M1_SEQLENS=128,256 COMPONENT_SEQLEN=256 \
#   M2_SEQLENS=256 BATCH=1 RECOVER_STEPS=5 bash benchmarks/device_pruning_whatif.sh
W=${WORK_DIR:-/tmp/pruning_whatif}
D_MODEL=${D_MODEL:-768}; LAYERS=${LAYERS:-12}; TRAIN_SEQLEN=${TRAIN_SEQLEN:-1024}; TRAIN_BATCH=${TRAIN_BATCH:-16}
M1_TRAIN_SECONDS=${M1_TRAIN_SECONDS:-90}; M2_TRAIN_SECONDS=${M2_TRAIN_SECONDS:-40}; M2_D_STATE=${M2_D_STATE:-128}
M2_HEADDIM=${M2_HEADDIM:-64}; M2_CHUNK_SIZE=${M2_CHUNK_SIZE:-256}
M1_SEQLENS=${M1_SEQLENS:-1024,4096,8192}; COMPONENT_SEQLEN=${COMPONENT_SEQLEN:-4096}; M2_SEQLENS=${M2_SEQLENS:-4096,8192}
M2_SCORES=${M2_SCORES:-delta,random}; M2_COMPONENT_SEQLEN=${M2_COMPONENT_SEQLEN:-$COMPONENT_SEQLEN}
END_S=${END_S:-535}; BATCH=${BATCH:-8}; BACKEND=${BACKEND:-mamba_ssm}; RECOVER_STEPS=${RECOVER_STEPS:-150}
PRUNE_ARGS=${PRUNE_ARGS:-}
VARS=SETUP,WORK_DIR,D_MODEL,LAYERS,TRAIN_SEQLEN,TRAIN_BATCH,M1_TRAIN_SECONDS,M2_TRAIN_SECONDS,M2_D_STATE,M2_HEADDIM
VARS=$VARS,M2_CHUNK_SIZE,M1_SEQLENS,COMPONENT_SEQLEN,M2_SEQLENS,M2_SCORES,M2_COMPONENT_SEQLEN,END_S,BATCH,BACKEND
VARS=$VARS,RECOVER_STEPS,PRUNE_ARGS,PARTS,TEST_WORKERS,TESTS_LIMIT_S
LOG=$OUT/log.txt
mkdir -p "$W/runs"
step() { echo "=== [${SECONDS}s] $*" | tee -a "$LOG"; }
PARTS=${PARTS:-m1,tests,m2,sweep}
want() { case ",$PARTS," in *",$1,"*) return 0;; esac; step "skipped (not in PARTS): $1"; return 1; }
late() { if [ "$SECONDS" -gt "$1" ]; then step "skipped (past ${1}s): $2"; return 0; fi; return 1; }
pack() {
  (cd "$W" && tar -czf "$OUT/runs.tar.gz" runs lm/*/train_log.json 2>>"$LOG")
  timeout 60 python3 benchmarks/summarize_pruning.py "$W" > "$OUT/summary.json" 2>>"$LOG"
}
python3 benchmarks/provenance.py --out "$OUT/provenance.json" --script "$0" --vars "$VARS" -- "$@" 2>&1 | tee -a "$LOG"
PRUNE="python3 -m mambaprof prune --batch $BATCH --calib-seqlen $TRAIN_SEQLEN --component-seqlen $COMPONENT_SEQLEN --force"
PRUNE="$PRUNE $PRUNE_ARGS"

if want m1; then
step "1. train Mamba-1 (${M1_TRAIN_SECONDS}s budget)"
timeout $((M1_TRAIN_SECONDS + 60)) python3 examples/train_small_lm.py --backend "$BACKEND" --family mamba1 \
  --d-model "$D_MODEL" --layers "$LAYERS" --seqlen "$TRAIN_SEQLEN" --batch "$TRAIN_BATCH" \
  --seconds "$M1_TRAIN_SECONDS" --lr 2e-3 --log-every 20 --eval-tokens 262144 --out "$W/lm" >> "$LOG" 2>&1 \
  || step "train Mamba-1 failed ($?)"
tail -1 "$LOG"
python3 -c "from mambaprof.evaluation.text import stdlib_text; open('$W/train.txt', 'wb').write(stdlib_text('train', 8 << 20))"

step "2. Mamba-1: four scores x two ratios, no recovery"
timeout 100 $PRUNE --hf "$W/lm/mamba1" --ratios 0,0.25,0.5 --score delta,energy,magnitude,random \
  --seqlens "$M1_SEQLENS" --out "$W/runs/m1_scores" >> "$LOG" 2>&1 || step "m1_scores failed ($?)"
pack

step "3. Mamba-1: delta with a ${RECOVER_STEPS}-step recovery fine-tune on stdlib train text; save the pruned model"
timeout 120 $PRUNE --hf "$W/lm/mamba1" --ratios 0,0.25,0.375,0.5 --score delta --recover-steps "$RECOVER_STEPS" \
  --recover-lr 2e-4 --calib "$W/train.txt" --seqlens "$M1_SEQLENS" --save "$W/m1_pruned" --save-ratio 0.5 \
  --out "$W/runs/m1_recover" >> "$LOG" 2>&1 || step "m1_recover failed ($?)"
pack
fi

# 4. GPU tests (4 pytest workers: most of their time is Triton compiling the SSD kernels for each state size, CPU
#    work that runs in parallel; 100 s on an H200, 2026-12-02). Run beside the Mamba-2 training they starved it
#    (one step in 120 s), so the training waits for them
TESTS_PID=
if want tests && ! late $((END_S - 250)) "GPU tests"; then
  step "4. GPU tests (background)"
  TEST_WORKERS=${TEST_WORKERS:-4}; XDIST=; [ "$TEST_WORKERS" -gt 0 ] && XDIST="-n $TEST_WORKERS"  # xdist is on the device
  ( timeout ${TESTS_LIMIT_S:-270} python3 -m pytest -v -p no:cacheprovider $XDIST --durations=0 \
      tests/gpu/test_gpu_pruning.py > "$OUT/pytest_gpu.txt" 2>&1; echo "pytest exit $?" >> "$OUT/pytest_gpu.txt" ) &
  TESTS_PID=$!
fi
wait_tests() {
  if [ -n "$TESTS_PID" ]; then wait "$TESTS_PID"; TESTS_PID=; step "GPU tests ended"; tail -4 "$OUT/pytest_gpu.txt" | tee -a "$LOG"; fi
}

wait_tests
if want m2 && ! late $((END_S - 100)) "Mamba-2"; then
  step "5a. train Mamba-2 (${M2_TRAIN_SECONDS}s budget)"
  timeout $((M2_TRAIN_SECONDS + 120)) python3 examples/train_small_lm.py --backend "$BACKEND" --family mamba2 \
    --d-model "$D_MODEL" --layers "$LAYERS" --d-state "$M2_D_STATE" --headdim "$M2_HEADDIM" \
    --chunk-size "$M2_CHUNK_SIZE" --seqlen "$TRAIN_SEQLEN" --batch "$TRAIN_BATCH" --seconds "$M2_TRAIN_SECONDS" \
    --lr 2e-3 --log-every 20 --eval-tokens 262144 --out "$W/lm" >> "$LOG" 2>&1 || step "train Mamba-2 failed ($?)"
  tail -1 "$LOG"
  left=$((END_S - SECONDS))
  if [ "$left" -gt 30 ]; then
    step "5b. Mamba-2: scores $M2_SCORES x two ratios (${left}s left)"
    timeout "$left" $PRUNE --hf "$W/lm/mamba2" --ratios 0,0.25,0.5 --score "$M2_SCORES" --component-seqlen "$M2_COMPONENT_SEQLEN" \
      --seqlens "$M2_SEQLENS" --decode-steps 16 --repeats 6 --out "$W/runs/m2_scores" >> "$LOG" 2>&1 \
      || step "m2_scores failed ($?)"
  else
    step "skipped: Mamba-2 prune (${left}s left)"
  fi
fi
wait_tests
pack

if want sweep && ! late $((END_S - 45)) "state sweep"; then
  step "6. d_state sweep of single layers"
  timeout $((END_S - SECONDS)) python3 benchmarks/state_size_sweep.py --d-model "$D_MODEL" \
    --seqlen "$COMPONENT_SEQLEN" --repeats 12 --out "$OUT/state_sweep.json" >> "$LOG" 2>&1 || step "state sweep failed ($?)"
fi
step "done"
ls -la "$OUT" | tee -a "$LOG"
