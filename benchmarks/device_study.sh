#!/usr/bin/env bash
# Where does a Mamba forward's time go, model by model (the `mambaprof study` of docs/study/), and what does the
# tool cost a forward? One call, at most ~9.8 min on one H100/H200 (the study took 332 s on an H200 before the
# split without markers was timed as well, ~35 s more). Usage (repo root): bash benchmarks/device_study.sh
# CPU dry run: SETUP=0 OUT=/tmp/o6 STUDY_DIR=/tmp/s6 STUDY_ARGS='--models mamba-tiny,mamba2-tiny --seqlens 64,128
#   --batch 1 --backend hf' OVERHEAD_PRESET=mamba-tiny BACKEND=hf DTYPE=fp32 OVERHEAD_BATCH=1 OVERHEAD_SEQLEN=64
#   OVERHEAD_ROUNDS=2 bash benchmarks/device_study.sh
# Under $OUT:
#   log.txt              the provenance line, every step's command, exit status and elapsed seconds
#   provenance.json      benchmarks/provenance.py: device, driver, versions, code, date, the command and variables
#   nvidia_smi.csv       GPU name, driver, memory, max SM clock, power limit (benchmarks/device_setup.sh)
#   study.txt            `mambaprof study` (default: mamba-130m, mamba2-130m, mamba-1.4b, mamba2-1.3b; bf16;
#                        seqlens 64..16384; batch 1,8) with its wall time, and the study report's text
#   study.tar.gz         the study directory (run directories without tb/, report.html, summary/)
#   tool_overhead.json   plain vs NVML vs split vs CUDA events + NVML vs torch.profiler (benchmarks/tool_overhead.py;
#                        OVERHEAD=0 skips it, so the study has the whole call)
if [ "${SETUP:-1}" = 1 ]; then
  source benchmarks/device_setup.sh
else
  set -u; export PYTHONUNBUFFERED=1
  source benchmarks/device_step.sh
fi
LOG="$OUT/log.txt"
BUDGET=${BUDGET:-585}
STUDY=${STUDY_DIR:-/tmp/study}
python3 benchmarks/provenance.py --out "$OUT/provenance.json" --script "$0" \
  --vars SETUP,BUDGET,STUDY_DIR,STUDY_ARGS,STUDY_LIMIT,OVERHEAD,OVERHEAD_LIMIT,OVERHEAD_PRESET,BACKEND,DTYPE,OVERHEAD_BATCH,OVERHEAD_SEQLEN,OVERHEAD_ROUNDS \
  -- "$@" 2>&1 | tee -a "$LOG"

# 1. the tool's overhead on a forward (its budget: CUDA events + NVML <= 2% at batch 8 x 4096, d_model 2048),
#    ratios from one run paired per round, the split alone included, then the plain and split forwards compared
#    kernel by kernel (at 4096 tokens a forward takes ~0.26 s and a profiler session 3-3.7 s: ~7 s per round;
#    it runs first: the study takes what is left)
[ "${OVERHEAD:-1}" = 1 ] && step ${OVERHEAD_LIMIT:-130} "$LOG" python3 benchmarks/tool_overhead.py --preset ${OVERHEAD_PRESET:-mamba-1.4b} --backend ${BACKEND:-mamba_ssm} \
  --dtype ${DTYPE:-bf16} --batch ${OVERHEAD_BATCH:-8} --seqlen ${OVERHEAD_SEQLEN:-4096} --rounds ${OVERHEAD_ROUNDS:-10} --per-round 2 --warmup 2 --kernels --out "$OUT/tool_overhead.json"

# 2. the study with its defaults, timed as a user runs it (the report is written at the end)
t0=$SECONDS
step ${STUDY_LIMIT:-440} "$OUT/study.txt" python3 -m mambaprof study --out "$STUDY" --force ${STUDY_ARGS:-}
echo "study wall time: $((SECONDS - t0)) s" | tee -a "$LOG" "$OUT/study.txt"
(cd "$STUDY" && tar --exclude='*/tb' -czf "$OUT/study.tar.gz" .) >>"$LOG" 2>&1

ls -la "$OUT" | tee -a "$LOG"
