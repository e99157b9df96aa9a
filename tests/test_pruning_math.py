"""The math check: a physically pruned mixer computes exactly what the unpruned mixer computes with the
same states masked (fp32, transformers MambaMixer and Mamba2Mixer), prefill and decode."""

import copy

import pytest
import torch
from support.models import tiny_mamba, tiny_mamba2

from mambaprof.model.decode import cache_kwarg, linear_states, returned_cache
from mambaprof.model.structure import discover
from mambaprof.pruning.mixers import mixer_output_from_scan, mixer_views, ssm_inputs
from mambaprof.pruning.physical import complement, mask_states, select_states
from mambaprof.pruning.plan import apply_plan, make_plan, mask_plan
from mambaprof.pruning.scores import exact_scan

TIGHT = {"rtol": 1e-5, "atol": 1e-6}


def grouped_mamba2(groups: int = 2) -> torch.nn.Module:
    from transformers import Mamba2Config, Mamba2ForCausalLM

    torch.manual_seed(3)
    cfg = Mamba2Config(vocab_size=256, hidden_size=64, state_size=12, num_hidden_layers=2, expand=2, head_dim=16,
                       num_heads=8, n_groups=groups, chunk_size=16, use_cache=False)
    return Mamba2ForCausalLM(cfg).eval()


MODELS = {"mamba1": tiny_mamba, "mamba2": tiny_mamba2, "mamba2-groups": grouped_mamba2}


def _views(model):
    return mixer_views(discover(model))


def _random_scores(model, seed):
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(v.groups, v.d_state, generator=gen, dtype=torch.float64) for v in _views(model)]


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits


@pytest.mark.parametrize("family", list(MODELS))
@pytest.mark.parametrize("ratio,per_layer", [(0.25, "uniform"), (0.5, "uniform"), (0.5, "adaptive")])
def test_pruned_equals_masked(family, ratio, per_layer):
    model = MODELS[family]()
    plan = make_plan(_random_scores(model, seed=7), ratio, per_layer, "random")
    pruned, masked = copy.deepcopy(model), copy.deepcopy(model)
    apply_plan(_views(pruned), plan)
    mask_plan(_views(masked), plan)
    for view, size in zip(_views(pruned), plan.state_sizes, strict=True):
        assert view.d_state == size < plan.original[view.layer]
        proj_rows = view.proj.out_features
        if view.family == "mamba1":
            assert proj_rows == view.dims.dt_rank + 2 * size
            assert tuple(view.module.A_log.shape) == (view.dims.d_inner, size)
        else:
            d = view.dims
            assert proj_rows == 2 * d.d_inner + 2 * d.ngroups * size + d.nheads
            assert view.module.conv1d.weight.shape[0] == d.d_inner + 2 * d.ngroups * size
    ids = torch.randint(0, 256, (2, 37), generator=torch.Generator().manual_seed(1))
    out_p, out_m, out_0 = _logits(pruned, ids), _logits(masked, ids), _logits(model, ids)
    assert torch.allclose(out_p, out_m, **TIGHT), (out_p - out_m).abs().max()
    assert (out_p - out_0).abs().max() > 1e-3  # pruning did change the model
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("family", ["mamba1", "mamba2"])
def test_decode_with_cache_matches_masked_and_cache_shrinks(family):
    model = MODELS[family]()
    plan = make_plan(_random_scores(model, seed=2), 0.5, "uniform", "random")
    pruned, masked = copy.deepcopy(model), copy.deepcopy(model)
    apply_plan(_views(pruned), plan)
    mask_plan(_views(masked), plan)
    prompt = torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(4))
    steps = torch.randint(0, 256, (2, 4), generator=torch.Generator().manual_seed(5))

    def decode(m):
        name = cache_kwarg(m.forward)  # `cache` in transformers 5.18+, `cache_params` before (the device's 5.17)
        with torch.no_grad():
            out = m(input_ids=prompt, use_cache=True)
            cache, logits = returned_cache(out), [out.logits[:, -1]]
            for t in range(steps.shape[1]):
                out = m(input_ids=steps[:, t:t + 1], use_cache=True, **{name: cache})
                cache = returned_cache(out)
                logits.append(out.logits[:, -1])
        return torch.stack(logits, 1), cache

    lp, cache_p = decode(pruned)
    lm, cache_m = decode(masked)
    assert torch.allclose(lp, lm, **TIGHT), (lp - lm).abs().max()
    conv_p, ssm_p = linear_states(cache_p, 0)
    conv_m, ssm_m = linear_states(cache_m, 0)
    assert ssm_p.shape[-1] == plan.state_sizes[0] and ssm_m.shape[-1] == plan.original[0]
    if family == "mamba2":  # the conv state also carries B and C channels
        assert conv_p.shape[1] < conv_m.shape[1]


