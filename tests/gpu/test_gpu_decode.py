"""GPU checks of the decode phase (run on the device; skipped on CPU).

For mamba_ssm MambaLMHeadModel (Mamba-1 and Mamba-2 mixers, bf16): the component-split step reproduces the
model's own `step` path from the same cache state, its whole-step CUDA graph gives the same greedy tokens as
the model's own step, every (layer, component) gets a graph time, and the model's own graph and
generate(cg=True) are timed. Timing ratios (parts vs whole graph, ours vs generate) are recorded and printed,
not asserted: benchmarks/device_decode.sh records them at the preset shapes.
"""

from __future__ import annotations

import pytest
import torch

from mambaprof.env import mamba_ssm_available
from mambaprof.model.loading import LoadedModel
from mambaprof.model.presets import Preset, build_mamba_ssm
from mambaprof.model.structure import discover
from mambaprof.run.decode import DecodeConfig, measure_decode_point
from mambaprof.run.tracing import ModelSource

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(not mamba_ssm_available(), reason="needs mamba_ssm and causal_conv1d"),
]

DEV = torch.device("cuda:0")


def _model(family: str) -> LoadedModel:
    torch.manual_seed(0)
    preset = Preset(f"test-{family}", family, d_model=768, n_layer=4, vocab=4096,
                    d_state=16 if family == "mamba1" else 128)
    return LoadedModel(build_mamba_ssm(preset, DEV, torch.bfloat16).eval(), "preset", preset.name)


def _config(graphs: bool) -> DecodeConfig:
    return DecodeConfig(seqlens=[64], batches=[8], device=DEV, dtype=torch.bfloat16, repeats=20, warmup=3,
                        profile_repeats=0, tensorboard=False, cuda_graphs=graphs, check_steps=4)


@pytest.mark.parametrize("family", ["mamba1", "mamba2"])
def test_decode_graph_point(family: str) -> None:
    loaded = _model(family)
    structure = discover(loaded.model)
    base = {"run_id": "t", "rank": 0, "world_size": 1, "point_id": 0, "device": "cuda:0", "batch": 8,
            "seqlen": 64, "dtype": "bfloat16"}
    row, comps = measure_decode_point(loaded, structure, _config(True), 8, 64, base)
    print(family, {k: row.get(k) for k in ("ms_per_token", "graph_replay_ms", "component_graph_sum_ms",
                                           "graph_sum_vs_whole_pct", "graph_event_ms", "isolated_graph_sum_ms",
                                           "own_graph_ms", "generate_ms_per_token",
                                           "step_vs_generate_pct", "launch_bound_pct", "split_eager_ms")})
    assert row["backend"] == "mamba_ssm" and row["cuda_graphs"] is True
    assert row["logits_max_abs_diff"] < 1e-2  # the same kernels on the same state: bitwise in practice
    assert row["tokens_match"] is True
    assert row["cache_bytes"] == row["cache_bytes_closed_form"]
    for key in ("graph_loop_ms", "graph_replay_ms", "component_graph_sum_ms", "isolated_graph_sum_ms",
                "graph_event_ms", "graph_events_vs_whole_pct", "own_graph_ms",
                "generate_ms_per_token", "launch_bound_pct"):
        assert row[key] is not None and row[key] == row[key], key
    assert row["graph_replay_ms"] > 0 and row["component_graph_sum_ms"] > 0 and row["graph_event_ms"] > 0
    # isolated graphs pay a launch per component that the whole step does not
    assert row["isolated_graph_sum_ms"] > row["graph_replay_ms"]
    graph = [c for c in comps if c["timing"] == "graph"]
    timed = {(c["layer"], c["component"]) for c in graph if c["time_ms"] is not None}
    expected = {"in_proj", "conv1d", "ssm_scan", "out_proj", "norm"}
    expected |= {"ssm_params"} if family == "mamba1" else {"gating"}
    assert {c for layer, c in timed if layer == 0} == expected
    assert {c for layer, c in timed if layer == -1} == {"embedding", "norm", "lm_head"}
    assert sum(c["time_ms"] for c in graph if c["time_ms"] is not None) == pytest.approx(
        row["component_graph_sum_ms"])
    if family == "mamba1":
        gating = [c for c in graph if c["component"] == "gating"]
        assert gating and all(c["time_ms"] is None and "fused" in c["fused_into"] for c in gating)


def test_decode_without_graphs() -> None:
    loaded = _model("mamba2")
    structure = discover(loaded.model)
    base = {"run_id": "t", "rank": 0, "world_size": 1, "point_id": 0, "device": "cuda:0", "batch": 8,
            "seqlen": 64, "dtype": "bfloat16"}
    row, comps = measure_decode_point(loaded, structure, _config(False), 8, 64, base)
    assert row["cuda_graphs"] is False and row.get("graph_replay_ms") is None
    assert row["ms_per_token"] == row["own_eager_ms"] and row["tokens_match"] is True
    assert {c["timing"] for c in comps} == {"eager"}


