"""Run directories: atomic Parquet writes, the run record, and reading tables back.

Layout: `<run>/<table>/part-*.parquet` for every table of `mambaprof.storage.schema`, plus `tb/` for
TensorBoard traces. Distributed runs put each rank's parts in `<run>/<table>/rank-K/` (plain folders,
not hive `key=value` partitions: the rank is a column of every row, and a hive key of the same name
made pandas and pyarrow.parquet refuse the dataset; see docs/DISTRIBUTED.md). Runs written before
held `rank=K/` folders and still read. The run record `runs/` is never partitioned. A run directory is
marked as mambaprof's own (MARKER) and locked by the process writing it (LOCK_FILE). Every file is
written to a hidden temporary name in the same folder, fsynced, then renamed into place, so a
crash never leaves a half-written file that looks whole.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import socket
import sys
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
#: Lock file of a run directory being written: JSON with the owner's pid, host and run id.
LOCK_FILE = "_mambaprof_lock"
#: What a run id looks like (new_run_id); artifact folders are named by it.
RUN_ID_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
#: What a table part written by mambaprof is named (part_name, and the temporary name of an atomic write).
PART_RE = re.compile(r"^(part-(\d{5}|run)[^/]*\.parquet|\.part-[^/]*\.tmp)$")
#: Partition folders of distributed runs (`rank-K`; `rank=K` in runs written before that layout).
PARTITION_RE = re.compile(r"^rank[=-]\d+$")


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

    def check(self) -> bool:
        """Refuse (RunDirectoryError, one line) an `out` this writer may not write, before any work is done:
        a file, a folder that holds anything but a run mambaprof marked as its own (MARKER), a run without
        force, or a run another live process is writing (its LOCK_FILE), force or not. Returns whether `out`
        holds a previous run (that prepare() replaces)."""
        out = self.out
        if out.exists() and not out.is_dir():
            raise RunDirectoryError(f"--out {out} is a file, not a directory",
                                    "choose a new directory name")
        inside = _inside_run_folder(out)
        if inside is not None and self.partition is None:
            raise RunDirectoryError(f"--out {out} is inside the run {inside.parent}'s own {inside.name}/ folder",
                                    "its files would become part of that run's table; choose a directory outside it")
        try:
            nonempty = out.is_dir() and any(out.iterdir())
        except OSError as exc:
            raise RunDirectoryError(f"cannot read --out {out}: {exc.strerror or exc}",
                                    "choose a readable directory") from exc
        if not nonempty or self.partition is not None:
            return False
        if not (out / MARKER).is_file():
            raise RunDirectoryError(f"--out {out} exists and is not empty",
                                    "mambaprof never writes into a folder of other files (--force replaces "
                                    "only a run directory mambaprof marked as its own); choose a new one")
        check_not_locked(out)
        if not self.force:
            raise RunDirectoryError(f"--out {out} already holds a run",
                                    "pass --force to replace it, or choose a new directory")
        return True

    def prepare(self) -> None:
        """Create the directory and take its lock (see `check`, which it calls first); with force, remove
        what mambaprof wrote for the previous run there (`remove_previous_run`) and nothing else."""
        out = self.out
        previous = self.check()
        try:
            out.mkdir(parents=True, exist_ok=True)
            if self.partition is None:
                acquire_lock(out, self.run_id)
                if previous:
                    remove_previous_run(out)
                (out / MARKER).write_text(f"mambaprof run directory, schema {SCHEMA_VERSION}, run {self.run_id}\n")
        except OSError as exc:
            raise RunDirectoryError(f"cannot write to --out {out}: {exc.strerror or exc}",
                                    "choose a writable directory") from exc

    def release(self) -> None:
        """Give up the run directory's lock (only when this process holds it)."""
        if self.partition is None:
            release_lock(self.out)

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
        # only Parquet parts: a file of other kind in a table folder (a user's notes) is no part of the table
        files = sorted(str(f) for f in folder.rglob("*.parquet") if f.is_file()
                       and not any(piece.startswith((".", "_")) for piece in f.relative_to(folder).parts))
        if not files:
            return spec.arrow_schema().empty_table()
        dataset = ds.dataset(files, format="parquet", partitioning="hive", partition_base_dir=str(folder),
                             exclude_invalid_files=False)
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
    # Old runs' rank=K folders: the folder's `rank` and the files' own `rank` column are the same value;
    # where a partition key and a column share a name, pyarrow.dataset reports the folder's value.
    return result


def _inside_run_folder(path: Path) -> Path | None:
    """The table (or artifact) folder of a run directory that `path` lies inside, else None."""
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError):
        return None
    own = set(TABLES) | set(ARTIFACT_DIRS)
    for folder in [resolved, *resolved.parents]:
        if folder.name in own and (folder.parent / MARKER).is_file():
            return folder
    return None


