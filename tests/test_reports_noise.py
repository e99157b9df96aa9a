"""Reports that say when a number cannot be trusted: the noise behind each share finding, a loaded host
flagged from the run's own repeats, untrusted scaling fits, compare's shares and one unit per quantity.
Synthetic runs with known numbers (tests/synthetic_runs.py), so every expected value is exact."""

import numpy as np
import pandas as pd
import pytest
from support.synthetic_runs import Spec, make_run

from mambaprof.reports import noise, views
from mambaprof.reports.fmt import mib
from mambaprof.reports.run_analysis import RunAnalysis
from mambaprof.reports.scaling import fit_flag, loo_exponents, theil_sen_exponent

CPU = dict(device="cpu", device_name="AMD EPYC", dtype="float32", batch=1)


def _with_points(spread: dict[int, tuple[float, float]], markers: tuple[float, float] = (3.0, 1.0),
                 inflate: dict[tuple[int, str], float] | None = None):
    """An extra_tables hook: rewrite each point's repeats (fastest, slowest as multiples of the median), its
    split costs (with markers, without) and, for (seqlen, component) in `inflate`, multiply that component's
    mean span (an outlier repeat: the median stays)."""
    def hook(writer, comps):
        for pid, grp in comps.groupby("point_id"):
            seqlen = int(grp.seqlen.iloc[0])
            rows = grp.to_dict("records")
            for r in rows:
                factor = (inflate or {}).get((seqlen, r["component"]))
                if factor and r["layer"] >= 0:
                    r["wall_ms_mean"] = r["wall_ms_median"] * factor
            writer.write_rows("components", rows, int(pid))
            wall = sum(r["wall_ms_median"] or 0.0 for r in rows)
            lo, hi = spread.get(seqlen, (0.98, 1.02))
            point = {k: grp.iloc[0][k] for k in ("run_id", "rank", "world_size", "point_id", "device", "batch",
                                                  "seqlen", "dtype")}
            writer.write_rows("points", [{
                **point, "tokens": int(point["batch"]) * seqlen, "mode": "split", "status": "ok",
                "original_ms_median": wall, "original_ms_min": wall * lo, "original_ms_max": wall * hi,
                "split_ms_median": wall * (1 + markers[0] / 100), "split_vs_original_pct": markers[0],
                "split_bare_vs_original_pct": markers[1], "host_ms_median": wall,
                "forward_kernel_ms": sum(r["kernel_ms_mean"] for r in rows), "attributed_kernel_pct": 99.0,
                "output_check": "pass", "repeats": 5, "warmup": 1, "profile_repeats": 2}], int(pid))
    return hook


def _finding(analysis, kind):
    return next(f for f in analysis.findings() if f.kind == kind)


def test_clean_run_states_its_noise_and_no_warning(tmp_path):
    run = make_run(tmp_path / "clean", Spec(**CPU), extra_tables=_with_points({}))
    a = RunAnalysis(run, use_calibration=False)
    scan = _finding(a, "scan")
    assert "noise: the forward's repeats spread 4%" in scan.text and "the markers cost +2%" in scan.text
    assert "holds within 5 points on medians" in scan.text and not noise.is_unstable(scan.text)
    assert not any(f.kind == "host" for f in a.findings()) and not any("LOADED" in w for w in a.warnings)
    assert a.host_load.loaded is False
    assert dict(views.run_facts(a))["host load"].startswith("quiet: the original forward's repeats spread 4%")
    frames = a.summary_frames()
    assert not frames["summary_run"].host_loaded.iloc[0]
    assert not frames["summary_points"].host_noisy.any()


def test_noisy_point_on_a_loaded_host_carries_the_warning(tmp_path):
    longest = 16384
    hook = _with_points({longest: (0.4, 16.0)}, markers=(266.0, 5.0), inflate={(longest, "in_proj"): 6.0})
    run = make_run(tmp_path / "noisy", Spec(**CPU), extra_tables=hook)
    a = RunAnalysis(run, use_calibration=False)
    assert a.basis == "wall"
    scan = _finding(a, "scan")
    # the report's share (on means) vs the same share on medians, computed here from the raw tables
    raw = a.data.components[(a.data.components.seqlen == longest) & (a.data.components.family == "mamba1")]
    mean = raw.groupby("component").wall_ms_mean.sum()
    median = raw.groupby("component").wall_ms_median.sum()
    share_mean = 100 * mean["ssm_scan"] / mean.sum()
    share_median = 100 * median["ssm_scan"] / median.sum()
    assert scan.value == pytest.approx(share_mean)
    assert abs(share_median - share_mean) > noise.SHARE_NOISE_PP
    assert f"on medians it is {share_median:.0f}%" in scan.text
    assert "the forward's repeats spread 1560%" in scan.text and "the markers cost +261%" in scan.text
    assert "so this share is not firm" in scan.text
    # the dominant component is in_proj on means (its mean carries the outlier); on medians it is the scan
    dominant = _finding(a, "dominant")
    assert dominant.component == "in_proj" and "on medians the largest component is SSM scan" in dominant.text
    host = _finding(a, "host")
    assert host.text.startswith("Host LOADED: the original forward's repeats spread 4-1560%")
    assert host.value == pytest.approx(1560.0)
    assert dict(views.run_facts(a))["host load"].startswith("LOADED")
    assert any(w.startswith("host LOADED: the original forward's repeats spread") for w in a.warnings)
    frames = a.summary_frames()
    assert frames["summary_run"].host_loaded.iloc[0]
    pts = frames["summary_points"].set_index("seqlen")
    assert bool(pts.loc[longest, "host_noisy"]) and not bool(pts.loc[1024, "host_noisy"])


