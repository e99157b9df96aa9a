"""GPU checks of the hardware collectors (run on the device; skipped on CPU).

NVML sampling on the real driver; energy per forward and per component on small mamba_ssm models
(captured pieces reproduce the output, windows resolve the counter, the parts add up to roughly the
whole); a piece that cannot be captured is recorded as such while the others are measured; exact
allocation deltas and copy bytes; ncu counters attributed by NVTX range where ncu is installed.
"""

from __future__ import annotations

import time

import pytest
import torch

from mambaprof.collectors.context import PointContext, PointSpec
from mambaprof.collectors.energy import EnergyCollector
from mambaprof.collectors.gpu_device import NVMLDevice, energy_update_period_ms, open_device
from mambaprof.collectors.io import IOCollector
from mambaprof.collectors.memory import MemoryCollector
from mambaprof.collectors.ncu import NcuCollector, find_ncu
from mambaprof.collectors.nvml import NvmlSampler
from mambaprof.env import mamba_ssm_available
from mambaprof.model.inputs import make_call
from mambaprof.model.presets import Preset, build_mamba_ssm
from mambaprof.model.structure import discover
from mambaprof.run.instrument import Instrumenter

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
needs_mamba = pytest.mark.skipif(not mamba_ssm_available(), reason="needs mamba_ssm and causal_conv1d")

DEV = torch.device("cuda:0")
ROW = {"run_id": "t", "rank": 0, "world_size": 1, "point_id": 0, "device": "cuda:0", "dtype": "bfloat16"}


def _ctx(model, batch, seqlen, dtype=torch.bfloat16):
    st = discover(model)
    spec = PointSpec(0, batch, seqlen, DEV, dtype, 1, 1, 0, "split")
    ctx = PointContext(spec, st, make_call(model, st, batch, seqlen, DEV, dtype, None), Instrumenter(st, split=True))
    for _ in range(2):  # warm-up: Triton autotuning, cuBLAS handles
        ctx.run_original()
        ctx.run_instrumented([])
    torch.cuda.synchronize()
    return ctx, {**ROW, "batch": batch, "seqlen": seqlen}


def _ssm(family, d_model=1024, layers=4):
    torch.manual_seed(0)
    preset = Preset(f"test-{family}", family, d_model=d_model, n_layer=layers,
                    d_state=16 if family == "mamba1" else 128)
    return build_mamba_ssm(preset, DEV, torch.bfloat16).eval()


@pytest.fixture(scope="module")
def gpu():
    dev = open_device(DEV)
    if not dev.available:
        pytest.skip(f"NVML unavailable: {dev.reason}")
    yield dev
    dev.close()


def test_sampler_on_the_real_driver(gpu):
    assert isinstance(gpu, NVMLDevice)
    sampler = NvmlSampler(gpu, interval_ms=10.0)
    sampler.start()
    a = torch.randn(8192, 8192, device=DEV, dtype=torch.bfloat16)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 1.0:
        a = (a @ a).clamp_(-1, 1)
    torch.cuda.synchronize()
    sampler.stop()
    rows = sampler.drain()
    status = sampler.status()
    print("nvml status:", status)
    assert sampler.state == "stopped", status
    assert len(rows) >= 1000.0 / max(sampler.interval_ms, 10.0) * 0.5
    power = [r["power_w"] for r in rows if r.get("power_w") is not None]
    assert len(power) >= 5 and all(p > 20 for p in power)  # read at the driver's own power period
    energy = [r["energy_mj"] for r in rows]
    assert energy == sorted(energy) and energy[-1] > energy[0]
    busy = [r for r in rows if r.get("gpu_util_pct") is not None]
    assert max(r["gpu_util_pct"] for r in busy) >= 50
    assert all(r["sm_clock_mhz"] > 0 and r["memory_used_bytes"] > 0 for r in rows)


