"""The process Nsight Compute profiles for `mambaprof trace --ncu` (collectors.ncu launches it under ncu):
`python -m mambaprof.run.ncu_target --target SPEC.json` loads the model as the trace did, warms up and runs one
marked forward inside the NVTX range ncu filters on."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from mambaprof.collectors.markers import Probe
from mambaprof.collectors.ncu import FilterRange, NvtxListener
from mambaprof.model.inputs import make_call
from mambaprof.model.loading import DTYPES
from mambaprof.model.structure import discover
from mambaprof.run.instrument import Instrumenter
from mambaprof.run.tracing import ModelSource


def run_target(spec: dict[str, Any]) -> int:
    """Load the model as the trace did, warm up, run one marked forward. Returns an exit code."""
    device = torch.device(spec["device"])
    dtype = DTYPES[spec["dtype"]]
    source = ModelSource(model_file=Path(spec["model_file"]) if spec.get("model_file") else None,
                         hf_dir=Path(spec["hf_dir"]) if spec.get("hf_dir") else None,
                         preset=spec.get("preset"), backend=spec.get("backend", "auto"))
    loaded = source.load(device, dtype)
    structure = discover(loaded.model)
    call = make_call(loaded.model, structure, spec["batch"], spec["seqlen"], device, dtype, loaded.make_inputs,
                     seed=spec.get("seed", 0))
    inst = Instrumenter(structure, split=spec.get("mode", "split") == "split")
    with torch.inference_mode():
        for _ in range(max(1, spec.get("warmup", 1))):
            with inst.installed(Probe([])):
                call()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        limit = FilterRange(spec.get("layers"))
        with inst.installed(Probe([limit, NvtxListener()])):
            call()
        limit.end()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    print(f"mambaprof ncu target: one marked forward of {len(structure.mixers)} Mamba layers done", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m mambaprof.run.ncu_target --target SPEC.json`: the process ncu profiles."""
    ap = argparse.ArgumentParser(description="the process ncu profiles for mambaprof trace --ncu")
    ap.add_argument("--target", required=True, type=Path, help="JSON spec written by NcuCollector")
    args = ap.parse_args(argv)
    return run_target(json.loads(args.target.read_text()))


if __name__ == "__main__":
    sys.exit(main())
