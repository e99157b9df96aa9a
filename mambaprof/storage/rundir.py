"""Run directories: atomic Parquet writes, the run record, and reading tables back.

Layout: `<run>/<table>/part-*.parquet` for every table of `mambaprof.storage.schema`, plus `tb/` for
TensorBoard traces. Distributed runs put each rank's parts in `<run>/<table>/rank=K/` (hive-style
partitions, see docs/DISTRIBUTED.md); the run record `runs/` is never partitioned. Every file is
written to a hidden temporary name in the same folder, fsynced, then renamed into place, so a
crash never leaves a half-written file that looks whole.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from mambaprof.errors import RunDirectoryError
from mambaprof.storage.schema import SCHEMA_VERSION, TABLES, get_table, newer_version

RUN_TABLE = "runs"
TB_DIR = "tb"
#: Folders of files (not tables) that collectors write into a run: replaced with it under --force.
ARTIFACT_DIRS = (TB_DIR, "memory_timeline", "ncu")
#: Marker file that says "mambaprof wrote this directory" (lets --force know what it may replace).
MARKER = "_mambaprof_run"
#: the manifest a study directory holds (one run directory per model beside it)
STUDY_FILE = "study.json"


def utcnow() -> datetime:
    """Current time, timezone-aware UTC (what every timestamp column holds)."""
    return datetime.now(timezone.utc)


def new_run_id() -> str:
    """A sortable, unique run id: UTC timestamp plus 8 random hex digits."""
    return utcnow().strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_parquet_atomic(table: pa.Table, path: Path) -> Path:
    """Write `table` to `path` so that the file is either complete or absent.

    The data goes to `.<name>.<pid>.tmp` beside the target, is fsynced, then renamed over it.
    On any failure (disk full, file-size limit, interrupt) the temporary file is removed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh, compression="zstd")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def part_name(point_id: int | None, suffix: str = "") -> str:
    """File name of one part of a table: one part per sweep point (or `part-run` for run-level rows)."""
    stem = "part-run" if point_id is None else f"part-{point_id:05d}"
    return f"{stem}{suffix}.parquet"


class RunWriter:
    """Writes one run directory: the run record and per-point parts of every table.

    `out` must not already hold a run unless `force` is set; with `force`, only what mambaprof
    wrote there (its table folders, tb/ and the marker) is replaced, never other files.
    `partition` (e.g. `rank=1`) puts this writer's parts in a sub-folder of each table, the
    hive-style layout distributed runs use.
    """

    def __init__(self, out: Path, run_id: str | None = None, force: bool = False,
                 partition: str | None = None) -> None:
        self.out = Path(out)
        self.run_id = run_id or new_run_id()
        self.force = force
        self.partition = partition

    def prepare(self) -> None:
        """Create the directory, refusing to mix with an existing run (see class docstring)."""
        out = self.out
        if out.exists() and not out.is_dir():
            raise RunDirectoryError(f"--out {out} is a file, not a directory",
                                    "choose a new directory name")
        if out.is_dir() and any(out.iterdir()) and self.partition is None:
            is_run = (out / MARKER).exists() or (out / RUN_TABLE).is_dir()
            if not is_run:
                raise RunDirectoryError(f"--out {out} exists and is not empty",
                                        "mambaprof never writes into a folder of other files; choose a new one")
            if not self.force:
                raise RunDirectoryError(f"--out {out} already holds a run",
                                        "pass --force to replace it, or choose a new directory")
            self._remove_previous_run()
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / MARKER).write_text(f"mambaprof run directory, schema {SCHEMA_VERSION}\n")
        except OSError as exc:
            raise RunDirectoryError(f"cannot write to --out {out}: {exc.strerror or exc}",
                                    "choose a writable directory") from exc

    def _remove_previous_run(self) -> None:
        import shutil

        for name in [*TABLES, *ARTIFACT_DIRS]:
            target = self.out / name
            if target.is_dir():
                shutil.rmtree(target)
        (self.out / MARKER).unlink(missing_ok=True)

    def table_dir(self, table: str) -> Path:
        """Folder holding the parts of `table` written by this writer."""
        base = self.out / table
        return base / self.partition if self.partition else base

    @property
    def tb_dir(self) -> Path:
        """Folder for TensorBoard traces."""
        return self.out / TB_DIR

    def write_rows(self, table: str, rows: Iterable[Mapping[str, Any]], point_id: int | None,
                   suffix: str = "") -> Path | None:
        """Validate rows against the schema and write them as one atomic part. No rows, no file."""
        rows = list(rows)
        if not rows:
            return None
        arrow = get_table(table).build(rows)
        return write_parquet_atomic(arrow, self.table_dir(table) / part_name(point_id, suffix))

    def remove_point_parts(self, point_id: int) -> None:
        """Delete the parts this writer wrote for one point (after a failed write left it partial)."""
        for table in TABLES:
            path = self.table_dir(table) / part_name(point_id)
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass

    def write_run_record(self, record: Mapping[str, Any]) -> Path:
        """Write (or rewrite) the single-row `runs` table (never partitioned: one record per run)."""
        row = {"run_id": self.run_id, "schema_version": SCHEMA_VERSION, **record}
        arrow = get_table(RUN_TABLE).build([row])
        return write_parquet_atomic(arrow, self.out / RUN_TABLE / part_name(None))


