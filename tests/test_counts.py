"""Closed-form GEMM counts agree with torch.utils.flop_counter on the real modules."""

import pytest
import torch
from support.models import tiny_mamba, tiny_mamba2
from torch.utils.flop_counter import FlopCounterMode

from mambaprof.collectors.markers import Probe
from mambaprof.model.counts import gemm, lm_head_count, mixer_counts
from mambaprof.model.structure import discover
from mambaprof.run.instrument import Instrumenter


class FlopsPerWindow:
    """Listener: FLOPs counted by torch's FlopCounterMode inside each window."""

    def __init__(self, counter: FlopCounterMode):
        self.counter = counter
        self.stack = []
        self.flops = {}

    def _total(self):
        return sum(self.counter.get_flop_counts().get("Global", {}).values())

    def enter(self, w):
        self.stack.append(self._total())

    def exit(self, w):
        start = self.stack.pop()
        self.flops[(w.layer, w.name)] = self.flops.get((w.layer, w.name), 0) + self._total() - start


@pytest.mark.parametrize("build", [tiny_mamba, tiny_mamba2])
def test_gemm_counts_match_flop_counter(build):
    model = build()
    st = discover(model)
    batch, seqlen = 2, 32
    ids = torch.randint(0, 256, (batch, seqlen))
    counter = FlopCounterMode(display=False)
    listener = FlopsPerWindow(counter)
    # grad mode on (forward only, no backward): torch's module tracker inside FlopCounterMode hooks the inputs of
    # every module call that require grad, and transformers >= 5.25 calls its kernel fallbacks as modules with
    # views of parameters as inputs, which under no_grad/inference_mode have no grad_fn for the hook
    with counter, Instrumenter(st).installed(Probe([listener])):
        model(input_ids=ids, use_cache=False)
    for site in st.mixers:
        ours = mixer_counts(site.dims, batch, seqlen, elem=4)
        for comp in ("in_proj", "out_proj"):
            assert listener.flops[(site.layer, comp)] == pytest.approx(ours[comp].flops, rel=1e-9), comp
        if site.dims.family == "mamba1":
            assert listener.flops[(site.layer, "ssm_params")] == pytest.approx(ours["ssm_params"].flops, rel=1e-9)
    head = lm_head_count(st.d_model, st.vocab_size, batch, seqlen, elem=4)
    assert listener.flops[(-1, "lm_head")] == pytest.approx(head.flops, rel=1e-9)


def test_gemm_bytes_and_scaling():
    g = gemm(8, 16, 4, elem=2)
    assert g.flops == 2 * 8 * 16 * 4
    assert g.bytes_min == 2 * (8 * 16 + 16 * 4 + 8 * 4)
    st = discover(tiny_mamba())
    d = st.mixers[0].dims
    small, big = mixer_counts(d, 1, 64, 4), mixer_counts(d, 1, 128, 4)
    for comp in small:  # everything is linear in sequence length for Mamba-1
        assert big[comp].flops == pytest.approx(2 * small[comp].flops, rel=1e-9)
