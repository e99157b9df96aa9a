"""Distributed traces through torch.distributed (torchrun): where a rank is, what it runs, where it writes.

`torchrun --nproc-per-node N -m mambaprof trace ...` starts N copies of the trace. Each rank
- finds its rank, world size and local rank in the environment torchrun sets (`detect`) and traces
  on cuda:LOCAL_RANK, or on the CPU (`rank_device`);
- runs its share of the sweep points (`shard_points`: the same deterministic split on every rank),
  or every point when the model itself runs across ranks (the process group is then initialised
  for the model, `init_process_group`: NCCL on GPUs, gloo on the CPU);
- writes its own partition of every table, `<table>/rank-K/part-*.parquet` (`RankWriter`), with
  rank, world size and device in every row, and its row of the `ranks` table.
How the ranks finish together is `mambaprof.distributed.completion`; one rank's whole part is
`mambaprof.distributed.trace.run_distributed_trace`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from mambaprof import __version__
from mambaprof.env import collect_env
from mambaprof.errors import MambaprofError, one_line
from mambaprof.run.sweep import TraceConfig, command_line
from mambaprof.storage.rundir import TB_DIR, RunWriter, part_name, write_parquet_atomic
from mambaprof.storage.schema import get_table

#: Seconds a rank waits for rank 0's run directory, and the process group's collective timeout.
TIMEOUT_ENV = "MAMBAPROF_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 600.0


class DistributedError(MambaprofError):
    """The ranks of a distributed run could not start or coordinate."""


@dataclass(frozen=True)
class RankInfo:
    """Where this process sits in a torchrun job."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    attempt: int = 0  # torchrun's restart count: keys of an earlier attempt are never read

    @property
    def partition(self) -> str:
        """The folder of this rank's parts, `rank-K` (a plain folder: `rank` is a column of every row)."""
        return f"rank-{self.rank}"

    def identity(self) -> dict[str, int]:
        """The `rank` and `world_size` columns every row of this rank carries."""
        return {"rank": self.rank, "world_size": self.world_size}


def _env_int(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    value = env.get(name)
    if value is None:
        if default is None:
            raise DistributedError(f"{name} is not set", "start the ranks with torchrun")
        return default
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"{name}={value!r} is not a whole number", "start the ranks with torchrun") from None


def detect(environ: Mapping[str, str] | None = None) -> RankInfo | None:
    """This process's rank from the variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK,
    LOCAL_WORLD_SIZE, MASTER_ADDR/PORT), or None when no distributed launcher started it."""
    env = os.environ if environ is None else environ
    if "RANK" not in env and "WORLD_SIZE" not in env:
        return None
    rank, world = _env_int(env, "RANK"), _env_int(env, "WORLD_SIZE")
    if world < 1 or not 0 <= rank < world:
        raise DistributedError(f"RANK={rank} is not a rank of WORLD_SIZE={world}", "start the ranks with torchrun")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not env.get(name):
            raise DistributedError(f"RANK is set but {name} is not", "start the ranks with torchrun")
    local = _env_int(env, "LOCAL_RANK", rank)
    return RankInfo(rank=rank, world_size=world, local_rank=local,
                    local_world_size=_env_int(env, "LOCAL_WORLD_SIZE", world),
                    attempt=_env_int(env, "TORCHELASTIC_RESTART_COUNT", 0))


def rank_device(requested: str, info: RankInfo) -> str:
    """The --device this rank traces on: `auto` and `cuda` become cuda:LOCAL_RANK (auto: the CPU when
    no GPU is visible); `cpu` and an explicit `cuda:N` are kept as given."""
    if requested not in ("auto", "cuda"):
        return requested
    if not torch.cuda.is_available():
        return "cpu" if requested == "auto" else requested
    count = torch.cuda.device_count()
    if info.local_rank >= count:
        raise DistributedError(f"local rank {info.local_rank} has no GPU of its own ({count} visible)",
                               f"start at most {count} ranks per node, or pass --device cpu")
    return f"cuda:{info.local_rank}"


Point = tuple[int, int, int]  # point_id, batch, seqlen


def shard_points(points: Sequence[Point], rank: int, world_size: int) -> list[Point]:
    """This rank's share of the sweep points (point_id, batch, seqlen); every rank computes the same split.

    Largest first: points in decreasing tokens (batch x seqlen, what the cost grows with; ties by
    point id) each go to the rank with the fewest tokens so far (ties: the lowest rank). Returned in
    point-id order.
    """
    loads = [0] * world_size
    owner: dict[int, int] = {}
    for pid, batch, seqlen in sorted(points, key=lambda p: (-p[1] * p[2], p[0])):
        k = min(range(world_size), key=lambda r: (loads[r], r))
        owner[pid] = k
        loads[k] += batch * seqlen
    return sorted((p for p in points if owner[p[0]] == rank), key=lambda p: p[0])


def timeout_s() -> float:
    """Seconds to wait for rank 0's run directory, and the collective timeout of the process group
    (MAMBAPROF_DIST_TIMEOUT_S, default 600)."""
    value = os.environ.get(TIMEOUT_ENV)
    if value is None:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        raise DistributedError(f"{TIMEOUT_ENV}={value!r} is not a number of seconds") from None
    if seconds <= 0:
        raise DistributedError(f"{TIMEOUT_ENV}={value!r} must be positive")
    return seconds


