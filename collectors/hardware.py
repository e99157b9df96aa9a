"""The hardware collectors of a trace, built together from the command-line options.

One GPU device (NVML, or the empty stand-in saying why there is none) is shared by the sampler, the
energy and the I/O collectors; the sampler runs for the whole run (a run-level collector), the
others measure each point after the core passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mambaprof.collectors.context import PointCollector, RunCollector
from mambaprof.collectors.energy import DEFAULT_MIN_UPDATES, EnergyCollector
from mambaprof.collectors.gpu_device import GPUDevice, NullDevice, open_device
from mambaprof.collectors.io import IOCollector
from mambaprof.collectors.memory import MemoryCollector
from mambaprof.collectors.ncu import NcuCollector, require_ncu
from mambaprof.collectors.nvml import DEFAULT_INTERVAL_MS, NvmlRunCollector, NvmlSampler
from mambaprof.errors import BadArgumentError


@dataclass
class HardwareOptions:
    """Which hardware signals to collect (the `mambaprof trace` flags)."""

    nvml: bool = True
    nvml_interval_ms: float = DEFAULT_INTERVAL_MS
    energy: bool = True
    energy_min_updates: int = DEFAULT_MIN_UPDATES
    memory: bool = True
    memory_timeline: bool = False
    io: bool = True
    ncu: bool = False
    ncu_layers: int | None = None

    def check(self, device: torch.device) -> Path | None:
        """Refuse impossible combinations before anything loads; the ncu path when --ncu is given."""
        if self.nvml_interval_ms <= 0:
            raise BadArgumentError(f"--nvml-interval-ms {self.nvml_interval_ms} must be positive")
        if self.ncu_layers is not None and self.ncu_layers < 1:
            raise BadArgumentError(f"--ncu-layers {self.ncu_layers} must be at least 1")
        if not self.ncu:
            return None
        ncu = require_ncu()
        if device.type != "cuda":
            raise BadArgumentError(f"--ncu profiles CUDA kernels, but the device is {device}",
                                   "run on a GPU (--device cuda) or drop --ncu")
        return ncu


@dataclass
class HardwareCollectors:
    """What the sweep gets: per-point collectors, run-level collectors, and the shared device."""

    point: list[PointCollector] = field(default_factory=list)
    run: list[RunCollector] = field(default_factory=list)
    device: GPUDevice | None = None


def build_hardware(options: HardwareOptions, device: torch.device, run_dir: Path, run_id: str,
                   source: dict[str, Any], dtype: str, mode: str, seed: int, warmup: int) -> HardwareCollectors:
    """The collectors for a trace into `run_dir` (files under `<run_dir>/<kind>/<run_id>/`).

    source: the model source as the ncu target process needs it (model_file / hf_dir / preset / backend).
    """
    ncu = options.check(device)
    gpu: GPUDevice = open_device(device) if options.nvml else NullDevice("NVML disabled (--no-nvml)")
    sampler = NvmlSampler(gpu, options.nvml_interval_ms)
    out = HardwareCollectors(run=[NvmlRunCollector(sampler)], device=gpu)
    if options.memory or options.memory_timeline:
        timeline = run_dir / "memory_timeline" / run_id if options.memory_timeline else None
        out.point.append(MemoryCollector(sampler=sampler, run_dir=run_dir, timeline_dir=timeline))
    if options.io:
        out.point.append(IOCollector(gpu, sampler))
    if options.energy:
        out.point.append(EnergyCollector(gpu, sampler, min_updates=options.energy_min_updates))
    if ncu is not None:
        out.point.append(NcuCollector(ncu, source, dtype, mode, seed, run_dir / "ncu" / run_id, run_dir=run_dir,
                                      layers=options.ncu_layers, warmup=max(warmup, 1)))
    return out
