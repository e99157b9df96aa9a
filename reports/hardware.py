"""Hardware columns from the optional tables a run may have (`energy`, `memory`, `hw_counters`):
energy per forward, peak memory, and DRAM bytes measured by Nsight Compute.

The tables come from the hardware-signals collectors; a run without them (a CPU run, no NVML, no
ncu) simply has no such columns, and every function here returns empty frames. Source columns are
found by name (units in the names, as the schema requires); each target below lists the names it
accepts, in order of preference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

COMPONENT_KEYS = ["rank", "point_id", "layer", "component"]
POINT_KEYS = ["rank", "point_id"]


@dataclass(frozen=True)
class Target:
    """One summary column: the table it comes from, accepted source columns (name -> scale to the target
    unit), regexes whose matching columns are summed when no named one exists, and how layers combine."""

    column: str
    table: str
    names: tuple[tuple[str, float], ...]
    summed_patterns: tuple[str, ...] = ()
    combine: str = "sum"  # over layers and kernels: `sum` (additive) or `max` (peaks)


TARGETS: tuple[Target, ...] = (
    Target("bytes_measured", "hw_counters", (("dram_bytes", 1.0), ("dram_bytes_total", 1.0)),
           summed_patterns=(r"^dram.*read.*_bytes$", r"^dram.*write.*_bytes$")),
    Target("energy_j", "energy", (("energy_j", 1.0), ("energy_mj", 1e-3))),
    Target("mem_peak_bytes", "memory", (("mem_peak_bytes", 1.0), ("peak_allocated_bytes", 1.0),
                                        ("allocated_peak_bytes", 1.0), ("peak_bytes", 1.0)), combine="max"),
)


def _values(frame: pd.DataFrame, target: Target) -> pd.Series | None:
    for name, scale in target.names:
        if name in frame.columns:
            return pd.to_numeric(frame[name], errors="coerce") * scale
    parts = [c for pat in target.summed_patterns for c in frame.columns if re.search(pat, c)]
    if len(parts) == len(target.summed_patterns) and parts:
        return sum((pd.to_numeric(frame[c], errors="coerce") for c in parts), start=pd.Series(0.0, frame.index))
    return None


def _unresolved(frame: pd.DataFrame) -> pd.Series:
    """Rows a collector marked as not resolved (too short a window): their value is not a number."""
    for col in ("resolved", "energy_resolved"):
        if col in frame.columns:
            return ~frame[col].fillna(False).astype(bool)
    return pd.Series(False, index=frame.index)


def _per_forward(frame: pd.DataFrame, keys: list[str], target: Target) -> pd.DataFrame:
    values = _values(frame, target)
    if values is None:
        return pd.DataFrame(columns=[*keys, target.column])
    data = frame[[k for k in keys if k in frame.columns]].copy()
    for k in keys:
        if k not in data.columns:
            data[k] = 0 if k == "rank" else pd.NA
    data[target.column] = values.where(~_unresolved(frame))
    group = keys + (["iteration"] if "iteration" in frame.columns else [])
    if "iteration" in frame.columns:
        data["iteration"] = frame["iteration"]
    grouped = data.groupby(group, dropna=False)[target.column]
    agg = (grouped.max() if target.combine == "max" else grouped.sum(min_count=1)).reset_index()
    if "iteration" in group:
        agg = agg.groupby(keys, dropna=False)[target.column].mean().reset_index()
    return agg


def component_extras(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per (rank, point_id, layer, component): the hardware columns that component-level rows give."""
    out: pd.DataFrame | None = None
    for target in TARGETS:
        frame = tables.get(target.table)
        if frame is None or frame.empty or "component" not in frame.columns or "point_id" not in frame.columns:
            continue
        rows = frame[frame.component.notna()]
        if "layer" not in rows.columns:
            continue
        part = _per_forward(rows, COMPONENT_KEYS, target)
        if part.empty:
            continue
        out = part if out is None else out.merge(part, on=COMPONENT_KEYS, how="outer")
    return out if out is not None else pd.DataFrame(columns=COMPONENT_KEYS)


def point_extras(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per (rank, point_id): hardware columns of whole forwards (rows without a component), or, where a
    table has only component rows, their sum (max for peaks) over the point."""
    out: pd.DataFrame | None = None
    for target in TARGETS:
        frame = tables.get(target.table)
        if frame is None or frame.empty or "point_id" not in frame.columns:
            continue
        if "component" in frame.columns and frame.component.isna().any():
            rows = frame[frame.component.isna()]
        else:
            rows = frame
        part = _per_forward(rows, POINT_KEYS, target)
        if part.empty:
            continue
        out = part if out is None else out.merge(part, on=POINT_KEYS, how="outer")
    return out if out is not None else pd.DataFrame(columns=POINT_KEYS)


EXTRA_COLUMNS: tuple[str, ...] = tuple(t.column for t in TARGETS)
COMBINE: dict[str, str] = {t.column: t.combine for t in TARGETS}
