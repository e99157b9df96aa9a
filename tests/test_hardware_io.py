"""I/O: memcpy events placed in the upload / forward / download phases (synthetic profiler rows), and the
collector's explicit run on a CPU model."""

import json
import time

import pytest
import torch
from support.hardware_fakes import FakeDevice
from support.models import tiny_mamba
from torch.autograd import DeviceType

from mambaprof.collectors.context import PointContext, PointSpec
from mambaprof.collectors.gpu_device import unwrap_counter
from mambaprof.collectors.io import (
    Copy,
    IOCollector,
    attribute_copies,
    copy_kind,
    integrated_bytes,
    profiled_copies,
    trace_memcpy_bytes,
)
from mambaprof.collectors.nvml import NvmlSampler
from mambaprof.model.inputs import make_call
from mambaprof.model.structure import discover
from mambaprof.run.instrument import Instrumenter

PHASES = [("upload", 100.0, 200.0), ("forward", 210.0, 900.0), ("download", 910.0, 1500.0)]


def test_copy_kinds():
    assert copy_kind("Memcpy HtoD (Pageable -> Device)") == "h2d"
    assert copy_kind("Memcpy DtoH (Device -> Pinned)") == "d2h"
    assert copy_kind("Memcpy DtoD (Device -> Device)") == "d2d"
    assert copy_kind("Memset (Device)") is None and copy_kind("ampere_sgemm_128x64") is None


def test_copies_are_attributed_to_phases_by_launch_time():
    copies = [
        Copy("h2d", 120.0, 150.0, 10.0, 65536),        # the input ids
        Copy("h2d", 400.0, 401.0, 1.0, 4),             # a scalar the forward uploads itself
        Copy("d2h", 950.0, 980.0, 400.0, 1 << 20),     # the logits
        Copy("d2h", None, 1000.0, 5.0, 1024),          # no launch recorded: its device start decides
        Copy("d2d", 2000.0, 2001.0, 1.0, 8),           # outside every phase
    ]
    per, outside = attribute_copies(copies, PHASES)
    assert outside == 1
    up, fwd, down = per["upload"], per["forward"], per["download"]
    assert (up.h2d_bytes, up.h2d_count, up.d2h_count) == (65536, 1, 0)
    assert (fwd.h2d_bytes, fwd.h2d_count, fwd.memcpy_us) == (4, 1, 1.0)
    assert (down.d2h_bytes, down.d2h_count, down.d2h_us) == ((1 << 20) + 1024, 2, 405.0)
    assert up.h2d_us == 10.0


class FakeEvent:
    """Quacks like a Kineto event of torch.profiler's raw results."""

    def __init__(self, name, device, start_us, dur_us, corr, linked=0, nbytes=0, meta=""):
        self._n, self._d, self._s, self._dur = name, device, start_us, dur_us
        self._c, self._l, self._b, self._m = corr, linked, nbytes, meta

    def name(self): return self._n
    def device_type(self): return self._d
    def start_ns(self): return int(self._s * 1000)
    def duration_ns(self): return int(self._dur * 1000)
    def correlation_id(self): return self._c
    def linked_correlation_id(self): return self._l
    def device_index(self): return 0
    def nbytes(self): return self._b
    def metadata_json(self): return self._m


class FakeProf:
    def __init__(self, events, trace):
        self.profiler = type("P", (), {"kineto_results": type("R", (), {
            "trace_start_ns": lambda self: 0, "events": lambda self: events})()})()
        self.trace = trace

    def export_chrome_trace(self, path):
        with open(path, "w") as fh:
            json.dump(self.trace, fh)


def test_profiled_copies_reads_bytes_and_launch_times():
    cpu, cuda = DeviceType.CPU, DeviceType.CUDA
    events = [
        FakeEvent("cudaMemcpyAsync", cpu, 120.0, 5.0, corr=11),
        FakeEvent("Memcpy HtoD (Pageable -> Device)", cuda, 150.0, 10.0, corr=11, nbytes=65536),
        FakeEvent("cudaMemcpyAsync", cpu, 950.0, 5.0, corr=12),
        FakeEvent("Memcpy DtoH (Device -> Pageable)", cuda, 980.0, 400.0, corr=12, meta='"bytes": 4096'),
        FakeEvent("cudaLaunchKernel", cpu, 300.0, 5.0, corr=13),
        FakeEvent("ampere_bf16_gemm", cuda, 310.0, 50.0, corr=13),
    ]
    copies = profiled_copies(FakeProf(events, {}))
    assert [(c.kind, c.launch_us, c.nbytes) for c in copies] == [("h2d", 120.0, 65536), ("d2h", 950.0, 4096)]
    per, outside = attribute_copies(copies, PHASES)
    assert per["upload"].h2d_bytes == 65536 and per["download"].d2h_bytes == 4096 and outside == 0


