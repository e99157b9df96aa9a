"""`mambaprof trace` end to end, as a user runs it: tables, totals, errors, OOM, Ctrl-C."""

import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
from conftest import EXAMPLES

from mambaprof.rundir import read_run_record, read_table

FAST = ["--repeats", "2", "--warmup", "1", "--profile-repeats", "2", "--quiet"]


def write_model(tmp_path, body: str, name: str = "model.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


TINY_HF = """
    from transformers import MambaConfig, MambaForCausalLM

    def build_model():
        return MambaForCausalLM(MambaConfig(vocab_size=128, hidden_size=32, state_size=4,
                                            num_hidden_layers=2, use_cache=False))
"""


def test_default_trace_end_to_end(tmp_path, cli):
    out = tmp_path / "run"
    res = cli("trace", "--out", str(out), "--seqlens", "16,32", *FAST)
    assert res.returncode == 0, res.stderr
    assert "status complete" in res.stdout
    points = read_table(out, "points").to_pandas()
    comps = read_table(out, "components").to_pandas()
    kernels = read_table(out, "kernels").to_pandas()
    run = read_run_record(out)
    assert run["status"] == "complete" and run["n_points"] == 2 and run["n_points_ok"] == 2
    assert run["model_source"] == "default" and run["n_layers"] == 4 and run["model_family"] == "mamba1"
    assert list(points.sort_values("seqlen").seqlen) == [16, 32]
    assert (points.output_check == "pass").all()
    assert (points.output_rel_err <= points.output_tolerance).all()
    # every mixer layer has its six components; model-level rows present
    for layer in range(4):
        got = set(comps[(comps.layer == layer) & (comps.point_id == 0)].component)
        assert {"in_proj", "conv1d", "ssm_params", "ssm_scan", "gating", "out_proj", "norm", "residual"} <= got
    # attribution totals: per-component kernel sums add up to the forward total
    for pid, grp in kernels.groupby("point_id"):
        per_iter = grp.groupby("iteration").duration_us.sum() / 1000.0
        point = points[points.point_id == pid].iloc[0]
        assert per_iter.median() == pytest.approx(point.forward_kernel_ms, rel=1e-6)
        named = grp[grp.component != "other"].duration_us.sum() / grp.duration_us.sum() * 100
        assert named == pytest.approx(point.attributed_kernel_pct, rel=1e-6)
        assert point.attributed_kernel_pct > 95
        cmean = comps[comps.point_id == pid].kernel_ms_mean.sum()
        assert cmean == pytest.approx(per_iter.mean(), rel=1e-6)
    # wall spans of the components are each positive and no larger than the split forward
    split = points.set_index("point_id").split_ms_median
    ok = comps.dropna(subset=["wall_ms_median"])
    assert (ok.wall_ms_median >= 0).all()
    assert (ok.groupby("point_id").wall_ms_median.max() <= split * 1.5).all()
    assert (comps.dropna(subset=["flops"]).flops >= 0).all()
    # a TensorBoard trace per point
    traces = list((out / "tb").rglob("*.pt.trace.json.gz"))
    assert len(traces) == 2


def test_mamba2_file_and_as_is_mode(tmp_path, cli):
    out = tmp_path / "run"
    res = cli("trace", str(EXAMPLES / "hf_mamba2.py"), "--out", str(out), "--seqlens", "32", "--mode", "as-is",
              *FAST)
    assert res.returncode == 0, res.stderr
    comps = read_table(out, "components").to_pandas()
    mixer = comps[comps.layer >= 0]
    assert set(mixer.attribution.dropna()) >= {"name_rule"}
    assert mixer.wall_ms_median.isna().all()  # no component markers in as-is mode
    assert "ssm_params" not in set(mixer.component)  # Mamba-2 has none
    assert read_run_record(out)["mode"] == "as-is"


def test_hybrid_other_layers_land_in_other(tmp_path, cli):
    out = tmp_path / "run"
    res = cli("trace", str(EXAMPLES / "hybrid.py"), "--out", str(out), "--seqlens", "32", *FAST)
    assert res.returncode == 0, res.stderr
    comps = read_table(out, "components").to_pandas()
    assert set(comps[comps.layer >= 0].family) == {"mamba1", "mamba2"}
    other = comps[(comps.layer == -1) & (comps.component == "other")].kernel_ms_median.iloc[0]
    assert other > 0  # the attention + MLP layers
    assert read_run_record(out)["model_family"] == "mixed"


@pytest.mark.parametrize("case,expect", [
    ("missing", "does not exist"),
    ("nomodel", "defines neither build_model() nor a module-level `model`"),
    ("syntax", "syntax error"),
    ("nomamba", "no supported Mamba mixer"),
    ("raises", "build_model() in model.py raised ZeroDivisionError"),
    ("notmodule", "gave int, not a torch.nn.Module"),
])
def test_bad_model_files_one_line_error(tmp_path, cli, case, expect):
    bodies = {
        "nomodel": "x = 1\n",
        "syntax": "def build_model(:\n    pass\n",
        "nomamba": "import torch\ndef build_model():\n    return torch.nn.Linear(4, 4)\n",
        "raises": "def build_model():\n    return 1 / 0\n",
        "notmodule": "def build_model():\n    return 3\n",
    }
    path = tmp_path / "model.py"
    if case != "missing":
        path.write_text(bodies[case])
    res = cli("trace", str(path), "--out", str(tmp_path / "run"), "--seqlens", "16", "--quiet")
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert expect in lines[0]


@pytest.mark.parametrize("seqlens,expect", [
    ("", "is empty"), ("64,abc", "'abc' is not a whole number"), ("-64", "must be at least 1"),
    ("0", "must be at least 1"), ("99999999999", "absurdly large"), ("64,,128", "empty item"),
])
def test_bad_seqlens_one_line_error(tmp_path, cli, seqlens, expect):
    res = cli("trace", "--out", str(tmp_path / "run"), "--seqlens", seqlens, "--quiet")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expect in lines[0], res.stderr


def test_oom_point_recorded_and_sweep_goes_on(tmp_path, cli):
    model = write_model(tmp_path, TINY_HF + """
    import torch

    class Guard(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
        def forward(self, input_ids, **kw):
            if input_ids.shape[1] > 24:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")
            return self.inner(input_ids=input_ids, **kw)

    _build = build_model
    def build_model():
        return Guard(_build())
    """)
    out = tmp_path / "run"
    res = cli("trace", str(model), "--out", str(out), "--seqlens", "16,32,64", *FAST)
    assert res.returncode == 0, res.stderr
    points = read_table(out, "points").to_pandas().set_index("seqlen")
    assert points.loc[16, "status"] == "ok"
    assert points.loc[32, "status"] == "oom" and points.loc[64, "status"] == "oom"
    assert "out of memory" in points.loc[32, "error"]
    run = read_run_record(out)
    assert run["status"] == "incomplete" and run["n_points_oom"] == 2 and run["n_points_ok"] == 1


def test_sigint_keeps_finished_points(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "mambaprof", "trace", "--out", str(out), "--seqlens",
                             "16,32,64,128,256,512,1024,2048", *FAST], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    points_dir = out / "points"
    deadline = time.time() + 300
    while time.time() < deadline and not (points_dir.is_dir() and any(points_dir.glob("part-*.parquet"))):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    run = read_run_record(out)
    assert run["status"] == "incomplete" and "interrupted by SIGINT" in run["status_reason"]
    points = pd.read_parquet(points_dir)
    assert 1 <= len(points) < 8 and (points.status == "ok").all()
    comps = read_table(out, "components").to_pandas()
    assert set(comps.point_id) == set(points.point_id)  # every finished point is whole


def test_env_command(cli):
    res = cli("env", "--json")
    assert res.returncode == 0
    assert '"torch_version"' in res.stdout and '"nvml_available"' in res.stdout
