"""Data-parallel inference across ranks: each rank runs a transformers Mamba on its own batch, then
the logits of every rank are gathered on every rank (all_gather), as an evaluation loop does.

    torchrun --nproc-per-node 2 -m mambaprof trace examples/data_parallel.py --no-shard --seqlens 64,256

`--no-shard` makes every rank run every sweep point (the ranks must run the same forwards, or the
collective would wait for a partner that never comes) and initialises the process group (NCCL on
GPUs, gloo on the CPU) before build_model() runs. The all_gather lands in the `communication`
component. Set MAMBA_D_MODEL, MAMBA_LAYERS and MAMBA_VOCAB to change the model (CPU-sized by default).
"""

import os

import torch
import torch.distributed as dist
from torch import nn
from transformers import MambaConfig, MambaForCausalLM


class GatherLogits(nn.Module):
    """The model on this rank's batch, its logits gathered from every rank: (world x batch, seqlen, vocab)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, use_cache: bool = False) -> torch.Tensor:
        logits = self.model(input_ids=input_ids, use_cache=use_cache).logits.contiguous()
        parts = [torch.empty_like(logits) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, logits)
        return torch.cat(parts)


def build_model() -> nn.Module:
    if not dist.is_initialized():
        raise RuntimeError("no process group: run under torchrun with --no-shard (see the docstring)")
    config = MambaConfig(vocab_size=int(os.environ.get("MAMBA_VOCAB", "1024")),
                         hidden_size=int(os.environ.get("MAMBA_D_MODEL", "64")), state_size=16,
                         num_hidden_layers=int(os.environ.get("MAMBA_LAYERS", "2")), use_cache=False)
    torch.manual_seed(0)  # the same weights on every rank, as data parallelism has
    return GatherLogits(MambaForCausalLM(config))


def make_inputs(batch: int, seqlen: int, device: torch.device, dtype: torch.dtype) -> dict:
    """Each rank draws its own batch of token ids (a different shard of the data)."""
    gen = torch.Generator().manual_seed(1000 * dist.get_rank() + seqlen * 31 + batch)
    vocab = int(os.environ.get("MAMBA_VOCAB", "1024"))
    return {"input_ids": torch.randint(0, vocab, (batch, seqlen), generator=gen).to(device)}
