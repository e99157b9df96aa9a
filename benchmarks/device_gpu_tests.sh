#!/usr/bin/env bash
# The GPU test suite on the device, one test file at a time (each with its own limit, so one slow file cannot
# hide the others' summaries), then the CUDA-graph attribution diagnostic (benchmarks/graph_attribution.py) at
# the mamba-1.4b and mamba2-1.3b preset shapes. Kind nvidia-h200; carry [".whl"].
# Usage on the device (repo root): bash benchmarks/device_gpu_tests.sh   (BUDGET seconds in all, default 540;
# FILES: test files, default every tests/gpu/test_gpu_*.py but distributed; PER_FILE: seconds per file, default 150; ATTRIBUTION=0 skips the diagnostic)
# Files under $OUT: nvidia_smi.csv, provenance.json, log.txt, pytest_gpu.txt, graph_attribution.txt, *.json.
export OMP_NUM_THREADS=4
BUDGET=${BUDGET:-540}
ATTRIBUTION=${ATTRIBUTION:-1}
source benchmarks/device_setup.sh
LOG="$OUT/log.txt"
python3 benchmarks/provenance.py --out "$OUT/provenance.json" --script "$0" --vars BUDGET,FILES,PER_FILE,ATTRIBUTION \
    -- "$@" | tee -a "$LOG"
FILES=${FILES:-$(ls tests/gpu/test_gpu_*.py | grep -v distributed)}
PER_FILE=${PER_FILE:-150}
for f in $FILES; do
  step "$PER_FILE" "$OUT/pytest_gpu.txt" python3 -m pytest -m gpu "$f" -q -rfEs --tb=short -p no:cacheprovider
done
grep -E "passed|failed|error" "$OUT/pytest_gpu.txt" | grep -E "^[=0-9 ]" | tee -a "$LOG"
if [ "$ATTRIBUTION" = 1 ]; then
  for preset in mamba-1.4b mamba2-1.3b; do
    step 100 "$OUT/graph_attribution.txt" python3 benchmarks/graph_attribution.py --preset "$preset" \
        --batch 1,64,256 --out "$OUT/graph_attribution_${preset}.json"
  done
fi
echo "done after ${SECONDS}s" | tee -a "$LOG"