def read_table(run_dir: Path | str, table: str, columns: list[str] | None = None) -> pa.Table:
    """Read one table of a run directory (all parts, all partitions) as an Arrow table.

    Raises RunDirectoryError with a clear message when the run or table is missing, a file is
    unreadable (truncated, corrupted), or it was written with a newer schema version.
    """
    run_dir = Path(run_dir)
    spec = get_table(table)
    folder = run_dir / table
    if not run_dir.is_dir():
        raise RunDirectoryError(f"no run directory at {run_dir}", "give the --out folder of a trace")
    if not folder.is_dir():
        return spec.arrow_schema().empty_table()
    try:
        dataset = ds.dataset(folder, format="parquet", partitioning="hive",
                             ignore_prefixes=[".", "_"], exclude_invalid_files=False)
        for fragment in dataset.get_fragments():
            version = newer_version(fragment.physical_schema.metadata)
            if version is not None:
                raise RunDirectoryError(
                    f"{fragment.path} was written with schema version {version}, newer than this "
                    f"mambaprof's {SCHEMA_VERSION}", "upgrade mambaprof to read it")
        result = dataset.to_table(columns=columns)
    except RunDirectoryError:
        raise
    except (pa.ArrowInvalid, OSError) as exc:
        raise RunDirectoryError(f"table {table!r} of {run_dir} is unreadable: {exc}".splitlines()[0],
                                "the file is truncated or corrupted; `mambaprof validate` lists which") from exc
    # A rank=K folder's `rank` and the files' own `rank` column are the same value (the distributed
    # writer derives both from one rank); where a partition key and a column share a name, pyarrow
    # (like DuckDB with hive_partitioning) reports the folder's value.
    return result


def process_alive(pid: int) -> bool:
    """True if a process with this pid runs on this machine (a zombie, dead but not yet reaped by its
    parent, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS), or it just exited
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def run_state(record: dict[str, Any]) -> tuple[str, str | None]:
    """(status, reason) of a run as a reader should see it.

    A record still saying `running` whose writer process is gone (same host, pid not alive) was
    killed or crashed between points: it reads as `incomplete` with that reason.
    """
    import socket

    status, reason = record.get("status"), record.get("status_reason")
    if status != "running":
        return str(status), reason
    pid, host = record.get("pid"), record.get("hostname")
    if host == socket.gethostname() and pid is not None and not process_alive(int(pid)):
        return "incomplete", (f"the run's process (pid {pid}) is no longer running: it was killed or crashed; "
                              "finished points are readable")
    where = "" if host == socket.gethostname() else f" on {host}"
    return "running", f"still being written by pid {pid}{where} (or killed there)"


def read_run_record(run_dir: Path | str) -> dict[str, Any]:
    """The run record (`runs` table) as a dict; RunDirectoryError if absent."""
    table = read_table(run_dir, RUN_TABLE)
    if table.num_rows == 0:
        raise RunDirectoryError(f"{run_dir} has no run record (runs/)", "is this a mambaprof run directory?")
    rows = table.to_pylist()
    return rows[0]
