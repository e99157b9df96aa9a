"""The decode phase of hybrids on CPU (tiny presets of each family): the component-split step reproduces the model's
own cached step, a full forward and its `generate`; each attention layer is one `attention` segment whose KV cache
matches its closed form at two prompt lengths and grows linearly with the prompt while the SSM and conv states do
not; the trace CLI runs a prompt-length sweep end to end and the report shows the layer-kind section; a layer the
family's split does not describe is refused with one line. Timing is recorded in the run, never asserted."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch

from mambaprof.errors import UnsupportedModelError
from mambaprof.model.counts import attention_decode_count, attention_dims, kv_cache_bytes
from mambaprof.model.decode import HFHybridDecodeStep, decode_step_for
from mambaprof.model.inputs import TOLERANCE
from mambaprof.model.structure import discover
from mambaprof.run.decode import closed_form_cache, step_counts
from mambaprof.run.tracing import ModelSource
from mambaprof.storage.rundir import read_table

#: one tiny preset per supported family (Mamba-2 mixers, Mamba-1 for Jamba; attention, mlp, moe layers; Zamba2's
#: shared transformer block called by two hybrid layers)
HYBRIDS = ("bamba-tiny", "nemotron-h-tiny", "granite-4.0-h-tiny-cpu", "jamba-tiny", "falcon-h1-tiny", "zamba2-tiny")
CPU = torch.device("cpu")


def _loaded(preset: str):
    loaded = ModelSource(preset=preset).load(CPU, torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return loaded, discover(loaded.model)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    scale = float(a.abs().max()) or 1.0
    return float((a - b).abs().max()) / scale <= TOLERANCE[torch.float32]


@pytest.mark.parametrize("preset", HYBRIDS)
def test_split_step_reproduces_own_step_full_forward_and_generate(preset: str) -> None:
    loaded, structure = _loaded(preset)
    batch, prompt, new = 2, 11, 5
    ids = torch.randint(0, structure.vocab_size, (batch, prompt), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        step = decode_step_for(loaded.model, structure, batch, prompt + new + 4)
        assert isinstance(step, HFHybridDecodeStep)
        first = step.prefill(ids).argmax(-1, keepdim=True)
        snap = step.snapshot()
        own_tokens, own_logits = [first], []
        for _ in range(new):
            own_logits.append(step.own_step(own_tokens[-1]).clone())
            own_tokens.append(own_logits[-1].argmax(-1, keepdim=True))
        step.restore(snap)
        split_tokens, split_logits = [first], []
        for _ in range(new):
            split_logits.append(step.split_step(split_tokens[-1]).clone())
            split_tokens.append(split_logits[-1].argmax(-1, keepdim=True))
        # the second step after the prompt equals a full forward over prompt + both tokens (KV and SSM state right)
        full = loaded.model(torch.cat([ids, *split_tokens[:2]], dim=1)).logits[:, -1]
        generated = step.generate(ids, new, cuda_graphs=False)
    for a, b in zip(own_logits, split_logits, strict=True):
        assert _close(a, b)
    assert _close(full, split_logits[1])
    assert torch.equal(torch.cat(own_tokens, 1), torch.cat(split_tokens, 1))
    assert torch.equal(torch.cat(split_tokens[:new], dim=1), generated)
    comps = {(s.layer, s.component) for s in step.segments()}
    for ls in structure.layers:
        assert ((ls.layer, "attention") in comps) == bool(ls.attention), ls.kind
        assert ((ls.layer, "ssm_scan") in comps) == (ls.mixer is not None), ls.kind
        assert ((ls.layer, "mlp") in comps) == bool(ls.mlp) and ((ls.layer, "moe") in comps) == bool(ls.moe)
    assert {c for layer, c in comps if layer == -1} == {"embedding", "other", "norm", "lm_head"}
    assert any(ls.attention for ls in structure.layers) and structure.mixers


@pytest.mark.parametrize("preset", HYBRIDS)
def test_kv_cache_matches_closed_form_and_grows_linearly_while_the_states_do_not(preset: str) -> None:
    loaded, structure = _loaded(preset)
    batch = 3
    measured = {}
    for prompt in (8, 24):
        ids = torch.randint(0, structure.vocab_size, (batch, prompt), generator=torch.Generator().manual_seed(prompt))
        with torch.inference_mode():
            step = decode_step_for(loaded.model, structure, batch, prompt + 8)
            step.prefill(ids)
        measured[prompt] = step.cache_bytes()
        closed = closed_form_cache(structure, batch, prompt, 4)
        assert set(measured[prompt]) == set(closed)
        assert measured[prompt] == {k: int(v) for k, v in closed.items()}
    kv = {p: {k: v for k, v in m.items() if k[1] == "attention"} for p, m in measured.items()}
    states = {p: {k: v for k, v in m.items() if k[1] != "attention"} for p, m in measured.items()}
    assert kv[8] and states[8]
    for key, nbytes in kv[8].items():
        assert kv[24][key] == 3 * nbytes  # 3x the prompt, 3x the KV cache
    assert states[24] == states[8]  # conv and SSM state: the same at any prompt length
    for ls in structure.layers:
        for m in ls.attention:
            d = attention_dims(m)
            assert d is not None
            assert kv[8][(ls.layer, "attention")] == 2 * batch * d.n_kv_heads * d.head_dim * 8 * 4


def test_attention_decode_counts() -> None:
    loaded, structure = _loaded("bamba-tiny")
    ls = next(ls for ls in structure.layers if ls.attention)
    attn = ls.attention[0]
    d = attention_dims(attn)
    assert d is not None and (d.n_heads, d.n_kv_heads, d.head_dim) == (4, 2, 16)
    w = sum(getattr(attn, n).weight.numel() for n in ("q_proj", "k_proj", "v_proj", "o_proj"))
    c = attention_decode_count(d, structure.d_model, 2, 100, 2)
    assert c.weight_bytes == 2 * w
    assert c.state_bytes == 2 * 2 * d.n_kv_heads * d.head_dim * 101 * 2 == kv_cache_bytes(d, 2, 101, 2)
    assert c.flops == 2 * 2 * w + 4 * 2 * d.n_heads * d.head_dim * 101 + 5 * 2 * d.n_heads * 101
    assert attention_decode_count(d, structure.d_model, 2, 200, 2).state_bytes > c.state_bytes
    with torch.inference_mode():
        step = decode_step_for(loaded.model, structure, 2, 16)
    counts = step_counts(structure, step, 2, context=100)
    assert counts[(ls.layer, "attention")] == attention_decode_count(d, structure.d_model, 2, 100, 4)
    assert counts[(ls.layer, "mlp")].weight_bytes == 4 * sum(
        getattr(ls.mlp[0], n).weight.numel() for n in ("gate_proj", "up_proj", "down_proj"))
    assert counts[(ls.layer, "norm")].weight_bytes == 2 * 4 * structure.d_model  # two pre-norms in a Bamba layer


def test_trend_is_judged_against_the_quartiles() -> None:
    from mambaprof.reports.decode import _trend

    def at(q1: float, q3: float) -> pd.Series:
        return pd.Series({"q1_ms": q1, "q3_ms": q3})

    assert _trend(at(1.0, 1.2), at(1.5, 1.7)) == "grows"
    assert _trend(at(1.5, 1.7), at(1.0, 1.2)) == "shrinks"
    assert _trend(at(1.0, 1.6), at(1.5, 1.7)) == "within the spread"


def test_a_layers_other_is_a_group_of_its_own() -> None:
    """Zamba2's hybrid linear (a layer's `other`) is not counted with the model level (embedding, positions, ...)."""
    from mambaprof.reports.decode import MODEL_GROUP, kind_group

    assert kind_group(1, "other") == "other"
    assert kind_group(-1, "other") == kind_group(-1, "norm") == MODEL_GROUP
    assert kind_group(1, "norm") == kind_group(1, "residual") == "norm+residual"


def test_cli_decode_prompt_sweep_on_a_hybrid_and_its_report(tmp_path: Path, cli) -> None:
    res = cli("trace", "--phase", "decode", "--preset", "nemotron-h-tiny", "--prompt-len", "16,64", "--batch", "2",
              "--repeats", "3", "--warmup", "1", "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "status complete" in res.stdout and "attention layers" in res.stdout
    points = sorted(read_table(tmp_path / "run", "decode_points").to_pylist(), key=lambda p: p["seqlen"])
    assert [p["seqlen"] for p in points] == [16, 64]
    for p in points:
        assert p["status"] == "ok" and p["tokens_match"] is True and p["tokens_match_generate"] is True
        assert p["cache_bytes"] == p["cache_bytes_closed_form"]
        assert p["cache_bytes"] == p["ssm_state_bytes"] + p["conv_state_bytes"] + p["kv_cache_bytes"]
    assert points[1]["kv_cache_bytes"] == 4 * points[0]["kv_cache_bytes"] > 0
    assert points[1]["ssm_state_bytes"] == points[0]["ssm_state_bytes"] > 0
    assert points[1]["conv_state_bytes"] == points[0]["conv_state_bytes"] > 0
    comps = read_table(tmp_path / "run", "decode_components").to_pylist()
    attention = [c for c in comps if c["component"] == "attention"]
    assert {c["layer_kind"] for c in attention} == {"attention"} and all(c["time_ms"] > 0 for c in attention)
    for c in attention:
        assert c["cache_bytes"] == c["cache_bytes_closed_form"] > 0
        assert c["time_ms_q1"] <= c["time_ms"] <= c["time_ms_q3"]
    res = cli("report", str(tmp_path / "run"), "--html", str(tmp_path / "d.html"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    text = " ".join(res.stdout.split())  # the terminal wraps the findings
    assert "Decode step by layer kind (hybrid)" in text
    assert "prompt 16 -> 64 (4x): the KV cache grows" in text and "(4x, linear in the prompt)" in text
    assert "the SSM + conv state stays" in text
    assert "eager step: attention" in text and "the Mamba layers" in text
    html = (tmp_path / "d.html").read_text()
    assert "Decode step by layer kind (hybrid)" in html and "KV cache" in html


@pytest.mark.parametrize(("preset", "attr", "layout"), [("bamba-tiny", "self_attn", "bamba"),
                                                        ("zamba2-tiny", "linear", "zamba2")])
def test_a_layer_the_layout_does_not_describe_is_refused(preset: str, attr: str, layout: str) -> None:
    """A layer that keeps a module under another name (a Bamba layer's attention, a Zamba2 hybrid layer's linear):
    the split would skip it, so no step."""
    loaded, structure = _loaded(preset)
    block = next(ls.block for ls in structure.layers if ls.attention)
    setattr(block, f"renamed_{attr}", getattr(block, attr))
    delattr(block, attr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structure = discover(loaded.model)
    with pytest.raises(UnsupportedModelError, match=f"does not have the {layout} layout"):
        decode_step_for(loaded.model, structure, 1, 16)
