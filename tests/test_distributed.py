"""Distributed building blocks, in one process: rank detection, devices, sharding, the run verdict,
the store protocol (a real TCP store on 127.0.0.1), partitioned writing and reading (pyarrow and
DuckDB), communication attribution, and the cross-rank analysis."""

import json
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
import torch.distributed as dist

from mambaprof.collectors.kernel_rules import is_communication
from mambaprof.collectors.profiler import DeviceEvent, Recording, attribute, forward_totals
from mambaprof.distributed import completion as C
from mambaprof.distributed import ranks as D
from mambaprof.reports import ranks as R
from mambaprof.run.sweep import SweepResult
from mambaprof.storage.rundir import RunWriter, process_alive, read_run_record, read_table

ENV = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
       "MASTER_PORT": "29500", "TORCHELASTIC_RESTART_COUNT": "0"}


def test_detect_reads_torchrun_environment():
    assert D.detect({}) is None
    info = D.detect(ENV)
    assert info == D.RankInfo(rank=1, world_size=2, local_rank=1, local_world_size=2, attempt=0)
    assert info.partition == "rank-1" and info.identity() == {"rank": 1, "world_size": 2}
    with pytest.raises(D.DistributedError, match="RANK=2 is not a rank of WORLD_SIZE=2"):
        D.detect({**ENV, "RANK": "2"})
    with pytest.raises(D.DistributedError, match="'x' is not a whole number"):
        D.detect({**ENV, "WORLD_SIZE": "x"})
    with pytest.raises(D.DistributedError, match="MASTER_ADDR is not"):
        D.detect({k: v for k, v in ENV.items() if k != "MASTER_ADDR"})


def test_rank_device(monkeypatch):
    info = D.detect(ENV)
    assert D.rank_device("cpu", info) == "cpu" and D.rank_device("cuda:0", info) == "cuda:0"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert D.rank_device("auto", info) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert D.rank_device("auto", info) == "cuda:1" and D.rank_device("cuda", info) == "cuda:1"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(D.DistributedError, match="local rank 1 has no GPU of its own"):
        D.rank_device("auto", info)


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_shards_cover_every_point_once_and_balance_tokens(world):
    points = [(i, b, s) for i, (b, s) in enumerate((b, s) for b in (1, 2, 8) for s in (64, 256, 1024, 4096))]
    shards = [D.shard_points(points, k, world) for k in range(world)]
    ids = [p[0] for shard in shards for p in shard]
    assert sorted(ids) == list(range(len(points)))  # a partition of the points
    assert all(shard == sorted(shard) for shard in shards)  # point-id order
    assert shards == [D.shard_points(list(reversed(points)), k, world) for k in range(world)]  # order-free
    loads = [sum(b * s for _, b, s in shard) for shard in shards]
    biggest = max(b * s for _, b, s in points)
    assert max(loads) - min(loads) <= biggest  # largest-first greedy: within one point of balance
    if world == 2:  # the 32,768-token point outweighs all the others together (27,072): it runs alone
        assert shards[0] == [(11, 8, 4096)] and loads == [32768, 27072]


def test_judge_combines_reports():
    assignment = {0: [0, 2], 1: [1, 3]}
    ok = C.RankReport("complete", points={0: "ok", 2: "ok"})
    verdict = C.judge({0: ok, 1: C.RankReport("complete", points={1: "ok", 3: "ok"})}, assignment)
    assert (verdict.status, verdict.reason, verdict.counts, verdict.failures) == (
        "complete", None, {"ok": 4, "oom": 0, "error": 0}, [])
    bad = C.RankReport.from_sweep(SweepResult("incomplete", "0 point(s) oom, 1 error", point_rows=[
        {"point_id": 1, "batch": 1, "seqlen": 32, "status": "error", "error": "RuntimeError: boom"},
        {"point_id": 3, "batch": 1, "seqlen": 64, "status": "ok"}]))
    verdict = C.judge({0: ok, 1: bad}, assignment)
    assert verdict.status == "incomplete" and verdict.counts == {"ok": 3, "oom": 0, "error": 1}
    assert verdict.failures == ["rank 1 incomplete: 0 point(s) oom, 1 error; first: point 1 (b=1 L=32): "
                                "RuntimeError: boom"]
    assert bad.exit_code == 3 and ok.exit_code == 0
    stopped = C.RankReport("incomplete", "interrupted by SIGTERM after 0 of 1 points", interrupted_by="SIGTERM")
    assert stopped.exit_code == 143 and C.RankReport.from_json(stopped.as_json()) == stopped
    # a lost rank: its finished points (on disk) still count
    verdict = C.judge({0: ok, 1: None}, assignment, on_disk={1: {1: "ok"}})
    assert verdict.counts["ok"] == 3 and verdict.failures[0].startswith("rank 1 lost")
    verdict = C.judge({0: C.RankReport("failed", error="ModelLoadError: x"), 1: None}, assignment)
    assert verdict.status == "failed" and verdict.failures[0] == "rank 0 failed: ModelLoadError: x"
    # --no-shard: a point is ok only when every rank ran it ok
    both = {0: [0], 1: [0]}
    verdict = C.judge({0: C.RankReport("complete", points={0: "ok"}),
                       1: C.RankReport("incomplete", "1 oom", points={0: "oom"})}, both)
    assert verdict.counts == {"ok": 0, "oom": 1, "error": 0} and verdict.status == "failed"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_process_alive_sees_dead_and_zombie_processes():
    import os

    assert process_alive(os.getpid())
    assert not process_alive(_dead_pid())
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # exits, not reaped until wait()
    deadline = time.time() + 30
    while process_alive(zombie.pid) and time.time() < deadline:
        time.sleep(0.05)
    assert not process_alive(zombie.pid)
    zombie.wait()


