"""Distributed runs that fail, for real on 2 CPU ranks (gloo, loopback only): a rank that raises (through
`launch_distributed`) or dies (through torchrun) is reported and the other rank's data stays; an --out that
holds a run, or a study directory that is not ours, stops every rank with its error line."""

import textwrap

import pytest
from support.cli import run_cli
from support.distributed import FAST, LOOPBACK, launch, torchrun

from mambaprof.storage.rundir import read_run_record, read_table

BAD_MODEL = """
    import os
    from transformers import MambaConfig, MambaForCausalLM
    import torch

    class OnRankOne(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
        def forward(self, input_ids, **kw):
            if os.environ["RANK"] == "1" and input_ids.shape[1] == 32:
                if os.environ["HOW"] == "raise":
                    raise RuntimeError("boom on rank 1")
                os._exit(7)  # dies: no exception, no report
            return self.inner(input_ids=input_ids, **kw)

    def build_model():
        return OnRankOne(MambaForCausalLM(MambaConfig(vocab_size=128, hidden_size=32, state_size=4,
                                                      num_hidden_layers=2, use_cache=False)))
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["raise", "die"])
def test_failing_rank_is_reported_and_the_others_data_stays(tmp_path, how):
    model = tmp_path / "model.py"
    model.write_text(textwrap.dedent(BAD_MODEL))
    out = tmp_path / "run"
    # shards: rank 0 gets L=64; rank 1 gets L=16 then L=32, where it raises / dies
    args = ["trace", str(model), "--out", str(out), "--seqlens", "16,32,64", *FAST]
    proc = launch(args, env={"HOW": how}) if how == "raise" else torchrun(*args, env={"HOW": how})
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: rank")]
    run = read_run_record(out)
    ranks = read_table(out, "ranks").to_pandas().set_index("rank")
    points = read_table(out, "points").to_pandas().set_index("seqlen")
    assert points.loc[16, "status"] == "ok" and points.loc[16, "rank"] == 1  # finished before the failure
    assert run["status"] == "incomplete" and run["world_size"] == 2
    if how == "raise":
        assert errors == ["error: rank 1 incomplete: 0 point(s) oom, 1 error; first: point 1 (b=1 L=32): "
                          "RuntimeError: boom on rank 1"], proc.stderr[-3000:]
        assert proc.returncode == 3 and "error: 1 of 2 ranks did not succeed: rank 1 (exit 3)" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert points.loc[32, "status"] == "error" and points.loc[64, "status"] == "ok"
        assert list(ranks.status) == ["complete", "incomplete"]
        assert (run["n_points_ok"], run["n_points_error"]) == (2, 1)
        assert read_table(out, "components").to_pandas().query("seqlen == 64").kernel_ms_median.sum() > 0
    else:
        assert "error: rank 1 lost: it stopped without reporting (killed, crashed or timed out)" in errors
        assert ranks.loc[1, "status"] == "lost" and ranks.loc[1, "n_points_ok"] == 1
        assert ranks.loc[0, "status"] in ("complete", "incomplete")  # torchrun stops rank 0 when rank 1 dies
        assert 32 not in points.index
        assert "rank 1 lost" in run["status_reason"]


@pytest.mark.slow
def test_existing_out_without_force_stops_every_rank(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "runs").mkdir()
    (out / "_mambaprof_run").write_text("mambaprof run directory\n")
    proc = torchrun("trace", "--out", str(out), "--seqlens", "16", *FAST)
    assert proc.returncode != 0
    assert f"error: --out {out} already holds a run" in proc.stderr


@pytest.mark.slow
def test_study_nproc_refusing_its_out_stops_every_rank_with_an_error_line_each(tmp_path):
    other = tmp_path / "thesis"
    other.mkdir()
    (other / "ch1.tex").write_text("mine")
    res = run_cli("study", "--nproc", "2", "--models", "mamba-tiny", "--seqlens", "16", "--batch", "1",
                  "--out", str(other), "--quiet", env=LOOPBACK)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 3, res.stderr  # rank 0's reason, rank 1's (from rank 0), the launcher's summary
    assert "exists and is not empty" in lines[0] or "exists and is not empty" in lines[1]
    assert "rank 0 could not prepare the study directory" in res.stderr
    assert "2 of 2 ranks did not succeed" in lines[-1]
    assert sorted(p.name for p in other.iterdir()) == ["ch1.tex"]
