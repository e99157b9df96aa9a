"""Where does the component-split forward spend extra time? (device diagnostic)

For a preset at one point, measures in one run, interleaved: the original forward, the split forward
with no listeners, the split forward with CUDA-event window timers; GPU time (CUDA events) and host
time (CPU time to issue the forward, before the final synchronize). Then cProfiles one host-side
issue of each to show where the CPU goes. Needs a GPU and mamba_ssm. The JSON (--out) carries
benchmarks/provenance.py's stamp ("provenance").

    python benchmarks/split_overhead_breakdown.py --preset mamba2-1.3b --batch 8 --seqlen 1024
"""

import argparse
import cProfile
import io
import json
import pstats
import statistics
import time

import torch
from provenance import stamp

from mambaprof.collectors.markers import Probe
from mambaprof.collectors.timing import WindowTimer
from mambaprof.model.inputs import make_call
from mambaprof.model.loading import load_preset
from mambaprof.model.structure import discover
from mambaprof.run.instrument import Instrumenter


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="mamba2-1.3b")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seqlen", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        ap.exit(2, "error: needs a CUDA GPU (it times the mamba_ssm forward with CUDA events)\n")
    dev = torch.device("cuda:0")
    loaded = load_preset(a.preset, dev, torch.bfloat16, backend="mamba_ssm")
    st = discover(loaded.model)
    call = make_call(loaded.model, st, a.batch, a.seqlen, dev, torch.bfloat16, None)
    inst = Instrumenter(st)
    timer = WindowTimer(dev)

    def original():
        with torch.inference_mode():
            return call()

    def split_bare():
        with torch.inference_mode(), inst.installed(Probe([])):
            return call()

    def split_timed():
        timer.reset()
        with torch.inference_mode(), inst.installed(Probe([timer])):
            return call()

    kinds = {"original": original, "split_bare": split_bare, "split_timed": split_timed}
    for fn in kinds.values():
        for _ in range(3):
            fn()
    torch.cuda.synchronize()
    res = {k: {"gpu_ms": [], "issue_ms": []} for k in kinds}
    for _ in range(a.repeats):
        for k, fn in kinds.items():
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            s.record()
            t0 = time.perf_counter()
            out = fn()
            issue = (time.perf_counter() - t0) * 1e3
            e.record()
            torch.cuda.synchronize()
            res[k]["gpu_ms"].append(s.elapsed_time(e))
            res[k]["issue_ms"].append(issue)
            del out
    summary = {k: {m: statistics.median(v) for m, v in d.items()} for k, d in res.items()}
    summary["config"] = vars(a)
    summary["provenance"] = stamp(str(dev))
    print(json.dumps(summary, indent=1))
    for k, fn in kinds.items():
        torch.cuda.synchronize()
        pr = cProfile.Profile()
        pr.enable()
        fn()
        pr.disable()
        torch.cuda.synchronize()
        buf = io.StringIO()
        pstats.Stats(pr, stream=buf).sort_stats("tottime").print_stats(12)
        print(f"==== {k}\n" + buf.getvalue()[:3500])
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(summary, fh, indent=1)


if __name__ == "__main__":
    main()
