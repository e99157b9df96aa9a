"""Hybrids and Mamba variants: every transformers family's mixer is recognised by structure, its split forward
reproduces the model's output bit for bit on the CPU reference path, layers get their kinds, and a mixer no
recipe fits is profiled as-is with one warning while the rest of the model is still split."""

from __future__ import annotations

import warnings

import pytest
import torch
from support.cli import EXAMPLES
from support.windows import WindowRecorder

from mambaprof.collectors.markers import Probe
from mambaprof.model.adapters import MixerRecipe, register_mixer, unregister_mixer
from mambaprof.model.counts import attention_count, attention_dims
from mambaprof.model.loading import import_model_file
from mambaprof.model.presets import PRESETS, SOURCES, build_hf
from mambaprof.model.structure import discover, expected_components, layer_rows
from mambaprof.run.instrument import Instrumenter

TINY = {
    "falcon-mamba-tiny": (["mamba1", "mamba1"], "falcon_mamba"),
    "jamba-tiny": (["mamba1+mlp", "mamba1+moe", "attention+mlp", "mamba1+moe"], "jamba"),
    "bamba-tiny": (["mamba2+mlp", "attention+mlp", "mamba2+mlp"], "bamba"),
    "nemotron-h-tiny": (["mamba2", "attention", "mlp", "mamba2", "moe"], "nemotron_h"),
    "zamba2-tiny": (["mamba2", "mamba2+attention+mlp", "mamba2", "mamba2+attention+mlp"], "zamba2"),
    "falcon-h1-tiny": (["mamba2+attention+mlp"] * 2, "falcon_h1"),
    "granite-4.0-h-tiny-cpu": (["mamba2+mlp+moe", "attention+mlp+moe", "mamba2+mlp+moe"], "granitemoehybrid"),
    "llama-tiny": (["attention+mlp"] * 2, None),
}


def _build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_hf(PRESETS[name])


