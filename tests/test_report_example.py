"""The committed reports (docs/examples/ and the H200 study in docs/study/) agree with the raw tables
they were made from.

Everything here is recomputed with pandas/numpy straight from the runs' own Parquet tables
(docs/examples/raw/<run>/, tests/fixtures/device_runs/2026-12-02-h200-study/<model>/: a copy of the tables
of benchmarks/data/2026-12-02-h200-study/<model>/), independently of
mambaprof.reports, and compared with the summary tables beside each report. Regenerate the example with
benchmarks/make_report_example.py (see docs/examples/README.md), the study's with the command in
docs/study/README.md.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"
STUDY = ROOT / "docs" / "study"
DEVICE_RUNS = ROOT / "tests" / "fixtures" / "device_runs"  # copies of benchmarks/data/ (tests/fixtures/README.md)
STUDY_RAW = DEVICE_RUNS / "2026-12-02-h200-study"
MANIFEST = json.loads((EXAMPLES / "manifest.json").read_text())
BLOCK = ("mamba1", "mamba2")

#: label -> (raw run directory, summary directory, the report pages that state its findings)
REPORTS = {f"examples/{r['label']}": (EXAMPLES / "raw" / r["label"], EXAMPLES / "summary" / r["label"],
                                      [EXAMPLES / "report.html", EXAMPLES / "compare.html"])
           for r in MANIFEST["runs"]}
REPORTS.update({f"study/{d.name}": (STUDY_RAW / d.name, d, [STUDY / "report.html"])
                for d in sorted((STUDY / "summary").iterdir()) if d.is_dir()})
LABELS = sorted(REPORTS)
STUDY_LABELS = [label for label in LABELS if label.startswith("study/")]


def raw(label: str, table: str) -> pd.DataFrame:
    return pd.read_parquet(REPORTS[label][0] / table)


def summary(label: str, table: str) -> pd.DataFrame:
    return pd.read_parquet(REPORTS[label][1] / f"{table}.parquet")


@pytest.mark.parametrize("label", LABELS)
def test_component_times_from_raw_tables(label):
    comps, points = raw(label, "components"), raw(label, "points")
    ok = points.loc[points.status == "ok", "point_id"]
    comps = comps[comps.point_id.isin(ok)]
    got = summary(label, "summary_components").set_index(["point_id", "family", "component"])
    keys = ["point_id", "family", "component"]
    wall = comps.groupby(keys).wall_ms_mean.sum(min_count=1)
    kernel = comps.groupby(keys).kernel_ms_mean.sum(min_count=1)
    np.testing.assert_allclose(got.wall_ms.reindex(wall.index), wall, rtol=1e-9)
    np.testing.assert_allclose(got.kernel_ms.reindex(kernel.index), kernel, rtol=1e-9)
    basis = got.time_basis.iloc[0]
    assert (got.time_basis == basis).all() and basis in ("kernel", "wall")
    time = (kernel if basis == "kernel" else wall).rename("time")
    np.testing.assert_allclose(got.time_ms.reindex(time.index), time, rtol=1e-9)
    # shares of block time, recomputed per point and family
    frame = time.reset_index()
    frame = frame[frame.family.isin(BLOCK)]
    frame["share"] = frame.time / frame.groupby(["point_id", "family"]).time.transform("sum") * 100
    share = frame.set_index(keys).share
    np.testing.assert_allclose(got.share_of_block_pct.reindex(share.index), share, rtol=1e-9)
    # achieved rates from the closed-form counts
    flops = comps.groupby(keys).flops.sum(min_count=1)
    rate = (flops / (time * 1e-3) / 1e12).replace([np.inf], np.nan)
    np.testing.assert_allclose(got.achieved_tflop_per_s.reindex(rate.index), rate, rtol=1e-9)


#: real runs with their kernel events: the example's own (when small enough to commit) and the H200 device run
KERNEL_RUNS = [REPORTS[label][0] for label in LABELS if (REPORTS[label][0] / "kernels").is_dir()] + \
    sorted(DEVICE_RUNS.glob("2026-12-02-h200-hardware*/mamba*"))


@pytest.mark.parametrize("run", KERNEL_RUNS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_component_kernel_times_are_the_sum_of_their_kernel_events(run):
    # kernel events -> the components table (here); the components table -> the summary (the tests above)
    kernels, comps = pd.read_parquet(run / "kernels"), pd.read_parquet(run / "components")
    keys = ["point_id", "layer", "component"]
    per_iter = kernels.groupby([*keys, "iteration"]).duration_us.sum().unstack(fill_value=0)
    from_events = per_iter.mean(axis=1) / 1000
    got = comps.set_index(keys).kernel_ms_mean.reindex(from_events.index)
    assert len(from_events) >= 10 and got.notna().all()
    np.testing.assert_allclose(got, from_events, rtol=1e-6)
    named = kernels[kernels.component != "other"].duration_us.sum() / kernels.duration_us.sum()
    assert named >= 0.98  # the trace issue's attribution target, on the device's own events


@pytest.mark.parametrize("label", LABELS)
def test_points_regime_and_scaling_from_raw_tables(label):
    points = raw(label, "points").set_index("point_id")
    got = summary(label, "summary_points").set_index("point_id")
    ok = got[got.status == "ok"]
    np.testing.assert_allclose(ok.wall_ms, points.loc[ok.index, "original_ms_median"], rtol=1e-12)
    idle = np.clip(1 - ok.kernel_ms / ok.wall_ms, 0, None) * 100
    np.testing.assert_allclose(ok.idle_pct, idle, rtol=1e-9)
    regime = np.where(ok.wall_ms >= 2 * ok.kernel_ms, "launch-bound", np.where(idle >= 20, "mixed", "device-bound"))
    assert list(ok.regime) == list(regime)
    # the SSM scan's fitted exponent, from the basis times of the raw components
    comps = summary(label, "summary_components")
    scaling = summary(label, "summary_scaling")
    for (fam, batch), grp in comps[comps.component == "ssm_scan"].groupby(["family", "batch"]):
        grp = grp[grp.time_ms > 0].sort_values("seqlen")
        slope = np.polyfit(np.log(grp.seqlen), np.log(grp.time_ms), 1)[0]
        row = scaling[(scaling.family == fam) & (scaling.batch == batch) & (scaling.component == "ssm_scan")]
        assert row.exponent.iloc[0] == pytest.approx(slope, rel=1e-9)


@pytest.mark.parametrize("label", LABELS)
def test_findings_state_the_summary_numbers(label):
    comps = summary(label, "summary_components")
    findings = summary(label, "summary_findings")
    basis = comps.time_basis.iloc[0]
    for finding in findings[findings.kind == "scan"].itertuples():
        row = comps[(comps.family == finding.family) & (comps.batch == finding.batch)
                    & (comps.seqlen == finding.seqlen) & (comps.component == "ssm_scan")].iloc[0]
        assert finding.value == pytest.approx(row.share_of_block_pct)
        assert f"SSM scan: {row.share_of_block_pct:.0f}% of" in finding.text and f"block {basis} time" in finding.text
        assert finding.text in "".join(page.read_text() for page in REPORTS[label][2])


def test_pages_and_screenshots_are_committed():
    for name in MANIFEST["files"]:
        path = EXAMPLES / name
        assert path.is_file(), name
        if name.endswith(".png"):
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        else:
            text = path.read_text()
            assert text.count('data-plot="') >= 4 and "<script" not in text


@pytest.mark.parametrize("label", STUDY_LABELS)
def test_study_components_stay_under_the_roof(label):
    # what tests/gpu/test_gpu_reports.py asserts of a fresh GPU trace, on the H200 study's committed summaries
    comps = summary(label, "summary_components")
    run = summary(label, "summary_run").iloc[0]
    assert run.time_basis == "kernel" and "datasheet" in run.peaks_source and "H200" in run.device_name
    block = comps[comps.family.isin(BLOCK) & comps.roof_pct.notna()]
    assert len(block) > 0
    assert (block.roof_pct <= 110).all(), block[block.roof_pct > 110][["seqlen", "batch", "component", "roof_pct"]]
    gemm = block[(block.component == "in_proj") & (block.batch == 8) & (block.seqlen >= 4096)]
    assert len(gemm) and (gemm.verdict == "compute-bound").all()
    scan = comps[(comps.component == "ssm_scan") & comps.family.isin(BLOCK)]
    assert (scan.kernel_ms > 0).all() and (scan.share_of_block_pct > 1).all()
