"""Attribution: where each point's time goes, per component (summed over a family's layers) and per layer.

Times per forward are the *means* over repeats (means add up: the components' kernel means sum to
the forward's mean kernel time). The time basis is `kernel` (summed kernel durations: the device's
truth on GPU) or `wall` (the span between a component's markers: on the CPU, where operators run
synchronously, the time the component really costs); `auto` picks kernel on GPU, wall on CPU.
"""

from __future__ import annotations

import pandas as pd

from mambaprof.errors import BadArgumentError
from mambaprof.reports import hardware
from mambaprof.reports.load import RunData
from mambaprof.taxonomy import component_order

BASES = ("auto", "kernel", "wall")
BLOCK_FAMILIES = ("mamba1", "mamba2")
MODEL_FAMILY = "model"
PROJECTIONS = ("in_proj", "ssm_params", "out_proj")
IDENTITY = ["run_id", "rank", "world_size", "point_id", "device", "batch", "seqlen", "dtype"]
_SOURCE = {"kernel": "kernel_ms", "wall": "wall_ms"}


def choose_basis(data: RunData, requested: str = "auto") -> str:
    """`kernel` or `wall` for this run: the request, with `auto` = kernel on GPU, wall on CPU; falls back
    to the other basis when the run has no values of the chosen one (as-is mode has no wall spans, a
    trace with --profile-repeats 0 no kernel times)."""
    if requested not in BASES:
        raise BadArgumentError(f"--basis {requested!r} is not one of {', '.join(BASES)}")
    basis = ("kernel" if data.on_gpu else "wall") if requested == "auto" else requested
    column = {"kernel": "kernel_ms_mean", "wall": "wall_ms_mean"}
    mixer = data.components[data.components.family.isin(BLOCK_FAMILIES)]
    if mixer[column[basis]].notna().sum() == 0:
        basis = "wall" if basis == "kernel" else "kernel"
    return basis


def family_sort_key(family: pd.Series) -> pd.Series:
    """Sort key: mamba1, mamba2, then model."""
    order = {"mamba1": 0, "mamba2": 1, MODEL_FAMILY: 2}
    return family.map(lambda f: order.get(f, 3))


def _sort(frame: pd.DataFrame, extra: list[str]) -> pd.DataFrame:
    frame = frame.assign(_fam=family_sort_key(frame.family), _comp=frame.component.map(component_order))
    by = ["rank", "batch", "seqlen", *extra, "_fam", "_comp"]
    return frame.sort_values(by).drop(columns=["_fam", "_comp"]).reset_index(drop=True)


HARDWARE = (*hardware.COMPONENT_COLUMNS, hardware.ENERGY_WEIGHT)


def _with_extras(data: RunData, comps: pd.DataFrame) -> pd.DataFrame:
    extras = hardware.component_extras(data.optional)
    if extras.empty:
        return comps.assign(**{c: float("nan") for c in HARDWARE})
    extras = extras.astype({"rank": comps["rank"].dtype, "point_id": comps["point_id"].dtype,
                            "layer": comps["layer"].dtype})
    return comps.merge(extras, on=hardware.COMPONENT_KEYS, how="left")


def _group_total(frame: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Per row, the sum of time_ms over its group (missing values count as 0); NaN where the total is 0."""
    total = frame.groupby(keys, dropna=False).time_ms.transform("sum")
    return total.where(total > 0)


def layer_table(data: RunData, basis: str) -> pd.DataFrame:
    """One row per point x layer x component: wall_ms, kernel_ms, time_ms (on `basis`), share of the
    layer's block time, FLOPs, minimum bytes and the hardware columns where the run has them."""
    comps = _with_extras(data, data.components)
    out = comps[IDENTITY + ["layer", "family", "component"]].copy()
    out["wall_ms"] = comps["wall_ms_mean"].astype(float)
    out["kernel_ms"] = comps["kernel_ms_mean"].astype(float)
    out["time_basis"] = basis
    out["time_ms"] = out[_SOURCE[basis]]
    for col in ("flops", "bytes_min", *HARDWARE):
        out[col] = comps[col].astype(float)
    out["kernel_count"] = comps["kernel_count"].astype("Int64") if "kernel_count" in comps else pd.NA
    out["note"] = comps["note"] if "note" in comps else None
    layer_ms = _group_total(out, ["rank", "point_id", "layer"])
    out["share_of_layer_pct"] = (out.time_ms / layer_ms * 100).where(out.layer >= 0)
    return _sort(out, ["layer"])


def component_table(data: RunData, basis: str) -> pd.DataFrame:
    """One row per point x family x component, summed over the family's layers (family `model` = layer -1):
    wall/kernel/basis times, share of the family's block time and of the forward, kernel-of-wall %,
    FLOPs, minimum bytes, and hardware columns (summed over layers; peaks take the max)."""
    layers = layer_table(data, basis)
    keys = IDENTITY + ["family", "component"]
    grouped = layers.groupby(keys, dropna=False)
    sums = grouped[["wall_ms", "kernel_ms", "flops", "bytes_min"]].sum(min_count=1)
    out = sums.join(grouped["layer"].nunique().rename("n_layers"))
    out = out.join(grouped["kernel_count"].sum(min_count=1).rename("kernel_count"))
    for col, how in hardware.COMPONENT_COLUMNS.items():
        values = layers[col] * layers[hardware.ENERGY_WEIGHT].fillna(1.0) if col == "energy_j" else layers[col]
        by = values.groupby([layers[k] for k in keys], dropna=False)
        out = out.join((by.max() if how == "max" else by.sum(min_count=1)).rename(col))
    out = out.join(grouped["note"].first().rename("note")).reset_index()
    out["time_basis"] = basis
    out["time_ms"] = out[_SOURCE[basis]]
    is_block = out.family.isin(BLOCK_FAMILIES)
    out["share_of_block_pct"] = (out.time_ms / _group_total(out, ["rank", "point_id", "family"]) * 100).where(
        is_block)
    out["share_of_forward_pct"] = out.time_ms / _group_total(out, ["rank", "point_id"]) * 100
    out["kernel_of_wall_pct"] = out.kernel_ms / out.wall_ms.where(out.wall_ms > 0) * 100
    out["bytes_measured_over_min"] = out.bytes_measured / out.bytes_min.where(out.bytes_min > 0)
    return _sort(out, [])