def test_energy_counter_update_period(gpu):
    """The measured update period agrees with the counter's changes counted independently over 3 s."""
    period = energy_update_period_ms(gpu)
    print("energy counter update period (ms):", period)
    assert period is not None
    # count the counter's changes ourselves: the mean spacing between the first and the last change
    stamps, last = [], gpu.energy_mj()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 3.0:
        value = gpu.energy_mj()
        if value != last:
            stamps.append(time.perf_counter())
            last = value
        time.sleep(0.0002)
    assert len(stamps) >= 4, stamps  # a counter that moved at most 3 times in 3 s has no usable period
    spacing_ms = (stamps[-1] - stamps[0]) / (len(stamps) - 1) * 1000
    print("independent mean spacing (ms):", spacing_ms, "changes:", len(stamps))
    assert period == pytest.approx(spacing_ms, rel=0.25), (period, spacing_ms)
    assert energy_update_period_ms(gpu) == pytest.approx(period, rel=0.25)  # stable from one call to the next


@needs_mamba
@pytest.mark.parametrize("family", ["mamba1", "mamba2"])
def test_energy_per_forward_and_component(gpu, family):
    ctx, row = _ctx(_ssm(family), batch=4, seqlen=2048)
    out = EnergyCollector(gpu, min_updates=5).measure_point(ctx, row)
    status = out["collector_status"][0]
    rows = {(r["layer"], r["component"]): r for r in out["energy"]}
    for key, r in rows.items():
        print(key, r["status"], r.get("energy_mj"), r.get("exec_ms"), r.get("busy_pct"), r.get("reason"))
    fwd = rows[(-1, "forward")]
    assert fwd["status"] == "resolved" and fwd["energy_mj"] > 0 and fwd["counter_updates"] >= 5, fwd
    assert fwd["energy_per_token_j"] == pytest.approx(fwd["energy_mj"] / 1000 / (4 * 2048))
    assert 20 < fwd["power_w"] < 1500 and fwd["idle_power_w"] is not None and fwd["idle_power_w"] < fwd["power_w"]
    layer = 2  # the middle of 4
    comps = ["in_proj", "conv1d", "ssm_scan", "out_proj"] + (["ssm_params"] if family == "mamba1" else ["gating"])
    for comp in comps:
        r = rows[(layer, comp)]
        assert r["status"] == "resolved" and r["capture_check"] == "pass", r
        assert r["energy_mj"] > 0 and r["layers_represented"] == 4 and r["exec_ms"] > 0, r
        assert r["dynamic_energy_mj"] is not None and r["dynamic_energy_mj"] < r["energy_mj"], r
    assert "(fused add+norm kernel)" in rows[(layer, "norm")]["note"]
    assert rows[(-1, "lm_head")]["status"] == "resolved"
    # the parts add up to roughly the whole (the forward also pays launch gaps; replays do not)
    parts = sum(r["energy_mj"] for (lay, _), r in rows.items() if lay == layer and r["status"] == "resolved") * 4
    parts += sum(rows[(-1, c)]["energy_mj"] for c in ("embedding", "norm", "lm_head")
                 if (-1, c) in rows and rows[(-1, c)]["status"] == "resolved")
    assert 0.5 * fwd["energy_mj"] < parts < 1.5 * fwd["energy_mj"], (parts, fwd["energy_mj"])
    assert status["status"] in ("ok", "partial"), status


def test_uncapturable_piece_is_recorded_and_the_rest_measured(gpu, monkeypatch):
    """A conv that syncs with the host cannot be captured: conv1d is `capture_failed`, the rest resolve."""
    from transformers import MambaConfig, MambaForCausalLM
    from transformers.models.mamba import modeling_mamba

    torch.manual_seed(0)
    model = MambaForCausalLM(MambaConfig(vocab_size=1024, hidden_size=512, state_size=16, num_hidden_layers=3,
                                         use_cache=False)).to(DEV, torch.float32).eval()
    original = modeling_mamba.causal_conv1d_fn

    def syncing_conv(x, *args, **kwargs):
        if float(x.abs().sum()) < 0:  # a host sync: illegal while capturing
            raise AssertionError
        return original(x, *args, **kwargs)

    monkeypatch.setattr(modeling_mamba, "causal_conv1d_fn", syncing_conv)
    ctx, row = _ctx(model, batch=2, seqlen=512, dtype=torch.float32)
    out = EnergyCollector(gpu, min_updates=3).measure_point(ctx, row)
    rows = {(r["layer"], r["component"]): r for r in out["energy"]}
    for key, r in rows.items():
        print(key, r["status"], r.get("reason"), r.get("energy_mj"))
    assert rows[(1, "conv1d")]["status"] == "capture_failed" and rows[(1, "conv1d")]["reason"]
    assert rows[(1, "in_proj")]["status"] == "resolved" and rows[(1, "in_proj")]["capture_check"] == "pass"
    assert "ran eagerly" in rows[(1, "out_proj")]["note"]


