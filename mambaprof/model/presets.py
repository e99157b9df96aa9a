"""Built-in model configurations: the public checkpoints' shapes with random weights (no downloads).

Mamba-1 sizes follow state-spaces/mamba-{130m..2.8b}; Mamba-2 sizes follow
state-spaces/mamba2-{130m..2.7b} (d_state 128, headdim 64, one group, chunk 256). The `-tiny`
presets are small enough to trace on a CPU in seconds; `mamba-tiny` is the embedded default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from mambaprof.errors import BadArgumentError


@dataclass(frozen=True)
class Preset:
    """Shape of a preset model. vocab is padded to a multiple of 8 as the public configs are."""

    name: str
    family: str
    d_model: int
    n_layer: int
    vocab: int = 50280
    d_state: int = 16
    expand: int = 2
    d_conv: int = 4
    headdim: int = 64
    ngroups: int = 1
    chunk_size: int = 256
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for the run record)."""
        return asdict(self)


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("mamba-tiny", "mamba1", d_model=128, n_layer=4, vocab=1024, note="embedded default, CPU seconds"),
    Preset("mamba2-tiny", "mamba2", d_model=128, n_layer=4, vocab=1024, d_state=32, headdim=32, chunk_size=64,
           note="Mamba-2 counterpart of mamba-tiny"),
    Preset("mamba-130m", "mamba1", d_model=768, n_layer=24),
    Preset("mamba-370m", "mamba1", d_model=1024, n_layer=48),
    Preset("mamba-790m", "mamba1", d_model=1536, n_layer=48),
    Preset("mamba-1.4b", "mamba1", d_model=2048, n_layer=48),
    Preset("mamba-2.8b", "mamba1", d_model=2560, n_layer=64),
    Preset("mamba2-130m", "mamba2", d_model=768, n_layer=24, d_state=128),
    Preset("mamba2-370m", "mamba2", d_model=1024, n_layer=48, d_state=128),
    Preset("mamba2-780m", "mamba2", d_model=1536, n_layer=48, d_state=128),
    Preset("mamba2-1.3b", "mamba2", d_model=2048, n_layer=48, d_state=128),
    Preset("mamba2-2.7b", "mamba2", d_model=2560, n_layer=64, d_state=128),
)}

DEFAULT_PRESET = "mamba-tiny"


def get_preset(name: str) -> Preset:
    """The preset called `name`, or a BadArgumentError listing them."""
    try:
        return PRESETS[name]
    except KeyError:
        raise BadArgumentError(f"unknown preset {name!r}", "presets: " + ", ".join(PRESETS)) from None


def build_hf(preset: Preset) -> nn.Module:
    """transformers MambaForCausalLM / Mamba2ForCausalLM with the preset's shape, random init."""
    if preset.family == "mamba1":
        from transformers import MambaConfig, MambaForCausalLM

        cfg = MambaConfig(vocab_size=preset.vocab, hidden_size=preset.d_model, state_size=preset.d_state,
                          num_hidden_layers=preset.n_layer, expand=preset.expand, conv_kernel=preset.d_conv,
                          use_cache=False)
        return MambaForCausalLM(cfg)
    from transformers import Mamba2Config, Mamba2ForCausalLM

    d_inner = preset.expand * preset.d_model
    cfg = Mamba2Config(vocab_size=preset.vocab, hidden_size=preset.d_model, state_size=preset.d_state,
                       num_hidden_layers=preset.n_layer, expand=preset.expand, conv_kernel=preset.d_conv,
                       head_dim=preset.headdim, num_heads=d_inner // preset.headdim, n_groups=preset.ngroups,
                       chunk_size=preset.chunk_size, use_cache=False)
    return Mamba2ForCausalLM(cfg)


def build_mamba_ssm(preset: Preset, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """mamba_ssm MambaLMHeadModel with the preset's shape (fused add+norm, residual in fp32)."""
    from mamba_ssm.models.config_mamba import MambaConfig
    from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel

    if preset.family == "mamba1":
        ssm_cfg = {"layer": "Mamba1", "d_state": preset.d_state, "d_conv": preset.d_conv, "expand": preset.expand}
    else:
        ssm_cfg = {"layer": "Mamba2", "d_state": preset.d_state, "d_conv": preset.d_conv, "expand": preset.expand,
                   "headdim": preset.headdim, "ngroups": preset.ngroups, "chunk_size": preset.chunk_size}
    cfg = MambaConfig(d_model=preset.d_model, n_layer=preset.n_layer, vocab_size=preset.vocab, ssm_cfg=ssm_cfg,
                      rms_norm=True, residual_in_fp32=True, fused_add_norm=True, pad_vocab_size_multiple=8)
    return MambaLMHeadModel(cfg, device=device, dtype=dtype)
