"""GPU checks of the trace pipeline (run on the device; skipped on CPU).

For mamba_ssm `Mamba` and `Mamba2` at small sizes: the split forward reproduces the fused
forward's output, its total time stays within 5% of the fused forward's, and at least 98% of
kernel time is attributed to a named component. The as-is (fused) mode's name rules are checked
against the split mode's range attribution. With `--autotune largest` the Mamba-2 SSD kernels' Triton
configs are tuned at the sweep's largest point and recorded in the run record.
"""

from __future__ import annotations

import pytest
import torch

from mambaprof.collectors.context import PointSpec
from mambaprof.env import mamba_ssm_available
from mambaprof.model.inputs import make_call
from mambaprof.model.loading import LoadedModel
from mambaprof.model.presets import Preset, build_mamba_ssm
from mambaprof.model.structure import discover
from mambaprof.run.measure import measure_point

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(not mamba_ssm_available(), reason="needs mamba_ssm and causal_conv1d"),
]

DEV = torch.device("cuda:0")


def _model(family: str, d_model: int = 2048, layers: int = 4) -> LoadedModel:
    torch.manual_seed(0)
    preset = Preset(f"test-{family}", family, d_model=d_model, n_layer=layers,
                    d_state=16 if family == "mamba1" else 128)
    return LoadedModel(build_mamba_ssm(preset, DEV, torch.bfloat16).eval(), "preset", preset.name)


def _measure(family: str, mode: str, batch: int = 4, seqlen: int = 4096, repeats: int = 15):
    loaded = _model(family)
    st = discover(loaded.model)
    spec = PointSpec(0, batch, seqlen, DEV, torch.bfloat16, repeats=repeats, warmup=3, profile_repeats=3, mode=mode)
    call = make_call(loaded.model, st, batch, seqlen, DEV, torch.bfloat16, None)
    return st, measure_point(spec, st, call, {"run_id": "t", "rank": 0, "world_size": 1, "point_id": 0})


@pytest.mark.parametrize("family", ["mamba1", "mamba2"])
def test_split_matches_fused_and_attributes(family):
    st, m = _measure(family, "split")
    assert [type(s.module).__name__ for s in st.mixers] == ["Mamba" if family == "mamba1" else "Mamba2"] * 4
    p = m.point
    assert p["output_check"] == "pass", p
    assert p["attributed_kernel_pct"] >= 98.0, p
    assert abs(p["split_vs_original_pct"]) <= 5.0, p
    comps = {(r["layer"], r["component"]): r for r in m.components}
    scan = comps[(0, "ssm_scan")]
    assert scan["kernel_ms_median"] > 0 and scan["attribution"] == "range"
    if family == "mamba1":
        assert comps[(0, "gating")]["note"].startswith("fused into ssm_scan")
        assert comps[(0, "ssm_params")]["kernel_ms_median"] > 0
    else:
        assert comps[(0, "gating")]["kernel_ms_median"] > 0
    assert comps[(0, "norm")]["note"].startswith("includes the residual add")


@pytest.mark.parametrize("family", ["mamba1", "mamba2"])
def test_as_is_name_rules_agree_with_split(family):
    _, split = _measure(family, "split", repeats=3)
    _, asis = _measure(family, "as-is", repeats=3)
    assert asis.point["attributed_kernel_pct"] >= 98.0
    s = {(r["layer"], r["component"]): r.get("kernel_ms_median") for r in split.components}
    a = {(r["layer"], r["component"]): r.get("kernel_ms_median") for r in asis.components}
    for comp in ("in_proj", "conv1d", "ssm_scan", "out_proj"):
        # both modes measured the component (a missing time is a failure, not a 0 == 0 match)
        assert s[(1, comp)] is not None and s[(1, comp)] > 0, (comp, s.get((1, comp)))
        assert a[(1, comp)] is not None and a[(1, comp)] > 0, (comp, a.get((1, comp)))
        assert a[(1, comp)] == pytest.approx(s[(1, comp)], rel=0.25), comp


def test_mamba2_ssd_kernels_autotune_at_the_largest_point(tmp_path):
    """`--autotune largest`: the SSD kernels' Triton configs are tuned at the larger of two points, before the
    first point, and the run record lists them."""
    import json

    from mambaprof.run.sweep import TraceConfig, run_sweep
    from mambaprof.storage.rundir import RunWriter, read_run_record

    loaded = _model("mamba2", d_model=1024, layers=2)
    config = TraceConfig(seqlens=[256, 2048], batches=[1, 2], device=DEV, dtype=torch.bfloat16, repeats=2, warmup=1,
                         profile_repeats=0, tensorboard=False, autotune="largest")
    writer = RunWriter(tmp_path / "run")
    writer.prepare()
    seen: list[str] = []
    result = run_sweep(loaded, discover(loaded.model), config, writer,
                       progress=lambda done, total, desc: seen.append(desc))
    assert result.status == "complete", result.reason
    assert seen[0] == "autotune at b=2 L=2048"  # before the first point
    info = json.loads(read_run_record(tmp_path / "run")["autotune_json"])
    assert info["policy"] == "largest" and info["reason"] is None, info
    assert info["tuned_at"] == {"batch": 2, "seqlen": 2048}
    ssd = [c for c in info["configs"] if ".ssd_" in c["kernel"]]
    assert ssd, info["configs"]
    assert any("_chunk_scan_fwd_kernel" in c["kernel"] for c in ssd)
    assert all("num_warps" in c["config"] for c in ssd)
