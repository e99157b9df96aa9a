"""GPU checks of the hybrid families (run on the device; skipped on CPU).

With mamba_ssm and causal_conv1d installed, transformers' family modeling files resolve their kernel functions
to the mamba_ssm / causal_conv1d kernels; the split forward calls the same functions, so it runs the same
kernels in the same layouts. Checked per tiny family preset in bf16: the split reproduces the model's output
within the bf16 tolerance, the family's kernel functions really are the kernels (not the reference ops), and
the split's named kernel time covers the forward.
"""

from __future__ import annotations

import pytest
import torch
from support.windows import WindowRecorder

from mambaprof.env import mamba_ssm_available
from mambaprof.model.adapters.hf import kernel_fn, uses_reference
from mambaprof.model.inputs import compare_outputs
from mambaprof.model.presets import PRESETS, build_hf
from mambaprof.model.structure import discover
from mambaprof.run.instrument import Instrumenter

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(not mamba_ssm_available(), reason="needs mamba_ssm and causal_conv1d"),
]

FAMILIES = ["falcon-mamba-tiny", "jamba-tiny", "bamba-tiny", "nemotron-h-tiny", "zamba2-tiny", "falcon-h1-tiny",
            "granite-4.0-h-tiny-cpu"]


@pytest.mark.parametrize("name", FAMILIES)
def test_family_split_runs_the_kernels_and_reproduces_output(name: str) -> None:
    from mambaprof.collectors.markers import Probe

    torch.manual_seed(0)
    model = build_hf(PRESETS[name], "cuda:0", torch.bfloat16)
    st = discover(model)
    assert st.mixers and not st.asis, st.warnings
    for site in st.mixers:
        scan = kernel_fn(site.module, site.adapter.recipe.scan_function)
        assert scan is not None and not uses_reference(scan), f"{name}: the scan is the reference implementation"
    ids = torch.randint(0, 256, (1, 512), device="cuda:0")
    with torch.inference_mode():
        ref = model(input_ids=ids).logits
        with Instrumenter(st).installed(Probe([])):
            out = model(input_ids=ids).logits
    check = compare_outputs(ref, out, torch.bfloat16)
    assert check.passed, (check.max_abs_err, check.rel_err)


def test_mamba_ssm_hybrid_lm_attention_and_mlp_layers() -> None:
    """mamba_ssm's MambaLMHeadModel with attn_layer_idx: MHA layers are attention, GatedMLPs mlp (structure);
    the split (mamba_ssm Mamba2 kernels, MHA and GatedMLP as modules) reproduces the output in bf16."""
    from mamba_ssm.models.config_mamba import MambaConfig
    from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel

    from mambaprof.collectors.markers import Probe
    from mambaprof.model.counts import attention_dims

    torch.manual_seed(0)
    cfg = MambaConfig(d_model=256, n_layer=4, d_intermediate=512, vocab_size=256,
                      ssm_cfg={"layer": "Mamba2", "d_state": 64, "headdim": 32, "chunk_size": 64},
                      attn_layer_idx=[1, 3], attn_cfg={"num_heads": 4, "num_heads_kv": 2, "head_dim": 64,
                                                       "causal": True},
                      rms_norm=True, residual_in_fp32=True, fused_add_norm=True, pad_vocab_size_multiple=8)
    model = MambaLMHeadModel(cfg, device="cuda:0", dtype=torch.bfloat16).eval()
    st = discover(model)
    assert [ls.kind for ls in st.layers] == ["mamba2+mlp", "attention+mlp", "mamba2+mlp", "attention+mlp"]
    assert len(st.mixers) == 2 and not st.asis, st.warnings
    dims = attention_dims(st.layers[1].attention[0])
    assert (dims.n_heads, dims.n_kv_heads, dims.head_dim) == (4, 2, 64)

    ids = torch.randint(0, 256, (1, 1024), device="cuda:0")
    rec = WindowRecorder()
    with torch.inference_mode():
        ref = model(ids).logits
        with Instrumenter(st, split=True).installed(Probe([rec])):
            out = model(ids).logits
    check = compare_outputs(ref, out, torch.bfloat16)
    assert check.passed, (check.max_abs_err, check.rel_err)
    assert {(1, "attention"), (3, "attention"), (0, "mlp"), (1, "mlp"), (0, "ssm_scan"), (2, "in_proj")} <= rec.entered


@pytest.mark.parametrize("name", ["bamba-tiny", "nemotron-h-tiny", "falcon-h1-tiny"])
def test_pruned_hybrid_runs_the_kernels_and_matches_the_masked_model(name: str, tmp_path) -> None:
    """State pruning of a hybrid's Mamba-2 layers on the mamba_ssm/causal_conv1d kernels (N' a multiple the
    channels-last conv accepts): pruned == masked within bf16 tolerance, and the saved checkpoint reloads."""
    import copy

    from mambaprof.evaluation.lm import lm_logits
    from mambaprof.pruning.checkpoint import load_checkpoint, save_pruned, set_config_state_size
    from mambaprof.pruning.mixers import mixer_views
    from mambaprof.pruning.plan import apply_plan, kernel_multiples, make_plan, mask_plan
    from mambaprof.pruning.scores import random_score

    torch.manual_seed(0)
    model = build_hf(PRESETS[name], "cuda:0", torch.float32)
    views = mixer_views(discover(model))
    plan = make_plan([random_score(v, 2) for v in views], 0.5, "uniform", "random", 1, kernel_multiples(views))
    masked, pruned = copy.deepcopy(model), copy.deepcopy(model)
    mask_plan(mixer_views(discover(masked)), plan)
    apply_plan(mixer_views(discover(pruned)), plan)
    set_config_state_size(pruned, max(plan.state_sizes))
    ids = torch.randint(0, 256, (1, 256), device="cuda:0")
    with torch.inference_mode():
        want = lm_logits(masked.to(torch.bfloat16), ids)
        got = lm_logits(copy.deepcopy(pruned).to(torch.bfloat16), ids)
    check = compare_outputs(want, got, torch.bfloat16)
    assert check.passed, (check.max_abs_err, check.rel_err)
    save_pruned(pruned, tmp_path / "ck", plan)
    back = load_checkpoint(tmp_path / "ck", torch.device("cuda:0"), torch.bfloat16).model
    assert [v.d_state for v in mixer_views(discover(back))] == plan.state_sizes
    with torch.inference_mode():
        assert compare_outputs(got, lm_logits(back, ids), torch.bfloat16).passed