def _read_lock(out: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((out / LOCK_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def lock_owner(out: Path) -> dict[str, Any] | None:
    """The live process writing `out` ({pid, hostname, run_id}), or None when no lock is held (no lock
    file, or a stale one: its process is gone from this host). A lock of another host counts as held."""
    data = _read_lock(Path(out))
    if data is None:
        return None
    pid, host = data.get("pid"), data.get("hostname")
    if not isinstance(pid, int):
        return None  # unreadable lock: no owner can be named, so none can be waited for
    if host == socket.gethostname() and (pid == os.getpid() or not process_alive(pid)):
        return None
    return data


def check_not_locked(out: Path) -> None:
    """RunDirectoryError (one line) when another live process holds the lock of run directory `out`."""
    owner = lock_owner(out)
    if owner is not None:
        where = "" if owner.get("hostname") == socket.gethostname() else f" on {owner.get('hostname')}"
        raise RunDirectoryError(f"--out {out} is being written by another mambaprof (pid {owner['pid']}{where}, "
                                f"run {owner.get('run_id')})",
                                f"wait for it to finish, or choose a new directory (if that process is gone, "
                                f"delete {Path(out) / LOCK_FILE})")


_HELD: set[Path] = set()


def acquire_lock(out: Path, run_id: str) -> None:
    """Take the lock of run directory `out` for this process (O_EXCL create). A stale lock (its pid no longer
    runs on this host) is taken over with a note on stderr; a live one raises RunDirectoryError."""
    out = Path(out)
    path = out / LOCK_FILE
    body = json.dumps({"pid": os.getpid(), "hostname": socket.gethostname(), "run_id": run_id,
                       "started_at": utcnow().isoformat()})
    for _ in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            check_not_locked(out)
            old = _read_lock(out) or {}
            if old.get("pid") != os.getpid():
                sys.stderr.write(f"note: {out} was locked by pid {old.get('pid')}, which is no longer running; "
                                 "taking the lock over\n")
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(body + "\n")
        _HELD.add(out.resolve())
        return
    check_not_locked(out)
    raise RunDirectoryError(f"could not take the lock of {out}", "another process keeps taking it; try again")


def release_lock(out: Path) -> None:
    """Remove the lock of `out` when this process holds it."""
    out = Path(out)
    data = _read_lock(out)
    if data and data.get("pid") == os.getpid() and data.get("hostname") == socket.gethostname():
        try:
            (out / LOCK_FILE).unlink()
        except OSError:
            pass
    _HELD.discard(out.resolve())


@atexit.register
def _release_held() -> None:
    for out in list(_HELD):
        release_lock(out)


def _old_run_ids(out: Path) -> set[str]:
    ids: set[str] = set()
    try:
        text = (out / MARKER).read_text()
        ids.update(w for w in text.split() if RUN_ID_RE.match(w))
    except OSError:
        pass
    try:
        ids.add(str(read_run_record(out)["run_id"]))
    except Exception:  # noqa: BLE001 - an unreadable record names no run
        pass
    return ids


def remove_previous_run(out: Path) -> list[Path]:
    """Delete what mambaprof wrote in run directory `out` (for --force), nothing else: the table parts
    (`<table>/part-*.parquet`, also in rank partitions), the artifact folders named by a run id
    (`tb/<run id>/`, ...), then folders left empty. Returns what was removed."""
    removed: list[Path] = []
    for table in TABLES:
        folder = out / table
        if not folder.is_dir() or folder.is_symlink():
            continue
        for sub in [folder, *(d for d in folder.iterdir() if d.is_dir() and not d.is_symlink()
                              and PARTITION_RE.match(d.name))]:
            for f in sub.iterdir():
                if f.is_file() and not f.is_symlink() and PART_RE.match(f.name):
                    f.unlink()
                    removed.append(f)
            _rmdir_if_empty(sub)
        _rmdir_if_empty(folder)
    ids = _old_run_ids(out)
    for name in ARTIFACT_DIRS:
        folder = out / name
        if not folder.is_dir() or folder.is_symlink():
            continue
        parts = [folder, *(d for d in folder.iterdir() if d.is_dir() and not d.is_symlink()
                           and PARTITION_RE.match(d.name))]
        for sub in parts:
            for d in sub.iterdir():
                if d.is_dir() and not d.is_symlink() and d.name in ids:
                    shutil.rmtree(d)
                    removed.append(d)
        for sub in reversed(parts):
            _rmdir_if_empty(sub)
    return removed


def _rmdir_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


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
