"""Distributed traces through torch.distributed (torchrun): ranks, shards, partitions, completion.

`torchrun --nproc-per-node N -m mambaprof trace ...` starts N copies of the trace. Each rank
- finds its rank, world size and local rank in the environment torchrun sets (`detect`) and traces
  on cuda:LOCAL_RANK, or on the CPU (`rank_device`);
- runs its share of the sweep points (`shard_points`: the same deterministic split on every rank),
  or every point when the model itself runs across ranks (`shard=False`; the process group is then
  initialised for the model: NCCL on GPUs, gloo on the CPU);
- writes its own partition of every table, `<table>/rank=K/part-*.parquet` (`RankWriter`), with
  rank, world size and device in every row, and its row of the `ranks` table.

The ranks coordinate through the key-value store torchrun already runs (`Coordinator`), never
through a collective, so a rank that fails cannot hang the others:
1. rank 0 prepares the run directory, writes the run record (`running`) and publishes the run id;
2. each rank announces itself (host, pid, device) and, however it ends (an exception is caught and
   recorded as `failed`), reports `done/K` with its status once its rows are on disk;
3. rank 0, its own part done, waits for every report. A rank whose process is gone (same host), or
   that has not reported when rank 0 is stopped (torchrun stops every rank when one dies), is
   recorded as `lost`. Rank 0 writes the final run record and publishes `final`;
4. every rank waits for `final`, and for rank 0 to release it (and, on rank 0's host, to exit),
   before it exits itself, so no early exit code (which makes torchrun stop the others) cuts a rank
   short.
Each rank exits 0 when its own part is `complete`, 128 + the signal when it was interrupted (as a
1-rank trace does), else 3, even for an oom/error point (a 1-rank trace exits 0 there): the
launcher's exit code is non-zero whenever any rank is not complete, and rank 0 prints one
`error:` line per such rank.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from mambaprof import __version__
from mambaprof.env import collect_env
from mambaprof.errors import MambaprofError
from mambaprof.measure import PointCollector
from mambaprof.rundir import (
    TB_DIR,
    RunWriter,
    new_run_id,
    part_name,
    process_alive,
    read_table,
    utcnow,
    write_parquet_atomic,
)
from mambaprof.schema import get_table
from mambaprof.sweep import (
    ProgressFn,
    RunInterrupted,
    SweepResult,
    TraceConfig,
    command_line,
    interrupts_raise,
    one_line,
)
from mambaprof.tracing import ModelSource, TraceOutcome, trace

#: Seconds a rank waits for rank 0's run directory, and the process group's collective timeout.
TIMEOUT_ENV = "MAMBAPROF_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 600.0
#: How often waiting ranks look at the store (seconds).
POLL_S = 0.1
#: After rank 0 is stopped, how long it still collects reports of the others (seconds).
GRACE_S = 3.0
#: Exit code of a rank that failed or has a failed point.
EXIT_FAILED = 3


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
        """The hive-style folder of this rank's parts, `rank=K`."""
        return f"rank={self.rank}"

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


def destroy_process_group() -> None:
    """Tear the default process group down (if any); a failure here must not mask the run's outcome."""
    if dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - a broken group (a rank died in a collective) is already recorded
            pass


