"""Energy resolution logic with fake energy counters, and how a forward is cut into captured pieces."""

import contextlib
import time

import pytest
import torch
from support.hardware_fakes import FakeClock, FakeDevice
from support.models import tiny_mamba, tiny_mamba2

from mambaprof.collectors.context import PointContext, PointSpec
from mambaprof.collectors.energy import (
    EnergyCollector,
    EnergyMeter,
    SegmentCapture,
    layers_like,
    representative_site,
)
from mambaprof.collectors.gpu_device import energy_update_period_ms
from mambaprof.collectors.markers import BLOCK, FORWARD, MIXER, Window
from mambaprof.model.inputs import make_call
from mambaprof.model.structure import discover
from mambaprof.run.instrument import Instrumenter

W, U = 80.0, 10.0  # the fake GPU draws 80 W; its counter updates every 10 ms


def _fake(clock: FakeClock) -> FakeDevice:
    return FakeDevice(watts=W, update_ms=U, clock=clock)


def _runner(clock: FakeClock, exec_ms: float):
    """Executions that take exec_ms each on the fake clock; returns their 'device' time."""
    def run(n: int) -> float:
        clock.advance_ms(n * exec_ms)
        return n * exec_ms
    return run


def test_resolved_window_gives_energy_per_execution_within_the_quantisation_bound():
    clock = FakeClock()
    dev = _fake(clock)
    clock.advance_ms(3.3)  # start between two counter updates
    meter = EnergyMeter(dev.energy_mj, U, min_updates=10, clock=clock)
    n = meter.executions_for(0.7)
    assert n == 172  # ceil(1.2 * 100 ms / 0.7 ms)
    r = meter.measure(_runner(clock, 0.7), n, sync=lambda: None)
    assert r.status == "resolved" and r.reason is None and r.executions == n
    assert r.window_ms == pytest.approx(n * 0.7)
    truth = W * 0.7  # mJ per execution
    assert abs(r.energy_mj - truth) <= W * U / n + 1e-9  # at most one counter step off, spread over n
    assert r.rel_err == pytest.approx(U / r.window_ms) and r.rel_err <= 0.1
    assert r.power_w == pytest.approx(W, rel=r.rel_err)
    assert r.counter_updates == pytest.approx(r.window_ms / U)
    assert r.busy_pct == pytest.approx(100.0)
    assert r.exec_ms == pytest.approx(0.7)
    assert r.dynamic_mj(idle_power_w=30.0) == pytest.approx(r.energy_mj - 30.0 * 0.7, rel=1e-6)


def test_short_window_is_unresolved_not_invented():
    clock = FakeClock()
    dev = _fake(clock)
    meter = EnergyMeter(dev.energy_mj, U, min_updates=10, max_window_s=0.05, clock=clock)  # 50 ms cap < 100 ms
    n = meter.executions_for(1.0)
    assert n == 50
    r = meter.measure(_runner(clock, 1.0), n, sync=lambda: None)
    assert r.status == "unresolved" and r.energy_mj is None and r.power_w is None and r.rel_err is None
    assert "spans 5.0 counter updates" in r.reason and "fewer than 10" in r.reason


def test_adaptive_retry_when_the_execution_estimate_was_too_long():
    clock = FakeClock()
    meter = EnergyMeter(_fake(clock).energy_mj, U, min_updates=10, clock=clock)
    calls = []

    def run(n: int) -> float:
        calls.append(n)
        clock.advance_ms(n * 0.2)
        return n * 0.2

    r = meter.measure_adaptive(run, exec_ms=50.0, sync=lambda: None)  # guessed 50 ms, really 0.2 ms
    assert calls[0] == 3 and len(calls) == 2 and calls[1] == 600
    assert r.status == "resolved" and r.energy_mj == pytest.approx(W * 0.2, abs=W * U / 600)


@pytest.mark.parametrize("e0,e1,update,expect", [
    (100, 100, U, "did not change"),
    (100, 90, U, "went backwards"),
    (100, 200, None, "update period is unknown"),
])
def test_judge_refuses_unusable_counters(e0, e1, update, expect):
    r = EnergyMeter(lambda: 0, update, min_updates=10).judge(e0, e1, 500.0, 10, 5.0)
    assert r.status == "unresolved" and expect in r.reason and r.energy_mj is None


