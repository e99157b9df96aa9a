"""The report's plots of a run with many points stay bounded in size and time (issue 6: a report over a
1-million-kernel-event run in under 30 s): figures never widen with the number of points, and the small
runs of a usual sweep keep their bar charts."""

import importlib.util
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support.synthetic_runs import Spec, make_run

from mambaprof.reports import plots
from mambaprof.reports.run_analysis import RunAnalysis
from mambaprof.reports.validate import validate_run
from mambaprof.storage.rundir import read_table

SEQLENS = tuple(sorted({int(round(s / 8) * 8) for s in np.geomspace(64, 16384, 160)}))


def svg_inches(svg: str) -> tuple[float, float]:
    """(width, height) of an SVG written by matplotlib, in inches (it writes points: 72 per inch)."""
    head = svg[:svg.index(">")]
    width = float(re.search(r'width="([\d.]+)pt"', head).group(1))
    height = float(re.search(r'height="([\d.]+)pt"', head).group(1))
    return width / 72, height / 72


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """A run of ~150 points (one batch, sequence lengths 64..16384); 3 ms of launch gaps per forward make
    the short ones launch-bound."""
    run = make_run(tmp_path_factory.mktemp("many") / "run", Spec(seqlens=SEQLENS, launch_overhead_ms=3.0))
    return RunAnalysis(run, use_calibration=False)


def regime_points(n_batches: int, seqlens: list[int]) -> pd.DataFrame:
    """A points frame as the report has it: wall = kernel + 2 ms, so short points are launch-bound."""
    rows = []
    for batch in range(1, n_batches + 1):
        for seqlen in seqlens:
            kernel = 1e-4 * batch * seqlen
            wall = kernel + 2.0
            rows.append({"status": "ok", "batch": batch, "seqlen": seqlen, "kernel_ms": kernel, "wall_ms": wall,
                         "regime": "launch-bound" if wall >= 2 * kernel else "device-bound"})
    return pd.DataFrame(rows)


def test_spread_keeps_ends_and_is_log_even():
    values = list(range(64, 16385, 8))
    picked = plots.spread(values, 9)
    assert len(picked) == 9 and picked[0] == 64 and picked[-1] == 16384
    steps = np.diff(np.log2(picked))
    assert steps.max() / steps.min() < 1.1  # evenly spaced in log2
    assert plots.spread([4, 1, 2, 2], 9) == [1, 2, 4]  # few values: all of them, sorted, once


def test_regime_chart_of_many_points_is_bounded():
    points = regime_points(8, [int(s) for s in np.geomspace(64, 16384, 125)])  # 1,000 points
    n_bound = int((points.regime == "launch-bound").sum())
    assert len(points) == 1000 and 0 < n_bound < 1000
    t0 = time.perf_counter()
    svg = plots.regime_chart(points)
    seconds = time.perf_counter() - t0
    width, height = svg_inches(svg)
    # the bar chart would have been 0.7 * 1000 + 2.5 = 702.5 inches wide
    assert width < 12 and height < 6, (width, height)
    assert len(svg) < 200_000
    assert seconds < 8, seconds
    assert "1000 points" in svg and f"launch-bound ({n_bound})" in svg
    for tick in ("64", "1024", "16384"):
        assert f">{tick}<" in svg


def test_regime_chart_of_few_points_keeps_its_bars():
    points = regime_points(2, [1024, 4096, 16384])
    svg = plots.regime_chart(points)
    assert "Wall vs kernel time per point (batch / sequence length)" in svg
    assert svg.count(">launch-bound<") == int((points.regime == "launch-bound").sum())
    assert svg_inches(svg)[0] < svg_inches(plots.regime_chart(regime_points(3, [1024, 4096, 16384])))[0]


def test_all_plots_of_a_run_with_many_points_are_bounded(many):
    assert len(many.points) == len(SEQLENS) > 100
    t0 = time.perf_counter()
    svgs = {"stacked": plots.stacked_shares(many.components, many.basis),
            "regime": plots.regime_chart(many.points),
            "scaling": plots.scaling_lines(many.scaling_series, many.scaling, many.crossovers, many.basis),
            "roofline": plots.roofline_chart(many.components, many.peaks, many.dtype, many.device_name)}
    seconds = time.perf_counter() - t0
    assert seconds < 12, seconds
    for name, svg in svgs.items():
        width, height = svg_inches(svg)
        assert width < 16 and height < 12, (name, width, height)
        assert len(svg) < 250_000, (name, len(svg))
    assert f"{len(SEQLENS)} lengths" in svgs["stacked"]  # stacked areas, said in the title
    assert f"{len(SEQLENS)} points" in svgs["regime"]
    # tick labels are powers of two, not one per measured length
    labels = re.findall(r">(\d+)</text>", svgs["scaling"])
    assert {"64", "1024", "16384"} <= set(labels) and len(set(labels)) <= plots.MAX_TICKS + 10


