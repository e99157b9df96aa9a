"""The sweep: every (batch, seqlen) point measured, written as it finishes, failures recorded.

A point that runs out of memory is recorded with status `oom` and the sweep goes on; an exception
raised by the model at one point is recorded as `error` (one line) and the sweep goes on; SIGINT
and SIGTERM stop the sweep after closing the run record as `incomplete`. Every finished point is
already on disk (atomic part files), so nothing finished is ever lost.
"""

from __future__ import annotations

import errno
import gc
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from mambaprof import __version__
from mambaprof.collectors.context import PointCollector, PointSpec, Rows, RunCollector
from mambaprof.env import collect_env
from mambaprof.errors import RunInterrupted as RunInterrupted  # re-exported: the sweep raises it
from mambaprof.errors import StorageError, inside_import, one_line
from mambaprof.model.inputs import make_call
from mambaprof.model.loading import LoadedModel
from mambaprof.model.structure import ModelStructure, layer_rows
from mambaprof.run.autotune import AutotunePolicy
from mambaprof.run.measure import measure_point
from mambaprof.storage.rundir import RunWriter, read_table, utcnow
from mambaprof.storage.schema.base import json_cell


@dataclass
class TraceConfig:
    """How to trace: the sweep grid and the measurement passes per point."""

    seqlens: list[int]
    batches: list[int]
    device: torch.device
    dtype: torch.dtype
    repeats: int = 10
    warmup: int = 3
    profile_repeats: int = 3
    mode: str = "split"
    tensorboard: bool = True
    seed: int = 0
    #: Seconds of timed forwards per point after which timing stops (at least MIN_TIMED_REPEATS pairs, and
    #: warm-up stops after its first round once past half of it); None: always every repeat.
    point_seconds: float | None = None
    #: When Triton kernels autotune (mambaprof.run.autotune): `largest` (once, at the largest point, before the
    #: first), `first` (at the first shape each kernel runs) or `per-point` (at every point's own shape).
    autotune: str = "largest"
    #: Under torch.distributed ranks that run the same points (--no-shard): the MAX of a number over the ranks
    #: (a collective), so that time caps, extra fidelity pairs and autotune fallbacks are decided alike on all
    #: (see PointSpec.agree_max); set by mambaprof.distributed, never recorded.
    agree_max: Callable[[float], float] | None = field(default=None, repr=False, compare=False)

    def points(self) -> list[tuple[int, int]]:
        """(batch, seqlen) pairs in sweep order: batch-major, seqlen ascending."""
        return [(b, s) for b in self.batches for s in sorted(self.seqlens)]

    def as_json(self) -> str:
        """The configuration as JSON for the run record."""
        return json_cell({"seqlens": self.seqlens, "batches": self.batches, "device": str(self.device),
                          "dtype": str(self.dtype).replace("torch.", ""), "repeats": self.repeats,
                          "warmup": self.warmup, "profile_repeats": self.profile_repeats, "mode": self.mode,
                          "tensorboard": self.tensorboard, "seed": self.seed,
                          "point_seconds": self.point_seconds, "autotune": self.autotune})


@dataclass
class SweepResult:
    """How the sweep ended: counts by status, and the run status written to the record."""

    status: str
    reason: str | None
    counts: dict[str, int] = field(default_factory=dict)
    point_rows: list[dict[str, Any]] = field(default_factory=list)
    interrupted_by: str | None = None

    @property
    def exit_code(self) -> int:
        """Process exit code for this outcome: 0 done (even with oom/error points), 3 nothing finished,
        128 + signal number when interrupted (130 SIGINT, 143 SIGTERM)."""
        if self.interrupted_by is not None:
            return signal_exit_code(self.interrupted_by)
        return 3 if self.status == "failed" else 0


def is_oom(exc: BaseException) -> bool:
    """True for out-of-memory on GPU (torch.OutOfMemoryError) or CPU (allocator failures)."""
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text.lower()
                                               or "can't allocate memory" in text
                                               or "not enough memory" in text.lower())


#: errors of a write that cannot succeed: disk full, file too large, quota, read-only, I/O, no permission
#: (chmod, an immutable file: EPERM)
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES,
                            errno.EPERM})


def is_storage_failure(exc: BaseException) -> bool:
    """True when an exception says results cannot be written (disk full, file too large, read-only)."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def free_memory(device: torch.device) -> None:
    """Release what a failed point left behind."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def signal_exit_code(signame: str) -> int:
    """The shell's exit code for a process stopped by a signal: 128 + its number (130 SIGINT, 143 SIGTERM)."""
    return 128 + int(signal.Signals[signame])


