"""`mambaprof trace` with the hardware collectors, as a user runs it on a CPU machine."""

import json
import os
import stat

from mambaprof.storage.rundir import read_table

FAST = ["--repeats", "2", "--warmup", "1", "--profile-repeats", "1", "--quiet", "--no-tb"]


def test_cpu_trace_writes_hardware_tables_and_says_why_nvml_is_absent(tmp_path, cli):
    out = tmp_path / "run"
    res = cli("trace", "--out", str(out), "--seqlens", "16", "--memory-timeline", *FAST)
    assert res.returncode == 0, res.stderr
    status = read_table(out, "collector_status").to_pandas()
    by = {(r.collector, None if r.point_id != r.point_id else int(r.point_id)): r for r in status.itertuples()}
    assert by[("nvml", None)].status == "unavailable" and "NVIDIA GPUs only" in by[("nvml", None)].reason
    assert by[("energy", 0)].status == "unavailable" and "device is cpu" in by[("energy", 0)].reason
    assert read_table(out, "nvml_samples").num_rows == 0 and read_table(out, "energy").num_rows == 0
    memory = read_table(out, "memory").to_pandas()
    comps = read_table(out, "components").to_pandas()
    mixer = comps[comps.layer >= 0][["layer", "component"]]
    assert len(mixer.merge(memory, on=["layer", "component"])) == len(mixer)  # a memory row per component
    point = read_table(out, "memory_points").to_pylist()[0]
    assert point["weights_bytes"] > 0 and point["activation_peak_bytes"] > 0
    assert (out / point["timeline_path"]).is_file() and point["timeline_path"].startswith("memory_timeline/")
    io = read_table(out, "io").to_pandas()
    assert list(io.phase) == ["upload", "forward", "download"] and (io.phase_ms > 0).all()


def test_collectors_can_be_switched_off(tmp_path, cli):
    out = tmp_path / "run"
    res = cli("trace", "--out", str(out), "--seqlens", "16", "--no-nvml", "--no-energy", "--no-memory", "--no-io",
              *FAST)
    assert res.returncode == 0, res.stderr
    for table in ("memory", "memory_points", "io", "energy", "nvml_samples"):
        assert not (out / table).exists(), table
    status = read_table(out, "collector_status").to_pylist()
    assert [(s["collector"], s["status"], s["reason"]) for s in status] == [
        ("nvml", "unavailable", "NVML disabled (--no-nvml)")]
    assert json.loads(status[0]["details_json"])["samples"] == 0


def test_ncu_on_cpu_and_bad_interval_are_one_line_errors(tmp_path, cli):
    fake = tmp_path / "bin" / "ncu"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {"PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"}
    for args, expect in ((["--ncu", "--device", "cpu"], "--ncu profiles CUDA kernels, but the device is cpu"),
                         (["--nvml-interval-ms", "0"], "--nvml-interval-ms 0.0 must be positive"),
                         (["--ncu", "--ncu-layers", "0"], "--ncu-layers 0 must be at least 1")):
        res = cli("trace", "--out", str(tmp_path / "run"), "--seqlens", "16", *args, "--quiet", env=env)
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert res.returncode == 2 and len(lines) == 1 and expect in lines[0], res.stderr