def _ids(batch: int = 2, seqlen: int = 40) -> torch.Tensor:
    return torch.randint(0, 256, (batch, seqlen), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", list(TINY))
def test_family_split_reproduces_output_and_marks_components(name: str) -> None:
    kinds, recipe = TINY[name]
    model = _build(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a recognised family must not warn
        st = discover(model)
    assert [ls.kind for ls in st.layers] == kinds
    assert not st.asis
    n_mamba = sum(k.startswith("mamba") for k in kinds)
    assert len(st.mixers) == n_mamba
    for site in st.mixers:
        assert site.adapter.recipe.name == recipe
    ids = _ids()
    with torch.inference_mode():
        ref = model(input_ids=ids).logits
        rec = WindowRecorder()
        with Instrumenter(st, split=True).installed(Probe([rec])):
            out = model(input_ids=ids).logits
        again = model(input_ids=ids).logits
    assert torch.equal(out, ref), float((out - ref).abs().max())
    assert torch.equal(again, ref)
    rec.assert_properly_nested()
    entered = rec.entered
    for layer, comp in expected_components(st):
        if comp != "residual" and not (layer == -1 and comp == "other"):
            assert (layer, comp) in entered, (layer, comp)
    for ls in st.layers:
        if "attention" in ls.kind:
            assert (ls.layer, "attention") in entered


def test_falcon_h1_recipe_is_what_makes_the_split_right() -> None:
    """Without its muP multipliers (the plain Mamba-2 recipe) the Falcon-H1 split does not reproduce the
    mixer: the probe catches it and the layers are profiled as-is, with one warning line per layer."""
    model = _build("falcon-h1-tiny")
    mixer_cls = type(model.model.layers[0].mamba)
    register_mixer(mixer_cls, recipe=MixerRecipe("no_mup", "mamba2", (mixer_cls.__name__,),
                                                 gated_norm_flag="mamba_rms_norm"))
    try:
        with pytest.warns(UserWarning, match="profiled as-is"):
            st = discover(model)
    finally:
        unregister_mixer(mixer_cls)
    assert len(st.asis) == 2 and not st.mixers
    assert "does not reproduce its output" in st.asis[0].reason
    assert len(st.warnings) == 2 and st.warnings[0].startswith("layer 0 model.layers.0.mamba (")
    rows = layer_rows(st)
    assert [r["profiled"] for r in rows] == ["as-is", "as-is"]
    # the rest of the layer is still marked; the as-is mixer runs its own forward inside a mixer window
    ids = _ids(1, 24)
    with torch.inference_mode():
        ref = model(input_ids=ids).logits
        rec = WindowRecorder()
        with Instrumenter(st).installed(Probe([rec])):
            out = model(input_ids=ids).logits
    assert torch.equal(out, ref)
    entered = rec.entered
    assert (0, "mixer") in entered and (0, "attention") in entered and (0, "mlp") in entered
    assert (0, "in_proj") not in entered


def test_registered_user_adapter_splits_a_custom_mixer() -> None:
    module = import_model_file(EXAMPLES / "custom_mixer.py")
    model = module.build_model().eval()
    cls = module.ScaledMamba2Mixer
    try:
        st = discover(model)
        assert len(st.mixers) == 3 and not st.asis
        assert st.mixers[0].adapter.recipe.name == "scaled_mamba2"
        ids = torch.randint(0, 1024, (2, 40), generator=torch.Generator().manual_seed(3))
        with torch.inference_mode():
            ref = model(input_ids=ids, use_cache=False).logits
            with Instrumenter(st).installed(Probe([])):
                out = model(input_ids=ids, use_cache=False).logits
        assert torch.equal(out, ref)
    finally:
        unregister_mixer(cls)
    # without the registration: recognised as Mamba-2 by structure, the probe fails (the scale), as-is
    with pytest.warns(UserWarning, match="does not reproduce"):
        st = discover(model)
    assert len(st.asis) == 3 and not st.mixers


def test_unmatchable_mamba_like_layer_is_traced_as_is_not_refused() -> None:
    """A Mamba-like module with an A_log and a conv1d but no in_proj: one warning naming what is missing."""

    class OddMixer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1d = torch.nn.Conv1d(8, 8, 4, groups=8, padding=3)
            self.A_log = torch.nn.Parameter(torch.zeros(8))
            self.proj = torch.nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.proj(x)

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm = torch.nn.LayerNorm(8)
            self.mixer = OddMixer()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.mixer(self.norm(x))

    model = torch.nn.Sequential()
    model.layers = torch.nn.ModuleList([Block(), Block()])
    with pytest.warns(UserWarning, match=r"no in_proj, out_proj, D"):
        st = discover(model)
    assert [a.layer for a in st.asis] == [0, 1]
    assert st.family == "mamba2"  # guessed for the name rules: no x_proj/dt_proj


def test_attention_counts_follow_the_closed_form() -> None:
    model = _build("llama-tiny")
    st = discover(model)
    att = st.layers[0].attention[0]
    d = attention_dims(att)
    assert (d.n_heads, d.n_kv_heads, d.head_dim) == (4, 2, 16)
    assert d.weight_elems == 64 * 64 + 2 * 64 * 32 + 64 * 64
    c1, c2 = attention_count(d, 64, 1, 128, 4), attention_count(d, 64, 1, 256, 4)
    proj = 2.0 * d.weight_elems
    # the projections grow linearly, the scores quadratically
    assert c2.flops - 2 * c1.flops == pytest.approx(2.0 * 4 * 16 * (256**2 - 2 * 128**2)
                                                    + 5.0 * 4 * (256 * 257 - 2 * 128 * 129) / 2, rel=1e-9)
    assert c1.flops > proj * 128
    rows = layer_rows(st)
    assert rows[0]["kv_cache_elems_per_token"] == 2 * 2 * 16
    assert rows[0]["ssm_state_elems_per_seq"] == 0 and rows[0]["profiled"] == "none"


def test_zamba2_shared_attention_is_counted_in_the_calling_layer() -> None:
    model = _build("zamba2-tiny")
    st = discover(model)
    rows = layer_rows(st)
    assert rows[1]["shared_attention"] is True and rows[0]["shared_attention"] is False
    rec = WindowRecorder()
    with torch.inference_mode(), Instrumenter(st).installed(Probe([rec])):
        model(input_ids=_ids(1, 16))
    att_layers = sorted({w.layer for kind, w in rec.events if kind == "enter" and w.name == "attention"})
    assert att_layers == [1, 3]


def test_every_hybrid_preset_says_where_its_numbers_come_from() -> None:
    big = [p for p in PRESETS.values() if p.hf_family and p.d_model >= 1024]
    assert {p.name for p in big} == set(SOURCES)
    assert {p.hf_family for p in big} >= {"falcon_mamba", "jamba", "bamba", "nemotron_h", "zamba2", "falcon_h1",
                                          "granitemoehybrid", "llama"}
    nemotron = PRESETS["nemotron-h-8b"].hf["layers_block_type"]
    assert len(nemotron) == 52 and nemotron.count("attention") == 4


def test_trace_cli_on_a_hybrid_preset(tmp_path, cli) -> None:
    import polars as pl

    out = tmp_path / "run"
    res = cli("trace", "--preset", "bamba-tiny", "--seqlens", "32", "--repeats", "3", "--warmup", "1",
                  "--profile-repeats", "1", "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    comps = pl.read_parquet(out / "components")
    assert set(comps["layer_kind"].unique()) == {"mamba2+mlp", "attention+mlp", "model"}
    att = comps.filter(pl.col("component") == "attention")
    assert att["layer"].to_list() == [1] and att["flops"][0] > 0 and att["kernel_ms_median"][0] > 0
    layers = pl.read_parquet(out / "layers")
    assert layers["profiled"].to_list() == ["split", "none", "split"]
    points = pl.read_parquet(out / "points")
    assert points["output_check"].to_list() == ["pass"]
    from mambaprof.reports.hybrids import hybrid_view

    view = hybrid_view(out, cache_seqlens=[4096])
    cache = view.cache.iloc[0]
    # bamba-tiny: 2 Mamba-2 layers (8 heads x 16 x d_state 16; conv over 128 + 2*16 channels x 4), 1 attention
    # layer with 2 kv heads x 16; fp32 run
    assert cache["ssm_state_bytes"] == 2 * 8 * 16 * 16 * 4
    assert cache["conv_state_bytes"] == 2 * (128 + 2 * 16) * 4 * 4
    assert cache["kv_cache_bytes"] == 2 * 2 * 16 * 4096 * 4
    assert set(view.shares["kind"]) >= {"mamba", "attention", "mlp"}
    sums = view.shares.groupby("seqlen")["share_pct"].sum()
    assert all(abs(v - 100.0) < 1e-9 for v in sums)


def test_decode_cache_counts_the_ssm_state_as_each_library_keeps_it() -> None:
    """mamba_ssm allocates its decode states in the model's dtype; transformers keeps the scan's float32 state
    (measured on the H200: bamba-9b's cache holds 116 MiB of SSM state per sequence in bf16)."""
    import pandas as pd

    from mambaprof.reports.hybrids import decode_cache, ssm_state_element_bytes

    ssm = {"mixer_classes": "mamba_ssm.modules.mamba2.Mamba2"}
    hf = {"mixer_classes": "transformers.models.bamba.modeling_bamba.BambaMixer"}
    assert ssm_state_element_bytes(ssm, 2) == 2 and ssm_state_element_bytes(hf, 2) == 4
    assert ssm_state_element_bytes({"mixer_classes": ""}, 2) == 4
    layers = pd.DataFrame({"ssm_state_elems_per_seq": [100.0, None], "conv_state_elems_per_seq": [10.0, None],
                           "kv_cache_elems_per_token": [None, 8.0]})
    cache = decode_cache(layers, [16], 1, 2, ssm_state_element_bytes(ssm, 2)).iloc[0]
    assert (cache["ssm_state_bytes"], cache["conv_state_bytes"], cache["kv_cache_bytes"]) == (200, 20, 256)
    assert decode_cache(layers, [16], 1, 2, ssm_state_element_bytes(hf, 2)).iloc[0]["ssm_state_bytes"] == 400


def test_crossover_measured_or_extrapolated_and_said_so() -> None:
    import pandas as pd

    from mambaprof.reports.hybrids import crossover

    def shares(lengths: list[int]) -> pd.DataFrame:
        rows = []
        for length in lengths:
            rows.append({"batch": 1, "seqlen": length, "kind": "attention", "ms": 1e-4 * length**2})
            rows.append({"batch": 1, "seqlen": length, "kind": "mamba", "ms": 0.1 * length})
        return pd.DataFrame(rows)

    far = crossover(shares([64, 128, 256, 512]), 1)
    assert not far.measured and far.seqlen == pytest.approx(1000.0, rel=1e-6) and "extrapolated" in far.how
    near = crossover(shares([256, 512, 2048]), 1)
    assert near.measured and 512 < near.seqlen < 2048 and "measured" in near.how
    none = crossover(shares([64, 128]), 1)
    assert none.seqlen is None


def test_probe_uses_the_activation_dtype_when_a_log_and_d_stay_fp32():
    """mamba_ssm keeps A_log and D in fp32 inside a bf16 model, and a mixer's own parameters come first in
    module.parameters(): the split check must feed the input projection's dtype (bf16), not A_log's, or every
    mixer is wrongly sent to as-is (seen on the H200: 'expected mat1 and mat2 to have the same dtype')."""
    from support.models import tiny_mamba

    model = tiny_mamba().to(torch.bfloat16)
    for layer in model.backbone.layers:
        layer.mixer.A_log.data = layer.mixer.A_log.data.float()
        layer.mixer.D.data = layer.mixer.D.data.float()
    assert next(model.backbone.layers[0].mixer.parameters()).dtype == torch.float32  # A_log first
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a split sent to as-is warns
        st = discover(model)
    assert [type(s.module).__name__ for s in st.mixers] == ["MambaMixer", "MambaMixer"]
