"""Faults mid-run: every finished point stays readable, the run says it is incomplete and why."""

from __future__ import annotations

import json
import resource
import signal
import sys
import threading
import time

import pandas as pd
import pytest
import torch
from support.cli import run_process
from support.hardware_fakes import FakeDevice
from support.reliability import FAST, TINY_HF, write

from mambaprof.collectors.nvml import NvmlRunCollector, NvmlSampler
from mambaprof.run.sweep import TraceConfig
from mambaprof.run.tracing import ModelSource, trace
from mambaprof.storage.rundir import read_run_record, read_table, run_state

pytestmark = pytest.mark.reliability("faults")

GUARDED = TINY_HF + """
    import os
    import torch

    class Guard(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
        def forward(self, input_ids, **kw):
            if input_ids.shape[1] == int(os.environ.get("FAIL_AT", "-1")):
                raise {exc}
            return self.inner(input_ids=input_ids, **kw)

    _build = build_model
    def build_model():
        return Guard(_build())
"""


def _finished_points_are_whole(out):
    points = read_table(out, "points").to_pandas()
    ok = points[points.status == "ok"]
    comps = read_table(out, "components").to_pandas()
    assert set(comps.point_id) == set(ok.point_id)
    return points


def test_oom_at_a_point_and_the_sweep_goes_on(tmp_path, cli):
    oom = 'torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80 GiB")'
    model = write(tmp_path, GUARDED.format(exc=oom))
    out = tmp_path / "run"
    res = cli("trace", str(model), "--out", str(out), "--seqlens", "16,32,64", *FAST, env={"FAIL_AT": "32"})
    assert res.returncode == 0, res.stderr
    points = _finished_points_are_whole(out).set_index("seqlen")
    assert list(points.status.loc[[16, 32, 64]]) == ["ok", "oom", "ok"]
    assert "out of memory" in points.loc[32, "error"]
    run = read_run_record(out)
    assert run["status"] == "incomplete" and run["n_points_oom"] == 1 and run["n_points_ok"] == 2
    assert "1 point(s) oom" in run["status_reason"]


def test_exception_in_the_users_model_at_one_point(tmp_path, cli):
    model = write(tmp_path, GUARDED.format(exc='ValueError("position ids overflow")'))
    out = tmp_path / "run"
    res = cli("trace", str(model), "--out", str(out), "--seqlens", "16,32,64", *FAST, env={"FAIL_AT": "16"})
    assert res.returncode == 0, res.stderr
    points = _finished_points_are_whole(out).set_index("seqlen")
    assert points.loc[16, "status"] == "error" and points.loc[16, "error"] == "ValueError: position ids overflow"
    assert list(points.status.loc[[32, 64]]) == ["ok", "ok"]
    assert read_run_record(out)["n_points_error"] == 1


def test_every_point_failing_is_a_failed_run(tmp_path, cli):
    model = write(tmp_path, GUARDED.format(exc='RuntimeError("broken")'))
    res = cli("trace", str(model), "--out", str(tmp_path / "run"), "--seqlens", "16", *FAST, env={"FAIL_AT": "16"})
    assert res.returncode == 3
    assert read_run_record(tmp_path / "run")["status"] == "failed"
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "no point finished" in errors[0] and "RuntimeError: broken" in errors[0], res.stderr
    assert "Traceback" not in res.stderr


def _start(spawn, out, seqlens="16,32,64,128,256,512,1024,2048"):
    return spawn([sys.executable, "-m", "mambaprof", "trace", "--out", str(out), "--seqlens", seqlens, *FAST])


def _wait_for_points(proc, out, n=1):
    """Wait until `n` points are on disk; the run must still be going then (a hang is the pytest-timeout)."""
    folder = out / "points"
    while not (folder.is_dir() and len(list(folder.glob("part-*.parquet"))) >= n):
        assert proc.poll() is None, (f"the run ended before {n} point(s) finished", proc.communicate())
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_keeps_finished_points(tmp_path, spawn, sig, code):
    out = tmp_path / "run"
    proc = _start(spawn, out)
    _wait_for_points(proc, out)
    proc.send_signal(sig)
    _, stderr = proc.communicate()
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    run = read_run_record(out)
    assert run["status"] == "incomplete" and f"interrupted by {sig.name}" in run["status_reason"]
    assert run["finished_at"] is not None
    points = _finished_points_are_whole(out)
    assert 1 <= len(points) < 8 and (points.status == "ok").all()


