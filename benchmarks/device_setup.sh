#!/usr/bin/env bash
# Source this at the start of a device run: installs the carried wheels (.whl) and mambaprof itself, writes
# $OUT/nvidia_smi.csv (GPU name, driver, memory, max SM clock, power limit) and defines `step`
# (benchmarks/device_step.sh). The device machine (H100/H200, Python 3.12, torch 2.11+cu130) reaches no registry.
set -u
export PYTHONUNBUFFERED=1 KINETO_LOG_LEVEL=5
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
python3 -m pip install -q --no-deps --no-build-isolation -e . >/tmp/pip-e.log 2>&1 || { cat /tmp/pip-e.log; exit 1; }
export PATH=$HOME/.local/bin:/usr/local/bin:$PATH
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv > "$OUT/nvidia_smi.csv" 2>&1

source benchmarks/device_step.sh
