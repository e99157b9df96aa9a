"""A model.py that loads a checkpoint directory, e.g. a pruned model from `mambaprof prune --save`.

    MAMBAPROF_CKPT=pruned_dir mambaprof trace examples/checkpoint_model.py --seqlens 1024,4096

Works for transformers `save_pretrained` directories and mamba_ssm `MambaLMHeadModel.save_pretrained`
ones (GPU); per-layer state sizes recorded by `mambaprof prune --save` are restored.
"""

import os
from pathlib import Path

import torch
from torch import nn

from mambaprof.pruning.checkpoint import load_checkpoint


def build_model(device: torch.device, dtype: torch.dtype) -> nn.Module:
    return load_checkpoint(Path(os.environ["MAMBAPROF_CKPT"]), device, dtype).model
