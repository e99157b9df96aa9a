"""model.py for a pruning what-if on random weights: the byte-level LM shape of examples/train_small_lm.py.

Speed and memory of pruned variants do not depend on what the weights learned, so this measures them
without a training run (the what-if flags its accuracy columns as meaningless). Environment:
BYTE_LM_FAMILY (mamba2 | mamba1, default mamba2), BYTE_LM_D_MODEL (768), BYTE_LM_LAYERS (12),
BYTE_LM_D_STATE (128 for Mamba-2, 16 for Mamba-1), BYTE_LM_HEADDIM (64), BYTE_LM_CHUNK (256).
mamba_ssm's fused kernels where it imports on a GPU, transformers' reference ops otherwise.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from mambaprof.env import mamba_ssm_available
from mambaprof.evaluation.text import BYTE_VOCAB


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def build_model(device: torch.device, dtype: torch.dtype) -> nn.Module:
    """A freshly initialised (seed 0) byte-level Mamba LM on `device` (fp32 master weights)."""
    family = os.environ.get("BYTE_LM_FAMILY", "mamba2")
    d_model, layers = _int("BYTE_LM_D_MODEL", 768), _int("BYTE_LM_LAYERS", 12)
    d_state = _int("BYTE_LM_D_STATE", 128 if family == "mamba2" else 16)
    headdim, chunk = _int("BYTE_LM_HEADDIM", 64), _int("BYTE_LM_CHUNK", 256)
    torch.manual_seed(0)
    if device.type == "cuda" and mamba_ssm_available():
        from mamba_ssm.models.config_mamba import MambaConfig
        from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel

        ssm_cfg: dict[str, object] = {"layer": "Mamba2" if family == "mamba2" else "Mamba1", "d_state": d_state}
        if family == "mamba2":
            ssm_cfg.update(headdim=headdim, ngroups=1, chunk_size=chunk)
        cfg = MambaConfig(d_model=d_model, n_layer=layers, vocab_size=BYTE_VOCAB, ssm_cfg=ssm_cfg, rms_norm=True,
                          residual_in_fp32=True, fused_add_norm=True, pad_vocab_size_multiple=8)
        return MambaLMHeadModel(cfg, device=device, dtype=torch.float32)
    if family == "mamba2":
        from transformers import Mamba2Config, Mamba2ForCausalLM

        cfg2 = Mamba2Config(vocab_size=BYTE_VOCAB, hidden_size=d_model, state_size=d_state, num_hidden_layers=layers,
                            expand=2, head_dim=headdim, num_heads=2 * d_model // headdim, n_groups=1,
                            chunk_size=chunk, use_cache=False)
        return Mamba2ForCausalLM(cfg2).to(device)
    from transformers import MambaConfig, MambaForCausalLM

    cfg1 = MambaConfig(vocab_size=BYTE_VOCAB, hidden_size=d_model, state_size=d_state, num_hidden_layers=layers,
                       expand=2, use_cache=False)
    return MambaForCausalLM(cfg1).to(device)
