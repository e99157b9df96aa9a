#!/usr/bin/env bash
# Device run for issue 16 (hybrids and Mamba variants). Kind nvidia-h200 (1 GPU); carry [".whl"].
# Usage on the device (repo root): BUDGET=480 [MODEL_CAP=75] [SKIP_TESTS=1] [TRACE_ARGS=...] bash benchmarks/device_hybrids.sh
# (writes under $OUT). Energy, memory and I/O collectors are off: this run is about attribution and fidelity.
#  1. GPU tests of the hybrid families (tests/gpu/test_gpu_hybrids.py: tiny presets, bf16, the family's
#     kernel functions are the mamba_ssm/causal_conv1d kernels, the split reproduces the output).
#  2. Every family at its preset shape (random weights), batch 1, 4096 / 16384 / 65536 tokens, bf16, split
#     mode: output check, fidelity (split vs original, paired), component and layer-kind shares, kernels.
#     Smallest model first; each model gets min(its cap, what is left of $BUDGET); a model that runs out
#     of time or memory keeps the points it finished (the run directory says which).
#  3. The hybrid view (python -m mambaprof.reports.hybrids) of every run, as text.
# Files under $OUT: nvidia_smi.csv, env.json, log.txt, pytest_gpu.txt, trace_<preset>.txt, hybrid_<preset>.txt,
# runs_hybrids.tar.gz (the run directories, raw Parquet). Every step is bounded; a failed step is logged.
export OMP_NUM_THREADS=4
BUDGET=${BUDGET:-480}
LOG="$OUT/log.txt"
source benchmarks/device_setup.sh
RUNS=/tmp/runs_hybrids
mkdir -p "$RUNS"
echo "issue 16 device run $(date -u +%Y-%m-%dT%H:%M:%SZ), budget ${BUDGET}s" | tee -a "$LOG"
python3 -m mambaprof env --json > "$OUT/env.json" 2>&1
python3 -c "import transformers; print('transformers', transformers.__version__)" >> "$LOG" 2>&1

[ "${SKIP_TESTS:-0}" = 1 ] || step 150 "$OUT/pytest_gpu.txt" python3 -m pytest -m gpu tests/gpu/test_gpu_hybrids.py -q -p no:cacheprovider -x

# smallest first (parameters): falcon-h1-0.5b, llama-1b, granite-4.0-h-tiny, zamba2-2.7b, falcon-mamba-7b,
# nemotron-h-8b, bamba-9b, jamba-v0.1-8l
PRESETS_ORDER=${PRESETS_ORDER:-"falcon-h1-0.5b llama-1b granite-4.0-h-tiny zamba2-2.7b falcon-mamba-7b nemotron-h-8b bamba-9b jamba-v0.1-8l"}
for p in $PRESETS_ORDER; do
  step ${MODEL_CAP:-75} "$OUT/trace_$p.txt" python3 -m mambaprof trace --preset "$p" --backend hf --dtype bf16 --device cuda:0 \
      --batch 1 --seqlens 4096,16384,65536 --repeats 3 --warmup 1 --profile-repeats 1 --point-seconds 12 --no-tb \
      --no-energy --no-memory --no-io ${TRACE_ARGS:-} --out "$RUNS/$p" --force --quiet
  [ -d "$RUNS/$p" ] && step 20 "$OUT/hybrid_$p.txt" python3 -m mambaprof.reports.hybrids "$RUNS/$p" --basis kernel
done
tar --exclude='*/tb' -czf "$OUT/runs_hybrids.tar.gz" -C /tmp runs_hybrids 2>>"$LOG"
echo "done after ${SECONDS}s" | tee -a "$LOG"