def test_profiled_copies_falls_back_to_the_chrome_trace_for_bytes():
    cuda = DeviceType.CUDA
    events = [FakeEvent("Memcpy HtoD (Pageable -> Device)", cuda, 150.0, 10.0, corr=1),
              FakeEvent("Memcpy DtoH (Device -> Pageable)", cuda, 980.0, 40.0, corr=2)]
    trace = {"traceEvents": [
        {"ph": "X", "name": "Memcpy DtoH (Device -> Pageable)", "ts": 1980.0, "args": {"bytes": 2048}},
        {"ph": "X", "name": "Memcpy HtoD (Pageable -> Device)", "ts": 1150.0, "args": {"bytes": 512}},
        {"ph": "X", "name": "void gemm_kernel", "ts": 1200.0, "args": {}},
    ]}
    assert trace_memcpy_bytes(trace) == [512, 2048]
    copies = profiled_copies(FakeProf(events, trace))
    assert [c.nbytes for c in copies] == [512, 2048] and copies[0].launch_us is None


def test_io_collector_on_cpu_times_the_phases_and_reads_samples():
    model = tiny_mamba(layers=2)
    st = discover(model)
    spec = PointSpec(0, 2, 64, torch.device("cpu"), torch.float32, 1, 0, 0, "split")
    ctx = PointContext(spec, st, make_call(model, st, 2, 64, spec.device, spec.dtype, None), Instrumenter(st))
    sampler = NvmlSampler(FakeDevice(tx_bps=3e9, rx_bps=5e9), interval_ms=1.0)
    sampler.start()
    try:
        time.sleep(0.01)
        out = IOCollector(FakeDevice(tx_bps=3e9, rx_bps=5e9), sampler).measure_point(
            ctx, {"run_id": "r", "rank": 0, "world_size": 1, "point_id": 0})
    finally:
        sampler.stop()
    rows = {r["phase"]: r for r in out["io"]}
    assert list(rows) == ["upload", "forward", "download"]
    assert all(r["phase_ms"] > 0 for r in rows.values())
    assert rows["forward"]["phase_ms"] > rows["upload"]["phase_ms"]
    assert all("no host-device transfers" in r["note"] and r.get("h2d_bytes") is None for r in rows.values())
    fwd = rows["forward"]
    # the device's PCIe counters were read at the phase boundaries: 3 GB/s x the phase's duration
    assert fwd["pcie_tx_bytes"] == pytest.approx(3e9 * fwd["phase_ms"] / 1e3, rel=0.2)
    assert fwd["nvml_samples"] >= 2
    assert fwd["pcie_rx_bytes_per_s_mean"] == pytest.approx(5e9, rel=0.1)
    assert sampler.take(0)[-1]["phase"] == "io/done"


def test_unwrap_counter_adds_the_wraps_the_samples_saw():
    wrap = 1 << 32
    assert unwrap_counter(1_641_241_556, None) == 1_641_241_556  # no estimate: as read
    assert unwrap_counter(1_641_241_556, 1.32e10) == 1_641_241_556 + 3 * wrap  # the H200's 13.2 GB download
    assert unwrap_counter(900, 950.0) == 900 and unwrap_counter(None, 1e10) is None
    samples = [{"host_ns": 0, "r": 5.0}, {"host_ns": 10**9, "r": 2.0}, {"host_ns": 3 * 10**9, "r": None},
               {"host_ns": 4 * 10**9, "r": 4.0}]
    assert integrated_bytes(samples, "r") == 2.0 * 1 + 4.0 * 1  # the first sample's rate covers time before it
    assert integrated_bytes(samples[:1], "r") is None


def test_io_phase_bytes_survive_a_counter_that_wraps_several_times():
    # a fake link at 400 GB/s against a 2**32-byte counter: the forward phase wraps it more than once, which its
    # two boundary readings cannot see; the 1 ms samples can
    model = tiny_mamba(layers=4)
    st = discover(model)
    spec = PointSpec(0, 4, 256, torch.device("cpu"), torch.float32, 1, 0, 0, "split")
    ctx = PointContext(spec, st, make_call(model, st, 4, 256, spec.device, spec.dtype, None), Instrumenter(st))
    dev = FakeDevice(tx_bps=4e11, rx_bps=1e9, pcie_wrap=1 << 32)
    sampler = NvmlSampler(dev, interval_ms=1.0)
    sampler.start()
    try:
        time.sleep(0.01)
        out = IOCollector(dev, sampler).measure_point(ctx, {"run_id": "r", "rank": 0, "world_size": 1, "point_id": 0})
    finally:
        sampler.stop()
    fwd = {r["phase"]: r for r in out["io"]}["forward"]
    expected = 4e11 * fwd["phase_ms"] / 1e3
    assert expected > 1.5 * (1 << 32), f"forward too short to wrap the counter: {fwd['phase_ms']} ms"
    assert fwd["pcie_tx_bytes"] == pytest.approx(expected, rel=0.1)
