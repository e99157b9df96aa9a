"""transformers model families behind the hybrid presets: which config and model class, and how a shape maps
to the config's own argument names. Random weights only; nothing is downloaded.

Each builder takes the preset's `hf` dict (the family's config arguments, spelled as transformers spells them)
and returns the ForCausalLM model. Defaults that every preset shares (no cache, SDPA attention where the family
has a choice) are set here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

#: family -> (config class, model class) in transformers
FAMILIES: dict[str, tuple[str, str]] = {
    "mamba": ("MambaConfig", "MambaForCausalLM"),
    "mamba2": ("Mamba2Config", "Mamba2ForCausalLM"),
    "falcon_mamba": ("FalconMambaConfig", "FalconMambaForCausalLM"),
    "jamba": ("JambaConfig", "JambaForCausalLM"),
    "bamba": ("BambaConfig", "BambaForCausalLM"),
    "nemotron_h": ("NemotronHConfig", "NemotronHForCausalLM"),
    "zamba2": ("Zamba2Config", "Zamba2ForCausalLM"),
    "falcon_h1": ("FalconH1Config", "FalconH1ForCausalLM"),
    "granitemoehybrid": ("GraniteMoeHybridConfig", "GraniteMoeHybridForCausalLM"),
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
}


def build_family(family: str, hf: dict[str, Any], device: torch.device | str = "cpu",
                 dtype: torch.dtype | None = None) -> nn.Module:
    """A transformers ForCausalLM of `family` with config arguments `hf`, random init, in eval mode.

    The model is built on `device` in `dtype` directly (a 9B preset is never materialised in fp32 on the CPU).
    """
    import transformers

    if family not in FAMILIES:
        raise KeyError(f"unknown transformers family {family!r}; known: {', '.join(FAMILIES)}")
    cfg_name, model_name = FAMILIES[family]
    cfg_cls = getattr(transformers, cfg_name)
    model_cls = getattr(transformers, model_name)
    kwargs = {"use_cache": False, **hf}
    cfg = cfg_cls(**kwargs)
    if hasattr(cfg, "_attn_implementation") and family not in ("mamba", "mamba2", "falcon_mamba"):
        cfg._attn_implementation = "sdpa"
    previous = torch.get_default_dtype()
    try:
        if dtype is not None and dtype.is_floating_point:
            torch.set_default_dtype(dtype)
        with torch.device(device):
            model = model_cls(cfg)
    finally:
        torch.set_default_dtype(previous)
    if dtype is not None:
        model = model.to(dtype=dtype)
    return model.eval()
