"""State pruning on the Mamba layers of hybrids: every Mamba-2-style family's tiny preset (CPU, seconds)."""

from __future__ import annotations

import copy

import pytest
import torch

from mambaprof.errors import UnsupportedModelError
from mambaprof.evaluation.lm import lm_logits
from mambaprof.model.presets import PRESETS, build_hf
from mambaprof.model.structure import discover
from mambaprof.pruning.checkpoint import load_checkpoint, save_pruned, set_config_state_size, state_key
from mambaprof.pruning.mixers import mixer_output_from_scan, mixer_views, ssm_inputs
from mambaprof.pruning.physical import complement, mask_states, select_states
from mambaprof.pruning.plan import apply_plan, kernel_multiples, make_plan
from mambaprof.pruning.scores import exact_scan, random_score
from mambaprof.storage.rundir import read_table

MAMBA2_HYBRIDS = ("bamba-tiny", "nemotron-h-tiny", "zamba2-tiny", "falcon-h1-tiny", "granite-4.0-h-tiny-cpu")
ENV = {"OMP_NUM_THREADS": "1"}


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_hf(PRESETS[name]).eval()
    # random init writes tiny B/C rows; larger ones make every state matter, so a wrong pruning shows
    for view in mixer_views(discover(model)):
        with torch.no_grad():
            view.module.in_proj.weight.mul_(20.0)
    return model


