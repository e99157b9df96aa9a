"""Distributed traces for real: 2 ranks on the CPU (gloo, loopback only) through torchrun and through
`mambaprof.distributed.launch.launch_distributed`; sharded sweeps against a 1-rank sweep, failing and dying ranks,
a data-parallel model's communication, and the DuckDB query of docs/DISTRIBUTED.md."""

import os
import re
import subprocess
import sys
import textwrap

import duckdb
import pyarrow.parquet as pq
import pytest
from support.cli import EXAMPLES, REPO, run_cli, run_process

from mambaprof.reports.ranks import rank_view
from mambaprof.storage.rundir import read_run_record, read_table

FAST = ["--repeats", "2", "--warmup", "1", "--profile-repeats", "2", "--quiet"]
LOOPBACK = {"GLOO_SOCKET_IFNAME": "lo", "KINETO_LOG_LEVEL": "5", "OMP_NUM_THREADS": "1"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--rdzv-backend", "c10d",
            "--rdzv-endpoint", "127.0.0.1:0", "--local-addr", "127.0.0.1", "-m", "mambaprof"]


def torchrun(*args: str, cwd=None, env=None) -> subprocess.CompletedProcess:
    """`torchrun --nproc-per-node 2 -m mambaprof ARGS`; a hang is the test's pytest-timeout, which kills the ranks."""
    return run_process([*TORCHRUN, *args], cwd=cwd, env={**os.environ, **LOOPBACK, **(env or {})})


def launch(argv: list[str], env=None) -> subprocess.CompletedProcess:
    """`mambaprof.distributed.launch.launch_distributed(ARGV, 2)` in a fresh process; a hang is the test's
    pytest-timeout, which kills the launcher and its ranks."""
    code = ("import sys; from mambaprof.distributed.launch import launch_distributed; "
            f"sys.exit(launch_distributed({argv!r}, 2))")
    return run_process([sys.executable, "-c", code], env={**os.environ, **LOOPBACK, **(env or {})})


def tables(run):
    return {name: read_table(run, name).to_pandas() for name in ("points", "components", "kernels", "ranks")}


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory, forked_cli):
    """The same three points swept by 2 ranks (torchrun) and by one plain process."""
    base = tmp_path_factory.mktemp("sweeps")
    two = torchrun("trace", "--out", str(base / "two"), "--seqlens", "16,32,64", *FAST)
    one = forked_cli("trace", "--out", str(base / "one"), "--seqlens", "16,32,64", *FAST)
    assert two.returncode == 0, two.stderr[-3000:]
    assert one.returncode == 0, one.stderr
    return base / "two", base / "one", two


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


def test_data_parallel_model_communicates_through_launch_distributed(tmp_path):
    out = tmp_path / "run"
    proc = launch(["trace", str(EXAMPLES / "data_parallel.py"), "--no-shard", "--out", str(out), "--seqlens", "32",
                   *FAST])
    assert proc.returncode == 0, proc.stderr[-3000:]
    t = tables(out)
    assert set(t["points"]["rank"]) == {0, 1} and list(t["points"].point_id) == [0, 0]  # every rank, every point
    assert (t["points"].output_check == "pass").all()
    ranks = t["ranks"]
    assert set(ranks.backend) == {"gloo"} and not ranks.sharded.any() and set(ranks.status) == {"complete"}
    view = rank_view(t["points"], t["components"], t["kernels"])
    comm = view.communication
    assert len(comm) == 2 and (comm.communication_ms > 0).all() and (comm.communication_pct > 0).all()
    assert (comm.communication_pct < 100).all()
    kernels = t["kernels"]
    names = set(kernels[kernels.component == "communication"].name)
    assert "c10d::allgather_" in names or "gloo:all_gather" in names, names
    assert view.slowest_points.ranks.tolist() == [2]
    assert len(view.slowest_steps) > 0 and view.slowest_steps.ranks.eq(2).all()


def test_existing_out_without_force_stops_every_rank(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "runs").mkdir()
    (out / "_mambaprof_run").write_text("mambaprof run directory\n")
    proc = torchrun("trace", "--out", str(out), "--seqlens", "16", *FAST)
    assert proc.returncode != 0
    assert f"error: --out {out} already holds a run" in proc.stderr


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


COUNTING_MODEL = """
import os, random, time
from pathlib import Path
import torch.distributed as dist
import data_parallel as dp

make_inputs = dp.make_inputs


class Counting(dp.GatherLogits):
    calls = 0

    def forward(self, input_ids, use_cache=False):
        Counting.calls += 1
        rank = dist.get_rank()
        Path(os.environ["COUNT_DIR"], f"rank-{rank}").write_text(str(Counting.calls))
        # rank 1 is slower and noisier: decided per rank, time caps and extra fidelity pairs would differ
        time.sleep(0.002 + (0.004 * random.random() if rank == 1 else 0.0))
        return super().forward(input_ids, use_cache)


def build_model():
    model = dp.build_model()
    model.__class__ = Counting
    return model
"""


def test_data_parallel_ranks_run_the_same_number_of_forwards(tmp_path):
    """Under --no-shard every decision that changes how many forwards run is collective: with a time cap and
    a rank whose timings differ, both ranks call the model (and its all_gather) equally often and finish."""
    (tmp_path / "counting.py").write_text(COUNTING_MODEL)
    counts = tmp_path / "counts"
    counts.mkdir()
    out = tmp_path / "run"
    env = {"COUNT_DIR": str(counts), "PYTHONPATH": os.pathsep.join([str(EXAMPLES), os.environ.get("PYTHONPATH", "")]),
           "MAMBAPROF_DIST_TIMEOUT_S": "90"}
    proc = torchrun("trace", str(tmp_path / "counting.py"), "--no-shard", "--out", str(out), "--seqlens", "16,32",
                    "--repeats", "12", "--warmup", "3", "--profile-repeats", "1", "--point-seconds", "0.05", "--quiet",
                    env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    n = {p.name: int(p.read_text()) for p in counts.iterdir()}
    assert set(n) == {"rank-0", "rank-1"} and n["rank-0"] == n["rank-1"] > 0, n
    points = read_table(out, "points").to_pandas().sort_values(["point_id", "rank"])
    assert (points.status == "ok").all()
    for _, per_point in points.groupby("point_id"):
        assert per_point.repeats.nunique() == 1 and per_point.warmup.nunique() == 1
        assert per_point.fidelity_pairs.nunique() == 1, per_point[["rank", "fidelity_pairs"]]
