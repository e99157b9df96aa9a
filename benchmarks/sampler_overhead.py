"""Cost of the NVML sampler thread on a plain forward (device benchmark; budget: <= 1%).

One process, one model, the same inputs. Rounds alternate the order of two blocks of forwards: the
original forward with the sampler stopped, and with it running at the trace's interval. Each forward
is timed with CUDA events (GPU time) and on the host including the final synchronisation (what a user
waits). Writes every raw time and the medians as JSON.

    python benchmarks/sampler_overhead.py --preset mamba-1.4b --batch 8 --seqlen 4096 --out overhead.json
"""

import argparse
import json
import statistics
import time

import torch

from mambaprof.collectors.gpu_device import open_device
from mambaprof.collectors.nvml import NvmlSampler
from mambaprof.env import collect_env
from mambaprof.inputs import make_call
from mambaprof.loading import load_preset, resolve_device, resolve_dtype
from mambaprof.structure import discover


def time_forward(call, device):
    """(GPU ms, host ms) of one forward under inference_mode."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        t0 = time.perf_counter()
        start.record()
        with torch.inference_mode():
            out = call()
        end.record()
        torch.cuda.synchronize(device)
        host = (time.perf_counter() - t0) * 1e3
        del out
        return float(start.elapsed_time(end)), host
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = call()
    del out
    host = (time.perf_counter() - t0) * 1e3
    return host, host


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="mamba-1.4b")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seqlen", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--per-round", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--interval-ms", type=float, default=10.0)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    dev = resolve_device(a.device)
    dtype = resolve_dtype(a.dtype, dev)
    loaded = load_preset(a.preset, dev, dtype, backend=a.backend)
    st = discover(loaded.model)
    call = make_call(loaded.model, st, a.batch, a.seqlen, dev, dtype, None)
    for _ in range(a.warmup):
        time_forward(call, dev)
    gpu = open_device(dev)
    sampler = NvmlSampler(gpu, a.interval_ms)
    times = {"off": {"gpu_ms": [], "host_ms": []}, "on": {"gpu_ms": [], "host_ms": []}}
    paired = []
    samples = 0
    for r in range(a.rounds):
        block = {}
        for mode in (("off", "on") if r % 2 == 0 else ("on", "off")):
            if mode == "on":
                sampler.start()
                time.sleep(3 * sampler.interval_ms / 1e3)  # let it settle into its schedule
            gpu_ms = []
            for _ in range(a.per_round):
                g, h = time_forward(call, dev)
                gpu_ms.append(g)
                times[mode]["gpu_ms"].append(g)
                times[mode]["host_ms"].append(h)
            if mode == "on":
                sampler.stop()
                samples += len(sampler.drain())
            block[mode] = statistics.median(gpu_ms)
        paired.append(100.0 * (block["on"] / block["off"] - 1.0))
    med = {m: {k: statistics.median(v) for k, v in d.items()} for m, d in times.items()}
    result = {
        "config": vars(a), "device": str(dev), "device_name": collect_env(str(dev)).device_name,
        "sampler_state": sampler.state, "sampler_reason": sampler.reason, "interval_ms": sampler.interval_ms,
        "driver_sample_period_ms": sampler.driver_periods_ms, "unsupported_metrics": sampler.unsupported,
        "samples_taken": samples,
        "median": med,
        "overhead_gpu_pct": 100.0 * (med["on"]["gpu_ms"] / med["off"]["gpu_ms"] - 1.0),
        "overhead_host_pct": 100.0 * (med["on"]["host_ms"] / med["off"]["host_ms"] - 1.0),
        "overhead_paired_rounds_pct": paired, "overhead_paired_median_pct": statistics.median(paired),
        "budget_pct": 1.0, "raw": times,
    }
    result["within_budget"] = abs(result["overhead_paired_median_pct"]) <= result["budget_pct"]
    gpu.close()
    text = json.dumps(result, indent=1)
    print(json.dumps({k: v for k, v in result.items() if k != "raw"}, indent=1))
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
