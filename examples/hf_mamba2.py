"""A transformers Mamba-2 language model (random weights), CPU or GPU.

    mambaprof trace examples/hf_mamba2.py --seqlens 64,256
"""

from torch import nn
from transformers import Mamba2Config, Mamba2ForCausalLM


def build_model() -> nn.Module:
    config = Mamba2Config(vocab_size=4096, hidden_size=256, state_size=64, num_hidden_layers=4, expand=2,
                          head_dim=32, num_heads=16, n_groups=1, chunk_size=64, use_cache=False)
    return Mamba2ForCausalLM(config)
