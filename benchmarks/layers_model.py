"""model.py for the cost-growth benchmark: a preset's shape with another layer count (random weights).

Environment: MAMBAPROF_BENCH_PRESET (default mamba-1.4b), MAMBAPROF_BENCH_LAYERS (default: the preset's),
MAMBAPROF_BENCH_BACKEND (auto: mamba_ssm on a GPU where it imports, transformers otherwise).
"""

from __future__ import annotations

import os
from dataclasses import replace

import torch
from torch import nn

from mambaprof.env import mamba_ssm_available
from mambaprof.model.presets import build_hf, build_mamba_ssm, get_preset


def build_model(device: torch.device, dtype: torch.dtype) -> nn.Module:
    """The preset named in the environment with MAMBAPROF_BENCH_LAYERS layers."""
    preset = get_preset(os.environ.get("MAMBAPROF_BENCH_PRESET", "mamba-1.4b"))
    layers = os.environ.get("MAMBAPROF_BENCH_LAYERS")
    if layers:
        preset = replace(preset, n_layer=int(layers))
    backend = os.environ.get("MAMBAPROF_BENCH_BACKEND", "auto")
    if backend == "auto":
        backend = "mamba_ssm" if device.type == "cuda" and mamba_ssm_available() else "hf"
    torch.manual_seed(0)
    if backend == "mamba_ssm":
        return build_mamba_ssm(preset, device, dtype)
    return build_hf(preset).to(device=device, dtype=dtype)
