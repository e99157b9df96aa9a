#!/usr/bin/env bash
# Device run for the reports issue (one call, ~7 minutes on an H100/H200), results under $OUT:
#   pytest_gpu.txt        GPU tests of the reports (calibrate vs datasheet; reports of GPU traces stay under the roof)
#   peaks_calibrated.json `mambaprof calibrate` of this GPU (copy GB/s, bf16/fp16/fp32 GEMM TFLOP/s)
#   runs_issue4.tar.gz    traces of mamba-1.4b and mamba2-1.3b (mamba_ssm, bf16, batch 1 and 8, seqlens 256..16384;
#                         tb/ left out): the input of docs/examples (see below)
#   reports.txt           `mambaprof report` of both runs and `mambaprof compare` (terminal, 100 columns)
#   summaries.tar.gz      their summary Parquet tables and HTML files (no screenshot: no browser on the device)
#   log.txt               date, env, every step's exit status
# Afterwards, on the CPU machine (has Chromium):  tar xzf runs_issue4.tar.gz -C /work/devruns/issue4 &&
#   python benchmarks/make_report_example.py /work/devruns/issue4/mamba-1.4b /work/devruns/issue4/mamba2-1.3b \
#          --out docs/examples
# Usage on the device (repo root): bash benchmarks/device_issue4.sh
source benchmarks/device_setup.sh
log="$OUT/log.txt"
exec 3>&1  # the console, whatever a step's output is redirected to
step() { local name=$1; shift; local t0=$SECONDS; "$@"; local rc=$?; echo "[$name] exit $rc in $((SECONDS - t0)) s" | tee -a "$log" >&3; }
date -u +%Y-%m-%dT%H:%M:%SZ >> "$log"
python3 -m mambaprof env --json >> "$log" 2>&1

step pytest timeout 240 bash -c "python3 -m pytest -m gpu tests/gpu/test_gpu_reports.py -q -p no:cacheprovider -rs \
    > '$OUT/pytest_gpu.txt' 2>&1"
tail -5 "$OUT/pytest_gpu.txt"
step calibrate timeout 120 python3 -m mambaprof calibrate --no-store --out "$OUT/peaks_calibrated.json" >> "$log" 2>&1
cat "$OUT/peaks_calibrated.json"

mkdir -p /tmp/runs4 /tmp/summaries4
for preset in mamba-1.4b mamba2-1.3b; do
  step "trace $preset" timeout 170 python3 -m mambaprof trace --preset $preset --backend mamba_ssm \
      --seqlens 256,1024,4096,16384 --batch 1,8 --dtype bf16 --repeats 10 --warmup 3 --profile-repeats 3 \
      --out /tmp/runs4/$preset --force --quiet >> "$log" 2>&1
  step "report $preset" timeout 60 python3 -m mambaprof report /tmp/runs4/$preset --no-calibration \
      --html /tmp/summaries4/report_$preset.html --parquet /tmp/summaries4/$preset >> "$OUT/reports.txt" 2>&1
done
step compare timeout 60 python3 -m mambaprof compare /tmp/runs4/mamba-1.4b /tmp/runs4/mamba2-1.3b --no-calibration \
    --html /tmp/summaries4/compare.html >> "$OUT/reports.txt" 2>&1
grep -A12 "^Findings" "$OUT/reports.txt" | head -40
(cd /tmp/runs4 && tar --exclude='*/tb' --exclude='*/tb/*' -czf "$OUT/runs_issue4.tar.gz" .) >> "$log" 2>&1
(cd /tmp/summaries4 && tar -czf "$OUT/summaries.tar.gz" .) >> "$log" 2>&1
ls -la "$OUT" | tee -a "$log"
