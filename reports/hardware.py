"""Hardware columns from the optional tables the hardware-signal collectors write (`energy`, `memory`,
`memory_points`, `hw_counters`, `collector_status`; see docs/HARDWARE.md): energy per forward and per
component, memory peaks and decode-cache sizes, and DRAM bytes measured by Nsight Compute.

A run without them (a CPU run, no NVML, no ncu) simply has no values: every function returns frames
with the columns and no rows, and the report leaves the columns empty. Values a collector could not
resolve (energy `status` other than `resolved`) stay null: never an invented number.
"""

from __future__ import annotations

import pandas as pd

COMPONENT_KEYS = ["rank", "point_id", "layer", "component"]
POINT_KEYS = ["rank", "point_id"]

#: Per-layer component columns and how a family's layers combine: `sum` over layers, or `max`.
COMPONENT_COLUMNS: dict[str, str] = {"bytes_measured": "sum", "energy_j": "sum", "mem_peak_delta_bytes": "max",
                                     "cache_state_bytes": "sum"}
#: Per-point columns.
POINT_COLUMNS: tuple[str, ...] = ("energy_j", "energy_per_token_j", "mem_peak_bytes", "mem_activation_peak_bytes",
                                  "cache_state_bytes")
#: Helper column: how many identical layers an energy row stands for (energy is measured on one
#: representative layer per mixer class and shape).
ENERGY_WEIGHT = "energy_layers"


def _num(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(float("nan"), index=frame.index)
    return pd.to_numeric(frame[column], errors="coerce").astype(float)


def _keyed(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    out = frame.copy()
    if "rank" not in out.columns:
        out["rank"] = 0
    return out.dropna(subset=[k for k in keys if k != "rank"])


def _resolved(energy: pd.DataFrame) -> pd.Series:
    if "status" not in energy.columns:
        return pd.Series(True, index=energy.index)
    return energy.status == "resolved"


def component_extras(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per (rank, point_id, layer, component): bytes_measured (sum of the ncu kernels' DRAM bytes),
    energy_j (resolved component energy of a representative layer) with energy_layers (the layers it
    stands for), mem_peak_delta_bytes and cache_state_bytes (memory table)."""
    parts = []
    hw = tables.get("hw_counters")
    if hw is not None and not hw.empty and "component" in hw.columns:
        hw = _keyed(hw, COMPONENT_KEYS)
        dram = _num(hw, "dram_bytes")
        dram = dram.where(dram.notna(), _num(hw, "dram_read_bytes") + _num(hw, "dram_write_bytes"))
        parts.append(hw.assign(bytes_measured=dram).groupby(COMPONENT_KEYS).bytes_measured.sum(min_count=1))
    energy = tables.get("energy")
    if energy is not None and not energy.empty and "component" in energy.columns:
        energy = _keyed(energy, COMPONENT_KEYS)
        if "scope" in energy.columns:
            energy = energy[energy.scope == "component"]
        joules = (_num(energy, "energy_mj") / 1000).where(_resolved(energy))
        weight = _num(energy, "layers_represented").fillna(1.0)
        frame = energy.assign(energy_j=joules, **{ENERGY_WEIGHT: weight})
        parts.append(frame.groupby(COMPONENT_KEYS)[["energy_j", ENERGY_WEIGHT]].agg(
            {"energy_j": lambda s: s.sum(min_count=1), ENERGY_WEIGHT: "max"}))
    memory = tables.get("memory")
    if memory is not None and not memory.empty and "component" in memory.columns:
        memory = _keyed(memory, COMPONENT_KEYS)
        frame = memory.assign(mem_peak_delta_bytes=_num(memory, "peak_delta_bytes"),
                              cache_state_bytes=_num(memory, "cache_state_bytes"))
        parts.append(frame.groupby(COMPONENT_KEYS)[["mem_peak_delta_bytes", "cache_state_bytes"]].max())
    out = pd.concat(parts, axis=1).reset_index() if parts else pd.DataFrame(columns=COMPONENT_KEYS)
    for col in (*COMPONENT_COLUMNS, ENERGY_WEIGHT):
        if col not in out.columns:
            out[col] = float("nan")
    return out


def point_extras(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per (rank, point_id): energy_j and energy_per_token_j of the whole forward (energy rows of scope
    `forward`), mem_peak_bytes, mem_activation_peak_bytes and cache_state_bytes (memory_points)."""
    parts = []
    energy = tables.get("energy")
    if energy is not None and not energy.empty:
        energy = _keyed(energy, POINT_KEYS)
        if "scope" in energy.columns:
            energy = energy[energy.scope == "forward"]
        ok = _resolved(energy)
        frame = energy.assign(energy_j=(_num(energy, "energy_mj") / 1000).where(ok),
                              energy_per_token_j=_num(energy, "energy_per_token_j").where(ok))
        parts.append(frame.groupby(POINT_KEYS)[["energy_j", "energy_per_token_j"]].first())
    mem = tables.get("memory_points")
    if mem is not None and not mem.empty:
        mem = _keyed(mem, POINT_KEYS)
        cache = _num(mem, "recurrent_state_bytes") + _num(mem, "conv_state_bytes")
        frame = mem.assign(mem_peak_bytes=_num(mem, "peak_allocated_bytes"),
                           mem_activation_peak_bytes=_num(mem, "activation_peak_bytes"), cache_state_bytes=cache)
        parts.append(frame.groupby(POINT_KEYS)[["mem_peak_bytes", "mem_activation_peak_bytes",
                                                "cache_state_bytes"]].max())
    out = pd.concat(parts, axis=1).reset_index() if parts else pd.DataFrame(columns=POINT_KEYS)
    for col in POINT_COLUMNS:
        if col not in out.columns:
            out[col] = float("nan")
    return out


def collector_warnings(tables: dict[str, pd.DataFrame], cpu_run: bool = False) -> list[str]:
    """One line per run-level collector that did not measure everything (from `collector_status`).

    On a CPU run, GPU-only collectors reporting `unavailable` are expected and give no line."""
    status = tables.get("collector_status")
    if status is None or status.empty or "status" not in status.columns:
        return []
    rows = status[status.status != "ok"]
    if cpu_run:
        rows = rows[rows.status != "unavailable"]
    if "point_id" in rows.columns:
        rows = rows[rows.point_id.isna()]
    return [f"collector {r.collector}: {r.status}" + (f" ({r.reason})" if isinstance(r.reason, str) else "")
            for r in rows.itertuples()]
