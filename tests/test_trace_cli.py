"""`mambaprof trace` end to end, as a user runs it: tables, totals, errors, OOM, Ctrl-C. The default trace and
`env` run as real `python -m mambaprof` subprocesses (`real_cli`); the others fork from a warm process (`cli`)."""

import json
import textwrap

import pytest
from support.cli import EXAMPLES

from mambaprof.storage.rundir import read_run_record, read_table

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


@pytest.mark.slow
def test_default_trace_end_to_end(tmp_path, real_cli):
    out = tmp_path / "run"
    res = real_cli("trace", "--out", str(out), "--seqlens", "16,32", *FAST)
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
    # the split forward is timed with and without its markers, interleaved with the original
    for col in ("split_bare_ms_median", "split_bare_ms_min", "split_bare_ms_max", "split_bare_vs_original_pct"):
        assert points[col].notna().all(), col
    assert (points.split_bare_ms_min <= points.split_bare_ms_median).all()
    assert (points.split_bare_ms_median <= points.split_bare_ms_max).all()
    bare = 100 * (points.split_bare_ms_median / points.original_ms_median - 1)
    assert points.split_bare_vs_original_pct.tolist() == pytest.approx(bare.tolist(), rel=1e-9)
    # the paired fidelity: at least the planned pairs, the median inside its interval, the interval inside what
    # any pair of the timed forwards could give
    assert (points.fidelity_pairs >= points.repeats).all() and (points.repeats == 2).all()
    assert (points.split_bare_ci_low_pct <= points.split_bare_paired_pct).all()
    assert (points.split_bare_paired_pct <= points.split_bare_ci_high_pct).all()
    assert (points.split_bare_ci_low_pct >= 100 * (points.split_bare_ms_min / points.original_ms_max - 1) - 1e-9).all()
    assert (points.split_bare_ci_high_pct <= 100 * (points.split_bare_ms_max / points.original_ms_min - 1) + 1e-9).all()
    # wall spans of the components are each positive and no larger than the split forward
    split = points.set_index("point_id").split_ms_median
    ok = comps.dropna(subset=["wall_ms_median"])
    for pid in (0, 1):  # split mode: each point has wall spans in every one of the 4 layers
        assert set(ok[(ok.point_id == pid) & (ok.layer >= 0)].layer) == {0, 1, 2, 3}, pid
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


def test_hybrid_attention_and_mlp_layers_are_components(tmp_path, cli):
    out = tmp_path / "run"
    res = cli("trace", str(EXAMPLES / "hybrid.py"), "--out", str(out), "--seqlens", "32", *FAST)
    assert res.returncode == 0, res.stderr
    comps = read_table(out, "components").to_pandas()
    mamba = comps[comps.layer_kind.isin(["mamba1", "mamba2"])]
    assert set(mamba.family) == {"mamba1", "mamba2"} and set(mamba.layer) == {0, 2}
    hybrid = comps[comps.layer.isin([1, 3])]
    assert set(hybrid.layer_kind) == {"attention+mlp"}
    for layer in (1, 3):  # the attention + MLP layers are measured as such, not left in `other`
        rows = hybrid[hybrid.layer == layer].set_index("component")
        assert {"attention", "mlp", "norm", "residual"} <= set(rows.index)
        assert rows.loc["attention", "kernel_ms_median"] > 0 and rows.loc["mlp", "kernel_ms_median"] > 0
    assert read_run_record(out)["model_family"] == "mixed"


def test_env_command(real_cli):
    import platform
    import sys

    import torch
    import transformers

    res = real_cli("env", "--json")
    assert res.returncode == 0, res.stderr
    env = json.loads(res.stdout)  # the whole output is one JSON object
    assert env["torch_version"] == torch.__version__
    assert env["transformers_version"] == transformers.__version__
    assert env["python_version"] == platform.python_version() == ".".join(map(str, sys.version_info[:3]))
    assert isinstance(env["nvml_available"], bool)
    assert env["nvml_available"] or env["nvml_reason"]  # unavailable NVML says why
    assert env["device_count"] == torch.cuda.device_count()
    assert env["device"] == ("cuda" if torch.cuda.is_available() else "cpu")


def test_point_seconds_caps_timing_but_keeps_three_repeats(tmp_path, cli):
    out = tmp_path / "run"
    res = cli("trace", "--out", str(out), "--seqlens", "32", "--repeats", "12", "--warmup", "4",
              "--profile-repeats", "0", "--point-seconds", "0.000001", "--no-tb", "--quiet")
    assert res.returncode == 0, res.stderr
    point = read_table(out, "points").to_pandas().iloc[0]
    assert point.repeats == 3 and point.warmup == 1  # the cap stopped both, at their minimums
    assert json.loads(read_run_record(out)["config_json"])["point_seconds"] == 0.000001
    bad = cli("trace", "--out", str(tmp_path / "bad"), "--point-seconds", "-1", "--quiet")
    assert bad.returncode == 2 and "--point-seconds -1.0 is negative" in bad.stderr
