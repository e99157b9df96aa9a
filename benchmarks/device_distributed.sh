#!/usr/bin/env bash
# Does a sweep sharded over 2 GPUs measure the same per-point numbers as 1 GPU, in half the wall time, and what do
# models that run across ranks spend in NCCL communication? Needs the kind nvidia-h200-x2 (2 GPUs); carry [".whl"].
# Not yet run on a device (no write-up in benchmarks/results/).
# Usage on the device (repo root): bash benchmarks/device_distributed.sh   (writes under $OUT; at most ~9.5 minutes:
# every step has a timeout, and the optional steps below are skipped once the time budget is used)
#  1. GPU tests of the distributed path (tests/gpu/test_gpu_distributed.py: each rank on its own GPU,
#     NCCL collectives of a data-parallel model in the `communication` component).
#  2. The same 8 points (mamba2-370m, mamba_ssm, bf16, batch 1,2 x seqlen 1024..8192) swept by 1 rank
#     (cuda:0) and by 2 ranks (torchrun, cuda:0 + cuda:1), interleaved 1,2,1,2 after an untimed warm-up
#     that fills the Triton cache: per-point N/1 ratios (expect ~1) and wall-time ratio (expect ~0.5).
#  3. Communication of models that run across ranks (--no-shard, NCCL): data-parallel (all_gather of
#     the logits) and mamba_ssm tensor-parallel Mamba-2 mixers (all-reduce in each out_proj); then, time
#     allowing, `mambaprof study --nproc 2` over the two 130m models.
# Files under $OUT (7): nvidia_smi.csv, provenance.json (benchmarks/provenance.py), pytest_gpu.txt, log.txt,
# compare_1.json, compare_2.json (benchmarks/compare_ranks.py), runs.tar.gz. Every step is timeout-bounded; a
# failed step is logged and the next one runs.

# NVLink multicast stays off in every process started here (the variables are inherited, torchrun's ranks too).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export OMP_NUM_THREADS=4
source benchmarks/device_setup.sh
LOG="$OUT/log.txt"
RUNS=/tmp/runs7
mkdir -p "$RUNS"
step() { echo "== $(date -u +%H:%M:%S) (+${SECONDS}s) $*" | tee -a "$LOG"; }

python3 benchmarks/provenance.py --out "$OUT/provenance.json" --script "$0" -- "$@" 2>&1 | tee -a "$LOG"
env | grep -E '^(NCCL_NVLS_ENABLE|TORCH_SYMM_MEM_DISABLE_MULTICAST|NVSHMEM_DISABLE_NVLS|OMP_NUM_THREADS)=' >> "$LOG"
nvidia-smi -L >> "$LOG" 2>&1  # every GPU (the stamp names cuda:0 and the count)
ngpu=$(python3 -c "import torch; print(torch.cuda.device_count())" 2>>"$LOG")
echo "torch sees ${ngpu:-0} GPUs" | tee -a "$LOG"
if [ "${ngpu:-0}" -lt 2 ]; then
  step "needs 2 GPUs (the kind nvidia-h200-x2): stopping"
  exit 1
fi

step "1. GPU tests (2 GPUs)"
timeout 180 python3 -m pytest -m gpu tests/gpu/test_gpu_distributed.py -q -p no:cacheprovider > "$OUT/pytest_gpu.txt" 2>&1
echo "pytest exit $?" | tee -a "$LOG"
tail -4 "$OUT/pytest_gpu.txt" | tee -a "$LOG"

MODEL=(--preset mamba2-370m --backend mamba_ssm --dtype bf16)
POINTS=(--batch 1,2 --seqlens 1024,2048,4096,8192 --repeats 20 --warmup 3 --profile-repeats 3 --no-tb --quiet)
TORCHRUN=(python3 -m torch.distributed.run --nproc-per-node 2 --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:0
          --local-addr 127.0.0.1 -m mambaprof)

step "2a. warm-up (untimed; compiles the Triton kernels once for every later process)"
timeout 120 python3 -m mambaprof trace "${MODEL[@]}" --device cuda:0 --batch 1 --seqlens 1024 --repeats 1 \
    --warmup 1 --profile-repeats 1 --no-tb --quiet --out "$RUNS/warmup" --force >> "$LOG" 2>&1
echo "warm-up exit $?" | tee -a "$LOG"

