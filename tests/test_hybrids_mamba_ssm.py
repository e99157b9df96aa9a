"""mamba_ssm's own hybrid LM (MambaLMHeadModel with attn_layer_idx): its MHA layers are `attention` and its
GatedMLPs `mlp`, recognised by structure. On the CPU through a stand-in with mamba_ssm's module structure
(tests/support/mamba_ssm_like.py); the real model on the GPU in tests/gpu/test_gpu_hybrids.py."""

from __future__ import annotations

import warnings

import torch
from support.mamba_ssm_like import MHA, MambaLMHeadModel
from support.windows import WindowRecorder

from mambaprof.collectors.markers import Probe
from mambaprof.model.counts import attention_dims
from mambaprof.model.structure import discover, expected_components, is_attention, is_mlp, layer_rows
from mambaprof.run.instrument import Instrumenter


def test_mamba_ssm_hybrid_layers_are_attention_and_mlp_by_structure() -> None:
    torch.manual_seed(0)
    model = MambaLMHeadModel(n_layer=3, attn_layer_idx=[1]).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        st = discover(model)
    assert [ls.kind for ls in st.layers] == ["mamba2+mlp", "attention+mlp", "mamba2+mlp"]
    assert len(st.mixers) == 2 and not st.asis
    att = st.layers[1].attention[0]
    assert isinstance(att, MHA)
    dims = attention_dims(att)
    assert (dims.n_heads, dims.n_kv_heads, dims.head_dim) == (4, 2, 16)
    rows = layer_rows(st)
    assert rows[1]["kv_cache_elems_per_token"] == 2 * 2 * 16 and rows[0]["kv_cache_elems_per_token"] == 0
    assert rows[1]["attention_kv_heads"] == 2
    ids = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = model(ids).logits
        rec = WindowRecorder()
        with Instrumenter(st, split=True).installed(Probe([rec])):
            out = model(ids).logits
    assert torch.equal(out, ref)
    assert {(1, "attention"), (0, "mlp"), (1, "mlp"), (2, "mlp"), (0, "ssm_scan")} <= rec.entered
    assert (1, "attention") in expected_components(st)


def test_recognition_is_structural_not_by_class_name() -> None:
    class Fused(MHA):  # no Attention/MHA in its name: the fused q/k/v in_proj and the head counts decide
        pass

    class Feed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = torch.nn.Linear(8, 32), torch.nn.Linear(16, 8)

    assert is_attention(Fused(64, 4, 2, 16)) and is_mlp(Feed())
    too_narrow = MHA(64, 4, 2, 16)
    too_narrow.in_proj = torch.nn.Linear(64, 16 * 4)  # no room for k and v: not q/k/v
    too_narrow.__class__ = Fused
    assert not is_attention(too_narrow)
    from transformers import Mamba2Config
    from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer

    mixer = Mamba2Mixer(Mamba2Config(hidden_size=64, num_heads=8, head_dim=16, state_size=16), layer_idx=0)
    assert not is_attention(mixer)  # in_proj/out_proj and heads too, but SSM parameters: not attention