class Coordinator:
    """The completion protocol over the launcher's store (see the module docstring). Values are JSON."""

    def __init__(self, store: dist.Store, info: RankInfo) -> None:
        self.raw_store = store  # what the process group is initialised with
        self.store = dist.PrefixStore(f"mambaprof/attempt{info.attempt}", store)
        self.info = info
        self.hostname = socket.gethostname()

    def _set(self, key: str, value: Mapping[str, Any]) -> None:
        self.store.set(key, json.dumps(value, default=str))

    def _get(self, key: str) -> dict[str, Any]:
        return json.loads(self.store.get(key))

    def _has(self, key: str) -> bool:
        return bool(self.store.check([key]))

    def gone(self, rank: int) -> bool:
        """True when `rank` announced a process on this host that no longer runs."""
        if not self._has(f"start/{rank}"):
            return False
        start = self._get(f"start/{rank}")
        return start.get("hostname") == self.hostname and not process_alive(int(start["pid"]))

    def wait_for(self, key: str, setter: int, within_s: float | None = None) -> dict[str, Any]:
        """Poll until `key` exists; DistributedError if rank `setter` is gone first or `within_s` passes."""
        deadline = None if within_s is None else time.monotonic() + within_s
        while not self._has(key):
            if self.gone(setter) and not self._has(key):
                raise DistributedError(f"rank {setter} stopped before it published {key!r}",
                                       f"see rank {setter}'s output above")
            if deadline is not None and time.monotonic() > deadline:
                raise DistributedError(f"rank {self.info.rank} gave up waiting {within_s:.0f} s for {key!r} "
                                       f"from rank {setter}", f"raise {TIMEOUT_ENV} if rank {setter} is just slow")
            time.sleep(POLL_S)
        return self._get(key)

    def publish_setup(self, value: Mapping[str, Any]) -> None:
        """Rank 0: where the run is (`out`, `run_id`), or `error` when it could not be prepared."""
        self._set("setup", value)

    def announce(self, value: Mapping[str, Any]) -> None:
        """This rank's host, pid, device and start time (lets rank 0 notice its death on the same host)."""
        self._set(f"start/{self.info.rank}", {"hostname": self.hostname, "pid": os.getpid(), **value})

    def started(self, rank: int) -> dict[str, Any]:
        """What `rank` announced ({} if it never did)."""
        return self._get(f"start/{rank}") if self._has(f"start/{rank}") else {}

    def report_done(self, report: Mapping[str, Any]) -> None:
        """This rank has finished and its rows are on disk."""
        self._set(f"done/{self.info.rank}", report)

    def collect(self, deadline: float | None = None) -> dict[int, dict[str, Any] | None]:
        """Rank 0: the report of every other rank, None for a rank that is lost (its process is gone,
        or it has not reported within GRACE_S after this rank was stopped, or by the deadline)."""
        reports: dict[int, dict[str, Any] | None] = {}
        pending = set(range(1, self.info.world_size))
        grace: float | None = None
        while pending:
            try:
                for k in sorted(pending):
                    if self._has(f"done/{k}"):
                        reports[k] = self._get(f"done/{k}")
                    elif self.gone(k):
                        reports[k] = self._get(f"done/{k}") if self._has(f"done/{k}") else None
                    else:
                        continue
                    pending.discard(k)
                now = time.monotonic()
                if pending and ((grace is not None and now > grace) or (deadline is not None and now > deadline)):
                    break
                time.sleep(POLL_S)
            except RunInterrupted:  # torchrun stops every rank when one dies: collect what is there
                grace = grace or time.monotonic() + GRACE_S
        reports.update({k: None for k in pending})
        return reports

    def publish_final(self, value: Mapping[str, Any]) -> None:
        """Rank 0: the run record is written; `value` holds the run's status and failures."""
        self._set("final", value)

    def release(self) -> None:
        """Rank 0: it has reported the run; the other ranks may exit."""
        self._set("released", {"at": time.time()})


