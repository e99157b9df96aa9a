"""A transformers Mamba-1 language model (random weights), CPU or GPU.

    mambaprof trace examples/hf_mamba.py --seqlens 64,256 --batch 1

On a GPU with mamba-ssm and causal-conv1d installed, transformers runs the CUDA kernels; on the
CPU its reference PyTorch ops. Edit the config to match the model you care about.
"""

from torch import nn
from transformers import MambaConfig, MambaForCausalLM


def build_model() -> nn.Module:
    config = MambaConfig(vocab_size=4096, hidden_size=256, state_size=16, num_hidden_layers=4, expand=2,
                         use_cache=False)
    return MambaForCausalLM(config)
