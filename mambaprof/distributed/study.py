"""One rank's part of a distributed study (`torchrun ... -m mambaprof study`, or `mambaprof study --nproc N`).

Each model of the study is one distributed trace into `<out>/<model>/`: its sweep points are sharded
across the ranks and every rank writes its own `rank-K` partitions (see mambaprof.distributed.trace); models
run one after another, every rank on the same model. Rank 0 prepares the study directory (the other
ranks wait for it), writes the manifest as models finish, and the CLI has it write the report.
Hardware collectors (NVML, energy, memory, I/O) stay off under ranks, as in a distributed trace.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mambaprof.distributed.completion import EXIT_FAILED, Coordinator, finished_points
from mambaprof.distributed.ranks import DistributedError, RankInfo, connect, timeout_s
from mambaprof.distributed.trace import RankOutcome, run_distributed_trace
from mambaprof.errors import MambaprofError
from mambaprof.run.study import (
    ModelOutcome,
    StudyOutcome,
    check_models,
    free_model_memory,
    per_model_progress,
    prepare_study_dir,
)
from mambaprof.run.sweep import ProgressFn, TraceConfig
from mambaprof.run.tracing import ModelSource
from mambaprof.storage.rundir import utcnow


@dataclass
class RankStudy:
    """How the study ended on this rank. Call `release()` once rank 0 has written the report."""

    info: RankInfo
    outcome: StudyOutcome  # the manifest (rank 0 writes it; the other ranks hold the same models)
    exit_code: int  # 0 when every model's trace completed on every rank
    last: RankOutcome | None  # the last model's trace: its protocol lets the ranks leave together

    def release(self) -> None:
        """Rank 0 lets the other ranks exit; they wait for that (see RankOutcome.release)."""
        if self.last is not None:
            self.last.release()


def _prepare(info: RankInfo, out: Path, force: bool) -> None:
    """Rank 0 prepares the study directory and says whether it could; the others wait for its word."""
    wait_s = timeout_s()
    coord = Coordinator(connect(info, wait_s), info, "study")
    if info.rank == 0:
        try:
            prepare_study_dir(out, force)
        except MambaprofError as exc:
            coord.publish_setup({"error": exc.one_line()})
            raise
        coord.publish_setup({"out": str(out)})
        return
    setup = coord.wait_for("setup", 0, wait_s)
    if setup.get("error"):
        raise DistributedError(f"rank 0 could not prepare the study directory: {setup['error']}")


def run_study_on_rank(info: RankInfo, models: list[str], base: TraceConfig, out: Path, backend: str = "auto",
                      force: bool = False, progress: ProgressFn | None = None, debug: bool = False) -> RankStudy:
    """Trace every model over `base`'s grid with its points sharded across the ranks; `progress` counts this
    rank's points across the whole study. `base.device` must already be this rank's device."""
    models = check_models(models)
    _prepare(info, out, force)
    lead = info.rank == 0
    outcome = StudyOutcome(out=out, started_at=utcnow().isoformat(),
                           config={"models": models, "config": json.loads(base.as_json()), "backend": backend,
                                   "world_size": info.world_size, "hardware": "off under ranks"})
    if lead:
        outcome.write()
    per_model = len(base.points())
    code, last = 0, None
    for name, model_progress in zip(models, per_model_progress(progress, models, per_model), strict=True):
        run_dir = out / name
        try:
            last = run_distributed_trace(info, ModelSource(preset=name, backend=backend), base, run_dir, force=force,
                                         shard=True, progress=model_progress, debug=debug, scope=f"study/{name}")
        except MambaprofError as exc:  # the model's run never started (its directory could not be prepared)
            if debug:
                raise
            code = code or EXIT_FAILED
            outcome.models.append(ModelOutcome(name, str(run_dir) if run_dir.exists() else None, "failed",
                                               exc.one_line(), per_model, 0))
            if lead:
                outcome.write()
            continue
        code = code or last.exit_code
        n_ok = 0
        if lead and run_dir.is_dir():
            done = finished_points(run_dir, list(range(info.world_size)))
            n_ok = sum(1 for points in done.values() for status in points.values() if status == "ok")
        outcome.models.append(ModelOutcome(name, str(run_dir), last.run_status, last.run_reason, per_model, n_ok))
        if lead:
            outcome.write()
        free_model_memory()
        if last.report.interrupted_by is not None:
            break
    outcome.finished_at = utcnow().isoformat()
    if lead:
        outcome.write()
    return RankStudy(info, outcome, code, last)