for rep in 1 2; do
  if [ "$rep" = 2 ] && [ "$SECONDS" -gt 330 ]; then step "2. skipping repetition 2 (time budget)"; break; fi
  step "2b. repetition $rep: 1 rank on cuda:0"
  t0=$(date +%s.%N)
  timeout 120 python3 -m mambaprof trace "${MODEL[@]}" "${POINTS[@]}" --device cuda:0 --out "$RUNS/one_$rep" \
      --force >> "$LOG" 2>&1
  rc1=$?
  t1=$(date +%s.%N)
  step "2c. repetition $rep: 2 ranks (torchrun) on cuda:0 + cuda:1 (1 rank exit $rc1)"
  timeout 120 "${TORCHRUN[@]}" trace "${MODEL[@]}" "${POINTS[@]}" --out "$RUNS/two_$rep" --force >> "$LOG" 2>&1
  rc2=$?
  t2=$(date +%s.%N)
  w1=$(awk "BEGIN {print $t1 - $t0}")
  w2=$(awk "BEGIN {print $t2 - $t1}")
  echo "2 ranks exit $rc2; wall 1 rank $w1 s, 2 ranks $w2 s" | tee -a "$LOG"
  timeout 60 python3 benchmarks/compare_ranks.py "$RUNS/one_$rep" "$RUNS/two_$rep" --wall-1 "$w1" --wall-n "$w2" \
      --json "$OUT/compare_$rep.json" 2>&1 | tee -a "$LOG"
done

if [ "$SECONDS" -lt 400 ]; then
  step "3a. data-parallel model, NCCL all_gather (--no-shard)"
  MAMBA_D_MODEL=1024 MAMBA_LAYERS=8 MAMBA_VOCAB=50280 timeout 100 "${TORCHRUN[@]}" trace examples/data_parallel.py \
      --no-shard --batch 4 --seqlens 1024,4096 --dtype bf16 --repeats 10 --warmup 3 --profile-repeats 3 --no-tb \
      --quiet --out "$RUNS/dp" --force >> "$LOG" 2>&1
  echo "exit $?" | tee -a "$LOG"
  timeout 30 python3 benchmarks/summarize_ranks.py "$RUNS/dp" >> "$LOG" 2>&1
else
  step "3a. skipped (time budget)"
fi
if [ "$SECONDS" -lt 440 ]; then
  step "3b. mamba_ssm tensor-parallel Mamba-2 mixers, NCCL all-reduce (--no-shard)"
  MAMBA_D_MODEL=2048 MAMBA_LAYERS=8 timeout 100 "${TORCHRUN[@]}" trace examples/mamba_ssm_tp.py --no-shard --batch 4 \
      --seqlens 1024,4096 --dtype bf16 --repeats 10 --warmup 3 --profile-repeats 3 --no-tb --quiet \
      --out "$RUNS/tp" --force >> "$LOG" 2>&1
  echo "exit $?" | tee -a "$LOG"
  timeout 30 python3 benchmarks/summarize_ranks.py "$RUNS/tp" >> "$LOG" 2>&1
else
  step "3b. skipped (time budget)"
fi

if [ "$SECONDS" -lt 480 ]; then
  step "3c. mambaprof study --nproc 2 (each model's points sharded over both GPUs)"
  timeout 90 python3 -m mambaprof study --nproc 2 --models mamba-130m,mamba2-130m --seqlens 1024..8192 --batch 1,8 \
      --quiet --out "$RUNS/study2" --force >> "$LOG" 2>&1
  echo "exit $?" | tee -a "$LOG"
else
  step "3c. skipped (time budget)"
fi

step "4. pack the run directories (without TensorBoard traces)"
(cd "$RUNS" && tar --exclude='*/tb/*' -czf "$OUT/runs.tar.gz" .) >> "$LOG" 2>&1
if [ "$(stat -c %s "$OUT/runs.tar.gz" 2>/dev/null || echo 0)" -gt 15000000 ]; then
  (cd "$RUNS" && tar --exclude='*/tb/*' --exclude='*/kernels/*' -czf "$OUT/runs.tar.gz" .) >> "$LOG" 2>&1
  echo "runs tar too large with kernels: packed without the kernels tables" | tee -a "$LOG"
fi
ls -la "$OUT" | tee -a "$LOG"
step "done"