def _out(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = module(x)
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("name", MAMBA2_HYBRIDS)
def test_pruned_mixer_equals_the_unpruned_one_with_the_states_masked(name: str) -> None:
    model = _model(name)
    view = mixer_views(discover(model))[0]
    assert view.family == "mamba2" and view.kind == "hf"
    n, groups = view.d_state, view.groups
    keep = torch.stack([torch.randperm(n, generator=torch.Generator().manual_seed(g))[: n // 2].sort().values
                        for g in range(groups)])
    x = torch.randn(2, 24, view.dims.d_model, generator=torch.Generator().manual_seed(7))
    unpruned = _out(view.module, x)

    masked_view = copy.deepcopy(view)
    masked_view.module = copy.deepcopy(view.module)
    mask_states(masked_view, complement(keep, n))
    pruned_view = copy.deepcopy(view)
    pruned_view.module = copy.deepcopy(view.module)
    select_states(pruned_view, keep)

    assert pruned_view.d_state == n // 2 and pruned_view.module.conv1d.weight.shape[0] == pruned_view.module.conv_dim
    assert pruned_view.module.in_proj.out_features == view.module.in_proj.out_features - groups * n
    masked, pruned = _out(masked_view.module, x), _out(pruned_view.module, x)
    scale = float(unpruned.abs().max())
    assert float((pruned - masked).abs().max()) <= 1e-5 * scale
    assert float((pruned - unpruned).abs().max()) > 1e-3 * scale  # the removed states did contribute
    # the what-if's recomputed SSM inputs + an exact scan reproduce the pruned mixer (multipliers included)
    with torch.no_grad():
        inp = ssm_inputs(pruned_view, x)
        _, _, y = exact_scan(inp, want_output=True)
        rebuilt = mixer_output_from_scan(pruned_view, inp, y)
    assert float((rebuilt - pruned).abs().max()) <= 1e-4 * scale


def test_falcon_h1_mup_vector_loses_the_pruned_rows() -> None:
    model = _model("falcon-h1-tiny")
    view = mixer_views(discover(model))[0]
    before = view.module.mup_vector.clone()
    b0, c0 = view.bc_offsets()
    n = view.d_state
    keep = torch.tensor([[1, 4, 5, 9]])
    select_states(view, keep)
    after = view.module.mup_vector
    assert after.shape[-1] == view.module.in_proj.out_features == before.shape[-1] - 2 * (n - 4)
    assert torch.equal(after[..., b0:b0 + 4], before[..., b0 + keep[0]])
    assert torch.equal(after[..., b0 + 4:b0 + 8], before[..., c0 + keep[0]])
    assert torch.equal(after[..., :b0], before[..., :b0])


@pytest.mark.parametrize("name", ("bamba-tiny", "falcon-h1-tiny", "nemotron-h-tiny"))
def test_pruned_hybrid_saves_and_reloads_with_identical_outputs(name: str, tmp_path) -> None:
    model = _model(name)
    views = mixer_views(discover(model))
    plan = make_plan([random_score(v, 3) for v in views], 0.5, "uniform", "random", 1, kernel_multiples(views))
    apply_plan(views, plan)
    set_config_state_size(model, max(plan.state_sizes))
    key = state_key(model.config)
    assert getattr(model.config, key) == plan.state_sizes[0] == PRESETS[name].hf[key] // 2
    ids = torch.randint(0, 256, (2, 20), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want = lm_logits(model, ids)
    save_pruned(model, tmp_path / "ck", plan)
    back = load_checkpoint(tmp_path / "ck", torch.device("cpu"), torch.float32).model
    assert [v.d_state for v in mixer_views(discover(back))] == plan.state_sizes
    with torch.no_grad():
        got = lm_logits(back, ids)
    assert torch.equal(got, want)


def test_uneven_layers_pad_and_unpad_through_the_sidecar(tmp_path) -> None:
    model = _model("zamba2-tiny")
    views = mixer_views(discover(model))
    for view, n in zip(views, (16, 8, 12, 4), strict=True):
        if n < view.d_state:
            select_states(view, torch.arange(n).unsqueeze(0))
    plan = make_plan([torch.zeros(1, v.d_state, dtype=torch.float64) for v in views], 0.0, "uniform", "manual")
    ids = torch.randint(0, 256, (1, 20), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        want = lm_logits(model, ids)
    save_pruned(model, tmp_path / "ck", plan)
    back = load_checkpoint(tmp_path / "ck", torch.device("cpu"), torch.float32).model
    assert [v.d_state for v in mixer_views(discover(back))] == [16, 8, 12, 4]
    with torch.no_grad():
        assert float((lm_logits(back, ids) - want).abs().max()) <= 1e-5 * float(want.abs().max())


@pytest.mark.parametrize("name", ("falcon-mamba-tiny", "jamba-tiny"))
def test_state_norm_families_are_refused_in_one_line(name: str) -> None:
    model = build_hf(PRESETS[name]).eval()
    with pytest.raises(UnsupportedModelError, match="normalises B and C over the state axis"):
        mixer_views(discover(model))


def test_prune_cli_on_a_hybrid_preset_end_to_end(tmp_path, cli) -> None:
    out, saved = tmp_path / "run", tmp_path / "pruned"
    res = cli("prune", "--preset", "bamba-tiny", "--ratios", "0,0.5", "--score", "delta", "--seqlens", "32",
                  "--repeats", "1", "--warmup", "0", "--decode-steps", "2", "--calib-tokens", "512",
                  "--eval-tokens", "512", "--calib-seqlen", "32", "--task-episodes", "8", "--out", str(out),
                  "--save", str(saved), "--quiet", env=ENV)
    assert res.returncode == 0, res.stderr[-2000:]
    df = read_table(out, "pruning").to_pandas()
    assert sorted(map(list, df.d_state_kept)) == [[8, 8], [16, 16]]
    pruned = df[df.ratio == 0.5].iloc[0]
    assert pruned.ssm_state_bytes * 2 == df[df.ratio == 0].iloc[0].ssm_state_bytes
    back = load_checkpoint(saved, torch.device("cpu"), torch.float32)
    assert [v.d_state for v in mixer_views(discover(back.model))] == [8, 8]
    assert back.config["mambaprof_pruning"]["state_sizes"] == [8, 8]

    refused = cli("prune", "--preset", "jamba-tiny", "--ratios", "0,0.5", "--out", str(tmp_path / "j"),
                      "--quiet", env=ENV)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "normalises B and C over the state axis" in refused.stderr + refused.stdout


def test_decode_cache_api_found_when_use_cache_goes_through_kwargs() -> None:
    from mambaprof.pruning.timing import Decoder

    model = build_hf(PRESETS["granite-4.0-h-tiny-cpu"]).eval()  # forward(..., cache, ..., **kwargs): no use_cache
    dec = Decoder(model)
    from mambaprof.model.decode import cache_kwarg

    # `cache` in transformers 5.18+, `past_key_values` before (the device's 5.17)
    assert dec.api == "transformers" and dec.cache_kwarg == cache_kwarg(model.forward) != "cache_params"
    with torch.no_grad():
        dec.prefill(torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(2)), 2)
    held = sum(t.numel() for t in dec.cache_tensors())
    # 2 Mamba-2 layers: SSM state 8 heads x 16 x 16 and conv state (128 + 2 x 16) x 4; 1 attention layer: 2 kv heads
    # x 16 x (k, v) x 12 prompt tokens
    assert held == 2 * (8 * 16 * 16 + (128 + 2 * 16) * 4) + 2 * 16 * 2 * 12