@pytest.mark.slow
def test_repeated_sigterm_still_closes_the_run(tmp_path, spawn):
    # `timeout` signals the process and then its process group: the run gets SIGTERM twice (or more),
    # and the later ones arrive while the run record is being written; they must not cut that short
    out = tmp_path / "run"
    proc = _start(spawn, out)
    _wait_for_points(proc, out)
    for pause in (0.0, 0.02, 0.1, 0.3):
        time.sleep(pause)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate()
    assert proc.returncode == 143, stderr
    run = read_run_record(out)
    assert run["status"] == "incomplete" and "interrupted by SIGTERM" in run["status_reason"], run
    assert (_finished_points_are_whole(out).status == "ok").all()


@pytest.mark.slow
def test_sigkill_between_points_reads_as_incomplete(tmp_path, spawn):
    out = tmp_path / "run"
    proc = _start(spawn, out)
    _wait_for_points(proc, out, n=2)
    proc.kill()
    proc.communicate()
    run = read_run_record(out)
    assert run["status"] == "running"  # the process could not say anything...
    status, reason = run_state(run)  # ...but readers can tell
    assert status == "incomplete" and "no longer running" in reason and str(run["pid"]) in reason
    points = pd.read_parquet(out / "points")
    assert len(points) >= 2 and (points.status == "ok").all()
    assert not list(out.rglob(".*.tmp"))  # no temporary file left looking like data


@pytest.mark.slow
def test_disk_full_stops_cleanly(tmp_path):
    out = tmp_path / "run"
    limit = 250_000  # bytes: point 0's tables fit (kernels ~80 kB at L=16), point 1's kernels (~370 kB at L=128) not

    def cap():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = run_process([sys.executable, "-m", "mambaprof", "trace", "--out", str(out), "--seqlens", "16,128",
                        "--repeats", "1", "--warmup", "0", "--profile-repeats", "2", "--quiet", "--no-tb"],
                       preexec_fn=cap)
    assert proc.returncode == 4, proc.stderr
    assert "Traceback" not in proc.stderr
    line = [x for x in proc.stderr.splitlines() if x.strip()][-1]
    assert line.startswith("error: could not write results of point 1") and "File too large" in line
    assert "1 finished point(s) stay readable" in line
    run = read_run_record(out)
    assert run["status"] == "incomplete" and "File too large" in run["status_reason"]
    points = _finished_points_are_whole(out)
    assert list(points.point_id) == [0]
    assert not list(out.rglob("part-00001.parquet")) and not list(out.rglob(".*.tmp"))


def test_run_goes_on_when_nvml_dies_mid_run(tmp_path):
    """A whole trace with a sampler whose GPU is lost after a few samples: complete, samples kept, reason written."""
    point0 = threading.Event()

    class LostDuringPoint0(FakeDevice):
        def power_mw(self) -> int:
            point0.wait()  # the sampler's reads start once point 0 began (not a race with the sweep's setup)
            return super().power_mw()

    dev = LostDuringPoint0(lose_after=3)
    collector = NvmlRunCollector(NvmlSampler(dev, interval_ms=2.0))
    begin_point = collector.begin_point

    def begin_point_and_open(point_id: int) -> None:
        begin_point(point_id)
        point0.set()

    collector.begin_point = begin_point_and_open
    config = TraceConfig(seqlens=[16, 32], batches=[1], device=torch.device("cpu"), dtype=torch.float32,
                         repeats=2, warmup=1, profile_repeats=0, tensorboard=False)
    outcome = trace(ModelSource(), config, tmp_path / "run", run_collectors=[collector])
    assert outcome.result.status == "complete"
    samples = read_table(tmp_path / "run", "nvml_samples").to_pandas()
    assert 1 <= len(samples) <= 3 and set(samples.point_id) == {0}  # the GPU was lost during point 0
    assert (samples.run_id == outcome.run_id).all() and (samples.seqlen == 16).all()
    assert samples.phase.notna().all()
    status = read_table(tmp_path / "run", "collector_status").to_pandas()
    nvml = status[status.collector == "nvml"]
    assert set(nvml.status) == {"failed"}
    run_row = nvml[nvml.point_id.isna()].iloc[0]
    assert "GPU is lost" in run_row.reason
    details = json.loads(run_row.details_json)
    assert details["samples"] == 3 and details["gpu_name"] == "Fake GPU"
    assert details["samples_outside_points"] + len(samples) == 3  # taken before point 0 began
    point_row = nvml[nvml.point_id == 0].iloc[0]
    assert "GPU is lost" in point_row.reason
    assert dev.closed
