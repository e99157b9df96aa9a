"""Nsight Compute: the no-ncu path, CSV parsing, attribution by NVTX range, and the whole collector run
against a stand-in `ncu` executable (the profiled process itself runs for real, on the CPU)."""

import os
import stat
import sys
import textwrap

import pytest
import torch

from mambaprof.collectors import ncu as ncu_mod
from mambaprof.collectors.context import PointContext, PointSpec
from mambaprof.collectors.markers import BLOCK, FORWARD, Window
from mambaprof.collectors.ncu import (
    FILTER_RANGE,
    FilterRange,
    NcuCollector,
    NcuNotFoundError,
    attribute_ncu,
    innermost_window,
    parse_ncu_csv,
    require_ncu,
)
from mambaprof.model.inputs import make_call
from mambaprof.model.loading import load_preset
from mambaprof.model.structure import discover
from mambaprof.run.instrument import Instrumenter

HEADER = ('"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size",'
          '"Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"')


def _csv(kernels):
    """Details-page CSV for [(id, name, {metric: (unit, value)})]."""
    lines = ["==PROF== Connected to process 4242 (/usr/bin/python3)", HEADER]
    for kid, name, metrics in kernels:
        for metric, (unit, value) in metrics.items():
            lines.append(f'"{kid}","4242","python3","host","{name}","1","7","(128, 1, 1)","(64, 1, 1)","0","9.0",'
                         f'"Command line profiler metrics","{metric}","{unit}","{value}"')
    return "\n".join(lines) + "\n"


def _metrics(read_mb, write_mb, dur_us):
    return {"dram__bytes_read.sum": ("Mbyte", f"{read_mb:,.2f}"), "dram__bytes_write.sum": ("byte", f"{write_mb:,.0f}"),
            "sm__throughput.avg.pct_of_peak_sustained_elapsed": ("%", "61.5"),
            "sm__warps_active.avg.pct_of_peak_sustained_active": ("%", "n/a"),
            "gpu__time_duration.sum": ("nsecond", f"{dur_us * 1000:,.0f}")}


def test_parse_ncu_csv_units_separators_and_na():
    text = _csv([(0, "ampere_bf16_s16816gemm", _metrics(1234.5, 2048, 12.5)),
                 (1, "causal_conv1d_fwd_kernel", _metrics(1.0, 0, 3.0))])
    kernels = parse_ncu_csv(text)
    assert [k.ncu_id for k in kernels] == [0, 1] and kernels[0].name == "ampere_bf16_s16816gemm"
    m = kernels[0].metrics
    assert m["dram__bytes_read.sum"] == pytest.approx(1234.5e6) and m["dram__bytes_write.sum"] == 2048
    assert m["gpu__time_duration.sum"] == pytest.approx(12.5)  # ns -> us
    assert m["sm__throughput.avg.pct_of_peak_sustained_elapsed"] == 61.5
    assert m["sm__warps_active.avg.pct_of_peak_sustained_active"] is None
    assert parse_ncu_csv("==ERROR== no kernels were profiled\n") == []


def test_attribution_by_nvtx_range():
    kernels = parse_ncu_csv(_csv([
        (5, "gemm_a", _metrics(10, 10, 1)), (6, "causal_conv1d_fwd", _metrics(1, 1, 1)),
        (7, "add_kernel", _metrics(1, 1, 1)), (8, "gemm_b", _metrics(2, 2, 1)), (9, "scan_kernel", _metrics(3, 3, 1)),
        (10, "stray", _metrics(1, 1, 1)), (11, "fwd_glue", _metrics(1, 1, 1))]))
    renamed = {5: "mambaprof/L0/in_proj", 6: "mambaprof/L0/conv1d", 7: "mambaprof/L1/block",
               8: "mambaprof/L2/mixer", 9: "mambaprof/L2/mixer", 10: "stray", 11: "mambaprof/model/forward"}
    rows = attribute_ncu(kernels, renamed, {0: "mamba1", 1: "mamba1", 2: "mamba1"}, fused_norm_layers={1})
    got = [(r["ncu_id"], r["layer"], r["component"], r["attribution"]) for r in rows]
    assert got == [(5, 0, "in_proj", "nvtx"), (6, 0, "conv1d", "nvtx"), (7, 1, "norm", "nvtx"),
                   (8, 2, "in_proj", "name_rule"), (9, 2, "ssm_scan", "name_rule"), (10, -1, "other", "none"),
                   (11, -1, "other", "none")]
    assert rows[0]["dram_bytes"] == pytest.approx(10e6 + 10) and rows[0]["seq"] == 0
    assert rows[0]["range_name"] == "mambaprof/L0/in_proj" and rows[5]["range_name"] is None
    assert innermost_window("mambaprof/model/forward/mambaprof/L3/ssm_scan") == Window(3, "ssm_scan")


def test_filter_range_ends_after_the_last_profiled_layer():
    limit = FilterRange(layers=2)
    limit.enter(Window(-1, FORWARD))
    assert limit._id == FILTER_RANGE and not limit.done
    limit.enter(Window(1, BLOCK))
    assert not limit.done
    limit.enter(Window(2, BLOCK))
    assert limit.done and limit._id is None
    limit.exit(Window(-1, FORWARD))
    assert limit.done


