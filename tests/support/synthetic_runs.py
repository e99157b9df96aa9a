"""Run directories with known numbers, written through RunWriter, for exact tests of the reports.

Each component's per-layer kernel time follows a power law in the sequence length that the test
chooses, so shares, exponents and crossovers have closed-form expected values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mambaprof.storage.rundir import RunWriter

MAMBA1 = ("in_proj", "conv1d", "ssm_params", "ssm_scan", "gating", "out_proj", "norm", "residual")
MAMBA2 = ("in_proj", "conv1d", "ssm_scan", "gating", "out_proj", "norm", "residual")
MODEL = ("embedding", "lm_head", "other")

#: Per-layer kernel ms = coef * (seqlen / 1024) ** exponent, per component (Mamba-1 defaults).
DEFAULT_LAWS: dict[str, tuple[float, float]] = {
    "in_proj": (2.0, 1.0), "conv1d": (0.5, 1.0), "ssm_params": (0.4, 1.0), "ssm_scan": (1.0, 1.5),
    "gating": (0.2, 1.0), "out_proj": (1.0, 1.0), "norm": (0.3, 1.0), "residual": (0.1, 1.0),
    "embedding": (0.05, 1.0), "lm_head": (1.5, 1.0), "other": (0.01, 1.0),
}

#: The largest sequence length of the default sweep (Spec.seqlens).
L_MAX = 16384


@dataclass
class Spec:
    """What to write: families per layer, the sweep, device facts, and the time laws."""

    families: tuple[str, ...] = ("mamba1", "mamba1")
    seqlens: tuple[int, ...] = (1024, 2048, 4096, 8192, L_MAX)
    batch: int = 8
    device: str = "cuda:0"
    device_name: str = "NVIDIA H100 80GB HBM3"
    dtype: str = "bfloat16"
    laws: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_LAWS))
    wall_factor: float = 1.1  # wall = kernel x this, per component
    launch_overhead_ms: float = 0.0  # extra wall time of the whole forward (makes points launch-bound)
    mode: str = "split"
    statuses: dict[int, str] = field(default_factory=dict)  # seqlen -> status (default ok)
    model_ref: str = "synthetic-m1"

    def kernel_ms(self, component: str, seqlen: int) -> float:
        """Per-layer kernel ms of `component` at `seqlen`."""
        coef, exp = self.laws[component]
        return coef * (seqlen / 1024) ** exp


def flops_bytes(component: str, seqlen: int, batch: int) -> tuple[float, float]:
    """Known FLOPs and bytes: GEMM-like components are compute-heavy, the rest memory-heavy."""
    tokens = seqlen * batch
    if component in ("in_proj", "out_proj", "ssm_params", "lm_head"):
        return 4e6 * tokens, 1e4 * tokens  # intensity 400 FLOP/byte
    if component == "embedding":
        return 0.0, 4e3 * tokens
    return 2e4 * tokens, 2e4 * tokens  # intensity 1 FLOP/byte


def make_run(out: Path, spec: Spec | None = None,
             extra_tables: Callable[[RunWriter, pd.DataFrame], None] | None = None) -> Path:
    """Write a run directory following `spec`; returns its path. extra_tables(writer, components) may add
    more parts (e.g. hardware tables) before the run record is finalised."""
    spec = spec or Spec()
    writer = RunWriter(out)
    writer.prepare()
    run_id = writer.run_id
    ident = {"run_id": run_id, "rank": 0, "world_size": 1}
    all_comps = []
    for pid, seqlen in enumerate(spec.seqlens):
        point = {**ident, "point_id": pid, "device": spec.device, "batch": spec.batch, "seqlen": seqlen,
                 "dtype": spec.dtype}
        status = spec.statuses.get(seqlen, "ok")
        if status != "ok":
            writer.write_rows("points", [{**point, "tokens": spec.batch * seqlen, "mode": spec.mode,
                                          "status": status, "error": "CUDA out of memory"}], pid)
            continue
        rows = []
        for layer, family in enumerate(spec.families):
            for comp in MAMBA1 if family == "mamba1" else MAMBA2:
                rows.append(_row(point, layer, comp, family, seqlen, spec))
        for comp in MODEL:
            rows.append(_row(point, -1, comp, "model", seqlen, spec))
        kernel_total = sum(r["kernel_ms_mean"] for r in rows)
        wall_total = sum(r["wall_ms_mean"] or 0.0 for r in rows) + spec.launch_overhead_ms
        writer.write_rows("components", rows, pid)
        writer.write_rows("points", [{
            **point, "tokens": spec.batch * seqlen, "mode": spec.mode, "status": "ok",
            "original_ms_median": wall_total, "split_ms_median": wall_total * 1.01, "split_vs_original_pct": 1.0,
            "host_ms_median": wall_total, "forward_kernel_ms": kernel_total, "attributed_kernel_pct": 99.0,
            "output_check": "pass", "repeats": 10, "warmup": 3, "profile_repeats": 3}], pid)
        all_comps += rows
    comps = pd.DataFrame(all_comps)
    if extra_tables is not None:
        extra_tables(writer, comps)
    family = spec.families[0] if len(set(spec.families)) == 1 else "mixed"
    ok = sum(1 for s in spec.seqlens if spec.statuses.get(s, "ok") == "ok")
    writer.write_run_record({
        **ident, "status": "complete" if ok == len(spec.seqlens) else "incomplete", "model_source": "preset",
        "model_ref": spec.model_ref, "model_class": "Synthetic", "model_family": family,
        "n_layers": len(spec.families), "seqlens": list(spec.seqlens), "batches": [spec.batch], "dtype": spec.dtype,
        "mode": spec.mode, "device": spec.device, "device_name": spec.device_name, "n_points": len(spec.seqlens),
        "n_points_ok": ok})
    return out


def _row(point: dict, layer: int, comp: str, family: str, seqlen: int, spec: Spec) -> dict:
    kernel = spec.kernel_ms(comp, seqlen)
    wall = None if spec.mode == "as-is" else kernel * spec.wall_factor
    flops, nbytes = flops_bytes(comp, seqlen, spec.batch)
    return {**point, "layer": layer, "component": comp, "family": family, "mixer_class": "Synthetic",
            "wall_ms_median": wall, "wall_ms_mean": wall, "kernel_ms_median": kernel, "kernel_ms_mean": kernel,
            "kernel_samples": 3, "kernel_count": 2, "attribution": "range" if spec.mode == "split" else "name_rule",
            "flops": flops, "bytes_min": nbytes}


def write_plain(writer: RunWriter, name: str, frame: pd.DataFrame) -> None:
    """A table as the hardware collectors write it: a Parquet part labelled with its table (`mambaprof.table`, which
    readers check since the run-directory safety checks), columns as given (read without its schema here)."""
    folder = writer.out / name
    folder.mkdir()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"mambaprof.table": name.encode()})
    pq.write_table(table, folder / "part-00000.parquet")


def hardware_tables(writer: RunWriter, comps: pd.DataFrame) -> None:
    """energy / memory / memory_points / hw_counters / collector_status rows shaped like the hardware
    collectors' (docs/HARDWARE.md): component energy on one representative layer per family at 700 W."""
    keys = ["run_id", "rank", "world_size", "point_id", "layer", "component"]
    mixer = comps[comps.layer >= 0]
    reps = mixer.groupby("family").layer.min()
    counts = mixer.groupby("family").layer.nunique()
    rep_rows = comps[(comps.layer == -1) | comps.apply(lambda r: reps.get(r.family) == r.layer, axis=1)]
    energy = rep_rows[keys].assign(scope="component", status="resolved", energy_mj=rep_rows.kernel_ms_mean * 0.7,
                                   layers_represented=rep_rows.family.map(counts).fillna(1).astype(int))
    energy.loc[energy.component == "gating", "status"] = "unresolved"  # too short a window: no number
    totals = comps.groupby(["run_id", "rank", "world_size", "point_id", "seqlen", "batch"]).kernel_ms_mean.sum()
    forward = totals.reset_index().assign(layer=-1, component="forward", scope="forward", status="resolved",
                                          layers_represented=1)
    forward["energy_mj"] = forward.kernel_ms_mean * 0.7
    forward["energy_per_token_j"] = forward.energy_mj / 1000 / (forward.seqlen * forward.batch)
    write_plain(writer, "energy", pd.concat([energy, forward[energy.columns.tolist() + ["energy_per_token_j"]]]))
    hw = pd.concat([comps[keys]] * 2, ignore_index=True)  # two kernels per component window
    hw = hw.assign(seq=range(len(hw)), dram_read_bytes=1000.0, dram_write_bytes=500.0, dram_bytes=1500.0)
    write_plain(writer, "hw_counters", hw)
    memory = comps[keys].assign(peak_delta_bytes=comps.layer.clip(lower=0) * 1000 + 4096,
                                cache_state_bytes=(comps.component == "ssm_scan") * 2.0**20)
    write_plain(writer, "memory", memory)
    points = comps[["run_id", "rank", "world_size", "point_id"]].drop_duplicates()
    write_plain(writer, "memory_points", points.assign(peak_allocated_bytes=2**30, activation_peak_bytes=2**28,
                                                        recurrent_state_bytes=2**21, conv_state_bytes=2**20))
    write_plain(writer, "collector_status", pd.DataFrame([
        {"run_id": writer.run_id, "rank": 0, "world_size": 1, "collector": "ncu", "point_id": None,
         "status": "unavailable", "reason": "ncu not found on PATH"},
        {"run_id": writer.run_id, "rank": 0, "world_size": 1, "collector": "nvml", "point_id": None,
         "status": "ok", "reason": None}]))