def test_idle_power_and_counter_period_on_real_time():
    dev = FakeDevice(watts=W, update_ms=4.0)
    period = energy_update_period_ms(dev, max_s=1.0, changes=6)
    assert period == pytest.approx(4.0, abs=1.5)
    meter = EnergyMeter(dev.energy_mj, period, min_updates=10)
    t0 = time.perf_counter()
    idle = meter.idle(sync=lambda: None)
    assert time.perf_counter() - t0 >= 0.04
    assert idle.status == "resolved" and idle.power_w == pytest.approx(W, rel=0.15)


def test_counter_that_never_moves_has_no_period():
    clock = FakeClock()

    def sleep(s: float) -> None:
        clock.advance_ms(s * 1000)

    assert energy_update_period_ms(FakeDevice(update_ms=10_000.0, clock=clock), max_s=0.5, clock=clock,
                                   sleep=sleep) is None


class RecordingCapture(SegmentCapture):
    """SegmentCapture with the CUDA graph calls replaced by a record of the pieces (CPU)."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.pieces: list = []

    def _begin(self, label):
        self.current = label

    def _end(self):
        if self.current is not None:
            self.pieces.append(self.current)
            self.current = None


def _ctx(model, batch=1, seqlen=16):
    st = discover(model)
    spec = PointSpec(0, batch, seqlen, torch.device("cpu"), torch.float32, 1, 0, 0, "split")
    return PointContext(spec, st, make_call(model, st, batch, seqlen, spec.device, spec.dtype, None),
                        Instrumenter(st, split=True))


@pytest.mark.parametrize("family", ["mamba1", "mamba2"])
def test_forward_is_cut_into_component_pieces_of_one_layer(family):
    model = tiny_mamba(layers=3) if family == "mamba1" else tiny_mamba2(layers=3)
    ctx = _ctx(model)
    site = representative_site(ctx.structure)
    assert site.layer == 1 and layers_like(ctx.structure, site) == 3
    cap = RecordingCapture(site.layer, site.fused_add_norm, stream=None)
    ctx.run_instrumented([cap])
    mixer = ["in_proj", "conv1d", "ssm_params", "ssm_scan", "gating", "out_proj"]
    if family == "mamba2":
        mixer.remove("ssm_params")
    # embedding; the block's own ops around its norm, the mixer components, the residual add; final norm, lm_head
    expected = [(-1, "embedding"), (1, "residual"), (1, "norm"), (1, "residual")] + [(1, c) for c in mixer] + [
        (1, "residual"), (-1, "norm"), (-1, "lm_head")]
    assert cap.pieces == expected
    assert not cap.broken and cap.current is None


def test_skipped_piece_runs_eagerly_and_labels_ignore_other_layers():
    ctx = _ctx(tiny_mamba(layers=2))
    cap = RecordingCapture(0, False, stream=None, skip={(0, "ssm_scan"), (-1, "lm_head")})
    ctx.run_instrumented([cap])
    assert (0, "ssm_scan") not in cap.pieces and (-1, "lm_head") not in cap.pieces
    assert (0, "out_proj") in cap.pieces and not any(layer == 1 for layer, _ in cap.pieces)
    fused = SegmentCapture(4, True, stream=None)
    stack = [Window(-1, FORWARD), Window(4, BLOCK)]
    assert fused.label_of(stack) == (4, "norm")  # block leftover with a fused add+norm
    assert fused.label_of(stack + [Window(4, MIXER)]) is None  # between components: nothing runs
    assert fused.label_of(stack + [Window(4, MIXER), Window(4, "ssm_scan")]) == (4, "ssm_scan")
    assert fused.label_of([Window(-1, FORWARD), Window(3, BLOCK)]) is None
    assert fused.label_of([Window(-1, FORWARD)]) is None


def test_energy_collector_on_cpu_says_why_there_is_no_energy():
    ctx = _ctx(tiny_mamba(layers=1))
    row = {"run_id": "r", "rank": 0, "world_size": 1, "point_id": 7}
    out = EnergyCollector(FakeDevice()).measure_point(ctx, row)
    assert "energy" not in out
    status = out["collector_status"][0]
    assert status["status"] == "unavailable" and status["point_id"] == 7 and "device is cpu" in status["reason"]


class FakeCuda:
    """Just enough of torch.cuda for EnergyCollector._components on the CPU: graphs whose 'capture' runs the
    ops eagerly (so the forward really computes) and whose replay advances a fake clock by `replay_ms`; an op
    that is illegal during capture raises and invalidates the capture, as CUDA does."""

    def __init__(self, clock: FakeClock, replay_ms: float = 0.25):
        self.clock, self.replay_ms = clock, replay_ms
        self.capturing = self.invalid = False
        self.captures = self.replays = 0
        fake = self

        class Graph:
            def capture_begin(self, capture_error_mode="global"):
                assert capture_error_mode == "thread_local"
                fake.capturing, fake.captures = True, fake.captures + 1

            def capture_end(self):
                fake.capturing = False
                if fake.invalid:
                    fake.invalid = False
                    raise RuntimeError("CUDA error: operation failed due to a previous error during capture")

            def replay(self):
                fake.replays += 1
                fake.clock.advance_ms(fake.replay_ms)

        class Event:
            def __init__(self, enable_timing=False):
                self.t = None

            def record(self, stream=None):
                self.t = fake.clock()

            def elapsed_time(self, other):
                return (other.t - self.t) / 1e6

        class Stream:
            def __init__(self, device=None):
                pass

            def wait_stream(self, other):
                pass

        self.attrs = {"CUDAGraph": Graph, "Event": Event, "Stream": Stream,
                      "stream": lambda s: contextlib.nullcontext(), "current_stream": lambda device=None: Stream(),
                      "synchronize": lambda device=None: None, "empty_cache": lambda: None}

    def install(self, monkeypatch):
        for name, value in self.attrs.items():
            monkeypatch.setattr(torch.cuda, name, value)


def test_component_energy_flow_with_a_piece_that_cannot_be_captured(monkeypatch):
    """The capture/retry/replay/measure flow of EnergyCollector on the CPU with fake CUDA graphs: the conv of
    the representative layer syncs with the host (illegal while capturing), so it is recorded as
    capture_failed and runs eagerly; every other piece is captured, replayed and measured."""
    from transformers.models.mamba import modeling_mamba

    ctx = _ctx(tiny_mamba(layers=3))
    clock = FakeClock()
    fake = FakeCuda(clock)
    fake.install(monkeypatch)
    original = modeling_mamba.causal_conv1d_fn

    def syncing_conv(*args, **kwargs):
        if fake.capturing:
            fake.invalid = True
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing")
        return original(*args, **kwargs)

    monkeypatch.setattr(modeling_mamba, "causal_conv1d_fn", syncing_conv)
    device = FakeDevice(watts=W, update_ms=U, clock=clock)
    collector = EnergyCollector(device, min_updates=10)
    collector.update_ms = U
    meter = EnergyMeter(device.energy_mj, U, min_updates=10, clock=clock)
    row = {"run_id": "r", "rank": 0, "world_size": 1, "point_id": 0, "batch": 1, "seqlen": 16}
    rows = {(r["layer"], r["component"]): r for r in collector._components(ctx, row, meter, 30.0, 16)}
    conv = rows[(1, "conv1d")]
    assert conv["status"] == "capture_failed" and "not permitted when stream is capturing" in conv["reason"]
    assert conv.get("energy_mj") is None and conv["layers_represented"] == 3
    measured = {k: r for k, r in rows.items() if r["status"] == "resolved"}
    assert set(measured) == {(-1, "embedding"), (1, "residual"), (1, "norm"), (1, "in_proj"), (1, "ssm_params"),
                             (1, "ssm_scan"), (1, "gating"), (1, "out_proj"), (-1, "norm"), (-1, "lm_head")}
    for (layer, comp), r in measured.items():
        pieces = 3 if comp == "residual" else 1  # before the norm, between norm and mixer, the add
        assert r["exec_ms"] == pytest.approx(pieces * 0.25)
        assert r["energy_mj"] == pytest.approx(W * pieces * 0.25, rel=r["energy_rel_err"] + 1e-9)
        assert r["dynamic_energy_mj"] == pytest.approx(r["energy_mj"] - 30.0 * r["exec_ms"], rel=0.2)
        assert r["capture_check"] == "pass" and r["layers_represented"] == (3 if layer == 1 else 1)
        assert r["counter_updates"] >= 10 and r["energy_per_token_j"] == pytest.approx(r["energy_mj"] / 16000)
        assert ("ran eagerly" in r["note"]) == (layer == 1)
    assert fake.replays > 1000 and not fake.capturing
    # first pass: 5 pieces, then the conv's capture fails; second pass: the 12 other pieces (conv eager)
    assert fake.captures == 6 + 12