def test_pruning_graph_decode_times_each_model_at_each_batch() -> None:
    from mambaprof.pruning.timing import interleaved_graph_decode

    torch.manual_seed(0)
    models = [build_mamba_ssm(Preset(f"t{n}", "mamba1", d_model=768, n_layer=4, vocab=4096, d_state=n), DEV,
                              torch.bfloat16).eval() for n in (16, 4)]
    result = interleaved_graph_decode(models, 32, [8, 64], steps=10, repeats=2, warmup=1, device=DEV, vocab=4096)
    assert result.batches == [8, 64]
    for batch in result.batches:
        assert [len(t) for t in result.ms_per_token[batch]] == [2, 2]
        assert all(ms > 0 for t in result.ms_per_token[batch] for ms in t)
    print({b: [sorted(t) for t in result.ms_per_token[b]] for b in result.batches})


_BASE = {"run_id": "t", "rank": 0, "world_size": 1, "point_id": 0, "device": "cuda:0", "dtype": "bfloat16"}


def _ssm_hybrid() -> LoadedModel:
    """mamba_ssm MambaLMHeadModel with MHA at layer 1 of 3 (no rotary: that needs flash_attn) and GatedMLPs."""
    from mamba_ssm.models.config_mamba import MambaConfig
    from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel

    torch.manual_seed(0)
    cfg = MambaConfig(d_model=512, n_layer=3, d_intermediate=1024, vocab_size=4096,
                      ssm_cfg={"layer": "Mamba2", "d_state": 64, "headdim": 64}, attn_layer_idx=[1],
                      attn_cfg={"num_heads": 8, "num_heads_kv": 2, "causal": True}, rms_norm=True,
                      residual_in_fp32=True, fused_add_norm=True, pad_vocab_size_multiple=8)
    return LoadedModel(MambaLMHeadModel(cfg, device=DEV, dtype=torch.bfloat16).eval(), "model", "ssm-hybrid")


@pytest.mark.parametrize("prompt", [64, 256])
def test_decode_mamba_ssm_hybrid_attention(prompt: int) -> None:
    """The SSM path's attention segment (MHA with the model's own InferenceParams KV cache): the split step
    reproduces the model's own step, the KV cache matches its closed form and grows with the prompt; graphs are not
    captured (the MHA write position is a Python int) and the point says why."""
    loaded = _ssm_hybrid()
    structure = discover(loaded.model)
    assert [ls.kind for ls in structure.layers] == ["mamba2+mlp", "attention+mlp", "mamba2+mlp"]
    row, comps = measure_decode_point(loaded, structure, _config(True), 4, prompt, {**_BASE, "batch": 4,
                                                                                    "seqlen": prompt})
    print(prompt, {k: row.get(k) for k in ("split_eager_ms", "own_eager_ms", "kv_cache_bytes", "notes")})
    assert row["backend"] == "mamba_ssm" and row["cuda_graphs"] is False and "no CUDA graphs" in row["notes"]
    assert row["tokens_match"] is True and row["logits_max_abs_diff"] < 1e-2
    assert row["cache_bytes"] == row["cache_bytes_closed_form"]
    assert row["kv_cache_bytes"] == 2 * 4 * 2 * 64 * prompt * 2  # K and V, batch 4, 2 kv heads x 64, bf16
    attention = [c for c in comps if c["component"] == "attention"]
    assert [c["layer"] for c in attention] == [1] and attention[0]["time_ms"] > 0
    assert {c["component"] for c in comps if c["layer"] == 1} >= {"attention", "mlp", "norm"}


def test_decode_transformers_hybrid_on_gpu() -> None:
    """transformers Bamba on the GPU (the device's transformers version; mamba_ssm kernels where installed):
    split step == own step, KV cache == closed form; eager only, with the reason recorded."""
    loaded = ModelSource(preset="bamba-tiny").load(DEV, torch.bfloat16)
    structure = discover(loaded.model)
    row, comps = measure_decode_point(loaded, structure, _config(True), 8, 128, {**_BASE, "batch": 8, "seqlen": 128})
    print({k: row.get(k) for k in ("split_eager_ms", "own_eager_ms", "logits_max_abs_diff", "notes")})
    assert row["backend"] == "transformers" and row["cuda_graphs"] is False and "DynamicCache" in row["notes"]
    assert row["tokens_match"] is True and row["tokens_match_generate"] is True
    assert row["cache_bytes"] == row["cache_bytes_closed_form"] and row["kv_cache_bytes"] > 0
    assert any(c["component"] == "attention" and c["time_ms"] for c in comps)
