"""Mixer adapters: one per supported mixer class, found by class (never by importing mamba_ssm)."""

from __future__ import annotations

from torch import nn

from mambaprof.model.adapters.base import MixerAdapter, class_path
from mambaprof.model.adapters.dims import MixerDims
from mambaprof.model.adapters.hf import HFMamba2Adapter, HFMambaAdapter
from mambaprof.model.adapters.ssm import SSMMamba2Adapter, SSMMambaAdapter

ADAPTERS: tuple[MixerAdapter, ...] = (SSMMambaAdapter(), SSMMamba2Adapter(), HFMambaAdapter(), HFMamba2Adapter())

SUPPORTED_CLASSES: tuple[str, ...] = tuple(a.handles for a in ADAPTERS)


def adapter_for(module: nn.Module) -> MixerAdapter | None:
    """The adapter that handles `module`'s exact class, or None."""
    for adapter in ADAPTERS:
        if adapter.matches(module):
            return adapter
    return None


__all__ = ["ADAPTERS", "SUPPORTED_CLASSES", "MixerAdapter", "MixerDims", "adapter_for", "class_path"]
