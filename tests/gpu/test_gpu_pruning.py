"""GPU checks of state pruning on mamba_ssm `Mamba` and `Mamba2` (run on the device; skipped on CPU).

fp32 throughout. Pruned vs masked must agree on every kernel path (fused `mamba_inner_fn`, the
unfused selective scan, the memory-efficient and plain Triton SSD paths, decode steps with the
recurrent cache), for state sizes the kernels pad (Mamba-1 N' = 12, 6; Mamba-2 N' = 48). Tolerance:
max |pruned - masked| / max |masked| <= 1e-4 (the project's fp32 tolerance): the masked states add
exact zeros, so only the summation order inside the kernels may differ (Triton's tf32 dot products
round identical inputs identically).
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

from mambaprof.collectors.context import PointSpec
from mambaprof.env import mamba_ssm_available
from mambaprof.model.inputs import make_call
from mambaprof.model.structure import discover
from mambaprof.pruning.checkpoint import load_checkpoint, save_pruned, set_config_state_size
from mambaprof.pruning.mixers import MixerView, mixer_output_from_scan, mixer_views, ssm_inputs
from mambaprof.pruning.physical import complement, mask_states, select_states
from mambaprof.pruning.plan import apply_plan, kernel_multiples, make_plan, mask_plan, top_states
from mambaprof.pruning.scores import exact_scan
from mambaprof.pruning.timing import Decoder
from mambaprof.run.measure import measure_point

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(not mamba_ssm_available(), reason="needs mamba_ssm and causal_conv1d"),
]

DEV = torch.device("cuda:0")
TOL = 1e-4


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


def _mixer(family: str, path: str, d_state: int) -> torch.nn.Module:
    torch.manual_seed(0)
    if family == "mamba1":
        from mamba_ssm.modules.mamba_simple import Mamba

        return Mamba(256, d_state=d_state, layer_idx=0, use_fast_path=path == "fast", device=DEV,
                     dtype=torch.float32).eval()
    from mamba_ssm.modules.mamba2 import Mamba2

    return Mamba2(256, d_state=d_state, headdim=32, ngroups=2, chunk_size=64, layer_idx=0,
                  use_mem_eff_path=path == "fast", device=DEV, dtype=torch.float32).eval()


def _view(module: torch.nn.Module) -> MixerView:
    from mambaprof.model.adapters import adapter_for

    return MixerView(0, module, adapter_for(module))


def _lm(family: str, d_state: int, layers: int = 2) -> torch.nn.Module:
    from mamba_ssm.models.config_mamba import MambaConfig
    from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel

    torch.manual_seed(0)
    ssm = {"layer": "Mamba1", "d_state": d_state} if family == "mamba1" else \
        {"layer": "Mamba2", "d_state": d_state, "headdim": 32, "ngroups": 1, "chunk_size": 64}
    cfg = MambaConfig(d_model=256, n_layer=layers, vocab_size=256, ssm_cfg=ssm, rms_norm=True,
                      residual_in_fp32=True, fused_add_norm=True, pad_vocab_size_multiple=8)
    return MambaLMHeadModel(cfg, device=DEV, dtype=torch.float32).eval()


@pytest.mark.parametrize("family,d_state,kept", [("mamba1", 16, 12), ("mamba1", 16, 6), ("mamba2", 64, 48),
                                                 ("mamba2", 64, 32)])
@pytest.mark.parametrize("path", ["fast", "plain"])
def test_pruned_equals_masked_on_kernels(family, d_state, kept, path):
    base = _mixer(family, path, d_state)
    view = _view(base)
    gen = torch.Generator().manual_seed(kept)
    keep = top_states(torch.rand(view.groups, d_state, generator=gen, dtype=torch.float64), kept)
    pruned, masked = copy.deepcopy(base), copy.deepcopy(base)
    select_states(_view(pruned), keep)
    mask_states(_view(masked), complement(keep, d_state))
    assert _view(pruned).d_state == kept
    x = torch.randn(2, 700, 256, device=DEV, generator=torch.Generator(DEV).manual_seed(1))
    with torch.inference_mode():
        yp, ym, y0 = pruned(x), masked(x), base(x)
    assert torch.isfinite(yp).all()
    assert _rel(yp, ym) <= TOL, _rel(yp, ym)
    assert _rel(yp, y0) > 1e-3  # the pruned states did matter


@pytest.mark.parametrize("family,d_state", [("mamba1", 16), ("mamba2", 64)])
def test_decode_steps_pruned_equal_masked_and_cache_shrinks(family, d_state):
    base = _lm(family, d_state)
    views = mixer_views(discover(base))
    gen = torch.Generator().manual_seed(3)
    plan = make_plan([torch.rand(v.groups, v.d_state, generator=gen, dtype=torch.float64) for v in views], 0.5,
                     "uniform", "random")
    pruned, masked = copy.deepcopy(base), copy.deepcopy(base)
    apply_plan(mixer_views(discover(pruned)), plan)
    mask_plan(mixer_views(discover(masked)), plan)
    prompt = torch.randint(0, 256, (2, 40), device=DEV, generator=torch.Generator(DEV).manual_seed(2))
    steps = torch.randint(0, 256, (2, 8), device=DEV, generator=torch.Generator(DEV).manual_seed(3))
    outs, sizes = [], []
    with torch.inference_mode():
        for model in (pruned, masked):
            dec = Decoder(model)
            dec.prefill(prompt, steps.shape[1])
            logits = [dec.logits]
            for t in range(steps.shape[1]):  # teacher-forced: both models see the same tokens
                dec.step(steps[:, t:t + 1])
                logits.append(dec.logits)
            outs.append(torch.stack(logits, 1))
            sizes.append(sum(t.numel() * t.element_size() for t in dec.cache_tensors()))
    assert _rel(outs[0], outs[1]) <= TOL, _rel(outs[0], outs[1])
    assert sizes[0] < sizes[1]


@pytest.mark.parametrize("family", ["mamba1", "mamba2"])
def test_calibration_inputs_reproduce_mamba_ssm_mixers(family):
    module = _mixer(family, "fast", 16 if family == "mamba1" else 64)
    view = _view(module)
    hidden = torch.randn(2, 300, 256, device=DEV, generator=torch.Generator(DEV).manual_seed(5))
    inp = ssm_inputs(view, hidden)
    _, _, y = exact_scan(inp, want_output=True)
    with torch.inference_mode():
        expected = module(hidden)
        rebuilt = mixer_output_from_scan(view, inp, y)
    # Mamba-2's Triton SSD uses tf32 dot products: looser than Mamba-1's fp32 CUDA scan, far below a layout error
    assert _rel(rebuilt, expected) <= (1e-3 if family == "mamba1" else 1e-2), _rel(rebuilt, expected)


@pytest.mark.parametrize("family", ["mamba1", "mamba2"])
def test_checkpoint_round_trip_and_split_forward(family, tmp_path):
    from mamba_ssm.models.config_mamba import MambaConfig
    from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel

    model = _lm(family, 16 if family == "mamba1" else 64)
    views = mixer_views(discover(model))
    gen = torch.Generator().manual_seed(4)
    scores = [torch.rand(v.groups, v.d_state, generator=gen, dtype=torch.float64) ** (8.0 if v.layer == 0 else 0.1)
              for v in views]
    plan = make_plan(scores, 0.5, "adaptive", "delta", layer_multiples=kernel_multiples(views))
    assert len(set(plan.state_sizes)) > 1
    # Mamba-2's fused conv needs d_inner + 2 * ngroups * N' channels in multiples of 8 (caught on an H200)
    assert all(n % v.kernel_state_multiple == 0 for n, v in zip(plan.state_sizes, views, strict=True))
    apply_plan(views, plan)
    set_config_state_size(model, max(plan.state_sizes))
    save_pruned(model, tmp_path, plan)
    ids = torch.randint(0, 256, (2, 128), device=DEV, generator=torch.Generator(DEV).manual_seed(6))
    loaded = load_checkpoint(tmp_path, DEV, torch.float32)
    stock = MambaLMHeadModel(MambaConfig(**json.loads((tmp_path / "config.json").read_text())), device=DEV,
                             dtype=torch.float32).eval()  # mamba_ssm alone, no mambaprof: the padded model
    stock.load_state_dict(torch.load(tmp_path / "pytorch_model.bin", map_location=DEV, weights_only=True))
    with torch.inference_mode():
        expected = model(ids).logits
        got = loaded.model(ids).logits
        padded = stock(ids).logits
    assert [v.d_state for v in mixer_views(discover(loaded.model))] == plan.state_sizes
    assert _rel(got, expected) <= TOL and _rel(padded, expected) <= TOL
    bf16 = loaded.model.to(torch.bfloat16)
    st = discover(bf16)
    spec = PointSpec(0, 2, 512, DEV, torch.bfloat16, repeats=3, warmup=1, profile_repeats=1, mode="split")
    call = make_call(bf16, st, 2, 512, DEV, torch.bfloat16, None)
    measured = measure_point(spec, st, call, {"run_id": "t", "rank": 0, "world_size": 1, "point_id": 0})
    assert measured.point["output_check"] == "pass", measured.point  # the split forward runs on N' too
    scan = [r for r in measured.components if r["component"] == "ssm_scan" and r["layer"] == 0][0]
    assert scan["kernel_ms_median"] > 0
