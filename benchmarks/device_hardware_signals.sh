#!/usr/bin/env bash
# What do the hardware collectors read on this GPU (NVML samples, energy, memory, I/O, Nsight Compute counters),
# and what does tracing cost a forward? One device call (about 9 minutes on one H100/H200): traces with every
# collector, the collectors' and the trace pipeline's GPU tests, this GPU's peaks and the tool-overhead figure.
# Every step is bounded by `timeout` within a global budget (BUDGET seconds from the start; later steps are
# skipped once it is spent) and the packing at the end always runs, so a shorter budget (e.g. BUDGET=290 when
# little device time is left) still returns whatever finished.
# Measured on an H200 (benchmarks/results/2026-12-02-h200-hardware.md): with every collector on, a 48-layer
# d_model-2048 point at batch 8 costs ~25 s up to 4096 tokens (~14 s of it the energy windows), the first Mamba-2
# point ~30 s more (Triton autotuning); the step limits below follow from that.
# Usage on the device (repo root, carry [".whl"]): bash benchmarks/device_hardware_signals.sh
# Under $OUT:
#   log.txt              provenance line, ncu path, every step's command, exit status and seconds, all trace output
#   provenance.json      benchmarks/provenance.py: device, driver, versions, code, date, the command with its variables
#   nvidia_smi.csv       GPU name, driver, memory, max SM clock, power limit (benchmarks/device_setup.sh)
#   tool_overhead.json   plain vs NVML vs split vs CUDA events + NVML vs torch.profiler, paired per round, and
#                        the kernel-by-kernel comparison of plain and split
#   peaks_calibrated.json  `mambaprof calibrate` of this GPU (copy GB/s, GEMM TFLOP/s per dtype)
#   pytest_gpu.txt       GPU tests of the collectors, then of the trace pipeline
#   summary.txt          every hardware table of every run as text (benchmarks/summarize_hardware.py)
#   runs.tar.gz          the run directories (no tb/): the input of docs/examples and benchmarks/
# Afterwards, on the CPU machine (it has Chromium): unpack runs.tar.gz, put the raw files under
# benchmarks/data/DATE-DEVICE-hardware/ and the write-up in benchmarks/results/DATE-DEVICE-hardware.md (see
# benchmarks/README.md), and rebuild the example report:
#   python benchmarks/make_report_example.py RUNS/mamba-1.4b RUNS/mamba2-1.3b --peaks peaks_calibrated.json
# A CPU dry run of the flow: OUT=/tmp/o BACKEND=hf M1=mamba-tiny M2=mamba2-tiny SEQLENS=64,128 BATCH=1 \
#   NCU=0 SETUP=0 bash benchmarks/device_hardware_signals.sh   (SETUP=0 skips the device setup)
if [ "${SETUP:-1}" = 1 ]; then
  source benchmarks/device_setup.sh
else
  set -u; export PYTHONUNBUFFERED=1
  source benchmarks/device_step.sh
fi
LOG="$OUT/log.txt"
BUDGET=${BUDGET:-545}
BACKEND=${BACKEND:-mamba_ssm}; M1=${M1:-mamba-1.4b}; M2=${M2:-mamba2-1.3b}
SEQLENS=${SEQLENS:-1024,4096,16384}; BATCH=${BATCH:-8}; OVERHEAD_SEQLEN=${OVERHEAD_SEQLEN:-4096}; DTYPE=${DTYPE:-bf16}
STEPS=${STEPS:-1,2,3,4,5,6}  # which numbered steps run (all of them need more than one 10-minute call: split them)
want() { case ",$STEPS," in *",$1,"*) return 0;; esac; echo "=== not in STEPS: step $1" | tee -a "$LOG"; return 1; }
RUNS=/tmp/runs_hw
rm -rf "$RUNS" && mkdir -p "$RUNS"
python3 benchmarks/provenance.py --out "$OUT/provenance.json" --script "$0" \
  --vars SETUP,BUDGET,BACKEND,M1,M2,SEQLENS,BATCH,OVERHEAD_SEQLEN,DTYPE,STEPS,TRACE_M2,M1_LIMIT,NCU,NCU_LIMIT \
  -- "$@" 2>&1 | tee -a "$LOG"
