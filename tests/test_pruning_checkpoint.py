"""Save/load round trip of pruned transformers models: stock from_pretrained loads them, outputs are kept."""

import json

import pytest
import torch
from support.cli import EXAMPLES
from support.models import tiny_mamba, tiny_mamba2
from transformers import AutoModelForCausalLM

from mambaprof.errors import BadArgumentError
from mambaprof.model.loading import load_model_file
from mambaprof.model.structure import discover
from mambaprof.pruning.checkpoint import SIDECAR, load_checkpoint, save_pruned, set_config_state_size
from mambaprof.pruning.mixers import mixer_views
from mambaprof.pruning.plan import apply_plan, make_plan

CPU = torch.device("cpu")


def _pruned(make, per_layer):
    model = make()
    views = mixer_views(discover(model))
    gen = torch.Generator().manual_seed(5)
    # layer 0's score mass is concentrated, layer 1's spread: adaptive gives them different N'
    scores = [torch.rand(v.groups, v.d_state, generator=gen, dtype=torch.float64) ** (6.0 if v.layer == 0 else 0.1)
              for v in views]
    plan = make_plan(scores, 0.5, per_layer, "delta")
    apply_plan(views, plan)
    set_config_state_size(model, max(plan.state_sizes))
    return model, plan


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits


@pytest.mark.parametrize("make", [tiny_mamba, tiny_mamba2], ids=["mamba1", "mamba2"])
@pytest.mark.parametrize("per_layer", ["uniform", "adaptive"])
def test_save_load_round_trip(tmp_path, make, per_layer):
    model, plan = _pruned(make, per_layer)
    sizes = plan.state_sizes
    assert (len(set(sizes)) > 1) == (per_layer == "adaptive")
    save_pruned(model, tmp_path, plan, {"recover_steps": 0})
    ids = torch.randint(0, 256, (2, 25), generator=torch.Generator().manual_seed(6))
    expected = _logits(model, ids)

    stock = AutoModelForCausalLM.from_pretrained(tmp_path).eval()  # plain transformers, no mambaprof
    assert stock.config.state_size == max(sizes)
    assert torch.allclose(_logits(stock, ids), expected, rtol=1e-5, atol=1e-6)

    loaded = load_checkpoint(tmp_path, CPU, torch.float32)
    assert [v.d_state for v in mixer_views(discover(loaded.model))] == sizes  # padding removed again
    assert torch.allclose(_logits(loaded.model, ids), expected, rtol=1e-6, atol=1e-7)
    info = json.loads((tmp_path / SIDECAR).read_text())
    assert info["layer_state_sizes"] == sizes and info["padded_to"] == max(sizes)
    assert info["original_state_sizes"] == plan.original and info["score"] == "delta"
    assert [len(k[0]) for k in info["kept_indices"]] == sizes
    assert loaded.config["mambaprof_pruning"]["ratio"] == 0.5


def test_saved_model_decodes_with_a_smaller_cache(tmp_path):
    model, plan = _pruned(tiny_mamba, "uniform")
    save_pruned(model, tmp_path, plan)
    stock = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        out = stock(input_ids=torch.randint(0, 256, (1, 12)), use_cache=True)
    from mambaprof.model.decode import linear_states

    cache = getattr(out, "cache", None) or out.cache_params  # transformers 5.18+ / before (the device has 5.17)
    assert linear_states(cache, 0)[1].shape[-1] == plan.state_sizes[0] == 4


def test_save_refuses_models_no_loader_can_rebuild(tmp_path):
    loaded = load_model_file(EXAMPLES / "hybrid.py", CPU, torch.float32)
    views = mixer_views(discover(loaded.model))
    plan = make_plan([torch.ones(v.groups, v.d_state, dtype=torch.float64) for v in views], 0.5, "uniform", "delta")
    apply_plan(views, plan)
    with pytest.raises(BadArgumentError, match="cannot save a Hybrid"):
        save_pruned(loaded.model, tmp_path / "out", plan)
