"""`mambaprof prune` end to end on tiny models trained by examples/train_small_lm.py (seconds on CPU)."""

import os
import sys

import pytest
import torch
from support.cli import EXAMPLES, run_process
from transformers import AutoModelForCausalLM

from mambaprof.cli import main
from mambaprof.storage.rundir import read_run_record, read_table

ENV = {"OMP_NUM_THREADS": "1"}
SMALL = ["--calib-tokens", "1024", "--eval-tokens", "1024", "--calib-seqlen", "32", "--task-episodes", "16",
         "--seqlens", "16,32", "--repeats", "2", "--warmup", "1", "--decode-steps", "3", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("lm")
    proc = run_process([sys.executable, str(EXAMPLES / "train_small_lm.py"), "--family", "both", "--d-model", "32",
                        "--layers", "2", "--d-state", "8", "--headdim", "16", "--chunk-size", "16", "--seqlen", "32",
                        "--batch", "4", "--steps", "6", "--eval-tokens", "1024", "--out", str(out)],
                       env={**os.environ, **ENV})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "held-out perplexity" in proc.stdout
    return out


@pytest.mark.slow
def test_prune_trained_mamba1_end_to_end(trained, tmp_path, real_cli, cli):
    out, saved = tmp_path / "run", tmp_path / "pruned"
    res = real_cli("prune", "--hf", str(trained / "mamba1"), "--ratios", "0,0.25,0.5", "--score", "delta",
              "--score", "random", "--recover-steps", "2", "--out", str(out), "--save", str(saved), *SMALL, env=ENV)
    assert res.returncode == 0, res.stderr
    assert "status complete" in res.stdout and "pruned model saved" in res.stdout
    df = read_table(out, "pruning").to_pandas()
    assert len(df) == 5 * 2 and set(df.seqlen) == {16, 32}  # (unpruned + 2 scores x 2 ratios) x 2 seqlens
    base = df[df.variant_id == 0]
    assert (base.prefill_speedup == 1.0).all() and (base.perplexity_delta_pct == 0.0).all()
    kept = {(r.score, r.ratio): r.d_state_kept for r in df.itertuples()}
    assert list(kept[("delta", 0.25)]) == [6, 6] and list(kept[("random", 0.5)]) == [4, 4]
    for r in df.itertuples():
        n = int(r.d_state_kept[0])
        assert r.ssm_state_bytes == 2 * 1 * 64 * n * 4  # layers x batch x d_inner x N' x fp32
        assert r.cache_bytes == r.ssm_state_bytes + r.conv_state_bytes  # measured cache == closed form
        assert r.ssm_state_bytes_delta_pct == pytest.approx(100.0 * (n / 8 - 1))
        assert 1.0 < r.perplexity < 256.0 and 0.0 <= r.assoc_recall_acc_pct <= 100.0
        assert r.prefill_ms_median > 0 and r.decode_ms_per_token > 0 and r.recover_steps == 2
        assert r.timing_variant_id in (0, 1, 2)
    same_shape = df[(df.ratio == 0.5)]
    assert same_shape.timing_variant_id.nunique() == 1  # delta@0.5 and random@0.5 share one timing
    comp = df[df.seqlen == 32]
    assert (comp.ssm_scan_ms > 0).all() and (comp.component_time_source == "wall").all()
    assert df[df.seqlen == 16].ssm_scan_ms.isna().all()
    points = read_table(out, "points").to_pandas()
    assert set(comp.component_point_id) == set(points.point_id) and (points.output_check == "pass").all()
    assert read_run_record(out)["status"] == "complete"
    assert (out / "pareto.png").stat().st_size > 1000 and (out / "pareto.svg").is_file()
    model = AutoModelForCausalLM.from_pretrained(saved)
    assert model.config.state_size == 4
    traced = cli("trace", "--hf", str(saved), "--seqlens", "16", "--repeats", "1", "--warmup", "0",
                 "--profile-repeats", "0", "--quiet", "--out", str(tmp_path / "trace"), env=ENV)
    assert traced.returncode == 0, traced.stderr
    assert (read_table(tmp_path / "trace", "points").to_pandas().output_check == "pass").all()


def test_prune_trained_mamba2_adaptive(trained, tmp_path, cli):
    out = tmp_path / "run"
    res = cli("prune", "--hf", str(trained / "mamba2"), "--ratios", "0,0.5", "--score", "energy,magnitude",
              "--per-layer", "adaptive", "--profile-repeats", "0", "--out", str(out), *SMALL[:-1], env=ENV)
    assert res.returncode == 0, res.stderr
    assert "perplexity by score at equal ratio (lower wins)" in res.stdout and "magnitude@0.5" in res.stdout
    df = read_table(out, "pruning").to_pandas()
    pruned = df[df.variant_id > 0]
    assert set(pruned.score) == {"energy", "magnitude"} and (pruned.per_layer == "adaptive").all()
    assert all(sum(k) == 8 for k in pruned.d_state_kept)  # the global budget: half of 2 x 8 states
    assert list(pruned.ssm_state_bytes_delta_pct) == pytest.approx([-50.0] * len(pruned))
    assert (pruned.cache_bytes_delta_pct < 0).all()  # Mamba-2's conv state shrinks too (B and C channels)


def test_prune_rejects_models_without_embedding(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["prune", str(EXAMPLES / "hybrid.py"), "--out", str(tmp_path / "run"), *SMALL])
    assert exc.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "needs a language model with a token embedding" in lines[0]
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_train_log_reports_learning(trained):
    import json

    log = json.loads((trained / "mamba1" / "train_log.json").read_text())
    assert log["steps"] == 6 and log["eval_perplexity"] < 256  # better than uniform over bytes
    assert torch.isfinite(torch.tensor(log["final_loss"]))
