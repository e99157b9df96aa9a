"""`mambaprof study` on the CPU with tiny models: one run directory per model, one manifest."""

import json

import pytest
from support.reliability import assert_one_line_error

from mambaprof.storage.rundir import read_run_record, read_table


@pytest.mark.slow
def test_study_runs_every_model(tmp_path, cli):
    out = tmp_path / "study"
    res = cli("study", "--out", str(out), "--models", "mamba2-tiny,mamba-tiny", "--seqlens", "32,64", "--batch", "1",
              "--repeats", "1", "--warmup", "0", "--profile-repeats", "1", "--quiet")
    assert res.returncode == 0, res.stderr
    manifest = json.loads((out / "study.json").read_text())
    assert [m["model"] for m in manifest["models"]] == ["mamba-tiny", "mamba2-tiny"]  # smallest first (tie: family)
    assert all(m["status"] == "complete" and m["n_ok"] == 2 for m in manifest["models"])
    for name, family in (("mamba-tiny", "mamba1"), ("mamba2-tiny", "mamba2")):
        assert read_run_record(out / name)["model_family"] == family
        assert read_table(out / name, "points").num_rows == 2
    assert (out / "report.html").is_file() and (out / "summary" / "mamba-tiny").is_dir()
    html = (out / "report.html").read_text()
    assert "mamba-tiny vs mamba2-tiny" in html and "Fidelity of the component-split forward" in html
    rep = cli("report", str(out), "--quiet", "--html", str(tmp_path / "again.html"))
    assert rep.returncode == 0, rep.stderr
    assert (tmp_path / "again.html").read_text().count('data-plot="ratio"') == 1
    again = cli("study", "--out", str(out), "--models", "mamba-tiny", "--seqlens", "32", "--quiet")
    assert_one_line_error(again, "already holds a study")


def test_study_refuses_big_models_on_cpu(tmp_path, cli):
    res = cli("study", "--out", str(tmp_path / "s"), "--device", "cpu", "--quiet")
    assert_one_line_error(res, "need a CUDA GPU", code=2)