@dataclass
class RankReport:
    """How one rank ended: what it reports to rank 0 (`done/K`). `error`: what stopped a failed rank,
    or the first failed point of an incomplete one."""

    status: str
    reason: str | None = None
    error: str | None = None
    points: dict[int, str] = field(default_factory=dict)  # point_id -> status
    interrupted_by: str | None = None  # SIGINT / SIGTERM

    @classmethod
    def from_sweep(cls, result: SweepResult) -> RankReport:
        """The report of a finished sweep (its status and `points` rows)."""
        rows = result.point_rows
        bad = next((r for r in rows if r.get("status") != "ok"), None)
        error = (f"point {bad['point_id']} (b={bad['batch']} L={bad['seqlen']}): {bad.get('error')}"
                 if bad is not None else None)
        return cls(result.status, result.reason, error, {int(r["point_id"]): str(r["status"]) for r in rows},
                   result.interrupted_by)

    @property
    def exit_code(self) -> int:
        """What this rank exits with: 0 complete, 128 + signal when interrupted, else 3."""
        if self.interrupted_by is not None:
            return 128 + int(signal.Signals[self.interrupted_by])
        return 0 if self.status == "complete" else EXIT_FAILED

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict (point ids as strings)."""
        return {"status": self.status, "reason": self.reason, "error": self.error,
                "points": {str(k): v for k, v in self.points.items()}, "interrupted_by": self.interrupted_by}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> RankReport:
        """Inverse of as_json."""
        return cls(status=value["status"], reason=value.get("reason"), error=value.get("error"),
                   points={int(k): v for k, v in (value.get("points") or {}).items()},
                   interrupted_by=value.get("interrupted_by"))


@dataclass
class RunVerdict:
    """The run's status over all ranks, its point counts, and one line per rank that is not complete."""

    status: str
    reason: str | None
    counts: dict[str, int]
    failures: list[str]


def judge(reports: Mapping[int, RankReport | None], assignment: Mapping[int, Sequence[int]],
          on_disk: Mapping[int, Mapping[int, str]] | None = None) -> RunVerdict:
    """Combine the ranks' reports (None: lost) into the run's status. `on_disk`: rank -> {point_id:
    status} of the points a lost rank finished before it stopped (their rows are whole on disk).

    A point is ok when every rank that had it reports it ok (oom / error when any reports that). The
    run is `complete` when every rank is, `failed` when no point is ok, else `incomplete`.
    """
    failures: list[str] = []
    for k in sorted(assignment):
        rep = reports.get(k)
        if rep is None:
            failures.append(f"rank {k} lost: it stopped without reporting (killed, crashed or timed out)")
        elif rep.status == "failed":
            failures.append(f"rank {k} failed: {rep.error or rep.reason}")
        elif rep.status != "complete":
            first = f"; first: {rep.error}" if rep.error else ""
            failures.append(f"rank {k} {rep.status}: {rep.reason}{first}")
    per_point: dict[int, list[str]] = {}
    for k, pids in assignment.items():
        rep = reports.get(k)
        done = rep.points if rep is not None else (on_disk or {}).get(k, {})
        for pid in pids:
            per_point.setdefault(pid, []).append(done.get(pid, "missing"))
    counts = {"ok": 0, "oom": 0, "error": 0}
    for statuses in per_point.values():
        if "oom" in statuses:
            counts["oom"] += 1
        elif "error" in statuses:
            counts["error"] += 1
        elif all(s == "ok" for s in statuses):
            counts["ok"] += 1
    if not failures:
        return RunVerdict("complete", None, counts, [])
    return RunVerdict("failed" if counts["ok"] == 0 else "incomplete", "; ".join(failures), counts, failures)


class RankWriter(RunWriter):
    """One rank's writer: parts in `<table>/rank=K/`, TensorBoard traces in `tb/rank=K/`, and the run
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


@dataclass
class RankOutcome:
    """How the run ended, as this rank knows it. Call `release()` once it has been reported."""

    info: RankInfo
    run_dir: Path
    run_id: str
    report: RankReport
    trace: TraceOutcome | None  # this rank's trace; None when the rank failed before its sweep
    run_status: str
    run_reason: str | None
    failures: list[str]  # one line per rank that is not complete
    coordinator: Coordinator

    @property
    def exit_code(self) -> int:
        """This rank's exit code (see RankReport.exit_code)."""
        return self.report.exit_code

    def release(self) -> None:
        """Rank 0 lets the other ranks exit; they wait here for that, then for rank 0's process to end
        when it runs on their host (so that their exit code never makes torchrun stop rank 0)."""
        if self.info.rank == 0:
            self.coordinator.release()
            return
        try:
            with interrupts_raise():
                self.coordinator.wait_for("released", 0, timeout_s())
                deadline = time.monotonic() + GRACE_S * 3
                while not self.coordinator.gone(0) and time.monotonic() < deadline:
                    time.sleep(POLL_S)
        except (RunInterrupted, DistributedError, RuntimeError):
            pass  # rank 0 already reported the run (or is gone): nothing is lost by leaving now


