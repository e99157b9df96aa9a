"""Check that a directory is a run a report can read, before any analysis touches it.

`validate_run` lists every problem it finds (errors make a report impossible, warnings are stated in
it); `require_valid` raises a RunDirectoryError with the first error, phrased as what is wrong, where,
and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from mambaprof.errors import MambaprofError, RunDirectoryError
from mambaprof.storage.rundir import RUN_TABLE, read_run_record, read_table, run_state
from mambaprof.storage.schema import SCHEMA_VERSION, TABLES, get_table, newer_version
from mambaprof.taxonomy import BY_NAME

#: Tables a report needs, and the columns of each it reads.
REQUIRED: dict[str, tuple[str, ...]] = {
    "points": ("point_id", "batch", "seqlen", "status", "original_ms_median", "forward_kernel_ms"),
    "components": ("point_id", "layer", "component", "family", "wall_ms_mean", "kernel_ms_mean", "flops",
                   "bytes_min"),
}


@dataclass(frozen=True)
class Problem:
    """One finding of the validation: severity (`error` or `warning`), where, what, and what to do."""

    severity: str
    where: str
    message: str
    hint: str | None = None

    def one_line(self) -> str:
        """`where: message (hint)`."""
        return f"{self.where}: {self.message}" + (f" ({self.hint})" if self.hint else "")


@dataclass
class Validation:
    """All problems found in one run directory."""

    run_dir: Path
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors

    @property
    def errors(self) -> list[Problem]:
        """Problems that make a report impossible."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        """Problems the report states but reads past."""
        return [p for p in self.problems if p.severity == "warning"]

    def add(self, severity: str, where: str, message: str, hint: str | None = None) -> None:
        """Record a problem."""
        self.problems.append(Problem(severity, where, message, hint))


def validate_run(run_dir: Path | str) -> Validation:
    """Check a run directory: it exists, has a run record of a readable schema version, has the
    points and components tables with the columns a report reads, at least one finished point, and
    consistent keys. Never raises for a problem in the data; lists it instead.

    A `mambaprof prune` run (it has a `pruning` table) stays reportable without any finished component
    measurement: its what-if rows are written first, so missing points/components are warnings there."""
    run_dir = Path(run_dir)
    result = Validation(run_dir)
    if not run_dir.exists():
        result.add("error", str(run_dir), "does not exist", "give the --out directory of `mambaprof trace`")
        return result
    if not run_dir.is_dir():
        result.add("error", str(run_dir), "is a file, not a run directory",
                   "give the --out directory of `mambaprof trace`")
        return result
    if not (run_dir / RUN_TABLE).is_dir():
        result.add("error", str(run_dir), "is not a mambaprof run directory (no runs/ table)",
                   "give the --out directory of `mambaprof trace`")
        return result
    try:
        record = read_run_record(run_dir)
    except MambaprofError as exc:
        result.add("error", f"{run_dir}/runs", exc.message, exc.hint)
        return result
    version = record.get("schema_version")
    if version is not None and version > SCHEMA_VERSION:
        result.add("error", f"{run_dir}/runs", f"written with schema version {version}, newer than this "
                   f"mambaprof's {SCHEMA_VERSION}", "upgrade mambaprof to read it")
        return result
    frames: dict[str, pd.DataFrame] = {}
    pruning_run = (run_dir / "pruning").is_dir()
    for table, needed in REQUIRED.items():
        where = f"{run_dir}/{table}"
        if not (run_dir / table).is_dir():
            if table == "components" and "points" in frames and not _any_ok(frames["points"]):
                break  # the points check below says why: no point finished
            if pruning_run:
                result.add("warning", where, "is missing: no per-component measurement of any variant finished",
                           "the what-if's accuracy and timing rows are reported; per-variant attribution is not")
                break
            finished = int((frames["points"].status == "ok").sum()) if "points" in frames else 0
            result.add("error", where, "is missing" + (f" although {finished} point(s) finished" if finished else ""),
                       "the folder was copied partially; copy the whole run directory" if finished else
                       "the trace did not finish a single point; trace again")
            continue
        try:
            frames[table] = read_table(run_dir, table).to_pandas()
        except MambaprofError as exc:
            result.add("error", where, exc.message, exc.hint)
            continue
        missing = [c for c in needed if c not in frames[table].columns]
        if missing:
            result.add("error", where, f"lacks column(s) {', '.join(missing)}",
                       f"it does not match schema version {SCHEMA_VERSION}; trace again with this mambaprof")
            frames.pop(table)
    _check_other_files(result, run_dir)
    _check_run_ids(result, run_dir, record)
    points = frames.get("points")
    if points is not None and not _any_ok(points):
        statuses = ", ".join(f"{s}: {n}" for s, n in points.status.value_counts().items()) or "no points"
        result.add("warning" if pruning_run else "error", f"{run_dir}/points", f"no point finished ({statuses})",
                   "see points.error for why; trace again with smaller --seqlens/--batch")
    if result.errors or "components" not in frames or points is None:
        return result
    comps = frames["components"]
    _check_consistency(result, run_dir, record, points, comps)
    if not pruning_run:  # a prune run's record counts what-if rows, not points
        _check_counts(result, run_dir, record, points)
    return result


def _check_counts(result: Validation, run_dir: Path, record: dict[str, Any], points: pd.DataFrame) -> None:
    """Point rows against the counts the run record was closed with (a partial copy, a deleted file)."""
    if record.get("status") == "running" or record.get("n_points_ok") is None:
        return  # the record was never closed: its counts are those of the start
    ok, expected = int((points.status == "ok").sum()), int(record["n_points_ok"])
    if ok < expected:
        result.add("warning", f"{run_dir}/points", f"the run record counts {expected} ok point(s), the points table "
                   f"has {ok}", "part of the run is missing (a partial copy or a deleted file); the rest is reported")
    planned = record.get("n_points")
    if planned is not None and len(points) > int(planned):
        result.add("warning", f"{run_dir}/points", f"{len(points)} point rows for {int(planned)} planned point(s)",
                   "two runs may have been merged into one folder")


def _check_other_files(result: Validation, run_dir: Path) -> None:
    """Every Parquet file of every table folder: its footer must open (checked here for the tables a report
    does not read whole: kernels, hardware tables, pruning), it must be a part mambaprof wrote for that table
    (its schema metadata names the table: a foreign Parquet file dropped into a table folder is an error,
    the report could not read the table) and its schema version must not be newer. Footers only, so a
    million-row kernels table costs milliseconds. A damaged file of a table the report reads past is a warning."""
    for table in TABLES:
        folder = run_dir / table
        if not folder.is_dir():
            continue
        for part in sorted(folder.rglob("*.parquet")):
            if any(piece.startswith((".", "_")) for piece in part.relative_to(folder).parts):
                continue
            where = str(part)
            try:
                meta = pq.ParquetFile(part).schema_arrow.metadata
            except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
                if table not in REQUIRED and table != RUN_TABLE:  # those are read whole above: already reported
                    result.add("warning", where, f"is truncated or corrupted ({type(exc).__name__}); the `{table}` "
                               "table cannot be read whole", "copy the run again, or delete this part to read the rest")
                continue
            version = newer_version(meta)
            if version is not None:
                result.add("error", where, f"written with schema version {version}, newer than this "
                           f"mambaprof's {SCHEMA_VERSION}", "upgrade mambaprof to read it")
                continue
            written_for = (meta or {}).get(b"mambaprof.table")
            if written_for != table.encode():
                what = ("a part of table " + written_for.decode(errors="replace")) if written_for else \
                    "not a file mambaprof wrote (no mambaprof schema metadata)"
                result.add("error", where, f"is {what}, in the `{table}` table's folder",
                           "move it out of the run directory: every file in a table folder is read as that table")


def _check_run_ids(result: Validation, run_dir: Path, record: dict[str, Any]) -> None:
    """Every row of every table must carry the run record's run id: rows of other run ids mean two runs were
    written into one folder (e.g. a second trace --force over one still running), which no report can tell
    apart."""
    own = record.get("run_id")
    if own is None:
        return
    others: dict[str, set[str]] = {}
    for table in TABLES:
        if table == RUN_TABLE or not (run_dir / table).is_dir() or "run_id" not in get_table(table).column_names:
            continue
        try:
            ids = set(read_table(run_dir, table, columns=["run_id"]).column("run_id").to_pylist())
        except Exception:  # noqa: BLE001 - an unreadable table is reported elsewhere
            continue
        for rid in ids - {own}:
            others.setdefault(str(rid), set()).add(table)
    if others:
        listed = ", ".join(f"{rid} (in {', '.join(sorted(tables))})" for rid, tables in sorted(others.items()))
        result.add("error", str(run_dir), f"holds rows of {len(others) + 1} runs: the record's {own} and {listed}",
                   "two runs were written into one folder; trace again into a new --out")


def _any_ok(points: pd.DataFrame) -> bool:
    return bool((points.status == "ok").any())


def _check_consistency(result: Validation, run_dir: Path, record: dict[str, Any], points: pd.DataFrame,
                       comps: pd.DataFrame) -> None:
    key = ["rank", "point_id"] if "rank" in points.columns and "rank" in comps.columns else ["point_id"]
    ok_keys = set(map(tuple, points.loc[points.status == "ok", key].itertuples(index=False)))
    comp_keys = set(map(tuple, comps[key].drop_duplicates().itertuples(index=False)))
    orphan = comp_keys - set(map(tuple, points[key].itertuples(index=False)))
    if orphan:
        result.add("warning", f"{run_dir}/components", f"{len(orphan)} point(s) have components but no row in "
                   "points; they are left out", "the run may have been copied partially")
    lacking = ok_keys - comp_keys
    if lacking:
        result.add("warning", f"{run_dir}/components", f"{len(lacking)} ok point(s) have no component rows; "
                   "they are left out of the attribution")
    unknown = sorted(set(comps.component.dropna()) - set(BY_NAME))
    if unknown:
        result.add("warning", f"{run_dir}/components", f"unknown component(s) {', '.join(unknown)} "
                   "(not in this mambaprof's taxonomy); shown as they are")
    for col in ("wall_ms_mean", "kernel_ms_mean"):
        if (comps[col].dropna() < 0).any():
            result.add("error", f"{run_dir}/components", f"negative {col}", "the table is corrupted; trace again")
    status, reason = run_state(record)
    if status == "running":
        result.add("warning", f"{run_dir}/runs", f"the run is {reason}; only its finished points are reported")
    elif status in ("incomplete", "failed"):
        result.add("warning", f"{run_dir}/runs", f"run status {status}: {reason or 'some points did not finish'}")
    if "output_check" in points.columns:
        failed = points[(points.status == "ok") & (points.output_check == "fail")]
        if not failed.empty:
            result.add("warning", f"{run_dir}/points", f"{len(failed)} point(s) failed the split-vs-original output "
                       "check; their component split may not be the model's computation")
    spec = get_table("components")
    extra = set(comps.columns) - set(spec.column_names)
    if extra:
        result.add("warning", f"{run_dir}/components", f"unexpected column(s) {', '.join(sorted(extra))}; ignored")


def require_valid(run_dir: Path | str) -> Validation:
    """validate_run, raising RunDirectoryError for the first error (and saying how many more there are)."""
    result = validate_run(run_dir)
    if result.errors:
        first = result.errors[0]
        more = len(result.errors) - 1
        hint = first.hint
        if more:
            hint = f"{hint + '; ' if hint else ''}{more} more problem(s)"
        raise RunDirectoryError(f"{first.where}: {first.message}", hint)
    return result
