"""How does one mixer's forward time depend on the state size N? (device benchmark of state pruning)

Builds mamba_ssm `Mamba` (CUDA selective scan, fused path) and `Mamba2` (Triton SSD, memory-efficient
path) layers at d_model 768 with several d_state values and times their forward on the same random
input (batch 8, L 4096, bf16): CUDA events (perf_counter on CPU), warm-up (which also runs Triton's autotuning), then
repeats interleaved across all N of a family, medians. Also times the same layers after physical
pruning from the largest N (mambaprof.pruning.physical), which must match a fresh layer of that N.
Writes JSON to --out after each family, so a timeout keeps what finished; the JSON's "provenance" is
benchmarks/provenance.py's stamp.

    python benchmarks/state_size_sweep.py --out state_sweep.json
"""

import argparse
import json
import statistics
import time

import torch
from provenance import stamp

from mambaprof.collectors.timing import ForwardTimer, synchronize
from mambaprof.model.adapters import adapter_for
from mambaprof.pruning.mixers import MixerView
from mambaprof.pruning.physical import select_states

DEV = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
DTYPE = torch.bfloat16 if DEV.type == "cuda" else torch.float32


def build(family, d_state, d_model):
    torch.manual_seed(0)
    if family == "mamba1":
        from mamba_ssm.modules.mamba_simple import Mamba

        return Mamba(d_model, d_state=d_state, layer_idx=0, device=DEV, dtype=DTYPE).eval()
    from mamba_ssm.modules.mamba2 import Mamba2

    return Mamba2(d_model, d_state=d_state, headdim=64, chunk_size=256, layer_idx=0, device=DEV,
                  dtype=DTYPE).eval()


def pruned_from(family, big, keep, d_model):
    layer = build(family, big, d_model)
    view = MixerView(0, layer, adapter_for(layer))
    select_states(view, torch.arange(keep).unsqueeze(0).repeat(view.groups, 1))
    return layer


def sweep(family, sizes, args):
    layers = {f"N={n}": build(family, n, args.d_model) for n in sizes}
    for n in sizes[1:]:
        layers[f"pruned {sizes[0]}->{n}"] = pruned_from(family, sizes[0], n, args.d_model)
    x = torch.randn(args.batch, args.seqlen, args.d_model, generator=torch.Generator().manual_seed(1)).to(DEV, DTYPE)
    timer = ForwardTimer(DEV)
    compile_s = {}
    with torch.inference_mode():
        for name, layer in layers.items():
            t0 = time.perf_counter()
            for _ in range(args.warmup):
                layer(x)
            synchronize(DEV)
            compile_s[name] = time.perf_counter() - t0
        times = {name: [] for name in layers}
        for _ in range(args.repeats):
            for name, layer in layers.items():
                ms, _, out = timer.time(lambda m=layer: m(x))
                del out
                times[name].append(ms)
    base = statistics.median(times[f"N={sizes[0]}"])
    return {name: {"d_state": layers[name].d_state, "ms_median": statistics.median(t), "ms_min": min(t),
                   "speedup_vs_largest": base / statistics.median(t), "warmup_s": compile_s[name]}
            for name, t in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seqlen", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    result = {"config": vars(args), "device": torch.cuda.get_device_name(DEV) if DEV.type == "cuda" else "cpu",
              "provenance": stamp(str(DEV))}
    plan = {"mamba1": [16, 12, 8, 6, 4], "mamba2": [128, 96, 64, 32]}
    for family, sizes in plan.items():
        try:
            result[family] = sweep(family, sizes, args)
        except Exception as exc:  # noqa: BLE001 - record and go on to the other family
            result[family] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=1)
        print(family, json.dumps(result[family], indent=1), flush=True)


if __name__ == "__main__":
    main()
