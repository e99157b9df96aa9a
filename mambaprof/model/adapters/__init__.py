"""Mixer adapters: recognise a Mamba mixer (user registrations, exact classes, structure) and split its forward.

Public: `register_mixer` (a user's own mixer class), `MixerRecipe` (what a family does differently),
`MixerAdapter` (the interface: `dims`, `split_forward`, `fused_components`, `components`).
"""

from __future__ import annotations

from torch import nn

from mambaprof.model.adapters.base import MixerAdapter, WindowFn, class_path
from mambaprof.model.adapters.dims import MixerDims
from mambaprof.model.adapters.hf import HFMamba1Like, HFMamba2Adapter, HFMamba2Like, HFMambaAdapter
from mambaprof.model.adapters.recipes import RECIPES, MixerRecipe
from mambaprof.model.adapters.registry import (
    Mismatch,
    describe,
    looks_mamba_like,
    recognise,
    register_mixer,
    registered_classes,
    unregister_mixer,
)
from mambaprof.model.adapters.ssm import SSMMamba2Adapter, SSMMambaAdapter

ADAPTERS: tuple[MixerAdapter, ...] = (SSMMambaAdapter(), SSMMamba2Adapter(), HFMambaAdapter, HFMamba2Adapter)

#: what is recognised, for messages: exact classes, then every family recipe's classes, then structure
SUPPORTED_CLASSES: tuple[str, ...] = (
    tuple(a.handles for a in ADAPTERS[:2]) + tuple(c for r in RECIPES for c in r.classes)
    + ("any transformers-style Mamba-1/Mamba-2 mixer (by structure)", "classes registered with register_mixer"))


def adapter_for(module: nn.Module) -> MixerAdapter | None:
    """The adapter that handles `module` (registered, exact class or by structure), or None."""
    found = recognise(module)
    return found if isinstance(found, MixerAdapter) else None


__all__ = ["ADAPTERS", "RECIPES", "SUPPORTED_CLASSES", "HFMamba1Like", "HFMamba2Like", "MixerAdapter", "MixerDims",
           "MixerRecipe", "Mismatch", "WindowFn", "adapter_for", "class_path", "describe", "looks_mamba_like",
           "recognise", "register_mixer", "registered_classes", "unregister_mixer"]
