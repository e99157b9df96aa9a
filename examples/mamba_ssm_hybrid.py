"""mamba_ssm's own hybrid language model: Mamba-2 layers with attention layers among them (random weights, GPU).

    pip install mambaprof[cuda]
    mambaprof trace examples/mamba_ssm_hybrid.py --seqlens 1024,4096,16384 --batch 1 --dtype bf16

MambaLMHeadModel with `attn_layer_idx` (those layers' mixer is mamba_ssm.modules.mha.MHA: fused q/k/v
in_proj, SDPA in prefill, flash-attn with a KV cache in decode) and `d_intermediate` > 0 (a GatedMLP after
every mixer). mambaprof profiles the MHA layers as `attention` and the GatedMLPs as `mlp`, recognised by
their structure. Set HYBRID_D_MODEL, HYBRID_LAYERS and HYBRID_ATTN (comma list of attention layer indices).
"""

import os

import torch
from mamba_ssm.models.config_mamba import MambaConfig
from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel
from torch import nn


def build_model(device: torch.device, dtype: torch.dtype) -> nn.Module:
    d_model = int(os.environ.get("HYBRID_D_MODEL", "2048"))
    n_layer = int(os.environ.get("HYBRID_LAYERS", "24"))
    attn = [int(i) for i in os.environ.get("HYBRID_ATTN", "5,11,17,23").split(",") if i.strip()]
    config = MambaConfig(
        d_model=d_model, n_layer=n_layer, d_intermediate=4 * d_model, vocab_size=50280,
        ssm_cfg={"layer": "Mamba2", "d_state": 128, "headdim": 64, "ngroups": 1, "chunk_size": 256},
        attn_layer_idx=attn,
        attn_cfg={"num_heads": d_model // 128, "num_heads_kv": max(1, d_model // 512), "head_dim": 128,
                  "causal": True, "qkv_proj_bias": False, "out_proj_bias": False},
        rms_norm=True, residual_in_fp32=True, fused_add_norm=True, pad_vocab_size_multiple=8)
    torch.manual_seed(0)
    return MambaLMHeadModel(config, device=device, dtype=dtype)
