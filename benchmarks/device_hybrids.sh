#!/usr/bin/env bash
# Device run for issue 16 (hybrids and Mamba variants). Kind nvidia-h200 (1 GPU); carry [".whl"].
# Usage on the device (repo root):
#   BUDGET=540 [MODEL_CAP=150] [SKIP_TESTS=1] [PRESETS_ORDER="bamba-9b ..."] [SEQLENS=4096,16384,65536]
#   [POINT_SECONDS=6] [TRACE_ARGS=...] bash benchmarks/device_hybrids.sh                 (writes under $OUT)
# Energy, memory and I/O collectors are off: this run is about attribution and fidelity.
#  1. GPU tests of the hybrid families (tests/gpu/test_gpu_hybrids.py: tiny presets, bf16, the family's
#     kernel functions are the mamba_ssm/causal_conv1d kernels, the split reproduces the output).
#  2. Every family at its preset shape (random weights), batch 1, SEQLENS tokens, bf16, split mode: output
#     check, fidelity (split vs original, paired), component and layer-kind shares, kernels. `mamba_ssm_hybrid`
#     in PRESETS_ORDER is mamba_ssm's own hybrid LM (examples/mamba_ssm_hybrid.py: MambaLMHeadModel, Mamba-2 +
#     MHA layers + GatedMLPs, d_model 2048, 24 layers, attention at 5/11/17/23). Each model gets min(its cap,
#     what is left of $BUDGET); a model that runs out of time or memory keeps the points it finished (the run
#     directory says which). The run directories are packed after every model, so a cut call loses nothing.
#  3. The hybrid view (python -m mambaprof.reports.hybrids) of every run, as text.
# Files under $OUT (7): nvidia_smi.csv, env.json, log.txt (every step, the pytest summary), traces.txt (the trace
# commands' output), hybrid_views.txt, points.csv (every run's points table), runs_hybrids.tar.gz (raw Parquet).
export OMP_NUM_THREADS=4
BUDGET=${BUDGET:-540}
LOG="$OUT/log.txt"
source benchmarks/device_setup.sh
RUNS=/tmp/runs_hybrids
mkdir -p "$RUNS"
echo "issue 16 device run $(date -u +%Y-%m-%dT%H:%M:%SZ), budget ${BUDGET}s" | tee -a "$LOG"
python3 -m mambaprof env --json > "$OUT/env.json" 2>&1
python3 -c "import transformers; print('transformers', transformers.__version__)" >> "$LOG" 2>&1

[ "${SKIP_TESTS:-0}" = 1 ] || step 150 "$LOG" python3 -m pytest -m gpu tests/gpu/test_gpu_hybrids.py -q -rfE \
    --tb=short -p no:cacheprovider

pack() {
  tar -czf "$OUT/runs_hybrids.tar.gz" --exclude='*/tb' -C /tmp runs_hybrids 2>>"$LOG"
  python3 benchmarks/tables_to_csv.py "$RUNS" "$OUT" points >/dev/null 2>&1
}

# smallest first (parameters)
PRESETS_ORDER=${PRESETS_ORDER:-"falcon-h1-0.5b llama-1b mamba_ssm_hybrid granite-4.0-h-tiny zamba2-2.7b falcon-mamba-7b nemotron-h-8b bamba-9b jamba-v0.1-8l"}
COMMON=(--dtype "${DTYPE:-bf16}" --device "${DEVICE:-cuda:0}" --batch 1 --seqlens "${SEQLENS:-4096,16384,65536}" --repeats 3 --warmup 1
        --profile-repeats 1 --point-seconds "${POINT_SECONDS:-6}" --no-tb --no-energy --no-memory --no-io --quiet)
for p in $PRESETS_ORDER; do
  if [ "$p" = mamba_ssm_hybrid ]; then
    source_args=(examples/mamba_ssm_hybrid.py)
  else
    source_args=(--preset "$p" --backend hf)
  fi
  echo "--- $p" >> "$OUT/traces.txt"
  # shellcheck disable=SC2086
  step "${MODEL_CAP:-150}" "$OUT/traces.txt" python3 -m mambaprof trace "${source_args[@]}" "${COMMON[@]}" \
      ${TRACE_ARGS:-} --out "$RUNS/$p" --force
  if [ -d "$RUNS/$p" ]; then
    echo "--- $p" >> "$OUT/hybrid_views.txt"
    step 20 "$OUT/hybrid_views.txt" python3 -m mambaprof.reports.hybrids "$RUNS/$p" --basis kernel
  fi
  pack
done
python3 benchmarks/tables_to_csv.py "$RUNS" "$OUT" points --show \
    points:run,seqlen,status,original_ms_median,split_bare_ms_median,split_bare_paired_pct,split_bare_ci_low_pct,\
split_bare_ci_high_pct,fidelity_pairs,attributed_kernel_pct,output_check,error >>"$LOG" 2>&1
echo "done after ${SECONDS}s" | tee -a "$LOG"
