#!/usr/bin/env bash
# Device run for the study issue (one call, at most ~9.6 min on one H100/H200). Usage (repo root): bash benchmarks/device_issue6.sh
# Under $OUT:
#   log.txt              date, GPU, every step's command, exit status and elapsed seconds
#   study.txt            `mambaprof study` (default: mamba-130m, mamba2-130m, mamba-1.4b, mamba2-1.3b; bf16;
#                        seqlens 64..16384; batch 1,8) with its wall time, and the study report's text
#   study.tar.gz         the study directory (run directories without tb/, report.html, summary/)
#   pytest_gpu.txt       GPU tests of the reports (calibration of this GPU against its datasheet included)
source benchmarks/device_setup.sh
LOG="$OUT/log.txt"
BUDGET=${BUDGET:-570}
STUDY=/tmp/study
{ date -u +%Y-%m-%dT%H:%M:%SZ; nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv; } >>"$LOG" 2>&1
python3 -m mambaprof env --json >"$OUT/env.json" 2>&1

# 1. the study with its defaults, timed as a user runs it (the report is written at the end)
t0=$SECONDS
step 545 "$OUT/study.txt" python3 -m mambaprof study --out "$STUDY" --force
echo "study wall time: $((SECONDS - t0)) s" | tee -a "$LOG" "$OUT/study.txt"
(cd "$STUDY" && tar --exclude='*/tb' -czf "$OUT/study.tar.gz" .) >>"$LOG" 2>&1

# 2. with what is left: GPU tests of the reports (calibration of this GPU against its datasheet, reports of GPU
#    traces under the roof); the tool-overhead benchmark runs in device_hw_reports.sh
step 120 "$OUT/pytest_gpu.txt" python3 -m pytest -m gpu tests/gpu/test_gpu_reports.py -v -p no:cacheprovider -rs
ls -la "$OUT" | tee -a "$LOG"
