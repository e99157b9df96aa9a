"""Tiny transformers Mamba/Mamba2 models, small enough for CPU tests (random weights, seeded)."""

from __future__ import annotations

import torch


def tiny_mamba(layers: int = 2, d_model: int = 64, vocab: int = 256, seed: int = 0) -> torch.nn.Module:
    """A transformers MambaForCausalLM small enough for CPU tests."""
    from transformers import MambaConfig, MambaForCausalLM

    torch.manual_seed(seed)
    cfg = MambaConfig(vocab_size=vocab, hidden_size=d_model, state_size=8, num_hidden_layers=layers, expand=2,
                      use_cache=False)
    return MambaForCausalLM(cfg).eval()


def tiny_mamba2(layers: int = 2, d_model: int = 64, vocab: int = 256, seed: int = 0) -> torch.nn.Module:
    """A transformers Mamba2ForCausalLM small enough for CPU tests."""
    from transformers import Mamba2Config, Mamba2ForCausalLM

    torch.manual_seed(seed)
    cfg = Mamba2Config(vocab_size=vocab, hidden_size=d_model, state_size=16, num_hidden_layers=layers, expand=2,
                       head_dim=16, num_heads=8, n_groups=1, chunk_size=16, use_cache=False)
    return Mamba2ForCausalLM(cfg).eval()
