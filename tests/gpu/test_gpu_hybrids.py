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