def _setup(info: RankInfo, coord: Coordinator, config: TraceConfig, out: Path | None, force: bool,
           started: datetime, wait_s: float) -> tuple[Path, str]:
    """Rank 0 prepares the directory and publishes it; the others wait for it. Returns (out, run_id)."""
    if info.rank == 0:
        out = out or Path("runs") / new_run_id()
        writer = RunWriter(out, force=force)
        try:
            writer.prepare()
            writer.write_run_record(base_record(config, info, started))
        except MambaprofError as exc:
            coord.publish_setup({"error": exc.one_line()})
            raise
        coord.publish_setup({"out": str(out), "run_id": writer.run_id})
        return out, writer.run_id
    setup = coord.wait_for("setup", 0, wait_s)
    if setup.get("error"):
        raise DistributedError(f"rank 0 could not prepare the run directory: {setup['error']}")
    return Path(setup["out"]), setup["run_id"]


def run_distributed_trace(info: RankInfo, source: ModelSource, config: TraceConfig, out: Path | None,
                          force: bool = False, shard: bool = True, progress: ProgressFn | None = None,
                          debug: bool = False, extra_collectors: Sequence[PointCollector] = ()) -> RankOutcome:
    """Run this rank's part of a distributed trace and the completion protocol (module docstring).

    `config.device` must already be this rank's device (see rank_device). Errors before the run
    directory exists raise; after that, whatever happens to the rank is recorded and reported.
    """
    wait_s = timeout_s()
    coord = Coordinator(connect(info, wait_s), info)
    every = [(i, b, s) for i, (b, s) in enumerate(config.points())]
    assignment = {k: [p[0] for p in (shard_points(every, k, info.world_size) if shard else every)]
                  for k in range(info.world_size)}
    owned = set(assignment[info.rank])
    mine = [p for p in every if p[0] in owned]
    started = utcnow()
    run_dir, run_id = _setup(info, coord, config, out, force, started, wait_s)
    coord.announce({"device": str(config.device), "local_rank": info.local_rank, "started_at": started})
    writer = RankWriter(run_dir, run_id, info, assignment[info.rank], shard, device=str(config.device),
                        started_at=started)
    writer.prepare()
    writer.write_rank_row("running", None, None, None)

    outcome: TraceOutcome | None = None
    failure: BaseException | None = None
    try:
        with interrupts_raise():
            if not shard:
                writer.backend = init_process_group(info, config.device, coord.raw_store, wait_s)
            outcome = trace(source, config, run_dir, writer=writer, identity=info.identity(), points=mine,
                            progress=progress, debug=debug, extra_collectors=extra_collectors)
        report = RankReport.from_sweep(outcome.result)
    except RunInterrupted as exc:
        report = RankReport("incomplete", f"interrupted by {exc.signame} before the sweep",
                            interrupted_by=exc.signame)
        writer.write_rank_row(report.status, report.reason, None, utcnow())
    except Exception as exc:  # noqa: BLE001 - the rank's failure is recorded and reported, never lost
        done = finished_points(run_dir, [info.rank])[info.rank]
        report = RankReport("failed", error=one_line(exc), points=done)
        writer.write_rank_row(report.status, None, report.error, utcnow(), tally(done))
        failure = exc
    finally:
        destroy_process_group()
    coord.report_done(report.as_json())

    if info.rank == 0:
        verdict = _finish(coord, writer, config, info, assignment, report, started)
    else:
        with interrupts_raise():
            try:
                final = coord.wait_for("final", 0)
            except RunInterrupted:
                final = {"status": "incomplete", "reason": "interrupted before rank 0 finished", "failures": []}
        verdict = RunVerdict(final["status"], final.get("reason"), {}, list(final.get("failures") or []))
    if failure is not None and debug:
        if info.rank == 0:
            coord.release()
        raise failure
    return RankOutcome(info=info, run_dir=run_dir, run_id=run_id, report=report, trace=outcome,
                       run_status=verdict.status, run_reason=verdict.reason, failures=verdict.failures,
                       coordinator=coord)


