"""Your own mixer class: register an adapter for it so that mambaprof splits it component by component.

    mambaprof trace examples/custom_mixer.py --seqlens 64,128

`ScaledMamba2Mixer` is a transformers Mamba2Mixer with one change of its own: its output is scaled by a
learned per-channel vector. mambaprof recognises it as Mamba-2 by structure, but its probe check (the split
forward against the module's own forward) fails, because the plain Mamba-2 recipe knows nothing of the scale:
without the registration below, the layers would be profiled as-is with one warning each.

`register_mixer` tells mambaprof how to split it. Three ways, from least to most work:
- `register_mixer(MyMixer, family="mamba2")`: the plain transformers-style forward (knobs from structure);
- `register_mixer(MyMixer, recipe=MixerRecipe(...))`: the same with your family's differences as data;
- `register_mixer(MyMixer, adapter=MyAdapter(...))`: your own split forward (below): run the same ops as your
  forward, in the same layouts, with `window(component)` around each component.
"""

from typing import Any

import torch
from torch import nn
from transformers import Mamba2Config, Mamba2ForCausalLM
from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer

from mambaprof.model import MixerRecipe, register_mixer
from mambaprof.model.adapters import HFMamba2Like, WindowFn


class ScaledMamba2Mixer(Mamba2Mixer):
    """Mamba2Mixer whose output is multiplied by a per-channel scale."""

    def __init__(self, config: Mamba2Config, layer_idx: int) -> None:
        super().__init__(config, layer_idx)
        self.out_scale = nn.Parameter(torch.full((config.hidden_size,), 0.5))

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return super().forward(hidden_states, *args, **kwargs) * self.out_scale


class ScaledMamba2Adapter(HFMamba2Like):
    """The Mamba-2 split forward, with the scale inside the out_proj window (it belongs to the output)."""

    def split_forward(self, module: nn.Module, window: WindowFn, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> torch.Tensor | None:
        out = super().split_forward(module, window, args, kwargs)
        if out is None:
            return None
        with window("out_proj"):
            return out * module.out_scale


register_mixer(ScaledMamba2Mixer, adapter=ScaledMamba2Adapter(
    MixerRecipe("scaled_mamba2", "mamba2", ("ScaledMamba2Mixer",), note="Mamba-2 with an output scale"),
    handles=f"{__name__}.ScaledMamba2Mixer"))


def build_model() -> nn.Module:
    config = Mamba2Config(vocab_size=1024, hidden_size=128, state_size=32, num_hidden_layers=3, expand=2,
                          head_dim=32, num_heads=8, n_groups=1, chunk_size=32, use_cache=False)
    model = Mamba2ForCausalLM(config)
    for i, layer in enumerate(model.backbone.layers):
        layer.mixer = ScaledMamba2Mixer(config, layer_idx=i)
    return model
