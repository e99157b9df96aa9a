"""Window timers: spans per window, and adjacent component boundaries sharing one timestamp."""

import time

import pytest
import torch
from support.models import tiny_mamba

from mambaprof.collectors.markers import MIXER, Probe, Window
from mambaprof.collectors.timing import Clock, ForwardTimer, WindowTimer
from mambaprof.model.structure import discover
from mambaprof.run.instrument import Instrumenter
from mambaprof.run.measure import component_walls


class CountingClock(Clock):
    def __init__(self):
        self.marks = 0

    def mark(self):
        self.marks += 1
        return super().mark()


def test_adjacent_components_share_boundaries():
    timer = WindowTimer(torch.device("cpu"))
    clock = timer.clock = CountingClock()
    mixer = Window(0, MIXER)
    comps = [Window(0, c) for c in ("in_proj", "conv1d", "ssm_scan", "out_proj")]
    timer.enter(Window(0, "block"))
    timer.enter(mixer)
    for w in comps:
        timer.enter(w)
        time.sleep(0.002)
        timer.exit(w)
    timer.exit(mixer)
    timer.exit(Window(0, "block"))
    # block enter/exit (2) + mixer enter (1) + one per component end (4): not 2 per window (12)
    assert clock.marks == 7
    spans = timer.spans()
    for w in comps:
        assert 1.5 <= spans[w] <= 50
    assert spans[mixer] >= sum(spans[w] for w in comps) - 1e-6
    assert spans[Window(0, "block")] >= spans[mixer]


def test_component_walls_add_up_to_the_forward():
    model = tiny_mamba()
    st = discover(model)
    timer = WindowTimer(torch.device("cpu"))
    ids = torch.randint(0, 256, (1, 32))
    with torch.inference_mode(), Instrumenter(st).installed(Probe([timer])):
        model(input_ids=ids, use_cache=False)
    walls = component_walls(timer.spans(), st)
    forward = timer.spans()[Window(-1, "forward")]
    assert sum(walls.values()) == pytest.approx(forward, rel=1e-6)
    assert all(v >= 0 for v in walls.values())
    assert all(walls[(site.layer, c)] > 0 for site in st.mixers for c in ("in_proj", "ssm_scan", "out_proj"))


def test_forward_timer_measures_host_time():
    ms, host, out = ForwardTimer(torch.device("cpu")).time(lambda: time.sleep(0.01) or 7)
    assert out == 7 and 9 <= ms <= 100 and 9 <= host <= 100
