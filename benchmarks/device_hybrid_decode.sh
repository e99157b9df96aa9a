#!/usr/bin/env bash
# Device run for issue 17, hybrids (decode with a KV cache beside the SSM state). Kind nvidia-h200 (1 GPU); carry
# [".whl"] (mamba_ssm + causal_conv1d wheels, see /work/shared/wheels/README.md).
# Usage on the device (repo root): bash benchmarks/device_hybrid_decode.sh   (BUDGET seconds in all, default 540;
# TESTS: a pytest -k filter, default all of the file; BATCH (default 1,16) and REPEATS (default 30) for the sweep)
#  1. GPU tests of the decode path (tests/gpu/test_gpu_decode.py: the pure-Mamba graph tests, mamba_ssm with MHA
#     layers, transformers Bamba under the device's transformers version).
#  2. `mambaprof trace --phase decode` at the bamba-9b preset shape (transformers, bf16, the model's own
#     DynamicCache, eager: graphs cannot replay a cache that grows by concatenation), prompt 256/1024/4096,
#     batch 1 and 16: attention's time and KV bytes against the Mamba layers' over the context.
#  3. The decode report, and decode_points/decode_components as CSV.
# Files under $OUT: nvidia_smi.csv, log.txt, pytest_gpu.txt, decode_points.csv, decode_components.csv, reports.txt.
export OMP_NUM_THREADS=4
BUDGET=${BUDGET:-540}
source benchmarks/device_setup.sh
LOG="$OUT/log.txt"
RUNS=/tmp/runs_hybrid_decode
mkdir -p "$RUNS"
echo "issue 17 hybrid decode device run, $(date -u +%Y-%m-%dT%H:%M:%SZ), budget ${BUDGET}s" | tee -a "$LOG"
python3 -c "import transformers, torch; print('transformers', transformers.__version__, 'torch', torch.__version__)" \
    | tee -a "$LOG"

step 200 "$OUT/pytest_gpu.txt" python3 -m pytest -m gpu tests/gpu/test_gpu_decode.py -q -s -p no:cacheprovider \
    ${TESTS:+-k "$TESTS"}

step 240 "$LOG" python3 -m mambaprof trace --phase decode --preset bamba-9b --dtype bf16 \
    --prompt-len 256,1024,4096 --batch "${BATCH:-1,16}" --repeats "${REPEATS:-30}" --warmup 3 --quiet \
    --out "$RUNS/bamba-9b" --force

for run in "$RUNS"/*/; do
  step 30 "$OUT/reports.txt" python3 -m mambaprof report "$run"
done
python3 benchmarks/tables_to_csv.py "$RUNS" "$OUT" decode_points decode_components >>"$LOG" 2>&1
echo "done after ${SECONDS}s" | tee -a "$LOG"