def connect(info: RankInfo, wait_s: float) -> dist.Store:
    """A client of the launcher's key-value store (torchrun's TCP store at MASTER_ADDR:MASTER_PORT)."""
    try:
        store, _, _ = next(dist.rendezvous("env://", rank=info.rank, world_size=info.world_size,
                                           timeout=timedelta(seconds=wait_s)))
    except (RuntimeError, ValueError) as exc:
        raise DistributedError(f"rank {info.rank} cannot reach the launcher's store at "
                               f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}: {one_line(exc)}",
                               "start the ranks with torchrun") from exc
    return store


def init_process_group(info: RankInfo, device: torch.device, store: dist.Store, wait_s: float) -> str:
    """Initialise the default process group for a model that runs across ranks; returns the backend
    (`nccl` on GPUs, `gloo` on the CPU). Collectives time out after `wait_s` seconds."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs: dict[str, Any] = {}
    if device.type == "cuda":
        torch.cuda.set_device(device)
        kwargs["device_id"] = device
    dist.init_process_group(backend, store=store, rank=info.rank, world_size=info.world_size,
                            timeout=timedelta(seconds=wait_s), **kwargs)
    return backend


def collective_max() -> Callable[[float], float]:
    """After init_process_group (every rank calls this at the same place): a function returning the MAX of a
    number over all ranks, through a gloo group of its own (CPU tensors, apart from the model's collectives).
    It is TraceConfig.agree_max: time caps, extra fidelity pairs and autotune fallbacks are then decided alike
    on every rank, so ranks whose model calls a collective in its forward run the same number of forwards."""
    group = dist.new_group(backend="gloo")

    def agree_max(value: float) -> float:
        t = torch.tensor([float(value)], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)
        return float(t.item())

    return agree_max


def destroy_process_group() -> None:
    """Tear the default process group down (if any); a failure here must not mask the run's outcome."""
    if dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - a broken group (a rank died in a collective) is already recorded
            pass


class RankWriter(RunWriter):
    """One rank's writer: parts in `<table>/rank-K/`, TensorBoard traces in `tb/rank-K/`, and the run
    record the sweep writes turned into this rank's `ranks` row (the run's own record is rank 0's)."""

    def __init__(self, out: Path, run_id: str, info: RankInfo, point_ids: Sequence[int], sharded: bool,
                 backend: str | None = None, device: str | None = None, started_at: datetime | None = None) -> None:
        super().__init__(out, run_id=run_id, partition=info.partition)
        self.info = info
        self.started_at = started_at
        self.point_ids = list(point_ids)
        self.sharded = sharded
        self.backend = backend
        self.device = device
        #: the last run record the sweep wrote (model, software and device facts), {} before the sweep
        self.record: dict[str, Any] = {}

    @property
    def tb_dir(self) -> Path:
        """This rank's folder of TensorBoard traces."""
        return self.out / TB_DIR / self.partition

    def write_run_record(self, record: Mapping[str, Any]) -> Path:
        """The sweep's record of this rank becomes its `ranks` row."""
        self.record = dict(record)
        counts = {k: record.get(f"n_points_{k}") for k in ("ok", "oom", "error")}
        return self.write_rank_row(record["status"], record.get("status_reason"), None, record.get("finished_at"),
                                   counts, device_name=record.get("device_name"))

    def write_rank_row(self, status: str, reason: str | None, error: str | None, finished_at: datetime | None,
                       counts: Mapping[str, int | None] | None = None,
                       device_name: str | None = None, hostname: str | None = None, pid: int | None = None,
                       local_rank: int | None = None) -> Path:
        """Write (or rewrite) this rank's row of `ranks` (host and pid default to this process)."""
        counts = counts or {}
        row = {
            "run_id": self.run_id, **self.info.identity(),
            "local_rank": self.info.local_rank if local_rank is None else local_rank,
            "hostname": hostname or socket.gethostname(), "pid": os.getpid() if pid is None else pid,
            "device": self.device, "device_name": device_name or self.record.get("device_name"),
            "sharded": self.sharded, "backend": self.backend, "status": status, "status_reason": reason,
            "error": error, "started_at": self.started_at, "finished_at": finished_at, "point_ids": self.point_ids,
            "n_points": len(self.point_ids), "n_points_ok": counts.get("ok"), "n_points_oom": counts.get("oom"),
            "n_points_error": counts.get("error"),
        }
        arrow = get_table("ranks").build([row])
        return write_parquet_atomic(arrow, self.table_dir("ranks") / part_name(None))

    def write_final_record(self, record: Mapping[str, Any]) -> Path:
        """Rank 0: the run's own record (`runs`, one row)."""
        return RunWriter.write_run_record(self, record)


def base_record(config: TraceConfig, info: RankInfo, started_at: datetime) -> dict[str, Any]:
    """The run record rank 0 writes before any model is loaded (and keeps if its own trace fails)."""
    env = collect_env(str(config.device))
    return {
        "rank": 0, "world_size": info.world_size, "mambaprof_version": __version__, "status": "running",
        "command": command_line(), "cwd": os.getcwd(), "hostname": env.hostname, "pid": os.getpid(),
        "started_at": started_at, "config_json": config.as_json(), "seqlens": sorted(config.seqlens),
        "batches": config.batches, "dtype": str(config.dtype).replace("torch.", ""), "mode": config.mode,
        "repeats": config.repeats, "warmup": config.warmup, "profile_repeats": config.profile_repeats,
        "device": env.device, "device_name": env.device_name, "device_count": env.device_count,
        "torch_version": env.torch_version, "python_version": env.python_version, "platform": env.platform,
        "n_points": len(config.points()),
    }
