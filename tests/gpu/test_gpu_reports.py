"""GPU checks of the reports (run on the device; skipped on CPU).

`mambaprof calibrate` on the GPU measures copy bandwidth and bf16 GEMM throughput below the datasheet
peaks but within a plausible fraction of them; a report over a real GPU trace puts every block
component under its roof (a component above it would mean kernel time is missing from the
attribution) and uses the datasheet peaks of the device.
"""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd
import pytest
import torch
from support.cli import run_cli

from mambaprof.collectors.calibration import calibrate
from mambaprof.env import mamba_ssm_available
from mambaprof.reports.calibration import calibrated_peaks
from mambaprof.reports.peaks import lookup_known

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_calibrate_against_the_datasheet():
    dev = torch.device("cuda:0")
    name, measurements = calibrate(dev, ["bfloat16", "float32"])
    peaks = calibrated_peaks(name, [asdict(m) for m in measurements])
    known = lookup_known(torch.cuda.get_device_name(dev))
    assert peaks.gb_per_s > 100 and peaks.tflops("bfloat16") > 10
    for m in measurements:
        assert m.best_ms <= m.median_ms
    if known is None:
        pytest.skip(f"no datasheet entry for {torch.cuda.get_device_name(dev)} to compare with")
    assert 0.4 * known.gb_per_s <= peaks.gb_per_s <= 1.05 * known.gb_per_s, (peaks, known)
    assert 0.3 * known.tflops("bf16") <= peaks.tflops("bf16") <= 1.05 * known.tflops("bf16"), (peaks, known)
    assert 0.3 * known.tflops("fp32") <= peaks.tflops("fp32") <= 1.05 * known.tflops("fp32"), (peaks, known)


@pytest.mark.skipif(not mamba_ssm_available(), reason="needs mamba_ssm and causal_conv1d")
@pytest.mark.parametrize("preset", ["mamba-130m", "mamba2-130m"])
def test_report_over_a_gpu_trace_stays_under_the_roof(tmp_path, preset):
    run, summary = tmp_path / "run", tmp_path / "summary"
    res = run_cli("trace", "--preset", preset, "--backend", "mamba_ssm", "--seqlens", "1024,4096", "--batch", "1,8",
                  "--repeats", "5", "--warmup", "2", "--profile-repeats", "2", "--no-tb", "--no-energy", "--no-io",
                  "--quiet", "--out", str(run))
    assert res.returncode == 0, res.stderr
    res = run_cli("report", str(run), "--parquet", str(summary), "--no-calibration")
    assert res.returncode == 0, res.stderr
    assert max(len(line) for line in res.stdout.splitlines()) <= 100
    comps = pd.read_parquet(summary / "summary_components.parquet")
    run_row = pd.read_parquet(summary / "summary_run.parquet").iloc[0]
    assert run_row.time_basis == "kernel"
    if lookup_known(run_row.device_name) is not None:
        assert "datasheet" in run_row.peaks_source
        block = comps[comps.family.isin(["mamba1", "mamba2"]) & comps.roof_pct.notna()]
        assert len(block) > 0
        assert (block.roof_pct <= 110).all(), block[block.roof_pct > 110][["seqlen", "batch", "component", "roof_pct"]]
        gemm = block[(block.component == "in_proj") & (block.batch == 8) & (block.seqlen == 4096)]
        assert len(gemm) == 1, gemm  # one row per point x family x component
        assert (gemm.verdict == "compute-bound").all(), gemm
    scan = comps[(comps.component == "ssm_scan") & comps.family.isin(["mamba1", "mamba2"])]
    assert len(scan) == 4, scan  # 2 seqlens x 2 batches, one family
    assert (scan.kernel_ms > 0).all() and (scan.share_of_block_pct > 1).all()
    points = pd.read_parquet(summary / "summary_points.parquet")
    assert len(points) == 4 and points.regime.notna().all(), points
    assert set(points.regime) <= {"launch-bound", "mixed", "device-bound"}