def test_roofline_bins_many_lengths_into_medians():
    seqlens = list(range(64, 16385, 64))  # 256 lengths
    rows = pd.DataFrame({"family": "mamba1", "component": "ssm_scan", "batch": 1, "seqlen": seqlens,
                         "intensity_flop_per_byte": 17.0, "achieved_tflop_per_s": np.linspace(1, 9, len(seqlens))})
    few = rows.iloc[:5].assign(component="in_proj")
    binned = plots._bin_lengths(pd.concat([rows, few]), ["family", "component", "batch"],
                                ["intensity_flop_per_byte", "achieved_tflop_per_s", "seqlen"], 12)
    scan = binned[binned.component == "ssm_scan"]
    assert 2 <= len(scan) <= 12
    assert scan.achieved_tflop_per_s.between(1, 9).all() and scan.seqlen.is_monotonic_increasing
    assert len(binned[binned.component == "in_proj"]) == 5  # few lengths: every row stays
    untouched = plots._bin_lengths(few, ["family", "component", "batch"], ["seqlen"], 12)
    assert untouched.equals(few)


def test_log2_binned_bounds_vertices_and_keeps_the_curve():
    frame = pd.DataFrame({"seqlen": np.arange(64, 16385, 8)})
    frame["time_ms"] = frame.seqlen * 0.01
    binned = plots.log2_binned(frame, "seqlen", 128)
    assert len(frame) > 2000 and len(binned) <= 128
    assert binned.seqlen.is_monotonic_increasing
    assert binned.seqlen.min() >= 64 and binned.seqlen.max() <= 16384
    # a line through the origin stays one (bin means of x and y, x at the geometric mean: within 1%)
    assert np.allclose(binned.time_ms, binned.seqlen * 0.01, rtol=0.01)
    assert plots.log2_binned(frame.iloc[:50], "seqlen", 128).equals(frame.iloc[:50])


def test_plot_size_does_not_grow_with_the_number_of_points():
    sizes = {n: len(plots.regime_chart(regime_points(4, [int(s) for s in np.geomspace(64, 16384, n)])))
             for n in (150, 600)}
    assert sizes[600] < 1.25 * sizes[150], sizes


def test_synthetic_run_replicates_real_event_rows(tmp_path):
    """benchmarks/data_path_scale.py: layers and profiled forwards replicated from the committed H200 run (its copy
    in tests/fixtures/), the components re-summed from the kernels, and the result a valid run."""
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("data_path_scale", root / "benchmarks" / "data_path_scale.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses look their module up there
    try:
        spec.loader.exec_module(bench)
    finally:
        sys.modules.pop(spec.name, None)
    shape = bench.Shape(target_kernels=5000, layers=50, profile_repeats=2, batches=(1, 8), seqlen_min=64,
                        seqlen_max=4096)
    source = root / "tests" / "fixtures" / "device_runs" / "2026-12-02-h200-hardware" / "mamba-1.4b"
    built = bench.build(source, tmp_path / "run", shape)
    assert built.kernels_per_forward == 15 * 50 + 4  # the H200 forward: 15 kernels per layer, 4 outside
    assert built.rows["kernels"] == built.points * built.kernels_per_point >= 5000
    kernels = read_table(tmp_path / "run", "kernels").to_pandas()
    comps = read_table(tmp_path / "run", "components").to_pandas()
    assert sorted(kernels.iteration.unique()) == [0, 1] and kernels.layer.max() == 49
    assert kernels.range_name.str.contains("/L49/").any()
    summed = kernels.groupby(["point_id", "layer", "component"]).duration_us.sum() / 1e3 / 2
    mean = comps.set_index(["point_id", "layer", "component"]).kernel_ms_mean.reindex(summed.index)
    assert np.allclose(mean, summed, rtol=1e-9)
    points = read_table(tmp_path / "run", "points").to_pandas().set_index("point_id")
    assert np.allclose(points.forward_kernel_ms, kernels.groupby("point_id").duration_us.sum() / 1e3 / 2)
    assert (points.original_ms_median > points.forward_kernel_ms).all()
    validation = validate_run(tmp_path / "run")
    assert validation.ok and not validation.warnings, [p.one_line() for p in validation.problems]