@needs_mamba
def test_memory_deltas_are_exact_on_gpu():
    model = _ssm("mamba2", d_model=1024, layers=2)
    ctx, row = _ctx(model, batch=2, seqlen=1024)
    out = MemoryCollector().measure_point(ctx, row)
    rows = {(r["layer"], r["component"]): r for r in out["memory"]}
    out_proj = rows[(1, "out_proj")]
    assert out_proj["source"] == "cuda_allocator"
    assert out_proj["alloc_delta_bytes"] == 2 * 1024 * 1024 * 2  # its bf16 output, nothing else kept
    assert out_proj["allocated_at_start_bytes"] > 0
    point = out["memory_points"][0]
    assert point["peak_allocated_bytes"] >= point["allocated_before_bytes"] + point["output_bytes"]
    assert point["peak_reserved_bytes"] >= point["peak_allocated_bytes"]
    dims = ctx.structure.mixers[0].dims
    assert rows[(0, "ssm_scan")]["cache_state_bytes"] == 2 * dims.nheads * dims.headdim * dims.d_state * 2


@needs_mamba
def test_io_bytes_by_phase_on_gpu(gpu):
    model = _ssm("mamba1", d_model=512, layers=2)
    ctx, row = _ctx(model, batch=2, seqlen=1024)
    sampler = NvmlSampler(gpu, 10.0)
    sampler.start()
    try:
        out = IOCollector(gpu, sampler).measure_point(ctx, row)
    finally:
        sampler.stop()
    rows = {r["phase"]: r for r in out["io"]}
    for r in rows.values():
        print(r)
    vocab = ctx.structure.vocab_size
    assert rows["upload"]["h2d_bytes"] == 2 * 1024 * 8 and rows["upload"]["h2d_count"] == 1
    assert rows["download"]["d2h_bytes"] == 2 * 1024 * vocab * 2 and rows["download"]["d2h_bytes_per_s"] > 1e9
    assert rows["forward"]["d2h_bytes"] == 0 and rows["forward"]["phase_ms"] > 0


@needs_mamba
@pytest.mark.skipif(find_ncu() is None, reason="needs Nsight Compute (ncu)")
def test_ncu_counters_by_component(tmp_path):
    model = _ssm("mamba2", d_model=512, layers=2)
    ctx, row = _ctx(model, batch=1, seqlen=512)
    collector = NcuCollector(find_ncu(), {"preset": None, "model_file": str(_model_file(tmp_path)),
                                          "backend": "mamba_ssm"}, "bfloat16", "split", 0, tmp_path / "ncu",
                             layers=1, warmup=1, timeout_s=300)
    out = collector.measure_point(ctx, row)
    status = out["collector_status"][0]
    print(status)
    rows = out.get("hw_counters", [])
    assert status["status"] in ("ok", "partial") and rows, status
    by = {}
    for r in rows:
        by.setdefault(r["component"], 0.0)
        by[r["component"]] += r["dram_bytes"] or 0.0
    print(by)
    assert by.get("in_proj", 0) > 0 and by.get("ssm_scan", 0) > 0
    assert sum(r["attribution"] == "nvtx" for r in rows) >= 0.8 * len(rows)


def _model_file(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(
        "import torch\n"
        "from mambaprof.model.presets import Preset, build_mamba_ssm\n"
        "def build_model(device, dtype):\n"
        "    torch.manual_seed(0)\n"
        "    return build_mamba_ssm(Preset('t', 'mamba2', d_model=512, n_layer=2, d_state=128), device, dtype)\n")
    return path
