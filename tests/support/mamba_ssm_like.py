"""A CPU stand-in with the module structure of mamba_ssm's hybrid MambaLMHeadModel (mamba_ssm does not import
without CUDA): MixerModel -> layers of Block(norm, mixer, norm2, mlp), the mixers Mamba-2 (here transformers'
Mamba2Mixer) or `MHA` (fused q/k/v `in_proj`, `out_proj`, num_heads / num_heads_kv / head_dim, SDPA, as
mamba_ssm.modules.mha.MHA's prefill path), the MLPs `GatedMLP` (fc1 -> y * silu(gate) -> fc2). Attribute
names and forwards follow mamba_ssm 2.x (mixer_seq_simple.py, block.py, mha.py, mlp.py)."""

from __future__ import annotations

from collections import namedtuple

import torch
import torch.nn.functional as F
from torch import nn


class MHA(nn.Module):
    """mamba_ssm.modules.mha.MHA without rotary, conv or the MLP slice; prefill only."""

    def __init__(self, embed_dim: int, num_heads: int, num_heads_kv: int | None = None, head_dim: int | None = None,
                 causal: bool = True, layer_idx: int | None = None) -> None:
        super().__init__()
        self.embed_dim, self.layer_idx, self.causal = embed_dim, layer_idx, causal
        self.num_heads = num_heads
        self.num_heads_kv = num_heads_kv if num_heads_kv is not None else num_heads
        self.head_dim = head_dim if head_dim is not None else embed_dim // num_heads
        self.d_conv, self.mlp_dim, self.softmax_scale = 0, 0, None
        qkv_dim = self.head_dim * (self.num_heads + 2 * self.num_heads_kv)
        self.in_proj = nn.Linear(embed_dim, qkv_dim)
        self.out_proj = nn.Linear(self.head_dim * self.num_heads, embed_dim)

    def forward(self, x: torch.Tensor, inference_params: object = None) -> torch.Tensor:
        qkv = self.in_proj(x)
        b, seqlen, _ = x.shape
        q, kv = qkv.split([self.num_heads * self.head_dim, self.num_heads_kv * 2 * self.head_dim], dim=-1)
        q = q.view(b, seqlen, self.num_heads, self.head_dim)
        k, v = kv.view(b, seqlen, 2, self.num_heads_kv, self.head_dim).unbind(dim=2)
        k = torch.repeat_interleave(k, dim=2, repeats=self.num_heads // self.num_heads_kv)
        v = torch.repeat_interleave(v, dim=2, repeats=self.num_heads // self.num_heads_kv)
        context = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                 is_causal=self.causal).transpose(1, 2)
        return self.out_proj(context.reshape(b, seqlen, -1))


class GatedMLP(nn.Module):
    """mamba_ssm.modules.mlp.GatedMLP."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, 2 * hidden_features, bias=False)
        self.activation = F.silu
        self.fc2 = nn.Linear(hidden_features, out_features or in_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, gate = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(y * self.activation(gate))


class Block(nn.Module):
    """mamba_ssm.modules.block.Block, unfused (prenorm: add, norm, mixer; add, norm2, mlp)."""

    def __init__(self, dim: int, mixer: nn.Module, mlp: nn.Module | None) -> None:
        super().__init__()
        self.residual_in_fp32, self.fused_add_norm = True, False
        self.norm = nn.LayerNorm(dim)
        self.mixer = mixer
        if mlp is not None:
            self.norm2 = nn.LayerNorm(dim)
        self.mlp = mlp

    def forward(self, hidden_states: torch.Tensor, residual: torch.Tensor | None = None,
                inference_params: object = None) -> tuple[torch.Tensor, torch.Tensor]:
        residual = hidden_states + residual if residual is not None else hidden_states
        hidden_states = self.norm(residual.to(self.norm.weight.dtype))
        residual = residual.float()
        out = self.mixer(hidden_states)
        hidden_states = out[0] if isinstance(out, tuple) else out
        if self.mlp is not None:
            residual = hidden_states + residual
            hidden_states = self.norm2(residual.to(self.norm2.weight.dtype))
            residual = residual.float()
            hidden_states = self.mlp(hidden_states)
        return hidden_states, residual


class MixerModel(nn.Module):
    """mamba_ssm.models.mixer_seq_simple.MixerModel (unfused add+norm)."""

    def __init__(self, d_model: int, n_layer: int, d_intermediate: int, vocab_size: int, attn_layer_idx: list[int],
                 attn_cfg: dict, ssm_cfg: dict) -> None:
        super().__init__()
        from transformers import Mamba2Config
        from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer

        self.fused_add_norm = False
        self.embedding = nn.Embedding(vocab_size, d_model)
        cfg = Mamba2Config(hidden_size=d_model, num_hidden_layers=n_layer, **ssm_cfg)
        layers = []
        for i in range(n_layer):
            mixer = MHA(d_model, layer_idx=i, **attn_cfg) if i in attn_layer_idx else Mamba2Mixer(cfg, layer_idx=i)
            layers.append(Block(d_model, mixer, GatedMLP(d_model, d_intermediate) if d_intermediate else None))
        self.layers = nn.ModuleList(layers)
        self.norm_f = nn.LayerNorm(d_model)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden_states, residual = self.embedding(input_ids), None
        for layer in self.layers:
            hidden_states, residual = layer(hidden_states, residual)
        residual = hidden_states + residual if residual is not None else hidden_states
        return self.norm_f(residual.to(self.norm_f.weight.dtype))


CausalLMOutput = namedtuple("CausalLMOutput", ["logits"])


class MambaLMHeadModel(nn.Module):
    """mamba_ssm.models.mixer_seq_simple.MambaLMHeadModel with attn_layer_idx / attn_cfg."""

    def __init__(self, d_model: int = 64, n_layer: int = 3, d_intermediate: int = 128, vocab_size: int = 256,
                 attn_layer_idx: list[int] | None = None, attn_cfg: dict | None = None,
                 ssm_cfg: dict | None = None) -> None:
        super().__init__()
        self.backbone = MixerModel(d_model, n_layer, d_intermediate, vocab_size, attn_layer_idx or [1],
                                   attn_cfg or {"num_heads": 4, "num_heads_kv": 2, "head_dim": 16},
                                   ssm_cfg or {"state_size": 16, "head_dim": 16, "num_heads": 8, "n_groups": 1,
                                               "chunk_size": 16, "expand": 2})
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)

    def forward(self, input_ids: torch.Tensor, **_: object) -> CausalLMOutput:
        return CausalLMOutput(self.lm_head(self.backbone(input_ids)))
