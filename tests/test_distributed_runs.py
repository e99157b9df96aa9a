"""Sharded distributed traces for real: 2 ranks on the CPU (gloo, loopback only) through torchrun, and a study
sharded over 2 ranks; a 2-rank sweep against a 1-rank sweep as one dataset, and the dataset as docs/DISTRIBUTED.md
reads it (its DuckDB query; pandas, pyarrow, DuckDB and polars). Failing ranks: test_distributed_failures.py; a
data-parallel model: test_distributed_data_parallel.py."""

import re

import duckdb
import pyarrow.parquet as pq
import pytest
from support.cli import REPO, run_cli
from support.distributed import FAST, LOOPBACK, tables, torchrun

from mambaprof.reports.ranks import rank_view
from mambaprof.storage.rundir import read_run_record, read_table


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory, forked_cli):
    """The same three points swept by 2 ranks (torchrun) and by one plain process."""
    base = tmp_path_factory.mktemp("sweeps")
    two = torchrun("trace", "--out", str(base / "two"), "--seqlens", "16,32,64", *FAST)
    one = forked_cli("trace", "--out", str(base / "one"), "--seqlens", "16,32,64", *FAST)
    assert two.returncode == 0, two.stderr[-3000:]
    assert one.returncode == 0, one.stderr
    return base / "two", base / "one", two


@pytest.mark.slow
@pytest.mark.timeout(600)  # builds `sweeps`: a torchrun sweep and a 1-rank sweep
def test_two_rank_sweep_is_one_dataset_matching_a_one_rank_sweep(sweeps):
    two, one, proc = sweeps
    assert "run directory:" in proc.stdout and "(2 ranks, status complete)" in proc.stdout
    t2, t1 = tables(two), tables(one)
    for name in ("points", "components", "kernels"):
        frame = t2[name]
        assert set(frame["rank"]) == {0, 1}, name
        assert (frame.world_size == 2).all() and (frame.device == "cpu").all(), name
        assert {p.name for p in (two / name).iterdir()} == {"rank-0", "rank-1"}, name
        for path in (two / name).rglob("*.parquet"):  # each file's rank column agrees with its folder
            assert set(pq.read_table(path).column("rank").to_pylist()) == {int(path.parent.name[5:])}
    # the shards partition the points; together they are the 1-rank sweep's points
    key = ["point_id", "batch", "seqlen"]
    shards, single = (sorted(map(tuple, t["points"][key].values.tolist())) for t in (t2, t1))
    assert shards == single
    assert t2["points"].point_id.is_unique
    assert dict(zip(t2["points"].seqlen, t2["points"]["rank"], strict=True)) == {64: 0, 32: 1, 16: 1}
    # per point, the same (layer, component) structure
    for pid in t1["points"].point_id:
        structure = [set(map(tuple, t[t.point_id == pid][["layer", "component"]].values.tolist()))
                     for t in (t2["components"], t1["components"])]
        assert structure[0] == structure[1] and len(structure[0]) >= 4 * 8
    assert (t2["points"].status == "ok").all() and (t2["points"].output_check == "pass").all()
    run = read_run_record(two)
    assert (run["world_size"], run["status"], run["n_points"], run["n_points_ok"]) == (2, "complete", 3, 3)
    assert run["model_ref"] == "mamba-tiny" and run["n_layers"] == 4
    ranks = t2["ranks"].sort_values("rank")
    assert list(ranks.status) == ["complete", "complete"] and list(ranks.n_points) == [1, 2]
    assert list(ranks.point_ids.map(list)) == [[2], [0, 1]] and ranks.sharded.all()
    assert len(set(ranks.pid)) == 2
    # per-rank TensorBoard traces, one per point
    assert len(list((two / "tb" / "rank-0").rglob("*.pt.trace.json.gz"))) == 1
    assert len(list((two / "tb" / "rank-1").rglob("*.pt.trace.json.gz"))) == 2
    load = rank_view(t2["points"], t2["components"], t2["kernels"]).load
    assert load.points.tolist() == [1, 2] and (load.busy_s > 0).all()


