"""`mambaprof report`, `compare` and `calibrate` end to end on real CPU traces (Mamba-1 and Mamba-2):
the terminal report, the Parquet summaries (read back with pandas and DuckDB, numbers recomputed from
the raw tables), the HTML file, errors, and calibrated peaks. `report`, `compare` and `calibrate` each run once as
a real `python -m mambaprof` subprocess (run_cli); the other calls fork from a warm process (the `cli` fixture)."""

import json
import re

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from support.cli import run_cli

from mambaprof.storage.rundir import read_table
from mambaprof.storage.schema import get_table

FAST = ["--seqlens", "16,32,64", "--repeats", "1", "--warmup", "0", "--profile-repeats", "2", "--quiet"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, forked_cli):
    base = tmp_path_factory.mktemp("runs")
    m1, m2 = base / "m1", base / "m2"
    res = forked_cli("trace", "--out", str(m1), *FAST)
    assert res.returncode == 0, res.stderr
    res = forked_cli("trace", "--preset", "mamba2-tiny", "--out", str(m2), *FAST)
    assert res.returncode == 0, res.stderr
    return m1, m2


@pytest.fixture
def config_dir(tmp_path):
    return {"MAMBAPROF_CONFIG_DIR": str(tmp_path / "config")}


@pytest.mark.slow
def test_report_terminal_fits_100_columns(runs, config_dir):
    m1, _ = runs
    res = run_cli("report", str(m1), "--per-layer", env=config_dir)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100
    out = res.stdout
    for expected in ("Findings", "SSM scan:", "% of block wall time by sequence length", "Points: regime",
                     "Scaling: fitted exponent", "Per layer at 64 tokens", "No float32 peaks known"):
        assert expected in out, expected