def _finish(coord: Coordinator, writer: RankWriter, config: TraceConfig, info: RankInfo,
            assignment: Mapping[int, Sequence[int]], own: RankReport, started: datetime) -> RunVerdict:
    """Rank 0: collect every report, record lost ranks, write the run record, publish `final`."""
    with interrupts_raise():
        raw = coord.collect()
    reports: dict[int, RankReport | None] = {0: own}
    lost = [k for k, value in raw.items() if value is None]
    for k, value in raw.items():
        reports[k] = RankReport.from_json(value) if value is not None else None
    on_disk = finished_points(writer.out, lost)
    for k in lost:
        _record_lost(coord, writer, info, k, assignment[k], on_disk[k])
    verdict = judge(reports, assignment, on_disk)
    record = {**(writer.record or base_record(config, info, started)), "rank": 0, "world_size": info.world_size,
              "status": verdict.status, "status_reason": verdict.reason, "started_at": started, "finished_at": utcnow(),
              "n_points": len({p for pids in assignment.values() for p in pids}),
              "n_points_ok": verdict.counts["ok"], "n_points_oom": verdict.counts["oom"],
              "n_points_error": verdict.counts["error"]}
    writer.write_final_record(record)
    coord.publish_final({"status": verdict.status, "reason": verdict.reason, "failures": verdict.failures})
    return verdict


def finished_points(run_dir: Path, ranks: Sequence[int]) -> dict[int, dict[int, str]]:
    """rank -> {point_id: status} of the `points` rows those ranks wrote (a row means a whole point)."""
    if not ranks:
        return {}
    table = read_table(run_dir, "points", columns=["rank", "point_id", "status"]).to_pylist()
    out: dict[int, dict[int, str]] = {k: {} for k in ranks}
    for row in table:
        if row["rank"] in out:
            out[row["rank"]][int(row["point_id"])] = row["status"]
    return out


def tally(points: Mapping[int, str]) -> dict[str, int]:
    """Counts of point statuses: {"ok": n, "oom": n, "error": n}."""
    return {k: sum(1 for v in points.values() if v == k) for k in ("ok", "oom", "error")}


def _record_lost(coord: Coordinator, writer: RankWriter, info: RankInfo, rank: int, point_ids: Sequence[int],
                 finished: Mapping[int, str]) -> None:
    """Rank 0 writes the `ranks` row of a rank that stopped without reporting (`finished`: its points on disk)."""
    start = coord.started(rank)
    other = RankInfo(rank=rank, world_size=info.world_size, local_rank=int(start.get("local_rank", -1)),
                     local_world_size=info.local_world_size, attempt=info.attempt)
    started_at = datetime.fromisoformat(start["started_at"]) if start.get("started_at") else None
    lost = RankWriter(writer.out, writer.run_id, other, point_ids, writer.sharded, writer.backend,
                      device=start.get("device"), started_at=started_at)
    lost.write_rank_row("lost", "stopped without reporting (killed, crashed or timed out)", None, utcnow(),
                        tally(finished),
                        hostname=start.get("hostname"), pid=start.get("pid"), local_rank=start.get("local_rank"))