def ignore_stop_signals() -> None:
    """Ignore SIGINT and SIGTERM from now on (main thread only): for a process that is already ending
    because it was asked to, whose run record is written."""
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
    except ValueError:  # not the main thread
        pass


#: seconds between checks whether a signal deferred inside an import can be raised yet
IMPORT_RETRY_S = 0.05


class InterruptGuard:
    """What `interrupts_raise` saw: the signals received, and whether one may still raise.

    A signal that lands inside an import is not raised there (it would cross a native extension's
    initialisation and abort the process); it is deferred and raised from a SIGALRM timer that re-checks
    every IMPORT_RETRY_S seconds, once the import has finished."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.armed = True
        self.pending: str | None = None
        self._alarm_before: Any = None
        self._timer_before: tuple[float, float, float] | None = None  # (left s, interval s, when) of ITIMER_REAL

    def disarm(self) -> None:
        """From now on signals are only noted (cleanup that must finish, like writing the run record)."""
        self.armed = False
        self.cancel_retry()

    def handler(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        self.received.append(name)
        if self.armed and self.pending is None:
            if inside_import(frame):
                self._defer(name)
                return
            self.armed = False  # one RunInterrupted per block: a second signal must not cut the cleanup short
            raise RunInterrupted(name)

    def _defer(self, name: str) -> None:
        self.pending = name
        if hasattr(signal, "setitimer"):
            left, interval = signal.getitimer(signal.ITIMER_REAL)  # someone else's timer (pytest-timeout's)
            self._timer_before = (left, interval, time.monotonic())
            self._alarm_before = signal.signal(signal.SIGALRM, self._retry)
            signal.setitimer(signal.ITIMER_REAL, IMPORT_RETRY_S)

    def _retry(self, signum: int, frame: FrameType | None) -> None:
        if not self.armed or self.pending is None:
            return
        if inside_import(frame):
            signal.setitimer(signal.ITIMER_REAL, IMPORT_RETRY_S)
            return
        name = self.pending
        self.cancel_retry()
        self.armed = False
        raise RunInterrupted(name)

    def cancel_retry(self) -> None:
        """Stop the deferred-signal timer and give SIGALRM and its timer back as they were (the signal stays in
        `received`)."""
        self.pending = None
        if self._alarm_before is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._alarm_before)
            self._alarm_before = None
            if self._timer_before is not None and self._timer_before[0] > 0:
                left, interval, when = self._timer_before
                signal.setitimer(signal.ITIMER_REAL, max(left - (time.monotonic() - when), 1e-3), interval)
            self._timer_before = None


@contextmanager
def interrupts_raise() -> Iterator[InterruptGuard]:
    """Inside: the first SIGINT or SIGTERM raises RunInterrupted (main thread only; inside an import, as soon
    as the import has finished); later ones, and any after `disarm()`, are noted in the guard and otherwise
    ignored until the block ends. `timeout` sends SIGTERM to the process and again to its process group, so a
    second signal is common: with the default action restored it would kill the process before the run
    record says how the run ended."""
    guard = InterruptGuard()
    previous: dict[int, Any] = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, guard.handler)
    except ValueError:  # not the main thread
        previous.clear()
    try:
        yield guard
    finally:
        guard.cancel_retry()
        for sig, old in previous.items():
            signal.signal(sig, old)


def command_line() -> str:
    """The command as the user typed it (`python -m mambaprof` shows as `mambaprof`)."""
    argv = list(sys.argv)
    if argv and (argv[0].endswith("__main__.py") or os.path.basename(argv[0]) == "mambaprof"):
        argv[0] = "mambaprof"
    return shlex.join(argv)


def run_record(writer: RunWriter, loaded: LoadedModel, structure: ModelStructure, config: TraceConfig,
               started_at: Any, status: str, reason: str | None, counts: dict[str, int],
               finished_at: Any = None, identity: dict[str, Any] | None = None,
               autotune_json: str | None = None) -> dict[str, Any]:
    """The `runs` row for this trace (autotune_json: AutotunePolicy.as_json() of the sweep, else null)."""
    env = collect_env(str(config.device))
    model = loaded.model
    return {
        **(identity or {"rank": 0, "world_size": 1}),
        "mambaprof_version": __version__, "status": status, "status_reason": reason,
        "command": command_line(), "cwd": os.getcwd(), "hostname": env.hostname, "pid": os.getpid(),
        "started_at": started_at, "finished_at": finished_at,
        "model_source": loaded.source, "model_ref": loaded.ref, "model_class": type(model).__name__,
        "model_family": structure.family, "n_layers": len(structure.mixers),
        "n_params": sum(p.numel() for p in model.parameters()),
        "mixer_classes": ",".join(structure.mixer_classes),
        "n_model_layers": len(structure.layers),
        "layer_kinds": ",".join(ls.kind for ls in structure.layers),
        "asis_layers": [a.layer for a in structure.asis],
        "asis_reasons": "\n".join(f"{a.layer}: {a.reason}" for a in structure.asis) or None,
        "model_config_json": json_cell(loaded.config) if loaded.config else None,
        "config_json": config.as_json(), "seqlens": sorted(config.seqlens), "batches": config.batches,
        "dtype": str(config.dtype).replace("torch.", ""), "mode": config.mode, "repeats": config.repeats,
        "warmup": config.warmup, "profile_repeats": config.profile_repeats,
        "device": env.device, "device_name": env.device_name, "device_count": env.device_count,
        "device_memory_bytes": env.device_memory_bytes, "driver_version": env.driver_version,
        "cuda_version": env.cuda_version, "torch_version": env.torch_version,
        "transformers_version": env.transformers_version, "mamba_ssm_version": env.mamba_ssm_version,
        "causal_conv1d_version": env.causal_conv1d_version, "triton_version": env.triton_version,
        "python_version": env.python_version, "platform": env.platform,
        "n_points": len(config.points()), "n_points_ok": counts.get("ok", 0),
        "n_points_oom": counts.get("oom", 0), "n_points_error": counts.get("error", 0),
        "autotune_json": autotune_json,
    }


ProgressFn = Callable[[int, int, str], None]


def _merge(into: Rows, more: Rows) -> Rows:
    for table, rows in more.items():
        into.setdefault(table, []).extend(rows)
    return into


#: one point: (point_id, a, b, on_phase) -> its `points` row (status ok / oom / error)
PointRunner = Callable[[int, int, int, Callable[[str], None]], dict[str, Any]]


def run_points(todo: Sequence[tuple[int, int, int]], run_one: PointRunner, writer: RunWriter, rank: int,
               report: ProgressFn, describe: Callable[[int, int], str], points_table: str = "points",
               before: Callable[[], None] | None = None,
               finish: Callable[[str, str | None, dict[str, int]], str | None] | None = None,
               storage_hint: str = "free disk space, then trace the rest into a new --out") -> SweepResult:
    """Run `todo` (point_id, a, b) one point at a time under the interrupt guard; the loop every sweep shares.

    Each point's row is counted as it comes; SIGINT/SIGTERM end the loop as `incomplete`, a refused write
    as `incomplete` and then StorageError. Once the loop ends, whatever ended it, the counts are read back
    from `points_table` on disk (a signal between a point's write and its count changes nothing), the status
    is decided (complete / incomplete / failed) and `finish(status, reason, counts)` writes the run record
    (it returns the reason, amended where the record could not be written). `before` runs first, inside the
    guard (e.g. autotuning)."""
    counts: dict[str, int] = {"ok": 0, "oom": 0, "error": 0}
    status, reason = "complete", None
    rows: list[dict[str, Any]] = []
    storage_error: StorageError | None = None
    interrupted_by: str | None = None
    with interrupts_raise() as guard:
        try:
            if before is not None:
                before()
            for done, (pid, a, b) in enumerate(todo):
                desc = describe(a, b)
                report(done, len(todo), desc)
                row = run_one(pid, a, b, lambda ph, d=done, s=desc: report(d, len(todo), f"{s} · {ph}"))
                counts[row["status"]] = counts.get(row["status"], 0) + 1
                rows.append(row)
                report(done + 1, len(todo), desc)
        except RunInterrupted as exc:
            interrupted_by = exc.signame
            status, reason = "incomplete", f"interrupted by {exc.signame} after {len(rows)} of {len(todo)} points"
        except StorageError as exc:
            status, reason = "incomplete", f"stopped after {len(rows)} of {len(todo)} points: {exc.message}"
            storage_error = exc
        finally:
            guard.disarm()  # signals from here on are noted: the run record below is always written
            counts = _counts_on_disk(writer, [p for p, _, _ in todo], rank, counts, points_table)
            if interrupted_by is not None:
                reason = f"interrupted by {interrupted_by} after {sum(counts.values())} of {len(todo)} points"
            if status == "complete":
                failed = counts["oom"] + counts["error"]
                if counts["ok"] == 0 and todo:
                    status, reason = "failed", f"no point finished ({counts['oom']} oom, {counts['error']} error)"
                elif failed:
                    status, reason = "incomplete", f"{counts['oom']} point(s) oom, {counts['error']} error"
            if finish is not None:
                reason = finish(status, reason, counts)
    if interrupted_by is None and guard.received:  # asked to stop while the last point was being written
        interrupted_by = guard.received[0]
    if storage_error is not None:
        raise StorageError(f"{storage_error.message}; {len(rows)} finished point(s) stay readable in {writer.out}",
                           storage_hint)
    return SweepResult(status=status, reason=reason, counts=counts, point_rows=rows, interrupted_by=interrupted_by)


def run_sweep(loaded: LoadedModel, structure: ModelStructure, config: TraceConfig, writer: RunWriter,
              extra_collectors: Sequence[PointCollector] = (), progress: ProgressFn | None = None,
              debug: bool = False, identity: dict[str, Any] | None = None,
              points: Sequence[tuple[int, int, int]] | None = None,
              run_collectors: Sequence[RunCollector] = ()) -> SweepResult:
    """Measure every point, writing each as it finishes; return how the sweep ended.

    points: (point_id, batch, seqlen) to run (default: all of config.points(); distributed runs
    pass their shard). progress(done, total, description) is called before and after each point.
    run_collectors: started after the first run record, stopped (and their rows written) before the last.
    """
    identity = identity or {"rank": 0, "world_size": 1}
    todo = list(points) if points is not None else [(i, b, s) for i, (b, s) in enumerate(config.points())]
    report = progress or (lambda done, total, desc: None)
    started = utcnow()
    autotune = AutotunePolicy(config.autotune)
    writer.write_run_record(run_record(writer, loaded, structure, config, started, "running", None,
                                       {"ok": 0, "oom": 0, "error": 0}, identity=identity,
                                       autotune_json=autotune.as_json()))
    writer.write_rows("layers", [{"run_id": writer.run_id, **identity, **row} for row in layer_rows(structure)],
                      None, suffix=f"_r{identity.get('rank', 0)}" if identity.get("world_size", 1) > 1 else "")
    trace_dir = writer.tb_dir / writer.run_id if config.tensorboard else None
    for collector in run_collectors:
        collector.start_run(writer.run_id, identity)

    def before() -> None:
        if autotune.before_sweep([(b, s) for _, b, s in todo], _tuning_forward(loaded, structure, config),
                                 is_oom, lambda: free_memory(config.device),
                                 lambda desc: report(0, len(todo), desc), agree=config.agree_max):
            writer.write_run_record(run_record(writer, loaded, structure, config, started, "running", None,
                                               {"ok": 0, "oom": 0, "error": 0}, identity=identity,
                                               autotune_json=autotune.as_json()))

    def run_one(pid: int, batch: int, seqlen: int, report_phase: Callable[[str], None]) -> dict[str, Any]:
        def on_phase(ph: str) -> None:
            report_phase(ph)
            for collector in run_collectors:
                collector.on_phase(pid, ph)

        return _run_point(pid, batch, seqlen, loaded, structure, config, writer, extra_collectors, trace_dir,
                          identity, debug, on_phase, run_collectors, autotune)

    def finish(status: str, reason: str | None, counts: dict[str, int]) -> str | None:
        run_rows: Rows = {}
        for collector in run_collectors:
            _merge(run_rows, collector.stop_run())
        try:
            for table, table_rows in run_rows.items():
                writer.write_rows(table, table_rows, None)
            writer.write_run_record(run_record(writer, loaded, structure, config, started, status, reason,
                                               counts, finished_at=utcnow(), identity=identity,
                                               autotune_json=autotune.as_json()))
        except OSError as exc:
            if not is_storage_failure(exc):
                raise
            reason = f"{reason}; the run record could not be updated either ({exc.strerror})"
        return reason

    return run_points(todo, run_one, writer, identity.get("rank", 0), report, lambda b, s: f"b={b} L={s}",
                      before=before, finish=finish,
                      storage_hint="free disk space or raise the file-size limit, then trace the rest into a new --out")


def _counts_on_disk(writer: RunWriter, point_ids: Sequence[int], rank: int, fallback: dict[str, int],
                    table: str = "points") -> dict[str, int]:
    """Point statuses of this sweep's rows of `table` on disk (its rank, its point ids); `fallback` when the
    table cannot be read (e.g. the disk failed)."""
    try:
        rows = read_table(writer.out, table, columns=["rank", "point_id", "status", "run_id"]).to_pylist()
    except Exception:  # noqa: BLE001 - the in-memory counts are the best there is then
        return fallback
    wanted = set(point_ids)
    counts = {"ok": 0, "oom": 0, "error": 0}
    for row in rows:
        if row["run_id"] == writer.run_id and row["rank"] == rank and row["point_id"] in wanted:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


def _tuning_forward(loaded: LoadedModel, structure: ModelStructure, config: TraceConfig) -> Callable[[int, int], None]:
    """One untimed inference forward at (batch, seqlen), inputs built as a point builds them (for autotuning)."""

    def forward(batch: int, seqlen: int) -> None:
        try:
            call = make_call(loaded.model, structure, batch, seqlen, config.device, config.dtype,
                             loaded.make_inputs, seed=config.seed)
            with torch.inference_mode():
                out = call()
            del out, call
            if config.device.type == "cuda":
                torch.cuda.synchronize(config.device)
        except KeyboardInterrupt as exc:
            raise RunInterrupted("SIGINT") from exc

    return forward


def _run_point(pid: int, batch: int, seqlen: int, loaded: LoadedModel, structure: ModelStructure,
               config: TraceConfig, writer: RunWriter, extra: Sequence[PointCollector], trace_dir: Path | None,
               identity: dict[str, Any], debug: bool, phase: Callable[[str], None],
               run_collectors: Sequence[RunCollector] = (), autotune: AutotunePolicy | None = None) -> dict[str, Any]:
    base = {"run_id": writer.run_id, **identity, "point_id": pid, "device": str(config.device),
            "batch": batch, "seqlen": seqlen, "dtype": str(config.dtype).replace("torch.", "")}
    spec = PointSpec(point_id=pid, batch=batch, seqlen=seqlen, device=config.device, dtype=config.dtype,
                     repeats=config.repeats, warmup=config.warmup, profile_repeats=config.profile_repeats,
                     mode=config.mode, trace_dir=trace_dir, point_seconds=config.point_seconds,
                     agree_max=config.agree_max)
    started = utcnow()
    for collector in run_collectors:
        collector.begin_point(pid)
    try:
        call = make_call(loaded.model, structure, batch, seqlen, config.device, config.dtype,
                         loaded.make_inputs, seed=config.seed)
        if autotune is not None:
            autotune.before_point(batch, seqlen)
        result = measure_point(spec, structure, call, base, extra, on_phase=phase)
        del call
    except RunInterrupted:
        raise
    except BaseException as exc:  # noqa: BLE001 - recorded, the sweep goes on
        if isinstance(exc, KeyboardInterrupt):
            raise RunInterrupted("SIGINT") from exc
        if is_storage_failure(exc):  # e.g. the TensorBoard trace could not be written
            writer.remove_point_parts(pid)
            raise StorageError(f"could not write results of point {pid} (b={batch} L={seqlen}): {one_line(exc)}") \
                from exc
        if debug and not is_oom(exc):
            raise
        free_memory(config.device)
        row = {**base, "tokens": batch * seqlen, "mode": config.mode, "status": "oom" if is_oom(exc) else "error",
               "error": one_line(exc), "started_at": started, "finished_at": utcnow(),
               "repeats": config.repeats, "warmup": config.warmup, "profile_repeats": config.profile_repeats}
        collected: Rows = {}
        for collector in run_collectors:
            _merge(collected, collector.end_point(base))
        for table, table_rows in collected.items():
            writer.write_rows(table, table_rows, pid)
        writer.write_rows("points", [row], pid)
        return row
    result.point.update(started_at=started, finished_at=utcnow())
    # tables first, points last: a point row on disk means the point's data is complete
    extra_rows: Rows = {table: list(rows) for table, rows in result.extra.items()}
    for collector in run_collectors:
        _merge(extra_rows, collector.end_point(base))
    try:
        writer.write_rows("components", result.components, pid)
        writer.write_rows("kernels", result.kernels, pid)
        for table, rows in extra_rows.items():
            writer.write_rows(table, rows, pid)
        writer.write_rows("points", [result.point], pid)
    except OSError as exc:
        writer.remove_point_parts(pid)
        raise StorageError(f"could not write results of point {pid} (b={batch} L={seqlen}): "
                           f"{exc.strerror or exc}") from exc
    free_memory(config.device)
    return result.point