def test_parquet_summary_readable_and_recomputable(runs, tmp_path, config_dir, cli):
    m1, _ = runs
    out = tmp_path / "summary"
    res = cli("report", str(m1), "--parquet", str(out), "--quiet", env=config_dir)
    assert res.returncode == 0, res.stderr
    assert "wrote 7 summary tables" in res.stdout
    for name in ("summary_components", "summary_layers", "summary_points", "summary_scaling", "summary_crossover",
                 "summary_findings", "summary_run"):
        frame = pd.read_parquet(out / f"{name}.parquet")
        assert list(frame.columns) == get_table(name).column_names
    assert "## `summary_components.parquet`" in (out / "README.md").read_text()
    summary = pd.read_parquet(out / "summary_components.parquet")
    field = pq.read_schema(out / "summary_components.parquet").field("time_ms")
    assert field.metadata[b"unit"] == b"ms" and b"time_basis" in field.metadata[b"doc"]

    # recompute kernel and wall times from the raw tables
    comps = read_table(m1, "components").to_pandas()
    kernels = read_table(m1, "kernels").to_pandas()
    family = comps[["point_id", "layer", "family"]].drop_duplicates()
    kernels = kernels.merge(family, on=["point_id", "layer"], how="left")
    per_iter = kernels.groupby(["point_id", "family", "component", "iteration"]).duration_us.sum().unstack(fill_value=0)
    kernel_ms = (per_iter.mean(axis=1) / 1000).rename("raw_kernel_ms")
    wall_ms = comps.groupby(["point_id", "family", "component"]).wall_ms_mean.sum(min_count=1).rename("raw_wall_ms")
    merged = summary.set_index(["point_id", "family", "component"]).join(kernel_ms).join(wall_ms)
    assert merged.raw_kernel_ms.notna().sum() >= 30
    np.testing.assert_allclose(merged.kernel_ms.fillna(0), merged.raw_kernel_ms.fillna(0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(merged.wall_ms.dropna(), merged.raw_wall_ms.dropna(), rtol=1e-9)
    assert (summary.time_basis == "wall").all()  # CPU run: wall time
    block = summary[summary.family == "mamba1"]
    shares = block.time_ms / block.groupby("point_id").time_ms.transform("sum") * 100
    np.testing.assert_allclose(block.share_of_block_pct, shares, rtol=1e-9)

    # DuckDB reads the same numbers without mambaprof
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    got = con.execute(f"SELECT point_id, sum(time_ms) AS t FROM '{out}/summary_components.parquet' "
                      "WHERE family = 'mamba1' GROUP BY point_id ORDER BY point_id").fetchdf()
    expect = block.groupby("point_id").time_ms.sum().reset_index(drop=True)
    np.testing.assert_allclose(got.t, expect, rtol=1e-9)
    pts = con.execute(f"SELECT seqlen, wall_ms, regime FROM '{out}/summary_points.parquet' ORDER BY seqlen").fetchdf()
    raw = read_table(m1, "points").to_pandas().sort_values("seqlen")
    np.testing.assert_allclose(pts.wall_ms, raw.original_ms_median, rtol=1e-12)


def _doc_block(doc: str, lang: str) -> str:
    """The first ```lang block of the `How the report's figures are computed` section of docs/SCHEMA.md."""
    section = doc.split("## How the report's figures are computed", 1)[1]
    return section.split(f"```{lang}\n", 1)[1].split("```", 1)[0]


def test_schema_doc_snippets_reproduce_the_report_shares(runs, capsys):
    from pathlib import Path

    import duckdb

    from mambaprof.reports.run_analysis import RunAnalysis

    m1, _ = runs
    analysis = RunAnalysis(m1, use_calibration=False)
    assert analysis.basis == "wall"  # the snippets' default basis (a CPU run)
    expect = analysis.components[analysis.components.family.isin(["mamba1", "mamba2"])].set_index(
        ["point_id", "family", "component"]).share_of_block_pct.sort_index()
    doc = (Path(__file__).parent.parent / "docs" / "SCHEMA.md").read_text()
    namespace: dict = {}
    exec(_doc_block(doc, "python").replace('"runs/m1"', repr(str(m1))), namespace)
    assert "share_of_block_pct" in capsys.readouterr().out
    got = namespace["shares"].sort_index()
    assert len(got) == len(expect) >= 20
    np.testing.assert_allclose(got.to_numpy(), expect.to_numpy(), rtol=1e-12)
    sql = _doc_block(doc, "sql").replace("runs/m1", str(m1))
    frame = duckdb.connect().execute(sql).fetchdf().set_index(["point_id", "family", "component"]).sort_index()
    assert list(frame.index) == list(expect.index)
    np.testing.assert_allclose(frame.share_of_block_pct.to_numpy(), expect.to_numpy(), rtol=1e-9)


def test_html_report_is_self_contained(runs, tmp_path, config_dir, cli):
    m1, _ = runs
    page = tmp_path / "report.html"
    res = cli("report", str(m1), "--html", str(page), "--quiet", env=config_dir)
    assert res.returncode == 0, res.stderr
    text = page.read_text()
    assert text.count("<svg") == 4 and text.count('data-plot="') == 4
    for forbidden in ("<script", "<link", "@import"):
        assert forbidden not in text, forbidden
    refs = re.findall(r'(?:src|href)="([^"]*)"', text) + re.findall(r"url\(([^)]*)\)", text)
    assert refs and all(ref.startswith("#") for ref in refs)  # only the SVGs' internal references
    assert "SSM scan:" in text and "mambaprof report: mamba-tiny" in text


@pytest.mark.slow
def test_compare_mamba1_vs_mamba2(runs, tmp_path, config_dir):
    m1, m2 = runs
    page = tmp_path / "compare.html"
    res = run_cli("compare", str(m1), str(m2), "--html", str(page), env=config_dir)
    assert res.returncode == 0, res.stderr
    assert max(len(line) for line in res.stdout.splitlines()) <= 100
    assert "mamba2-tiny / mamba-tiny time ratio, batch 1" in res.stdout
    assert "At 64 tokens (batch 1), mamba2-tiny's block wall time is" in res.stdout
    text = page.read_text()
    assert text.count('data-plot="') == 9  # ratio chart + 4 per run
    assert "<script" not in text

    from mambaprof.reports.comparison import FORWARD_WORDS
    from mambaprof.reports.run_analysis import RunComparison

    cmp = RunComparison(m1, m2, use_calibration=False)
    rows = cmp.components
    for side in ("a", "b"):  # the block components' shares sum to 100 on each side (final norm kept apart)
        sums = rows.groupby(["batch", "seqlen"])[f"{side}_share_pct"].sum(min_count=1).dropna()
        np.testing.assert_allclose(sums, 100.0, rtol=1e-9)
    final = rows[rows.component == "model norm"]
    raw = cmp.a.components
    expect = raw[(raw.family == "model") & (raw.component == "norm")].groupby("seqlen").time_ms.mean()
    np.testing.assert_allclose(final.set_index("seqlen").a_ms.reindex(expect.index), expect, rtol=1e-9)
    at = rows[(rows.seqlen == 64) & (rows.component == "forward")].iloc[0]
    headline = cmp.findings()[0].text
    assert f"{FORWARD_WORDS} wall time {at.ratio:.2f}x" in headline  # the table's forward row, by name


@pytest.mark.parametrize("args,expect", [
    (["report", "/nonexistent/run"], "does not exist"),
    (["report", "."], "is not a mambaprof run directory"),
    (["compare", "/nonexistent/a", "/nonexistent/b"], "does not exist"),
    (["report", "RUN", "--basis", "median"], "--basis 'median' is not one of auto, kernel, wall"),
    (["report", "RUN", "--peaks", "/nonexistent.json"], "--peaks /nonexistent.json does not exist"),
    (["report", "RUN", "--parquet", "RUN", "--quiet"], "is a run directory"),
])
def test_errors_are_one_line(runs, tmp_path, args, expect, cli):
    m1, _ = runs
    res = cli(*[str(m1) if a == "RUN" else a for a in args], cwd=tmp_path)
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], res.stderr


@pytest.mark.slow
def test_calibrate_stores_peaks_the_report_uses(runs, tmp_path, config_dir, cli):
    m1, _ = runs
    peaks_file = tmp_path / "peaks.json"
    res = run_cli("calibrate", "--quick", "--out", str(peaks_file), env=config_dir)
    assert res.returncode == 0, res.stderr
    data = json.loads(peaks_file.read_text())
    assert data["gb_per_s"] > 0 and data["tflop_per_s"]["float32"] > 0
    stored = json.loads((tmp_path / "config" / "peaks.json").read_text())["devices"]
    assert data["name"] in stored and stored[data["name"]]["gb_per_s"] == data["gb_per_s"]
    out = tmp_path / "s"
    res = cli("report", str(m1), "--parquet", str(out), "--quiet", env=config_dir)
    assert res.returncode == 0, res.stderr
    run = pd.read_parquet(out / "summary_run.parquet").iloc[0]
    assert "calibrated" in run.peaks_source and run.peak_gb_per_s == pytest.approx(data["gb_per_s"])
    comps = pd.read_parquet(out / "summary_components.parquet")
    assert set(comps.verdict) <= {"memory-bound", "compute-bound", "unknown"} and comps.roof_pct.notna().any()
    res = cli("report", str(m1), "--parquet", str(out), "--quiet", "--no-calibration", env=config_dir)
    assert res.returncode == 0, res.stderr
    assert pd.read_parquet(out / "summary_run.parquet").iloc[0].peaks_source == "none"
    res = cli("report", str(m1), "--parquet", str(out), "--quiet", "--peaks", str(peaks_file), env=config_dir)
    assert res.returncode == 0, res.stderr
    assert pd.read_parquet(out / "summary_run.parquet").iloc[0].peaks_source.startswith(data["name"] + " (file")
