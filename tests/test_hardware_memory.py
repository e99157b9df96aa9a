"""Memory listener logic (nested windows, peaks, leftovers) and the memory collector on a real CPU model."""

import pytest
import torch
from support.models import tiny_mamba, tiny_mamba2

from mambaprof.collectors.context import PointContext, PointSpec
from mambaprof.collectors.markers import BLOCK, FORWARD, MIXER, Window
from mambaprof.collectors.memory import (
    MemoryCollector,
    MemoryListener,
    ReplaySource,
    cache_bytes,
    component_memory,
    replay_events,
    unique_bytes,
)
from mambaprof.model.inputs import make_call
from mambaprof.model.structure import discover
from mambaprof.run.instrument import Instrumenter

FWD, BLK, MIX = Window(-1, FORWARD), Window(0, BLOCK), Window(0, MIXER)
A, B = Window(0, "in_proj"), Window(0, "ssm_scan")


def test_nested_windows_deltas_peaks_and_leftovers():
    src = ReplaySource()
    lst = MemoryListener(src)
    src.apply(1000)  # weights, before the forward
    lst.enter(FWD)
    src.apply(100)
    lst.enter(BLK)
    lst.enter(MIX)
    lst.enter(A)
    src.apply(50)
    src.apply(-30)
    lst.exit(A)
    lst.enter(B)
    src.apply(200)   # transient working set of the scan
    src.apply(-200)
    src.apply(8)
    lst.exit(B)
    lst.exit(MIX)
    src.apply(-20)   # the block frees something of its own
    lst.exit(BLK)
    lst.exit(FWD)
    w = lst.windows
    assert (w[A].alloc_delta, w[A].peak_delta, w[A].allocated_at_start) == (20, 50, 1100)
    assert (w[B].alloc_delta, w[B].peak_delta) == (8, 200)
    assert (w[MIX].alloc_delta, w[MIX].peak_delta, w[MIX].own_delta) == (28, 220, 0)
    assert (w[BLK].alloc_delta, w[BLK].peak_delta, w[BLK].own_delta) == (8, 220, -20)
    assert (w[FWD].alloc_delta, w[FWD].peak_delta, w[FWD].own_delta) == (108, 320, 100)
    st = type("S", (), {"fused_norm_layers": set()})()
    comps = component_memory(w, st)
    assert comps[(0, "in_proj")].peak_delta == 50 and comps[(0, "ssm_scan")].alloc_delta == 8
    assert comps[(0, "residual")].alloc_delta == -20 and comps[(0, "residual")].peak_delta is None
    assert comps[(-1, "other")].alloc_delta == 100
    fused = component_memory(w, type("S", (), {"fused_norm_layers": {0}})())
    assert (0, "norm") in fused and (0, "residual") not in fused


def test_unwinding_closes_inner_windows_and_carries_their_peak():
    src = ReplaySource()
    lst = MemoryListener(src)
    lst.enter(FWD)
    lst.enter(A)
    src.apply(64)
    lst.exit(FWD)  # an exception skipped A's exit: closing the forward closes A too
    assert lst.windows[A].alloc_delta == 64 and lst.windows[FWD].peak_delta == 64 and not lst.frames
    lst.exit(B)  # never opened: ignored
    assert B not in lst.windows


def test_replay_orders_events_by_time():
    src = ReplaySource()
    lst = MemoryListener(src)
    replay_events([(30, 2, A), (10, 0, A), (20, 1, 4096), (25, 1, -1024)], lst, src)
    assert lst.windows[A].alloc_delta == 3072 and lst.windows[A].peak_delta == 4096


def test_unique_bytes_counts_tied_weights_once():
    w = torch.zeros(10, 4)
    assert unique_bytes([w, w, torch.zeros(3)]) == 160 + 12


