#!/usr/bin/env bash
# Does the component-split forward run as fast as the fused one, is every kernel attributed to a component, and
# does the split give the same output? The trace pipeline's GPU tests, then `mambaprof trace` of mamba-1.4b and
# mamba2-1.3b (d_model 2048, 48 layers, mamba_ssm's fused kernels) at batch 8 x 1024/4096/16384, bf16.
# Usage on the device (repo root, carry [".whl"]): bash benchmarks/device_trace_fidelity.sh   (writes under $OUT)
# Under $OUT: provenance.json (benchmarks/provenance.py), nvidia_smi.csv, pytest_gpu.txt (the last 40 lines),
# log.txt (each trace's last 12 lines), runs.tar.gz (the run directories without tb/). Tables for the write-up:
#   python benchmarks/summarize_fidelity.py RUNS/mamba-1.4b RUNS/mamba2-1.3b
# The split's own cost at the launch-bound point is taken apart by benchmarks/split_overhead_breakdown.py.
source benchmarks/device_setup.sh
python3 benchmarks/provenance.py --out "$OUT/provenance.json" --script "$0" -- "$@" 2>&1 | tee -a "$OUT/log.txt"
timeout 300 python3 -m pytest -m gpu tests/gpu -q -p no:cacheprovider 2>&1 | tail -40 > "$OUT/pytest_gpu.txt"
tail -3 "$OUT/pytest_gpu.txt"
mkdir -p /tmp/runs
for fam in mamba-1.4b mamba2-1.3b; do
  timeout 200 python3 -m mambaprof trace --preset $fam --backend mamba_ssm --seqlens 1024,4096,16384 --batch 8 \
      --dtype bf16 --repeats 10 --warmup 3 --profile-repeats 3 --out /tmp/runs/$fam --force 2>&1 | tail -12 | tee -a "$OUT/log.txt"
done
(cd /tmp/runs && tar --exclude='*/tb/*' -czf "$OUT/runs.tar.gz" .) 2>&1 | tee -a "$OUT/log.txt"