def test_no_ncu_is_a_clear_error(monkeypatch, cli, tmp_path):
    monkeypatch.setattr(ncu_mod, "NCU_GLOBS", (str(tmp_path / "nothing" / "ncu"),))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NcuNotFoundError, match="needs Nsight Compute"):
        require_ncu()
    if ncu_mod.find_ncu() is None and not any(os.path.exists(p) for p in ("/usr/local/cuda/bin/ncu",)):
        res = cli("trace", "--ncu", "--out", str(tmp_path / "run"), "--seqlens", "16", "--quiet",
                  env={"PATH": os.path.dirname(sys.executable)})
        assert res.returncode == 2 and "Traceback" not in res.stderr
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: --ncu needs Nsight Compute"), res.stderr
        assert not (tmp_path / "run").exists()


FAKE_NCU = textwrap.dedent('''\
    #!{python}
    """Stand-in for ncu: runs the profiled command for real; exports a fixed report."""
    import json, subprocess, sys
    args = sys.argv[1:]
    if "--import" in args:
        report = args[args.index("--import") + 1]
        data = json.load(open(report))
        renamed = "--print-nvtx-rename" in args
        print('{header}')
        for k in data["kernels"]:
            name = k["range"] if renamed and k["range"] else k["name"]
            for metric, (unit, value) in k["metrics"].items():
                print(f'"{{k["id"]}}","1","python3","h","{{name}}","1","7","(1, 1, 1)","(1, 1, 1)","0","9.0",'
                      f'"Command line profiler metrics","{{metric}}","{{unit}}","{{value}}"')
        sys.exit(0)
    assert args[args.index("--nvtx-include") + 1] == "mambaprof_ncu", args
    report = args[args.index("--export") + 1]
    target = args[args.index("--force-overwrite") + 1:]
    proc = subprocess.run(target, capture_output=True, text=True)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        sys.exit(proc.returncode)
    m = {{"dram__bytes_read.sum": ["byte", "4096"], "dram__bytes_write.sum": ["byte", "1024"],
         "gpu__time_duration.sum": ["nsecond", "2000"]}}
    kernels = [dict(id=0, name="gemm", range="mambaprof/L0/in_proj", metrics=m),
               dict(id=1, name="conv", range="mambaprof/L0/conv1d", metrics=m),
               dict(id=2, name="elementwise", range="mambaprof/model/forward", metrics=m)]
    json.dump({{"kernels": kernels, "target_stdout": proc.stdout}}, open(report, "w"))
''')


@pytest.mark.slow
def test_collector_runs_the_target_under_a_stand_in_ncu(tmp_path):
    fake = tmp_path / "bin" / "ncu"
    fake.parent.mkdir()
    fake.write_text(FAKE_NCU.format(python=sys.executable, header=HEADER.replace('"', '\\"')))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    loaded = load_preset("mamba-tiny", torch.device("cpu"), torch.float32, backend="hf")
    st = discover(loaded.model)
    spec = PointSpec(2, 1, 16, torch.device("cpu"), torch.float32, 1, 0, 0, "split")
    ctx = PointContext(spec, st, make_call(loaded.model, st, 1, 16, spec.device, spec.dtype, None), Instrumenter(st))
    collector = NcuCollector(fake, {"preset": "mamba-tiny", "backend": "hf"}, "float32", "split", 0,
                             tmp_path / "run" / "ncu", run_dir=tmp_path / "run", layers=1, warmup=1)
    row = {"run_id": "r", "rank": 0, "world_size": 1, "point_id": 2, "device": "cpu", "batch": 1, "seqlen": 16,
           "dtype": "float32"}
    out = collector.measure_point(ctx, row)
    status = out["collector_status"][0]
    log = (tmp_path / "run" / "ncu" / "point00002_b1_l16.log").read_text()
    assert "one marked forward of 4 Mamba layers done" in log, log  # the target process really ran
    rows = out["hw_counters"]
    assert [(r["layer"], r["component"], r["attribution"]) for r in rows] == [
        (0, "in_proj", "nvtx"), (0, "conv1d", "nvtx"), (-1, "other", "none")]
    assert rows[0]["dram_bytes"] == 5120 and rows[0]["duration_us"] == 2.0 and rows[0]["point_id"] == 2
    assert status["status"] == "partial" and "1 of 3 kernels" in status["reason"]
    assert '"report": "ncu/point00002_b1_l16.ncu-rep"' in status["details_json"]


def test_collector_reports_ncu_failure(tmp_path):
    fake = tmp_path / "ncu"
    fake.write_text("#!/bin/sh\necho '==ERROR== ERR_NVGPUCTRPERM - The user does not have permission' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    loaded = load_preset("mamba-tiny", torch.device("cpu"), torch.float32, backend="hf")
    st = discover(loaded.model)
    spec = PointSpec(0, 1, 16, torch.device("cpu"), torch.float32, 1, 0, 0, "split")
    ctx = PointContext(spec, st, make_call(loaded.model, st, 1, 16, spec.device, spec.dtype, None), Instrumenter(st))
    out = NcuCollector(fake, {"preset": "mamba-tiny"}, "float32", "split", 0, tmp_path / "out").measure_point(
        ctx, {"run_id": "r", "rank": 0, "world_size": 1, "point_id": 0})
    status = out["collector_status"][0]
    assert "hw_counters" not in out and status["status"] == "failed"
    assert "ERR_NVGPUCTRPERM" in status["reason"] and "exited with 1" in status["reason"]
