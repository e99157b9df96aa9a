"""The component-split forward reproduces the original forward, and leaves the model untouched."""

import pytest
import torch
from support.models import tiny_mamba, tiny_mamba2
from support.windows import WindowRecorder

from mambaprof.collectors.markers import Probe
from mambaprof.errors import UnsupportedModelError
from mambaprof.model.structure import discover
from mambaprof.run.instrument import Instrumenter
from mambaprof.taxonomy import MIXER_COMPONENTS


@pytest.mark.parametrize("build", [tiny_mamba, tiny_mamba2])
def test_split_equals_original_and_marks_every_component(build):
    model = build()
    st = discover(model)
    ids = torch.randint(0, 256, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = model(input_ids=ids, use_cache=False).logits
        rec = WindowRecorder()
        with Instrumenter(st, split=True).installed(Probe([rec])):
            out = model(input_ids=ids, use_cache=False).logits
        again = model(input_ids=ids, use_cache=False).logits
    assert torch.equal(out, ref), (out - ref).abs().max()
    assert torch.equal(again, ref)
    for site in st.mixers:
        assert "forward" not in site.module.__dict__  # patch removed
    entered = rec.entered
    family = st.mixers[0].dims.family
    expected = [c for c in MIXER_COMPONENTS if not (family == "mamba2" and c == "ssm_params")]
    for site in st.mixers:
        for comp in expected:
            assert (site.layer, comp) in entered
        assert (site.layer, "norm") in entered and (site.layer, "block") in entered
    assert (-1, "embedding") in entered and (-1, "lm_head") in entered and (-1, "norm") in entered
    rec.assert_properly_nested()


def test_split_with_attention_mask_matches():
    model = tiny_mamba()
    st = discover(model)
    ids = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(2))
    mask = torch.ones(2, 24, dtype=torch.long)
    mask[1, :5] = 0
    with torch.inference_mode():
        ref = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        with Instrumenter(st).installed(Probe([])):
            out = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    assert torch.equal(out, ref)


def test_exception_inside_forward_closes_windows_and_restores():
    model = tiny_mamba()
    st = discover(model)
    rec = WindowRecorder()
    probe = Probe([rec])
    with pytest.raises(IndexError), torch.inference_mode(), Instrumenter(st).installed(probe):
        model(input_ids=torch.full((1, 8), 10_000))  # out of vocabulary
    opened = sum(1 for kind, _ in rec.events if kind == "enter")
    closed = sum(1 for kind, _ in rec.events if kind == "exit")
    assert opened == closed > 0
    assert all("forward" not in s.module.__dict__ for s in st.mixers)


def test_model_without_mamba_mixer_is_refused():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
    with pytest.raises(UnsupportedModelError, match="supported mixer classes: .*MambaMixer"):
        discover(model)


def test_discovery_finds_blocks_norms_head():
    st = discover(tiny_mamba(layers=3))
    assert [s.layer for s in st.mixers] == [0, 1, 2]
    assert all(s.block is not None and len(s.norms) == 1 for s in st.mixers)
    assert st.vocab_size == 256 and st.d_model == 64 and st.family == "mamba1"
    assert len(st.embeddings) == 1 and len(st.lm_heads) == 1 and len(st.final_norms) == 1
