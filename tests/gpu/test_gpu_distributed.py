"""Distributed traces on 2 GPUs (run on a 2-GPU device; skipped with fewer): each rank on its own GPU,
NCCL collectives of a data-parallel model in the `communication` component."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from support.cli import run_process

from mambaprof.reports.ranks import communication_share
from mambaprof.storage.rundir import read_table

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs"),
]

#: NVLink multicast stays off (see the device notes); every process started here inherits these.
NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
FAST = ["--repeats", "5", "--warmup", "2", "--profile-repeats", "2", "--quiet", "--no-tb"]


def torchrun(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--rdzv-backend", "c10d",
           "--rdzv-endpoint", "127.0.0.1:0", "--local-addr", "127.0.0.1", "-m", "mambaprof", *args]
    return run_process(cmd, cwd=REPO, env={**os.environ, **NO_MULTICAST, "KINETO_LOG_LEVEL": "5", **(env or {})})


def test_each_rank_traces_on_its_own_gpu(tmp_path):
    out = tmp_path / "run"
    proc = torchrun("trace", "--preset", "mamba2-tiny", "--backend", "hf", "--seqlens", "256,512,1024",
                    "--out", str(out), *FAST)
    assert proc.returncode == 0, proc.stderr[-4000:]
    points = read_table(out, "points").to_pandas()
    assert dict(zip(points["rank"], points.device, strict=False)) == {0: "cuda:0", 1: "cuda:1"}
    assert (points.status == "ok").all() and sorted(points.seqlen) == [256, 512, 1024]
    ranks = read_table(out, "ranks").to_pandas().sort_values("rank")
    assert list(ranks.device) == ["cuda:0", "cuda:1"] and set(ranks.status) == {"complete"}


def test_nccl_collectives_are_communication(tmp_path):
    out = tmp_path / "run"
    proc = torchrun("trace", os.path.join(REPO, "examples", "data_parallel.py"), "--no-shard", "--seqlens", "1024",
                    "--batch", "4", "--out", str(out), *FAST,
                    env={"MAMBA_D_MODEL": "512", "MAMBA_LAYERS": "4", "MAMBA_VOCAB": "32000"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert set(read_table(out, "ranks").to_pandas().backend) == {"nccl"}
    kernels = read_table(out, "kernels").to_pandas()
    comm = kernels[kernels.component == "communication"]
    assert comm.name.str.contains("nccl", case=False).any(), sorted(set(kernels.name))[:40]
    assert set(comm.device_type) == {"cuda"}
    share = communication_share(read_table(out, "components").to_pandas())
    assert len(share) == 2 and (share.communication_ms > 0).all()
