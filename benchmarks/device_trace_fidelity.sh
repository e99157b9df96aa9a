#!/usr/bin/env bash
# Device run for the trace-pipeline issue: GPU tests + fidelity/attribution sweep at d_model 2048,
# plus a diagnostic of the split forward's own cost at the launch-bound point (L=1024).
# Usage on the device (repo root): bash benchmarks/device_issue2.sh   (writes under $OUT)
source benchmarks/device_setup.sh
date -u +%Y-%m-%dT%H:%M:%SZ > "$OUT/date.txt"
python3 -m mambaprof env --json > "$OUT/env.json" 2>&1
timeout 300 python3 -m pytest -m gpu tests/gpu -q -p no:cacheprovider 2>&1 | tail -40 > "$OUT/pytest_gpu.txt"
tail -3 "$OUT/pytest_gpu.txt"
mkdir -p /tmp/runs
for fam in mamba-1.4b mamba2-1.3b; do
  timeout 200 python3 -m mambaprof trace --preset $fam --backend mamba_ssm --seqlens 1024,4096,16384 --batch 8 \
      --dtype bf16 --repeats 10 --warmup 3 --profile-repeats 3 --out /tmp/runs/$fam --force 2>&1 | tail -12 | tee -a "$OUT/log.txt"
done
(cd /tmp/runs && tar --exclude='*/tb/*' -czf "$OUT/runs_issue2.tar.gz" .) 2>&1 | tee -a "$OUT/log.txt"