def test_marker_cost_names_the_basis_that_holds(tmp_path):
    # markers inflate every span but the scan's (host cost between the small operators): the wall share of the
    # scan falls, its kernel share (operator time) does not
    longest = 16384
    inflate = {(longest, c): 4.0 for c in ("in_proj", "conv1d", "ssm_params", "gating", "out_proj")}
    hook = _with_points({}, markers=(300.0, 2.0), inflate=inflate)
    run = make_run(tmp_path / "markers", Spec(**CPU), extra_tables=hook)
    a = RunAnalysis(run, use_calibration=False)
    scan = _finding(a, "scan")
    raw = a.data.components[(a.data.components.seqlen == longest) & (a.data.components.family == "mamba1")]
    kernel = raw.groupby("component").kernel_ms_mean.sum()
    share_kernel = 100 * kernel["ssm_scan"] / kernel.sum()
    assert f"on the kernel basis (operator time, which excludes the markers' host cost) it is {share_kernel:.0f}%" \
        in scan.text
    assert noise.is_unstable(scan.text)
    assert a.host_load.loaded is False  # the repeats agree: markers, not the host


def test_scaling_fit_carried_by_one_point_is_no_finding(tmp_path):
    # the case: one outlier at the shortest length (453 ms at 64 tokens vs 12.7 ms at 128)
    seqlens = np.array([64, 128, 256, 512])
    times = np.array([453.0, 12.7, 25.1, 50.6])
    slope = float(np.polyfit(np.log(seqlens), np.log(times), 1)[0])
    assert slope < 0
    assert fit_flag(slope, loo_exponents(seqlens, times), 4) == "is negative"
    assert theil_sen_exponent(seqlens, times) == pytest.approx(np.median(
        [np.log(times[j] / times[i]) / np.log(seqlens[j] / seqlens[i]) for i in range(4) for j in range(i + 1, 4)]))
    assert fit_flag(1.0, loo_exponents(seqlens[1:], times[1:]), 3) is None  # the clean lengths agree
    outlier = times.copy()
    outlier[-1] = 500.0  # one long point far too slow: positive exponent, but only because of it
    loo = loo_exponents(seqlens, outlier)
    ls = float(np.polyfit(np.log(seqlens), np.log(outlier), 1)[0])
    assert ls > 0 and fit_flag(ls, loo, 4) == "is carried by one point"

    # in a report: the scan's exponent is flagged, not stated, and marked in the tables
    laws = dict(Spec().laws, ssm_scan=(1.0, 1.0))
    run = make_run(tmp_path / "outlier", Spec(**CPU, laws=laws), extra_tables=_with_points(
        {}, inflate={(1024, "ssm_scan"): 1.0}))
    a = RunAnalysis(run, use_calibration=False)
    clean = a.scaling.set_index(["family", "component"]).loc[("mamba1", "ssm_scan")]
    assert clean.exponent == pytest.approx(1.0) and pd.isna(clean.fit_flag)
    assert "exponent 1.00" in _finding(a, "scan").text

    def spike(writer, comps):
        rows = comps[comps.seqlen == 1024].to_dict("records")
        for r in rows:
            if r["component"] == "ssm_scan":
                r["wall_ms_mean"] = r["wall_ms_median"] = r["wall_ms_median"] * 40
        writer.write_rows("components", rows, int(comps[comps.seqlen == 1024].point_id.iloc[0]))
    run = make_run(tmp_path / "spike", Spec(**CPU, laws=laws), extra_tables=spike)
    a = RunAnalysis(run, use_calibration=False)
    fit = a.scaling.set_index(["family", "component"]).loc[("mamba1", "ssm_scan")]
    assert fit.fit_flag in ("is negative", "is carried by one point")
    assert fit.exponent_theil_sen == pytest.approx(1.0, abs=0.05)
    text = _finding(a, "scan").text
    assert f"exponent {fit.exponent:.2f}" not in text and f"no exponent stated (the fit {fit.fit_flag})" in text
    view = views.scaling_view(a.scaling, a.crossovers, a.basis)
    scan_row = next(r for r in view.rows if r[0] == "SSM scan")
    assert scan_row[1] == f"{fit.exponent:.2f}?" and "fit_flag" in view.caption


def test_memory_reads_in_one_unit_in_findings_and_tables(tmp_path):
    run = make_run(tmp_path / "mem", Spec(**CPU), extra_tables=_with_points({}))
    a = RunAnalysis(run, use_calibration=False)
    cache = 81_920.0  # the decode cache: 0.07812 MiB in the findings, 81.9 kB in the table before
    assert mib(cache) == "0.07812 MiB"
    assert views._bytes(cache) == mib(cache)
    view = views.attribution_view(a.components.assign(cache_state_bytes=cache), "mamba1", 1, 16384, a.basis)
    assert view.rows[0][view.headers.index("cache")] == "0.07812 MiB"
