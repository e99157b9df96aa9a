"""A data-parallel model on 2 CPU ranks for real (gloo, loopback only): its all_gather is measured as
communication, and under --no-shard both ranks run the same number of forwards."""

import os

import pytest
from support.cli import EXAMPLES
from support.distributed import FAST, launch, tables, torchrun

from mambaprof.reports.ranks import rank_view
from mambaprof.storage.rundir import read_table


@pytest.mark.slow
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


@pytest.mark.slow
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
