"""mamba_ssm language models at the public checkpoints' scale (random weights, GPU only).

    pip install mambaprof[cuda]
    MAMBA_FAMILY=mamba2 mambaprof trace examples/mamba_ssm_lm.py --seqlens 1024,4096,16384 --batch 8 --dtype bf16

Uses mamba_ssm's MambaLMHeadModel with its fused kernels (causal_conv1d, the selective-scan CUDA
kernel, the Triton SSD kernels, fused add+RMSNorm). Set MAMBA_FAMILY (mamba1 | mamba2),
MAMBA_D_MODEL and MAMBA_LAYERS to change the model.
"""

import os

import torch
from mamba_ssm.models.config_mamba import MambaConfig
from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel
from torch import nn


def build_model(device: torch.device, dtype: torch.dtype) -> nn.Module:
    family = os.environ.get("MAMBA_FAMILY", "mamba1")
    d_model = int(os.environ.get("MAMBA_D_MODEL", "2048"))
    n_layer = int(os.environ.get("MAMBA_LAYERS", "48"))
    if family == "mamba2":
        ssm_cfg = {"layer": "Mamba2", "d_state": 128, "headdim": 64, "ngroups": 1, "chunk_size": 256}
    else:
        ssm_cfg = {"layer": "Mamba1", "d_state": 16}
    config = MambaConfig(d_model=d_model, n_layer=n_layer, vocab_size=50280, ssm_cfg=ssm_cfg, rms_norm=True,
                         residual_in_fp32=True, fused_add_norm=True, pad_vocab_size_multiple=8)
    torch.manual_seed(0)
    return MambaLMHeadModel(config, device=device, dtype=dtype)
