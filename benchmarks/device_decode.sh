#!/usr/bin/env bash
# Device run for issue 17 (decode profiling with CUDA graphs). Kind nvidia-h200 (1 GPU); carry [".whl"]
# (mamba_ssm + causal_conv1d wheels, see /work/shared/wheels/README.md).
# Usage on the device (repo root): bash benchmarks/device_decode.sh   (writes under $OUT; BUDGET seconds in all,
# default 480; SKIP_TESTS=1 skips step 1; REPEATS timed steps per pass, default 50; BATCHES default 1,8,64,256;
# every step has a timeout and later steps are skipped once the budget is spent; PRESETS default
# "mamba-1.4b mamba2-1.3b"; PARTS a comma list of graphs, eager, prune, default graphs,eager)
#  1. GPU tests of the decode path (tests/gpu/test_gpu_decode.py).
#  2. `mambaprof trace --phase decode` at the mamba-1.4b and mamba2-1.3b preset shapes (mamba_ssm, bf16),
#     prompt 128, batch 1/8/64/256, with CUDA graphs (the split step as one graph, the components timed by
#     events inside it against the plain graph, isolated per-component graphs for comparison, mamba_ssm's own
#     capture_graph and generate(cg=True) per token) and without (--no-cuda-graphs).
#  2b. (PARTS prune) the pruning what-if at each preset (random score, ratio 0.5, prefill at 1024) with the decode
#     step replayed from CUDA graphs at batch 64 and 256 (--decode-graph-batches): what removing states does to
#     a graph-replayed decode step.
#  3. The decode report of each run, and decode_points/decode_components (and pruning) as CSV.
# Files under $OUT (8 at most): nvidia_smi.csv, log.txt, pytest_gpu.txt, decode_points.csv,
# decode_components.csv, reports.txt, runs_decode.tar.gz.
export OMP_NUM_THREADS=4
BUDGET=${BUDGET:-480}
source benchmarks/device_setup.sh
LOG="$OUT/log.txt"
RUNS=/tmp/runs_decode
mkdir -p "$RUNS"
echo "issue 17 decode device run, $(date -u +%Y-%m-%dT%H:%M:%SZ), budget ${BUDGET}s" | tee -a "$LOG"

[ "${SKIP_TESTS:-0}" = 1 ] || step 120 "$OUT/pytest_gpu.txt" python3 -m pytest -m gpu tests/gpu/test_gpu_decode.py -q -s -p no:cacheprovider

COMMON=(--backend mamba_ssm --dtype bf16 --prompt-len 128 --batch "${BATCHES:-1,8,64,256}" --repeats "${REPEATS:-50}"
        --warmup 5 --quiet)
PRESETS=${PRESETS:-mamba-1.4b mamba2-1.3b}
PARTS=",${PARTS:-graphs,eager},"
# graphs first (the measurements that matter), then the eager runs while the budget lasts
if [[ $PARTS == *,graphs,* ]]; then
  for preset in $PRESETS; do
    step 150 "$LOG" python3 -m mambaprof trace --phase decode --preset "$preset" "${COMMON[@]}" \
        --out "$RUNS/${preset}_graphs" --force
  done
fi
if [[ $PARTS == *,eager,* ]]; then
  for preset in $PRESETS; do
    step 90 "$LOG" python3 -m mambaprof trace --phase decode --preset "$preset" "${COMMON[@]}" --no-cuda-graphs \
        --out "$RUNS/${preset}_eager" --force
  done
fi
if [[ $PARTS == *,prune,* ]]; then
  mkdir -p /tmp/runs_prune
  for preset in $PRESETS; do
    step 150 "$LOG" python3 -m mambaprof prune --preset "$preset" --backend mamba_ssm --dtype bf16 --device cuda:0 \
        --score random --ratios 0.5 --seqlens 1024 --batch 1 --decode-graph-batches 64,256 --repeats 5 --warmup 2 \
        --calib-tokens 4096 --eval-tokens 4096 --quiet --out "/tmp/runs_prune/${preset}" --force
  done
  python3 benchmarks/tables_to_csv.py /tmp/runs_prune "$OUT" pruning --show \
      pruning:run,variant,score,ratio,d_state_kept,prefill_ms_median,prefill_speedup,decode_ms_per_token,decode_graph_batches,decode_graph_ms_per_token,decode_graph_speedup,cache_bytes,note \
      >>"$LOG" 2>&1
fi

for run in "$RUNS"/*/; do
  step 30 "$OUT/reports.txt" python3 -m mambaprof report "$run" --html "${run%/}.html"
done
python3 benchmarks/tables_to_csv.py "$RUNS" "$OUT" decode_points decode_components --show \
    decode_points:run,batch,status,ms_per_token,tokens_per_s,own_eager_ms,split_eager_ms,graph_replay_ms,\
component_graph_sum_ms,graph_sum_vs_whole_pct,graph_event_ms,graph_events_vs_whole_pct,isolated_graph_sum_ms,\
own_graph_ms,generate_ms_per_token,step_vs_generate_pct,launch_bound_pct,tokens_match,tokens_match_generate,error \
    >>"$LOG" 2>&1
tar -czf "$OUT/runs_decode.tar.gz" -C "$RUNS" . 2>>"$LOG"
echo "done after ${SECONDS}s" | tee -a "$LOG"
