"""A mamba_ssm Mamba-2 language model with tensor-parallel mixers (GPU only, NCCL, 2+ ranks).

    pip install mambaprof[cuda]
    torchrun --nproc-per-node 2 -m mambaprof trace examples/mamba_ssm_tp.py --no-shard --seqlens 1024,4096 --batch 4

Each mixer's in_proj is a ColumnParallelLinear and its out_proj a RowParallelLinear over the
default process group (which `--no-shard` initialises); the out_proj's all-reduce shows up as the
layer's `communication` component. mamba_ssm's split forward does not cover tensor-parallel mixers,
so their kernels are attributed by name rules inside each mixer (see docs/DISTRIBUTED.md).
Set MAMBA_D_MODEL and MAMBA_LAYERS to change the model.
"""

import os

import torch
import torch.distributed as dist
from mamba_ssm.models.config_mamba import MambaConfig
from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel
from mamba_ssm.modules.mamba2 import Mamba2
from torch import nn


def build_model(device: torch.device, dtype: torch.dtype) -> nn.Module:
    if not dist.is_initialized():
        raise RuntimeError("no process group: run under torchrun with --no-shard (see the docstring)")
    world = dist.get_world_size()
    d_model = int(os.environ.get("MAMBA_D_MODEL", "2048"))
    n_layer = int(os.environ.get("MAMBA_LAYERS", "8"))
    ssm = {"d_state": 128, "headdim": 64, "ngroups": world, "chunk_size": 256}
    config = MambaConfig(d_model=d_model, n_layer=n_layer, vocab_size=50280, ssm_cfg={"layer": "Mamba2", **ssm},
                         rms_norm=True, residual_in_fp32=True, fused_add_norm=True, pad_vocab_size_multiple=8)
    torch.manual_seed(0)
    model = MambaLMHeadModel(config, device=device, dtype=dtype)
    for i, block in enumerate(model.backbone.layers):  # the same mixers, split over the ranks
        block.mixer = Mamba2(d_model, layer_idx=i, process_group=dist.group.WORLD, sequence_parallel=False,
                             device=device, dtype=dtype, **ssm)
    return model
