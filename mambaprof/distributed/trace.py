"""One rank's part of a distributed trace: prepare or find the run directory, trace this rank's points,
report, and (rank 0) write the run's record once every rank has finished (see mambaprof.distributed.completion)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from mambaprof.collectors.context import PointCollector
from mambaprof.distributed.completion import (
    GRACE_S,
    POLL_S,
    Coordinator,
    RankReport,
    RunVerdict,
    finished_points,
    judge,
    tally,
)
from mambaprof.distributed.ranks import (
    DistributedError,
    RankInfo,
    RankWriter,
    base_record,
    collective_max,
    connect,
    destroy_process_group,
    init_process_group,
    shard_points,
    timeout_s,
)
from mambaprof.errors import MambaprofError, one_line
from mambaprof.run.sweep import ProgressFn, RunInterrupted, TraceConfig, interrupts_raise
from mambaprof.run.tracing import ModelSource, TraceOutcome, trace
from mambaprof.storage.rundir import RunWriter, new_run_id, release_lock, utcnow


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
                          debug: bool = False, extra_collectors: Sequence[PointCollector] = (),
                          scope: str = "") -> RankOutcome:
    """Run this rank's part of a distributed trace and the completion protocol (see mambaprof.distributed.completion).

    `config.device` must already be this rank's device (see rank_device). Errors before the run
    directory exists raise; after that, whatever happens to the rank is recorded and reported.
    scope: keeps this run's protocol apart from other runs of the same launch (one per study model).
    """
    wait_s = timeout_s()
    coord = Coordinator(connect(info, wait_s), info, scope)
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
            if not shard:  # every rank runs every point: each decision on how many forwards run is collective
                writer.backend = init_process_group(info, config.device, coord.raw_store, wait_s)
                config = replace(config, agree_max=collective_max())
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
    release_lock(writer.out)  # taken by _setup's writer: the run directory is no longer being written
    coord.publish_final({"status": verdict.status, "reason": verdict.reason, "failures": verdict.failures})
    return verdict


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