def duckdb_query() -> str:
    """The first SQL block of docs/DISTRIBUTED.md."""
    doc = (REPO / "docs" / "DISTRIBUTED.md").read_text()
    return re.search(r"```sql\n(.*?)```", doc, re.S).group(1)


def test_documented_duckdb_query_reads_the_partitioned_run(sweeps):
    two, _, _ = sweeps
    sql = duckdb_query()
    # the rank folders are plain folders since the safety work (rank is a column of every row): no hive option
    assert "FROM read_parquet('runs/m1/components/**/*.parquet')\n" in sql
    got = duckdb.sql(sql.replace("runs/m1", str(two))).df()
    comps = read_table(two, "components").to_pandas()
    want = comps.groupby(["rank", "seqlen", "component"]).kernel_ms_median.sum()
    assert len(got) == len(want) and set(got["rank"]) == {0, 1}
    for row in got.itertuples():
        assert row.kernel_ms == pytest.approx(want.loc[(row.rank, row.seqlen, row.component)])


def test_partitioned_dataset_reads_with_pandas_pyarrow_duckdb_and_polars_as_documented(sweeps):
    """docs/DISTRIBUTED.md: every reader takes RUN/<table> of a 2-rank run as one table, `rank` a column."""
    import pandas as pd
    import polars as pl
    import pyarrow.dataset as ds

    two, _, _ = sweeps
    for table in ("points", "components"):
        want = read_table(two, table).to_pandas()
        key = ["rank", "point_id"] + (["layer", "component"] if table == "components" else [])
        want = want.sort_values(key).reset_index(drop=True)
        readers = {
            "pandas": pd.read_parquet(two / table),
            "pyarrow.dataset": ds.dataset(two / table, format="parquet", partitioning="hive").to_table().to_pandas(),
            "duckdb": duckdb.sql(f"SELECT * FROM read_parquet('{two / table}/**/*.parquet')").df(),
            "polars": pl.read_parquet(two / table).to_pandas(),
        }
        for name, got in readers.items():
            got = got.sort_values(key).reset_index(drop=True)
            assert len(got) == len(want) > 0, (name, table)
            assert sorted(set(got["rank"].astype(int))) == [0, 1], (name, table)
            assert got["rank"].astype(int).tolist() == want["rank"].tolist(), (name, table)
            assert got["point_id"].astype(int).tolist() == want["point_id"].tolist(), (name, table)
            assert set(want.columns) <= set(got.columns), (name, table)


@pytest.mark.slow
@pytest.mark.timeout(600)  # two models on two ranks, then the study's report
def test_study_nproc_shards_every_model_across_the_ranks(tmp_path):
    out = tmp_path / "study"
    res = run_cli("study", "--nproc", "2", "--models", "mamba2-tiny,mamba-tiny", "--seqlens", "16,32,64", "--batch",
                  "1", "--repeats", "2", "--warmup", "1", "--profile-repeats", "1", "--out", str(out),
                  env=LOOPBACK)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"study directory: {out}" in res.stdout
    manifest = __import__("json").loads((out / "study.json").read_text())
    assert manifest["config"]["world_size"] == 2 and manifest["finished_at"]
    assert [(m["model"], m["status"], m["n_ok"], m["n_points"]) for m in manifest["models"]] == [
        ("mamba-tiny", "complete", 3, 3), ("mamba2-tiny", "complete", 3, 3)]
    for model in ("mamba-tiny", "mamba2-tiny"):
        run = out / model
        points = read_table(run, "points").to_pandas()
        assert {p.name for p in (run / "points").iterdir()} == {"rank-0", "rank-1"}
        assert sorted(points.point_id) == [0, 1, 2] and set(points["rank"]) == {0, 1}
        assert (points.status == "ok").all() and (points.world_size == 2).all()
        record = read_run_record(run)
        assert (record["world_size"], record["status"], record["n_points_ok"]) == (2, "complete", 3)
    assert (out / "report.html").is_file() and (out / "summary" / "mamba2-tiny" / "summary_points.parquet").is_file()
