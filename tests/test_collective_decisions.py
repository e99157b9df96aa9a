"""Under ranks every decision that changes how many forwards run is collective (PointSpec.agree_max): what one
rank decides alone is overridden by the MAX over the ranks. Here the other ranks are simulated by the agree
function itself; tests/test_distributed_data_parallel.py counts the forwards of a real 2-rank data-parallel trace."""

from __future__ import annotations

import torch
from support.models import tiny_mamba

from mambaprof.collectors.context import PointSpec
from mambaprof.model.inputs import make_call
from mambaprof.model.structure import discover
from mambaprof.run.measure import MAX_FIDELITY_PAIRS, MIN_TIMED_REPEATS, measure_point

IDENTITY = {"run_id": "r", "rank": 0, "world_size": 2, "point_id": 0, "batch": 1, "seqlen": 16}


class Counted:
    """A model call that counts its forwards."""

    def __init__(self, call):
        self.call, self.n = call, 0

    def __call__(self):
        self.n += 1
        return self.call()


def _measure(agree, cap=None, repeats=6, warmup=4):
    model = tiny_mamba(layers=1, d_model=32, vocab=64)
    st = discover(model)
    spec = PointSpec(0, 1, 16, torch.device("cpu"), torch.float32, repeats, warmup, 0, "split",
                     point_seconds=cap, agree_max=agree)
    call = Counted(make_call(model, st, 1, 16, spec.device, spec.dtype, None))
    calls: list[float] = []

    def recorded(value: float) -> float:
        calls.append(value)
        return agree(value)

    spec.agree_max = recorded if agree is not None else None
    point = measure_point(spec, st, call, IDENTITY).point
    return point, call.n, calls


def test_a_slower_rank_stops_warm_up_and_timing_on_every_rank():
    """Another rank reports an elapsed time past the cap: this rank stops at the minimums too, whatever its own
    clock says (the cap is an hour)."""
    point, _, calls = _measure(lambda v: max(v, 1e9), cap=3600.0)
    assert point["warmup"] == 1 and point["repeats"] == MIN_TIMED_REPEATS
    # another rank wants fidelity pairs (its MAX says so): this rank times them too, up to the bound
    assert point["fidelity_pairs"] == MAX_FIDELITY_PAIRS
    assert calls  # every decision went through the agreement


def test_no_rank_wanting_more_pairs_stops_the_pairs_at_the_planned_repeats():
    """Every rank reports 0 ("no more pairs", no time spent): the planned repeats and warm-up run, no extra pair."""
    point, _, _ = _measure(lambda v: 0.0, cap=None, repeats=5, warmup=2)
    assert point["warmup"] == 2 and point["repeats"] == 5 and point["fidelity_pairs"] == 5


def test_the_same_agreement_means_the_same_number_of_forwards():
    """Two 'ranks' given the same agreed values run exactly as many forwards as each other."""
    counts = [_measure(lambda v: max(v, 1e9), cap=3600.0)[1] for _ in range(2)]
    assert counts[0] == counts[1] > 0