echo "ncu: $(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null || echo none)" >>"$LOG" 2>&1

# 1. traces with every default collector (NVML sampler, energy, memory, I/O): batch 8 x 1024/4096/16384, the report input
#    (measured 2026-12-02 on an H200: mamba-1.4b's 1024 and 4096 points take ~135 s, mamba2-1.3b's three ~150 s;
#    TRACE_M2=0 traces the Mamba-1 model only)
want 1 && step "${M1_LIMIT:-230}" "$LOG" python3 -m mambaprof trace --preset "$M1" --backend "$BACKEND" --batch "$BATCH" \
  --seqlens "$SEQLENS" --dtype "$DTYPE" --repeats 5 --warmup 2 --point-seconds 3 --profile-repeats 1 --no-tb --quiet \
  --out "$RUNS/$M1" --force
want 1 && [ "${TRACE_M2:-1}" = 1 ] && step 165 "$LOG" python3 -m mambaprof trace --preset "$M2" --backend "$BACKEND" --batch "$BATCH" \
  --seqlens "$SEQLENS" --dtype "$DTYPE" --repeats 5 --warmup 2 --point-seconds 3 --profile-repeats 1 --no-tb --quiet \
  --out "$RUNS/$M2" --force

# 2. GPU tests of the collectors (ncu is exercised by step 3, through `mambaprof trace`)
want 2 && step 60 "$OUT/pytest_gpu.txt" python3 -m pytest -m gpu tests/gpu/test_gpu_hardware.py -q -rs -p no:cacheprovider \
  -k "not ncu"

# 3. Nsight Compute on one small point (first 2 Mamba layers), with the memory timeline (measured 2026-12-02:
#    ~60 s to replay the 27 kernels 9 times each, then the report import; 80 s was not enough)
if [ "${NCU:-1}" = 1 ] && want 3; then
  step "${NCU_LIMIT:-220}" "$LOG" python3 -m mambaprof trace --preset "$M2" --backend "$BACKEND" --batch 1 --seqlens 1024 \
    --dtype "$DTYPE" --repeats 3 --warmup 2 --profile-repeats 1 --no-tb --quiet --no-energy --no-io --memory-timeline \
    --ncu --ncu-layers 2 --out "$RUNS/ncu_$M2" --force
fi

# 4. the tool's overhead on a forward (ratios from one run, paired per round), the split alone included, and a
#    kernel-by-kernel comparison of the plain and the split forward
want 4 && step 90 "$LOG" python3 benchmarks/tool_overhead.py --preset "$M1" --backend "$BACKEND" --dtype "$DTYPE" --batch "$BATCH" \
  --seqlen "$OVERHEAD_SEQLEN" --rounds 6 --per-round 3 --warmup 2 --kernels --out "$OUT/tool_overhead.json"

# 5. GPU tests of the trace pipeline (split vs fused, attribution, output check at d_model 2048)
want 5 && step 80 "$OUT/pytest_gpu.txt" python3 -m pytest -m gpu tests/gpu/test_gpu_trace.py -v -rs -p no:cacheprovider

# 6. this GPU's peaks for the roofline of docs/examples
want 6 && step 25 "$LOG" python3 -m mambaprof calibrate --no-store --out "$OUT/peaks_calibrated.json"

# 7. summary and run directories (always)
timeout 40 python3 benchmarks/summarize_hardware.py "$RUNS"/* >"$OUT/summary.txt" 2>&1
(cd "$RUNS" && tar --exclude='./*/tb' --exclude='*/memory_timeline' --exclude='*.ncu-rep' -czf "$OUT/runs.tar.gz" .)
echo "=== done after ${SECONDS}s" | tee -a "$LOG"
ls -la "$OUT" | tee -a "$LOG"
