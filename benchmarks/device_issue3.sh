#!/usr/bin/env bash
# Device run for the hardware-signals issue (NVML sampler, energy, memory, I/O, Nsight Compute).
# One call, ~9 min on one H100/H200. Usage on the device (repo root): bash benchmarks/device_issue3.sh
# Writes under $OUT (7 files): nvidia_smi.csv, env.json, log.txt (every step's output and exit code),
# pytest_gpu.txt, trace_cost.json, summary.txt (all hardware tables as text), runs_issue3.tar.gz
# (the run directories, no tb/). Every step is timeout-bounded within a global budget so that the
# summary and the tarball are always written.
source benchmarks/device_setup.sh
LOG="$OUT/log.txt"
RUNS=/tmp/runs_issue3
BUDGET=${BUDGET:-560}   # seconds from the script's start by which the last step must have ended (see step)
rm -rf "$RUNS" && mkdir -p "$RUNS"


{
  date -u +%Y-%m-%dT%H:%M:%SZ
  echo "ncu on PATH: $(command -v ncu || echo none)"
  ls -d /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | sed 's/^/ncu found: /'
  nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.max.sm,clocks.max.mem --format=csv
} >>"$LOG" 2>&1
python3 -m mambaprof env --json >"$OUT/env.json" 2>&1

# 1. GPU tests of the collectors (the ncu test is left to step 4, which runs ncu through `mambaprof trace`)
step 90 "$OUT/pytest_gpu.txt" python3 -m pytest -m gpu tests/gpu/test_gpu_hardware.py -q -s -p no:cacheprovider \
  -k "not ncu"

# 2. the trace with every collector (energy included): mamba_ssm Mamba and Mamba2 at d_model 2048, batch 8
for preset in mamba-1.4b mamba2-1.3b; do
  step 100 "$LOG" python3 -m mambaprof trace --preset "$preset" --backend mamba_ssm --batch 8 --seqlens 4096,16384 \
    --dtype bf16 --repeats 3 --warmup 2 --profile-repeats 2 --no-tb --quiet --out "$RUNS/$preset" --force
done

# 3. what a trace costs against seqlen (study grid, batch 8) and against the layer count (issue 6)
step 150 "$LOG" python3 benchmarks/trace_cost.py --preset mamba-1.4b --backend mamba_ssm --batch 8 \
  --layers 6,12,24,48 --out "$OUT/trace_cost.json"

# 4. Nsight Compute on one small point (first 2 Mamba layers + embedding), with the memory timeline
step 90 "$LOG" python3 -m mambaprof trace --preset mamba2-1.3b --backend mamba_ssm --batch 1 --seqlens 1024 --dtype bf16 \
  --repeats 3 --warmup 2 --profile-repeats 1 --no-tb --quiet --no-energy --no-io --memory-timeline \
  --ncu --ncu-layers 2 --out "$RUNS/ncu_mamba2-1.3b" --force

# 5. summary and run directories
timeout 60 python3 benchmarks/summarize_issue3.py "$RUNS"/* >"$OUT/summary.txt" 2>&1
(cd "$RUNS" && tar --exclude='./*/tb' -czf "$OUT/runs_issue3.tar.gz" .)
if [ "$(stat -c %s "$OUT/runs_issue3.tar.gz")" -gt 15000000 ]; then
  echo "tarball over 15 MB: leaving out memory_timeline/ and ncu reports" | tee -a "$LOG"
  (cd "$RUNS" && tar --exclude='./*/tb' --exclude='*/memory_timeline' --exclude='*.ncu-rep' \
     -czf "$OUT/runs_issue3.tar.gz" .)
fi
ls -la "$OUT" | tee -a "$LOG"
head -40 "$OUT/summary.txt"
