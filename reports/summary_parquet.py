"""Write a run's summary tables as Parquet files a hardware team reads without mambaprof.

One file per table, `DIR/<table>.parquet`, with the schema of `mambaprof.storage.schema.summary` (units in
the column names; each field's unit and meaning in its Arrow metadata), plus `DIR/README.md`
describing every column. pandas: `pd.read_parquet("DIR/summary_components.parquet")`; DuckDB:
`SELECT * FROM 'DIR/summary_components.parquet'`.

A `mambaprof prune` run gets DIR/summary_pruning.parquet (the what-if, one row per variant x seqlen) and
one folder per timed variant, DIR/<variant>/summary_*.parquet, each the summary of that variant's own
component measurement (never summed across variants).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa

from mambaprof.errors import RunDirectoryError
from mambaprof.reports import pruning
from mambaprof.reports.run_analysis import RunAnalysis
from mambaprof.storage.rundir import MARKER, write_parquet_atomic
from mambaprof.storage.schema import TABLES, get_table

#: the summary tables of one run's attribution (a prune run's `summary_pruning` is written on its own)
SUMMARY_TABLES: tuple[str, ...] = tuple(name for name in TABLES
                                        if name.startswith("summary_") and name != "summary_pruning")


def frame_to_arrow(name: str, frame: pd.DataFrame) -> pa.Table:
    """A summary DataFrame -> Arrow table with exactly the registered schema (NaN becomes null)."""
    return get_table(name).build(frame.to_dict("records"))


def readme(tables: tuple[str, ...] = SUMMARY_TABLES, intro: tuple[str, ...] = ()) -> str:
    """README.md for a summary directory: every table and column with unit and meaning."""
    lines = ["# mambaprof summary tables", "",
             "Written by `mambaprof report RUN --parquet DIR`. Plain Parquet: read with pandas",
             "(`pd.read_parquet('summary_components.parquet')`) or DuckDB",
             "(`SELECT * FROM 'summary_components.parquet'`). Units are in the column names.", "", *intro]
    for name in tables:
        spec = get_table(name)
        lines += [f"## `{name}.parquet`", "", spec.doc, "", "| column | type | unit | meaning |",
                  "| --- | --- | --- | --- |"]
        for col in spec.columns:
            doc = col.doc.replace("|", "\\|")
            lines.append(f"| `{col.name}` | {col.type} | {col.unit or '-'} | {doc} |")
        lines.append("")
    return "\n".join(lines)


def check_summary_dir(out_dir: Path) -> None:
    """Raise a one-line error when `out_dir` cannot take summary tables (it is a run directory)."""
    if (Path(out_dir) / MARKER).is_file():  # a run mambaprof marked as its own (a user's runs/ folder is not one)
        raise RunDirectoryError(f"--parquet {out_dir} is a run directory",
                                "write summaries to a folder of their own, e.g. --parquet summary/")


def write_summary(analysis: RunAnalysis, out_dir: Path) -> list[Path]:
    """Write every summary table of `analysis` into `out_dir` (created if needed) and its README.md.

    Refuses to write into a run directory (the summaries are not run tables). A prune run gets
    `write_pruning_summary` instead."""
    if analysis.pruning is not None:
        return write_pruning_summary(analysis, out_dir)
    out_dir = Path(out_dir)
    check_summary_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in analysis.summary_frames().items():
        written.append(write_parquet_atomic(frame_to_arrow(name, frame), out_dir / f"{name}.parquet"))
    (out_dir / "README.md").write_text(readme())
    written.append(out_dir / "README.md")
    return written


def write_pruning_summary(analysis: RunAnalysis, out_dir: Path) -> list[Path]:
    """A prune run's summaries: DIR/summary_pruning.parquet, DIR/<variant>/summary_*.parquet for each timed
    variant (its own component measurement) and DIR/README.md; returns the paths written."""
    out_dir = Path(out_dir)
    check_summary_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = pruning.summary_frame(analysis)
    columns = get_table("summary_pruning").column_names
    for col in columns:
        if col not in frame.columns:
            frame[col] = None
    written = [write_parquet_atomic(frame_to_arrow("summary_pruning", frame[columns]),
                                    out_dir / "summary_pruning.parquet")]
    for variant in analysis.variants.values():
        written += write_summary(variant, out_dir / str(variant.data.variant))
    names = ", ".join(f"`{v.data.variant}/`" for v in analysis.variants.values()) or "none (no measurement finished)"
    intro = ("This is a `mambaprof prune` run: `summary_pruning.parquet` holds the what-if; each folder holds the "
             f"summary_* tables of one variant's own component measurement ({names}), described in its README.", "")
    (out_dir / "README.md").write_text(readme(("summary_pruning",), intro))
    return [*written, out_dir / "README.md"]
