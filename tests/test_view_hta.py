"""`mambaprof view` without TensorBoard: each point's trace listed for Perfetto, laid out one folder per point so
HolisticTraceAnalysis reads it, and HTA's kernel and temporal breakdown printed from it; on a committed GPU trace
(tests/fixtures/gpu_trace) and a CPU trace, checked against the numbers in the files."""

import gzip
import json
import shutil
from pathlib import Path

import pytest

from mambaprof.cli import view

FIXTURE = Path(__file__).parent / "fixtures" / "gpu_trace" / "a100_simple_add.pt.trace.json.gz"
GPU_POINT = "point0000_b8_l1024"
CPU_POINT = "point0001_b1_l64"


@pytest.fixture
def run(tmp_path):
    """A run directory's tb/ with one GPU point trace (the fixture) and one CPU point trace (no kernels)."""
    traces = tmp_path / "run" / "tb" / "20261203T000000Z-abcdef01"
    traces.mkdir(parents=True)
    shutil.copy(FIXTURE, traces / f"{GPU_POINT}.1796295721081228770.pt.trace.json.gz")
    cpu = {"schemaVersion": 1, "traceEvents": [
        {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "pid": 1, "tid": 1, "ts": 10, "dur": 50, "args": {}},
        {"ph": "X", "cat": "cpu_op", "name": "aten::add", "pid": 1, "tid": 1, "ts": 70, "dur": 5, "args": {}}]}
    with gzip.open(traces / f"{CPU_POINT}.1796295732879289019.pt.trace.json.gz", "wt") as fh:
        json.dump(cpu, fh)
    return tmp_path / "run"


def _durations(path: Path) -> dict[str, int]:
    with gzip.open(path, "rt") as fh:
        events = json.load(fh)["traceEvents"]
    out: dict[str, int] = {}
    for e in events:
        if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset"):
            out[e["cat"]] = out.get(e["cat"], 0) + int(e["dur"])
    return out


def test_fixture_is_a_small_valid_chrome_trace():
    assert FIXTURE.stat().st_size < 1_000_000
    with gzip.open(FIXTURE, "rt") as fh:
        trace = json.load(fh)
    events = trace["traceEvents"]
    assert all("ph" in e and "name" in e for e in events)  # what Perfetto's JSON importer needs
    kernels = [e for e in events if e.get("cat") == "kernel"]
    assert len(kernels) == 79 and all(e["dur"] > 0 and "stream" in e["args"] for e in kernels)
    assert any(e.get("cat") == "cuda_runtime" for e in events) and trace["deviceProperties"]


def test_view_prints_traces_perfetto_and_hta_breakdowns(run, tmp_path, cli):
    keep = tmp_path / "hta"
    res = cli("view", str(run), "--no-tensorboard", "--hta-dir", str(keep))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "2 point trace(s) under" in out and f"  {GPU_POINT}: {run / 'tb'}" in out
    assert "Perfetto: open https://ui.perfetto.dev" in out
    # HTA's numbers are the file's: memory kernels = memcpy + memset, computation the kernels
    dur = _durations(FIXTURE)
    memory = dur["gpu_memcpy"] + dur["gpu_memset"]
    assert f"kernel time by type: memory {memory:,} us (" in out
    computation = int(out.split("computation ")[1].split(" us")[0].replace(",", ""))
    assert 0.99 * dur["kernel"] <= computation <= dur["kernel"]
    temporal = out.split("temporal (GPU): idle ")[1].split(" of the traced span")[0]
    idle, compute, other = (float(part.split()[-1].rstrip("%")) for part in temporal.split(", "))
    assert idle + compute + other == pytest.approx(100.0, abs=0.2) and idle > 90  # one small job, mostly idle
    assert f"{CPU_POINT}: {keep / CPU_POINT}" in out and view.CPU_ONLY in out
    assert "TensorBoard: not started (--no-tensorboard)." in out
    # the kept layout is what a user hands HTA themselves
    from hta.trace_analysis import TraceAnalysis

    analysis = TraceAnalysis(trace_dir=str(keep / GPU_POINT))
    by_type, _ = analysis.get_gpu_kernel_breakdown(visualize=False)
    assert int(by_type.set_index("kernel_type").loc["MEMORY", "sum"]) == memory
    # a second run never writes into a folder that is not empty
    res = cli("view", str(run), "--no-tensorboard", "--hta-dir", str(keep))
    assert res.returncode == 2 and "exists and is not an empty folder" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_view_without_hta_says_so_in_one_line(run, monkeypatch, capsys):
    monkeypatch.setattr(view, "hta_available", lambda: False)
    view.print_viewers(run / "tb", None)
    lines = capsys.readouterr().out.splitlines()
    hta = [line for line in lines if line.startswith("HTA")]
    assert hta == ["HTA: not installed (pip install HolisticTraceAnalysis for each point's kernel and temporal "
                   "breakdown)."]


def test_view_after_the_readme_first_command_needs_no_extra(run, monkeypatch, capsys):
    # `pip install torch==2.13.0 -e .`: neither hta nor torch-tb-profiler; view still lists and explains, exit 0
    monkeypatch.setattr(view, "hta_available", lambda: False)
    monkeypatch.setattr(view, "has_tensorboard_plugin", lambda: False)
    view.view_command(run=run, port=None, start_timeout=1.0, hta_dir=None, tensorboard=None, debug=False)
    out = capsys.readouterr().out
    assert "2 point trace(s) under" in out and "Perfetto: open https://ui.perfetto.dev" in out
    assert out.strip().splitlines()[-1] == ("TensorBoard: not started (torch-tb-profiler, deprecated upstream, is "
                                             "not installed; pip install 'mambaprof[tb]').")
    from mambaprof.errors import MambaprofError

    with pytest.raises(MambaprofError, match="torch-tb-profiler"):  # asked for explicitly: one clear error
        view.view_command(run=run, port=None, start_timeout=1.0, hta_dir=None, tensorboard=True, debug=False)
