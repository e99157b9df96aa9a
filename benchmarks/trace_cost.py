"""What a trace costs in wall-clock time, against sequence length and against the number of layers.

Runs `mambaprof trace` in-process with the study's settings (repeats 5, warm-up 2, profiled forwards 2,
NVML + memory + I/O collectors on, no TensorBoard) and times every point from the sweep's progress
callbacks (seconds from a point's start to its end, all passes and collectors included), plus the
model load and the whole command. Two sweeps:

- seqlen: one model (`--preset`), seqlens 64..16384 at each `--batch`;
- layers: the same shape with `--layers` layer counts (benchmarks/layers_model.py), one point each
  (`--layers-batch`, `--layers-seqlen`).

The JSON carries benchmarks/provenance.py's stamp ("provenance").

    python benchmarks/trace_cost.py --preset mamba-1.4b --out trace_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from provenance import stamp

from mambaprof.collectors.hardware import HardwareOptions, build_hardware
from mambaprof.model.loading import resolve_device, resolve_dtype
from mambaprof.run.sweep import TraceConfig
from mambaprof.run.tracing import ModelSource, trace
from mambaprof.storage.rundir import RunWriter

HERE = Path(__file__).resolve().parent


def phase_seconds(marks: list[tuple[int, float, str]], end: float) -> dict[str, float]:
    """Seconds per phase of one point from its progress marks ("b=.. L=.. · phase"); writing the point's
    rows falls in its last phase."""
    out: dict[str, float] = {}
    for (_, t, desc), nxt in zip(marks, [m[1] for m in marks[1:]] + [end], strict=True):
        name = desc.split(" · ", 1)[1] if " · " in desc else "start"
        out[name] = out.get(name, 0.0) + (nxt - t)
    return out


def timed_trace(source: ModelSource, config: TraceConfig, out: Path, hardware: HardwareOptions) -> dict[str, Any]:
    """One in-process trace into `out`; seconds per point (by (batch, seqlen)), to the first point, in all."""
    marks: list[tuple[int, float, str]] = []
    t0 = time.perf_counter()
    writer = RunWriter(out, force=True)
    collectors = build_hardware(hardware, config.device, out, writer.run_id,
                                {"model_file": str(source.model_file) if source.model_file else None,
                                 "hf_dir": None, "preset": source.preset, "backend": source.backend},
                                str(config.dtype).replace("torch.", ""), config.mode, config.seed, config.warmup)
    outcome = trace(source, config, out, force=True, writer=writer, extra_collectors=collectors.point,
                    run_collectors=collectors.run, progress=lambda done, total, desc: marks.append(
                        (done, time.perf_counter(), desc)))
    total_s = time.perf_counter() - t0
    if collectors.device is not None:
        collectors.device.close()
    starts = {d: t for d, t, _ in reversed(marks)}  # first mark at each done count
    points = []
    for i, (batch, seqlen) in enumerate(config.points()):
        if i in starts and i + 1 in starts:  # a point runs from the first mark at done=i to the first at i+1
            points.append({"batch": batch, "seqlen": seqlen, "point_s": starts[i + 1] - starts[i],
                           "phases_s": phase_seconds([m for m in marks if m[0] == i], starts[i + 1])})
    first = min((t for _, t, _ in marks), default=time.perf_counter())
    return {"total_s": total_s, "until_first_point_s": first - t0, "points": points,
            "status_counts": outcome.result.counts,
            "n_mixers": len(outcome.structure.mixers)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="mamba-1.4b")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--seqlens", default="64,128,256,512,1024,2048,4096,8192,16384")
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--layers", default="6,12,24,48")
    ap.add_argument("--layers-batch", type=int, default=8)
    ap.add_argument("--layers-seqlen", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--profile-repeats", type=int, default=2)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    dev = resolve_device(a.device)
    dtype = resolve_dtype(a.dtype, dev)
    hardware = HardwareOptions(nvml=True, energy=False, memory=True, io=True)

    def config(seqlens: list[int], batches: list[int]) -> TraceConfig:
        return TraceConfig(seqlens=seqlens, batches=batches, device=dev, dtype=dtype, repeats=a.repeats,
                           warmup=a.warmup, profile_repeats=a.profile_repeats, tensorboard=False)

    result: dict[str, Any] = {"config": vars(a), "device": str(dev), "provenance": stamp(str(dev))}
    with tempfile.TemporaryDirectory() as tmp:
        seq = timed_trace(ModelSource(preset=a.preset, backend=a.backend),
                          config([int(s) for s in a.seqlens.split(",")], [int(b) for b in a.batch.split(",")]),
                          Path(tmp) / "seqlen", hardware)
        result["seqlen_sweep"] = seq
        for p in seq["points"]:
            print(f"seqlen sweep: B={p['batch']} L={p['seqlen']}: {p['point_s']:.2f} s", flush=True)
        result["layers_sweep"] = []
        os.environ["MAMBAPROF_BENCH_PRESET"] = a.preset
        os.environ["MAMBAPROF_BENCH_BACKEND"] = a.backend
        for n in [int(x) for x in a.layers.split(",")]:
            os.environ["MAMBAPROF_BENCH_LAYERS"] = str(n)
            res = timed_trace(ModelSource(model_file=HERE / "layers_model.py"),
                              config([a.layers_seqlen], [a.layers_batch]), Path(tmp) / f"layers{n}", hardware)
            res["layers"] = n
            result["layers_sweep"].append(res)
            pt = res["points"][0]["point_s"] if res["points"] else float("nan")
            print(f"layers sweep: {n} layers, B={a.layers_batch} L={a.layers_seqlen}: point {pt:.2f} s, "
                  f"command {res['total_s']:.2f} s", flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