def _measure(model, batch, seqlen, tmp_path=None):
    st = discover(model)
    spec = PointSpec(0, batch, seqlen, torch.device("cpu"), torch.float32, 1, 0, 0, "split")
    ctx = PointContext(spec, st, make_call(model, st, batch, seqlen, spec.device, spec.dtype, None),
                       Instrumenter(st, split=True))
    row = {"run_id": "r", "rank": 0, "world_size": 1, "point_id": 3, "batch": batch, "seqlen": seqlen}
    collector = MemoryCollector(run_dir=tmp_path, timeline_dir=tmp_path / "tl" if tmp_path else None)
    return st, collector.measure_point(ctx, row)


@pytest.mark.parametrize("family", ["mamba1", "mamba2"])
def test_memory_collector_on_cpu_measures_real_allocations(family, tmp_path):
    model = tiny_mamba(layers=2) if family == "mamba1" else tiny_mamba2(layers=2)
    batch, seqlen = 2, 32
    st, out = _measure(model, batch, seqlen, tmp_path if family == "mamba1" else None)
    rows = {(r["layer"], r["component"]): r for r in out["memory"]}
    dims = st.mixers[0].dims
    f32 = 4
    # in_proj leaves its output allocated: batch x seqlen x in_proj_out floats; out_proj its d_model output
    assert rows[(0, "in_proj")]["alloc_delta_bytes"] == batch * seqlen * dims.in_proj_out * f32
    assert rows[(0, "out_proj")]["alloc_delta_bytes"] == batch * seqlen * dims.d_model * f32
    assert rows[(0, "ssm_scan")]["peak_delta_bytes"] >= rows[(0, "ssm_scan")]["alloc_delta_bytes"] > 0
    assert rows[(0, "ssm_scan")]["source"] == "profiler" and rows[(0, "ssm_scan")]["allocated_at_start_bytes"] is None
    # decode-cache sizes sit on the component that would hold them
    assert rows[(0, "ssm_scan")]["cache_state_bytes"] == dims.recurrent_state_elems(batch) * f32
    assert rows[(0, "conv1d")]["cache_state_bytes"] == dims.conv_state_elems(batch) * f32
    assert rows[(0, "in_proj")]["cache_state_bytes"] is None
    assert {(-1, "embedding"), (-1, "lm_head"), (0, "residual")} <= set(rows)
    assert rows[(-1, "lm_head")]["alloc_delta_bytes"] == batch * seqlen * st.vocab_size * f32
    point = out["memory_points"][0]
    params = {p.data_ptr(): p.numel() * 4 for p in model.parameters()}  # tied lm_head counted once
    assert point["weights_bytes"] == sum(params.values())
    assert point["inputs_bytes"] == batch * seqlen * 8  # int64 token ids
    assert point["output_bytes"] == batch * seqlen * st.vocab_size * f32
    assert point["activation_peak_bytes"] >= point["output_bytes"]
    assert point["peak_allocated_bytes"] is None and "no allocator statistics" in point["note"]
    caches = cache_bytes(st, batch, f32)
    assert point["recurrent_state_bytes"] == sum(v for (_, c), v in caches.items() if c == "ssm_scan")
    if family == "mamba1":
        assert point["timeline_path"] == "tl/point00003_b2_l32.html"
        assert (tmp_path / point["timeline_path"]).stat().st_size > 1000


def test_a_failing_collector_leaves_the_point_ok(tmp_path, monkeypatch):
    from mambaprof.collectors import memory
    from mambaprof.run.sweep import TraceConfig
    from mambaprof.run.tracing import ModelSource, trace
    from mambaprof.storage.rundir import read_table

    def boom(fn):
        raise RuntimeError("profiler exploded")

    monkeypatch.setattr(memory, "profiled_events", boom)
    config = TraceConfig(seqlens=[16], batches=[1], device=torch.device("cpu"), dtype=torch.float32, repeats=1,
                         warmup=0, profile_repeats=0, tensorboard=False)
    outcome = trace(ModelSource(), config, tmp_path / "run", extra_collectors=[MemoryCollector()])
    assert outcome.result.status == "complete"
    status = read_table(tmp_path / "run", "collector_status").to_pylist()
    assert [(s["collector"], s["point_id"], s["status"], s["reason"]) for s in status] == [
        ("memory", 0, "failed", "RuntimeError: profiler exploded")]
    assert read_table(tmp_path / "run", "memory").num_rows == 0
