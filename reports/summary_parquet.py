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


PRUNING_SUMMARY_COLUMNS = ("variant_id", "variant", "score", "ratio", "per_layer", "recover_steps", "d_state_kept_mean",
                   "states_removed_pct", "device", "dtype", "batch", "seqlen", "prefill_tokens_per_s",
                   "prefill_speedup", "decode_ms_per_token", "decode_tokens_per_s", "decode_speedup",
                   "peak_memory_bytes", "peak_memory_delta_pct", "cache_bytes", "cache_bytes_delta_pct",
                   "ssm_state_bytes_delta_pct", "perplexity", "perplexity_delta_pct", "selective_copy_acc_pct",
                   "selective_copy_acc_delta_pp", "assoc_recall_acc_pct", "assoc_recall_acc_delta_pp")


def pruning_summary_frame(analysis: RunAnalysis) -> pd.DataFrame:
    """Rows of `summary_pruning`: one per variant x prefill seqlen, with the score verdict at its ratio and
    the block / SSM-scan time of its own component measurement (in rows at that measurement's seqlen)."""
    pr = analysis.pruning
    df = pr.table
    out = df[[c for c in PRUNING_SUMMARY_COLUMNS if c in df.columns]].copy()
    out["variant"] = [pruning.variant_name(s, r, int(v))
                      for s, r, v in zip(df.score, df.ratio, df.variant_id, strict=True)]
    for col in ("run_id", "rank", "world_size"):
        out[col] = df[col]
    ranking = pruning.score_ranking(df).set_index("variant_id")
    for col, src in (("score_rank", "score_rank"), ("score_verdict", "verdict"),
                     ("perplexity_vs_best_pct", "perplexity_vs_best_pct"), ("tie_threshold_pct", "noise_pct")):
        out[col] = df.variant_id.map(ranking[src]) if len(ranking) else None
    timed = pruning.timed_variants(analysis)
    times = {vid: pruning.variant_block_times(v) for vid, v in timed.items()}
    seqlen_of = {vid: int(v.points.seqlen.iloc[0]) for vid, v in timed.items()}
    ref = times.get(0)
    for col, key in (("block_ms", "block"), ("ssm_scan_ms", "ssm_scan")):
        values, deltas = [], []
        for r in df.itertuples():
            t = times.get(int(r.timing_variant_id))
            here = t is not None and seqlen_of.get(int(r.timing_variant_id)) == int(r.seqlen)
            values.append(t.get(key) if here else None)
            deltas.append(pruning.delta_pct(t.get(key), ref.get(key)) if here and ref is not None else None)
        out[col] = values
        out[col.replace("_ms", "_delta_pct")] = deltas
    out["time_basis"] = analysis.basis if timed else None
    out["accuracy_caveat"] = pr.caveat
    return out.reset_index(drop=True)


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
    frame = pruning_summary_frame(analysis)
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
