"""A hybrid: Mamba-1 and Mamba-2 mixers interleaved with attention + MLP layers.

    mambaprof trace examples/hybrid.py --seqlens 64,128

The Mamba mixers are profiled component by component; the attention and MLP layers are found by structure and
reported as `attention` and `mlp`.
It takes hidden states rather than token ids, so it defines make_inputs.
"""

import torch
from torch import nn
from transformers import Mamba2Config, MambaConfig
from transformers.models.mamba.modeling_mamba import MambaMixer, MambaRMSNorm
from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer

D_MODEL = 128


class MambaLayer(nn.Module):
    def __init__(self, mixer: nn.Module) -> None:
        super().__init__()
        self.norm = MambaRMSNorm(D_MODEL)
        self.mixer = mixer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mixer(self.norm(x))


class AttentionLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(D_MODEL)
        self.attn = nn.MultiheadAttention(D_MODEL, num_heads=4, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(D_MODEL, 4 * D_MODEL), nn.GELU(), nn.Linear(4 * D_MODEL, D_MODEL))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        mask = torch.triu(torch.ones(x.shape[1], x.shape[1], dtype=torch.bool, device=x.device), 1)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(x)


class Hybrid(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        m1 = MambaConfig(hidden_size=D_MODEL, state_size=16, num_hidden_layers=4, expand=2)
        m2 = Mamba2Config(hidden_size=D_MODEL, state_size=32, num_hidden_layers=4, expand=2, head_dim=32,
                          num_heads=8, n_groups=1, chunk_size=32)
        self.layers = nn.ModuleList([
            MambaLayer(MambaMixer(m1, layer_idx=0)),
            AttentionLayer(),
            MambaLayer(Mamba2Mixer(m2, layer_idx=2)),
            AttentionLayer(),
        ])
        self.norm_f = nn.LayerNorm(D_MODEL)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.norm_f(x)


def build_model() -> nn.Module:
    return Hybrid()


def make_inputs(batch: int, seqlen: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seqlen)
    return torch.randn(batch, seqlen, D_MODEL, generator=gen).to(device=device, dtype=dtype)