@pytest.mark.parametrize("family", list(MODELS))
def test_ratio_zero_is_a_noop(family):
    model = MODELS[family]()
    plan = make_plan(_random_scores(model, seed=1), 0.0, "uniform", "random")
    assert plan.is_noop and plan.removed_pct == 0.0
    pruned = copy.deepcopy(model)
    apply_plan(_views(pruned), plan)
    before, after = model.state_dict(), pruned.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    ids = torch.randint(0, 256, (1, 20))
    assert torch.equal(_logits(model, ids), _logits(pruned, ids))


@pytest.mark.parametrize("family", list(MODELS))
def test_inert_padding_is_exact(family):
    """Index -1 adds states with zero B and C: the output must not change (how checkpoints are padded)."""
    model = MODELS[family]()
    padded = copy.deepcopy(model)
    for view in _views(padded):
        n = view.d_state
        index = torch.cat([torch.arange(n), torch.full((3,), -1)]).unsqueeze(0).repeat(view.groups, 1)
        select_states(view, index)
        assert view.d_state == n + 3
    ids = torch.randint(0, 256, (2, 21))
    assert torch.allclose(_logits(model, ids), _logits(padded, ids), **TIGHT)


def test_mask_then_prune_keeps_kept_weights_bitwise():
    model = tiny_mamba()
    view = _views(model)[0]
    keep = torch.tensor([[1, 4, 6]])
    b0, c0 = view.bc_offsets()
    w = view.proj.weight.detach().clone()
    a_log = view.module.A_log.detach().clone()
    select_states(view, keep)
    r = view.dims.dt_rank
    assert torch.equal(view.proj.weight[:r], w[:r])
    assert torch.equal(view.proj.weight[r:r + 3], w[b0 + keep[0]])
    assert torch.equal(view.proj.weight[r + 3:], w[c0 + keep[0]])
    assert torch.equal(view.module.A_log, a_log[:, keep[0]])
    assert complement(keep, 8).tolist() == [[0, 2, 3, 5, 7]]


@pytest.mark.parametrize("family", list(MODELS))
def test_calibration_inputs_reproduce_the_mixer(family):
    """Δ, B, C, x recomputed by calibration + an exact scan give back the mixer's own output: the scores
    read the quantities the model really uses."""
    model = MODELS[family]()
    view = _views(model)[1]
    hidden = torch.randn(2, 30, 64, generator=torch.Generator().manual_seed(9))
    inp = ssm_inputs(view, hidden)
    assert (inp.delta > 0).all() and (inp.A < 0).all()
    _, count, y = exact_scan(inp, want_output=True)
    with torch.no_grad():
        expected = view.module(hidden)
        rebuilt = mixer_output_from_scan(view, inp, y)
    assert torch.allclose(rebuilt, expected, rtol=1e-4, atol=1e-5), (rebuilt - expected).abs().max()
    assert count > 0


def test_select_rejects_bad_index():
    view = _views(tiny_mamba())[0]
    with pytest.raises(ValueError, match="d_state"):
        select_states(view, torch.tensor([[0, 8]]))
    with pytest.raises(ValueError, match="groups"):
        select_states(view, torch.tensor([[0, 1], [2, 3]]))
    mask_states(view, torch.empty(1, 0, dtype=torch.long))  # masking nothing is allowed
