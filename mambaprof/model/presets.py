"""Built-in model configurations: the public checkpoints' shapes with random weights (no downloads).

Mamba-1 sizes follow state-spaces/mamba-{130m..2.8b}; Mamba-2 sizes follow
state-spaces/mamba2-{130m..2.7b} (d_state 128, headdim 64, one group, chunk 256). The `-tiny`
presets are small enough to trace on a CPU in seconds; `mamba-tiny` is the embedded default.

Hybrid and Mamba-variant presets (`hf_family` set) are transformers models built from their own config class
(families.py) with the public checkpoints' shapes; `SOURCES` says where each number came from. Their `-tiny`
counterparts keep the layer pattern's kinds at CPU-test size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
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
    #: transformers family (families.FAMILIES) and its config arguments, for hybrid / variant presets
    hf_family: str = ""
    hf: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

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

def _pattern(n: int, attention: list[int], mamba: str = "mamba", other: str = "attention") -> list[str]:
    return [other if i in attention else mamba for i in range(n)]


_NEMOTRON_H_8B = "M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-"
_NEMOTRON_KIND = {"M": "mamba", "*": "attention", "-": "mlp", "E": "moe"}
_ZAMBA2_27B = [i for i in (6, 12, 18, 24, 30, 36, 42, 47, 51)]

HYBRIDS: tuple[Preset, ...] = (
    Preset("falcon-mamba-7b", "mamba1", d_model=4096, n_layer=64, vocab=65024, hf_family="falcon_mamba",
           hf={"vocab_size": 65024, "hidden_size": 4096, "num_hidden_layers": 64, "state_size": 16, "expand": 2,
               "conv_kernel": 4, "time_step_rank": 256, "mixer_rms_eps": 1e-6}),
    Preset("jamba-v0.1-8l", "mamba1", d_model=4096, n_layer=8, vocab=65536, hf_family="jamba",
           note="one 8-layer period of Jamba-v0.1 (7 Mamba + 1 attention, MoE every other layer): fits one GPU",
           hf={"vocab_size": 65536, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 8,
               "num_attention_heads": 32, "num_key_value_heads": 8, "num_experts": 16, "num_experts_per_tok": 2,
               "expert_layer_period": 2, "expert_layer_offset": 1, "attn_layer_period": 8, "attn_layer_offset": 4,
               "mamba_d_state": 16, "mamba_d_conv": 4, "mamba_expand": 2, "mamba_dt_rank": 256}),
    Preset("bamba-9b", "mamba2", d_model=4096, n_layer=32, vocab=128256, hf_family="bamba",
           hf={"vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
               "num_attention_heads": 32, "num_key_value_heads": 8, "attn_layer_indices": [9, 18, 27],
               "mamba_n_heads": 128, "mamba_d_head": 64, "mamba_n_groups": 1, "mamba_d_state": 128,
               "mamba_d_conv": 4, "mamba_expand": 2, "mamba_chunk_size": 256}),
    Preset("nemotron-h-8b", "mamba2", d_model=4096, n_layer=52, vocab=131072, hf_family="nemotron_h",
           hf={"vocab_size": 131072, "hidden_size": 4096, "intermediate_size": 21504,
               "layers_block_type": [_NEMOTRON_KIND[c] for c in _NEMOTRON_H_8B],
               "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "mlp_hidden_act": "relu2",
               "ssm_state_size": 128, "mamba_num_heads": 128, "mamba_head_dim": 64, "n_groups": 8,
               "conv_kernel": 4, "expand": 2, "chunk_size": 128}),
    Preset("zamba2-2.7b", "mamba2", d_model=2560, n_layer=54, vocab=32000, hf_family="zamba2",
           hf={"vocab_size": 32000, "hidden_size": 2560, "num_hidden_layers": 54,
               "layers_block_type": _pattern(54, _ZAMBA2_27B, "mamba", "hybrid"), "mamba_d_state": 64,
               "mamba_d_conv": 4, "mamba_expand": 2, "mamba_ngroups": 1, "n_mamba_heads": 80, "chunk_size": 256,
               "num_attention_heads": 32, "intermediate_size": 10240, "num_mem_blocks": 2, "adapter_rank": 128,
               "use_shared_attention_adapter": False}),
    Preset("falcon-h1-0.5b", "mamba2", d_model=1024, n_layer=36, vocab=32784, hf_family="falcon_h1",
           hf={"vocab_size": 32784, "hidden_size": 1024, "intermediate_size": 2048, "num_hidden_layers": 36,
               "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 64, "mamba_d_ssm": 1536,
               "mamba_n_heads": 24, "mamba_d_head": 64, "mamba_n_groups": 1, "mamba_d_state": 128,
               "mamba_d_conv": 4, "mamba_expand": 2, "mamba_chunk_size": 128, "mamba_rms_norm": False,
               "mamba_norm_before_gate": False, "ssm_in_multiplier": 1.25, "ssm_out_multiplier": 0.2357,
               "attention_in_multiplier": 1.0, "attention_out_multiplier": 0.9375,
               "mlp_multipliers": [0.8838834764831844, 0.5859375], "embedding_multiplier": 5.656854249492381,
               "lm_head_multiplier": 0.0390625}),
    Preset("granite-4.0-h-tiny", "mamba2", d_model=1536, n_layer=40, vocab=100352, hf_family="granitemoehybrid",
           note="attention at layers 5, 15, 25, 35 (one in ten) is assumed, not read from the checkpoint",
           hf={"vocab_size": 100352, "hidden_size": 1536, "intermediate_size": 512, "num_hidden_layers": 40,
               "num_attention_heads": 12, "num_key_value_heads": 4,
               "layer_types": _pattern(40, [5, 15, 25, 35], "mamba", "attention"), "num_local_experts": 64,
               "num_experts_per_tok": 6, "shared_intermediate_size": 1024, "mamba_n_heads": 48, "mamba_d_head": 64,
               "mamba_n_groups": 1, "mamba_d_state": 128, "mamba_d_conv": 4, "mamba_expand": 2,
               "mamba_chunk_size": 256}),
    Preset("llama-1b", "transformer", d_model=2048, n_layer=16, vocab=128256, hf_family="llama",
           note="a Llama-3.2-1B-shaped Transformer (SDPA attention) to set beside a same-size Mamba",
           hf={"vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
               "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64}),
    # CPU-test sizes: every family's layer kinds, seconds on a CPU
    Preset("falcon-mamba-tiny", "mamba1", d_model=64, n_layer=2, vocab=256, hf_family="falcon_mamba",
           hf={"vocab_size": 256, "hidden_size": 64, "state_size": 8, "num_hidden_layers": 2, "time_step_rank": 8}),
    Preset("jamba-tiny", "mamba1", d_model=64, n_layer=4, vocab=256, hf_family="jamba",
           hf={"vocab_size": 256, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
               "num_attention_heads": 4, "num_key_value_heads": 2, "num_experts": 4, "num_experts_per_tok": 2,
               "expert_layer_period": 2, "expert_layer_offset": 1, "attn_layer_period": 4, "attn_layer_offset": 2,
               "mamba_d_state": 8, "mamba_dt_rank": 8}),
    Preset("bamba-tiny", "mamba2", d_model=64, n_layer=3, vocab=256, hf_family="bamba",
           hf={"vocab_size": 256, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3,
               "num_attention_heads": 4, "num_key_value_heads": 2, "attn_layer_indices": [1], "mamba_n_heads": 8,
               "mamba_d_head": 16, "mamba_d_state": 16, "mamba_chunk_size": 16}),
    Preset("nemotron-h-tiny", "mamba2", d_model=64, n_layer=5, vocab=256, hf_family="nemotron_h",
           hf={"vocab_size": 256, "hidden_size": 64, "layers_block_type": ["mamba", "attention", "mlp", "mamba", "moe"],
               "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 128,
               "ssm_state_size": 16, "mamba_num_heads": 8, "mamba_head_dim": 16, "n_groups": 2, "chunk_size": 16,
               "n_routed_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
               "moe_shared_expert_intermediate_size": 32, "n_shared_experts": 1}),
    Preset("zamba2-tiny", "mamba2", d_model=64, n_layer=4, vocab=256, hf_family="zamba2",
           hf={"vocab_size": 256, "hidden_size": 64, "num_hidden_layers": 4,
               "layers_block_type": ["mamba", "hybrid", "mamba", "hybrid"], "mamba_d_state": 16, "n_mamba_heads": 8,
               "chunk_size": 16, "num_attention_heads": 4, "intermediate_size": 128, "num_mem_blocks": 1,
               "adapter_rank": 8, "use_shared_attention_adapter": True}),
    Preset("falcon-h1-tiny", "mamba2", d_model=64, n_layer=2, vocab=256, hf_family="falcon_h1",
           hf={"vocab_size": 256, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
               "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "mamba_d_ssm": 128,
               "mamba_n_heads": 8, "mamba_d_head": 16, "mamba_d_state": 16, "mamba_chunk_size": 16,
               "mamba_rms_norm": False, "ssm_in_multiplier": 0.5, "ssm_out_multiplier": 0.8,
               "ssm_multipliers": [0.5, 0.6, 0.7, 0.8, 0.9], "mlp_multipliers": [0.9, 0.7],
               "attention_in_multiplier": 0.9, "attention_out_multiplier": 0.7, "embedding_multiplier": 2.0,
               "lm_head_multiplier": 0.5}),
    Preset("granite-4.0-h-tiny-cpu", "mamba2", d_model=64, n_layer=3, vocab=256, hf_family="granitemoehybrid",
           hf={"vocab_size": 256, "hidden_size": 64, "intermediate_size": 32, "num_hidden_layers": 3,
               "num_attention_heads": 4, "num_key_value_heads": 2, "layer_types": ["mamba", "attention", "mamba"],
               "num_local_experts": 4, "num_experts_per_tok": 2, "shared_intermediate_size": 64, "mamba_n_heads": 8,
               "mamba_d_head": 16, "mamba_d_state": 16, "mamba_chunk_size": 16, "embedding_multiplier": 2.0,
               "residual_multiplier": 0.5}),
    Preset("llama-tiny", "transformer", d_model=64, n_layer=2, vocab=256, hf_family="llama",
           hf={"vocab_size": 256, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
               "num_attention_heads": 4, "num_key_value_heads": 2}),
)
PRESETS.update({p.name: p for p in HYBRIDS})

#: where the hybrid presets' numbers come from (public config.json files and model cards, read 2026-12)
SOURCES: dict[str, str] = {
    "falcon-mamba-7b": "tiiuae/falcon-mamba-7b: 64 layers, hidden 4096, state 16 (model card); vocab 65024 "
                       "(falcon-mamba-tiny-dev config.json, same tokenizer); time_step_rank 256 = ceil(4096/16), "
                       "the config's `auto` rule.",
    "jamba-v0.1-8l": "JambaConfig defaults, documented as ai21labs/Jamba-v0.1 (hidden 4096, 32 heads, 8 kv, "
                     "14336 MLP, 16 experts top-2, attention period 8 offset 4, expert period 2 offset 1); "
                     "8 of the 32 layers, so that weights and activations fit one H200.",
    "bamba-9b": "ibm-fms/Bamba-9B-1.8T config.json: hidden 4096, 32 layers, attention at 9/18/27, 128 Mamba "
                "heads x 64, d_state 128, 1 group, chunk 256, MLP 14336, vocab 128256.",
    "nemotron-h-8b": "NemotronHConfig defaults (nvidia Nemotron-H-8B, `NemotronH-v0.1`): hidden 4096, MLP 21504 "
                     "relu2, 32 heads / 8 kv / head_dim 128, 128 Mamba heads x 64, 8 groups, d_state 128, chunk "
                     "128, vocab 131072; hybrid_override_pattern as documented in vLLM's NemotronHConfig.",
    "zamba2-2.7b": "Zyphra/Zamba2-2.7B-Instruct-v2 config.json: hidden 2560, 54 layers, hybrid layers at "
                   "6,12,18,24,30,36,42,47,51, d_state 64, 80 Mamba heads x 64, 1 group, chunk 256, 32 heads, "
                   "MLP 10240, 2 shared blocks, adapter rank 128; vocab 32000 (Mistral tokenizer).",
    "falcon-h1-0.5b": "a copy of tiiuae/Falcon-H1-0.5B's config.json and the transformers FalconH1 table: "
                      "hidden 1024, 36 layers, 8 heads / 2 kv / head_dim 64, d_ssm 1536, 24 Mamba heads x 64, "
                      "d_state 128, chunk 128, MLP 2048, the muP multipliers of that config; ssm_in/out "
                      "multipliers and vocab 32784 are not verified (ssm_multipliers left at the default).",
    "granite-4.0-h-tiny": "granite-4.0-h-tiny GGUF metadata (ollama): 40 blocks, hidden 1536, 12 heads, "
                          "64 experts top-6, expert FF 512, shared FF 1024, SSM inner 3072 (48 heads x 64), "
                          "d_state 128, 1 group, vocab 100352; kv heads 4 and the attention positions assumed.",
    "llama-1b": "Llama-3.2-1B's shape (hidden 2048, 16 layers, 32 heads / 8 kv, MLP 8192, vocab 128256).",
}


DEFAULT_PRESET = "mamba-tiny"


def get_preset(name: str) -> Preset:
    """The preset called `name`, or a BadArgumentError listing them."""
    try:
        return PRESETS[name]
    except KeyError:
        raise BadArgumentError(f"unknown preset {name!r}", "presets: " + ", ".join(PRESETS)) from None


def build_hf(preset: Preset, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> nn.Module:
    """transformers model with the preset's shape, random init: MambaForCausalLM / Mamba2ForCausalLM, or the
    preset's hybrid family built directly on `device` in `dtype` (families.build_family)."""
    if preset.hf_family:
        from mambaprof.model.families import build_family

        return build_family(preset.hf_family, preset.hf, device, dtype)
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