@pytest.fixture
def store():
    return dist.TCPStore("127.0.0.1", 0, None, True, timeout=timedelta(seconds=20), wait_for_workers=False)


def test_store_protocol_collects_reports_and_notices_a_dead_rank(store):
    lead = C.Coordinator(store, D.RankInfo(0, 3, 0, 3))
    ranks = [C.Coordinator(store, D.RankInfo(k, 3, k, 3)) for k in (1, 2)]
    ranks[0].announce({"device": "cpu", "local_rank": 1})
    ranks[1].store.set("start/2", json.dumps({"hostname": lead.hostname, "pid": _dead_pid()}))

    def finish_later():
        time.sleep(0.5)
        ranks[0].report_done(C.RankReport("complete", points={1: "ok"}).as_json())

    thread = threading.Thread(target=finish_later)
    thread.start()
    started = time.monotonic()
    reports = lead.collect()
    thread.join()
    assert time.monotonic() - started < 10
    assert reports[2] is None  # its process is gone and it never reported
    assert C.RankReport.from_json(reports[1]) == C.RankReport("complete", points={1: "ok"})
    # a rank waiting for rank 0's word gives up, with a message, when rank 0's process is gone
    gone = C.Coordinator(store, D.RankInfo(0, 3, 0, 3, attempt=1))
    gone.store.set("start/0", json.dumps({"hostname": lead.hostname, "pid": _dead_pid()}))
    waiter = C.Coordinator(store, D.RankInfo(1, 3, 1, 3, attempt=1))
    with pytest.raises(D.DistributedError, match="rank 0 stopped before it published 'final'"):
        waiter.wait_for("final", 0)
    with pytest.raises(D.DistributedError, match="gave up waiting 0 s for 'other' from rank 2"):
        waiter.wait_for("other", 2, within_s=0.2)


ROW = {"device": "cpu", "batch": 1, "dtype": "float32", "layer": 0, "component": "ssm_scan"}


def _write_two_ranks(out: Path) -> str:
    first = RunWriter(out)
    first.prepare()
    first.write_run_record({"rank": 0, "world_size": 2, "status": "complete"})
    for rank, seqlens in ((0, [64]), (1, [16, 32])):
        info = D.RankInfo(rank, 2, rank, 2)
        w = D.RankWriter(out, first.run_id, info, point_ids=[s // 16 for s in seqlens], sharded=True, device="cpu")
        w.prepare()
        for s in seqlens:
            w.write_rows("components", [{**ROW, "run_id": w.run_id, **info.identity(), "point_id": s // 16,
                                         "seqlen": s, "kernel_ms_median": s / 10}], point_id=s // 16)
        w.write_rank_row("complete", None, None, None, {"ok": len(seqlens), "oom": 0, "error": 0})
        assert w.tb_dir == out / "tb" / f"rank-{rank}"
    return first.run_id


def test_partitions_read_as_one_table_by_pyarrow_and_duckdb(tmp_path):
    out = tmp_path / "run"
    run_id = _write_two_ranks(out)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet")) == [
        "components/rank-0/part-00004.parquet", "components/rank-1/part-00001.parquet",
        "components/rank-1/part-00002.parquet", "ranks/rank-0/part-run.parquet", "ranks/rank-1/part-run.parquet",
        "runs/part-run.parquet"]
    comps = read_table(out, "components").to_pandas().sort_values("seqlen")
    assert list(comps.seqlen) == [16, 32, 64] and list(comps["rank"]) == [1, 1, 0]
    assert (comps.world_size == 2).all() and (comps.run_id == run_id).all()
    # every file's own rank column agrees with its rank-K folder
    for path in (out / "components").rglob("*.parquet"):
        assert set(pq.read_table(path).column("rank").to_pylist()) == {int(path.parent.name.split("-")[1])}
    assert read_run_record(out)["world_size"] == 2  # the run record is one row, not partitioned
    ranks = read_table(out, "ranks").to_pandas().sort_values("rank")
    assert list(ranks.n_points) == [1, 2] and list(ranks.point_ids.map(list)) == [[4], [1, 2]]
    got = duckdb.sql(f"SELECT rank, seqlen, kernel_ms_median FROM read_parquet('{out}/components/**/*.parquet') "
                     "ORDER BY seqlen").fetchall()
    assert got == [(1, 16, 1.6), (1, 32, 3.2), (0, 64, 6.4)]


def test_runs_written_with_hive_rank_folders_still_read(tmp_path):
    """Runs written before the rank-K folders hold rank=K ones: read_table still reads them as one table."""
    out = tmp_path / "run"
    _write_two_ranks(out)
    for folder in [*out.glob("*/rank-*")]:
        folder.rename(folder.with_name(folder.name.replace("-", "=")))
    comps = read_table(out, "components").to_pandas().sort_values("seqlen")
    assert list(comps.seqlen) == [16, 32, 64] and list(comps["rank"]) == [1, 1, 0]


def cpu_event(name, start, end, parent=None, thread=1, annotation=False):
    from types import SimpleNamespace

    ev = SimpleNamespace(id=id(name) + int(start), name=name, cpu_parent=parent, cpu_children=[], thread=thread,
                         is_user_annotation=annotation or name.startswith("mambaprof/"),
                         time_range=SimpleNamespace(start=start, end=end), self_cpu_time_total=end - start)
    if parent is not None:
        parent.cpu_children.append(ev)
        parent.self_cpu_time_total -= end - start
    return ev


def test_communication_names():
    for name in ("ncclDevKernel_AllReduce_Sum_bf16_RING_LL", "c10d::allreduce_", "gloo:all_gather",
                 "_c10d_functional::all_gather_into_tensor", "nccl:broadcast", "record_param_comms",
                 "reduce_scatter_kernel"):
        assert is_communication(name), name
    for name in ("aten::broadcast_tensors", "aten::mm", "selective_scan_fwd_kernel", "aten::gather"):
        assert not is_communication(name), name


def test_cpu_collectives_are_communication_even_on_the_backend_thread():
    fwd = cpu_event("mambaprof/model/forward", 0, 1000)
    head = cpu_event("mambaprof/model/lm_head", 100, 200, fwd)
    cpu_event("aten::mm", 110, 190, head)
    gather = cpu_event("c10d::_allgather_base_", 300, 340, fwd)  # not a leaf: its own time counts too
    cpu_event("aten::empty", 310, 320, gather)
    cpu_event("aten::broadcast_tensors", 400, 410, fwd)
    events = [e for e in (fwd, head, *head.cpu_children, gather, *gather.cpu_children, *fwd.cpu_children[2:])]
    events.append(cpu_event("gloo:all_gather", 350, 950, thread=2, annotation=True))  # gloo's own thread
    events.append(cpu_event("gloo:all_reduce", 2000, 2100, thread=2, annotation=True))  # outside any forward
    rows = attribute(Recording(events, []), {}, set())
    got = sorted((r.name, r.layer, r.component, r.attribution, r.duration_us) for r in rows)
    assert got == [
        ("aten::broadcast_tensors", -1, "other", "none", 10),
        ("aten::empty", -1, "communication", "name_rule", 10),
        ("aten::mm", -1, "lm_head", "range", 80),
        ("c10d::_allgather_base_", -1, "communication", "name_rule", 30),
        ("gloo:all_gather", -1, "communication", "name_rule", 600),
    ]
    total, pct, count = forward_totals(rows, 1)
    assert total == pytest.approx(0.73) and count == 5


def test_gpu_nccl_kernel_keeps_the_layer_it_was_launched_in():
    fwd = cpu_event("mambaprof/model/forward", 0, 1000)
    mixer = cpu_event("mambaprof/L2/out_proj", 100, 400, fwd)
    dev = [DeviceEvent("nvjet_gemm", 0, 150, 20.0, linked_id=0, launch_us=110),
           DeviceEvent("ncclDevKernel_AllReduce_Sum_bf16_RING_LL", 0, 200, 50.0, linked_id=0, launch_us=300),
           DeviceEvent("ncclDevKernel_AllGather_RING_LL", 0, 600, 30.0, linked_id=0, launch_us=700)]
    rows = attribute(Recording([fwd, mixer], dev), {2: "mamba2"}, set())
    assert [(r.layer, r.component, r.attribution) for r in rows] == [
        (2, "out_proj", "range"), (2, "communication", "name_rule"), (-1, "communication", "name_rule")]


def _frames():
    comps = pd.DataFrame([
        # point 0 ran on both ranks (a model across ranks); rank 1 is slower and communicates more
        (0, 1, 64, 0, 0, "ssm_scan", 3.0), (0, 1, 64, 0, 1, "ssm_scan", 1.0), (0, 1, 64, 0, -1, "communication", 1.0),
        (0, 1, 64, 1, 0, "ssm_scan", 3.0), (0, 1, 64, 1, 1, "ssm_scan", 1.0), (0, 1, 64, 1, -1, "communication", 4.0),
        (1, 1, 128, 0, 0, "ssm_scan", 6.0), (1, 1, 128, 0, -1, "other", 2.0),
    ], columns=["point_id", "batch", "seqlen", "rank", "layer", "component", "kernel_ms_mean"])
    t = pd.Timestamp("2026-01-01T00:00:00Z")
    points = pd.DataFrame([
        (0, 1, 64, 0, "ok", 10.0, t, t + pd.Timedelta(seconds=2)),
        (0, 1, 64, 1, "ok", 12.5, t, t + pd.Timedelta(seconds=3)),
        (1, 1, 128, 0, "ok", 20.0, t + pd.Timedelta(seconds=2), t + pd.Timedelta(seconds=6)),
        (1, 1, 128, 1, "error", None, t + pd.Timedelta(seconds=3), t + pd.Timedelta(seconds=4)),
    ], columns=["point_id", "batch", "seqlen", "rank", "status", "original_ms_median", "started_at", "finished_at"])
    kernels = pd.DataFrame([(0, 0, 0, 1500.0), (0, 0, 1, 2500.0), (0, 1, 0, 3000.0), (0, 1, 1, 1000.0)],
                           columns=["point_id", "iteration", "rank", "duration_us"])
    return points, comps, kernels


def test_rank_view_numbers():
    points, comps, kernels = _frames()
    view = R.rank_view(points, comps, kernels)
    times = view.components
    assert times[(times.point_id == 0) & (times["rank"] == 1)][["component", "kernel_ms_mean"]].values.tolist() == [
        ["ssm_scan", 4.0], ["communication", 4.0]]
    comm = view.communication.set_index(["point_id", "rank"])
    assert comm.loc[(0, 0)].tolist()[-3:] == [1.0, 5.0, 20.0]
    assert comm.loc[(0, 1)].tolist()[-3:] == [4.0, 8.0, 50.0]
    assert comm.loc[(1, 0)].tolist()[-3:] == [0.0, 8.0, 0.0]
    slow = view.slowest_points.set_index("point_id")
    assert slow.loc[0, ["slowest_rank", "slowest_ms", "fastest_ms", "ranks"]].tolist() == [1, 12.5, 10.0, 2]
    assert slow.loc[0, "skew_pct"] == pytest.approx(25.0)
    assert slow.loc[1, ["slowest_rank", "ranks", "skew_pct"]].tolist() == [0, 1, 0.0]  # rank 1's point failed
    steps = view.slowest_steps.set_index("iteration")
    assert steps.loc[0, ["slowest_rank", "slowest_ms", "fastest_ms"]].tolist() == [1, 2.5, 1.5]
    assert steps.loc[1, ["slowest_rank", "slowest_ms", "fastest_ms"]].tolist() == [0, 3.0, 1.0]
    assert view.load.values.tolist() == [[0, 2, 2, 6.0, 6.0], [1, 2, 1, 4.0, 4.0]]
    assert view.world_size == 2


def test_launch_refuses_bad_nproc_and_nested_launches(monkeypatch):
    from mambaprof.distributed.launch import launch_distributed, rank_threads
    from mambaprof.errors import BadArgumentError

    with pytest.raises(BadArgumentError, match="--nproc 0 must be at least 1"):
        launch_distributed(["trace"], 0)
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(D.DistributedError, match="already rank 1 of 2: a rank cannot launch ranks"):
        launch_distributed(["trace"], 2)
    assert int(rank_threads(1)) >= int(rank_threads(2)) >= 1 and rank_threads(10_000) == "1"


def test_timeout_from_environment(monkeypatch):
    monkeypatch.delenv(D.TIMEOUT_ENV, raising=False)
    assert D.timeout_s() == 600.0
    monkeypatch.setenv(D.TIMEOUT_ENV, "12.5")
    assert D.timeout_s() == 12.5
    for bad in ("soon", "0"):
        monkeypatch.setenv(D.TIMEOUT_ENV, bad)
        with pytest.raises(D.DistributedError, match=D.TIMEOUT_ENV):
            D.timeout_s()
