"""Nsight Compute collector: measured DRAM bytes, SM throughput and occupancy per component.

`mambaprof trace --ncu` runs, for each point, a separate process under `ncu`: it loads the same
model, builds the same inputs (same seed), warms up, then runs one split forward inside an NVTX
start/end range `mambaprof_ncu` (the only kernels ncu profiles) while an `NvtxListener` pushes one
NVTX push/pop range per component window (the same names as the profiler ranges,
`mambaprof/L3/ssm_scan`). The report is then exported twice as CSV: with kernel names, and with
kernels renamed to their innermost NVTX range (`--print-nvtx-rename kernel`); joined by result ID,
every kernel gets its component. `--ncu-layers N` limits the profiled kernels to the first N Mamba
layers (each kernel is replayed by ncu, which is slow). Without ncu the flag fails with one line.

That process is `python -m mambaprof.run.ncu_target --target SPEC.json` (the run layer loads the model).
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mambaprof.collectors.context import PointContext
from mambaprof.collectors.kernel_rules import attribute_mixer_kernels
from mambaprof.collectors.markers import BLOCK, FORWARD, MIXER, Window, parse_range
from mambaprof.collectors.rows import guarded, point_identity, run_relative, status_row
from mambaprof.errors import BadArgumentError, MambaprofError
from mambaprof.taxonomy import BY_NAME, MODEL_LAYER

#: the metrics collected, and the hw_counters column each one fills
METRICS: dict[str, str] = {
    "dram__bytes_read.sum": "dram_read_bytes",
    "dram__bytes_write.sum": "dram_write_bytes",
    "sm__throughput.avg.pct_of_peak_sustained_elapsed": "sm_throughput_pct",
    "sm__warps_active.avg.pct_of_peak_sustained_active": "achieved_occupancy_pct",
    "gpu__time_duration.sum": "duration_us",
}
FILTER_RANGE = "mambaprof_ncu"
NCU_GLOBS = ("/usr/local/cuda/bin/ncu", "/opt/nvidia/nsight-compute/*/ncu")
_RANGE_IN_TEXT = re.compile(r"mambaprof/(?:L\d+|model)/\w+")

_SCALE = {"": 1.0, "byte": 1.0, "kbyte": 1e3, "mbyte": 1e6, "gbyte": 1e9, "tbyte": 1e12,
          "kibyte": 1024.0, "mibyte": 1024.0**2, "gibyte": 1024.0**3,
          "nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3,
          "second": 1e6, "s": 1e6, "%": 1.0}
# time metrics are converted to microseconds; others keep their base unit (bytes, %)
_TIME_UNITS = {"nsecond", "ns", "usecond", "us", "msecond", "ms", "second", "s"}


class NcuNotFoundError(MambaprofError):
    """--ncu was given but Nsight Compute is not installed where we look."""


def find_ncu(extra: Sequence[str] = ()) -> Path | None:
    """The ncu executable: on PATH, in /usr/local/cuda/bin, or the newest /opt/nvidia/nsight-compute/*/."""
    found = shutil.which("ncu")
    if found:
        return Path(found)
    for pattern in (*extra, *NCU_GLOBS):
        hits = sorted(glob.glob(pattern))
        for hit in reversed(hits):
            if os.access(hit, os.X_OK):
                return Path(hit)
    return None


def require_ncu() -> Path:
    """find_ncu() or a one-line NcuNotFoundError."""
    path = find_ncu()
    if path is None:
        raise NcuNotFoundError("--ncu needs Nsight Compute, but no `ncu` is on PATH, in /usr/local/cuda/bin or "
                               "in /opt/nvidia/nsight-compute/*/",
                               "install Nsight Compute (or put ncu on PATH), or drop --ncu")
    return path


# --------------------------------------------------------------------------------------------------
# the process under ncu
# --------------------------------------------------------------------------------------------------

def _nvtx_on() -> bool:
    """NVTX exists only in CUDA builds; on a CPU-only torch there is nothing to mark (or profile)."""
    return torch.cuda.is_available()


class NvtxListener:
    """Listener: one NVTX push/pop range per window, named like the profiler ranges."""

    def __init__(self) -> None:
        self.on = _nvtx_on()

    def enter(self, window: Window) -> None:
        if self.on:
            torch.cuda.nvtx.range_push(window.range_name)

    def exit(self, window: Window) -> None:
        if self.on:
            torch.cuda.nvtx.range_pop()


class FilterRange:
    """Listener: the NVTX start/end range ncu profiles, from the forward's start to the end of Mamba
    layer `layers - 1` (or the whole forward when layers is None)."""

    def __init__(self, layers: int | None) -> None:
        self.layers = layers
        self._id: Any = None
        self.done = False

    def enter(self, window: Window) -> None:
        if window.name == FORWARD and self._id is None and not self.done:
            self._id = torch.cuda.nvtx.range_start(FILTER_RANGE) if _nvtx_on() else FILTER_RANGE
        elif self.layers is not None and window.layer >= self.layers and window.layer != MODEL_LAYER:
            self.end()

    def exit(self, window: Window) -> None:
        if window.name == FORWARD:
            self.end()

    def end(self) -> None:
        """Close the range (once)."""
        if self._id is not None:
            if _nvtx_on():
                torch.cuda.nvtx.range_end(self._id)
            self._id = None
            self.done = True


# --------------------------------------------------------------------------------------------------
# reading ncu's CSV
# --------------------------------------------------------------------------------------------------

@dataclass
class NcuKernel:
    """One profiled kernel: ncu's ID, its name and metric values (bytes, %, us)."""

    ncu_id: int
    name: str
    metrics: dict[str, float | None] = field(default_factory=dict)


def _value(text: str, unit: str) -> float | None:
    text = text.strip().replace(",", "")
    if not text or text.lower() in ("n/a", "nan"):
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    key = unit.strip().lower()
    scale = _SCALE.get(key)
    if scale is None:
        return value
    return value * scale if key in _TIME_UNITS or key.endswith("byte") else value


def parse_ncu_csv(text: str) -> list[NcuKernel]:
    """ncu's CSV (details page, one row per kernel x metric) -> kernels in ID order.

    Lines before the header (`==PROF==` messages) are skipped; values lose thousands separators and
    are scaled to bytes / microseconds / percent by their unit; `n/a` becomes None.
    """
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith('"ID"')), None)
    if start is None:
        return []
    reader = csv.DictReader(io.StringIO("\n".join(lines[start:])))
    kernels: dict[int, NcuKernel] = {}
    for row in reader:
        try:
            kid = int(str(row.get("ID", "")).replace(",", ""))
        except ValueError:
            continue
        kernel = kernels.setdefault(kid, NcuKernel(kid, row.get("Kernel Name", "")))
        metric = row.get("Metric Name")
        if metric:
            kernel.metrics[metric] = _value(row.get("Metric Value", ""), row.get("Metric Unit", ""))
    return [kernels[k] for k in sorted(kernels)]


def innermost_window(text: str) -> Window | None:
    """The last mambaprof range named in a (renamed) kernel name, if any."""
    hits = _RANGE_IN_TEXT.findall(text or "")
    return parse_range(hits[-1]) if hits else None


def attribute_ncu(kernels: Sequence[NcuKernel], renamed: dict[int, str], families: dict[int, str],
                  fused_norm_layers: set[int]) -> list[dict[str, Any]]:
    """hw_counters rows (without identity columns): each kernel with its layer and component.

    renamed: ncu ID -> the kernel's innermost NVTX range (from the --print-nvtx-rename kernel export).
    Inside an unsplit mixer (as-is mode) kernels are attributed by kernel-name rules, as the profiler does.
    """
    rows: list[dict[str, Any]] = []
    pending: dict[int, list[dict[str, Any]]] = {}
    for seq, k in enumerate(kernels):
        window = innermost_window(renamed.get(k.ncu_id, ""))
        row: dict[str, Any] = {"seq": seq, "ncu_id": k.ncu_id, "name": k.name,
                               "range_name": window.range_name if window else None,
                               "layer": MODEL_LAYER, "component": "other", "attribution": "none"}
        for metric, column in METRICS.items():
            row[column] = k.metrics.get(metric)
        read, write = row["dram_read_bytes"], row["dram_write_bytes"]
        row["dram_bytes"] = None if read is None or write is None else read + write
        if window is not None and window.name != FORWARD:
            row["layer"], row["attribution"] = window.layer, "nvtx"
            if window.name in BY_NAME:
                row["component"] = window.name
            elif window.name == BLOCK:
                row["component"] = "norm" if window.layer in fused_norm_layers else "residual"
            elif window.name == MIXER:
                row["attribution"] = "name_rule"
                pending.setdefault(window.layer, []).append(row)
        rows.append(row)
    for layer, group in pending.items():
        for row, comp in zip(group, attribute_mixer_kernels([r["name"] for r in group], families.get(layer, "mamba1")),
                             strict=True):
            row["component"] = comp
    return rows


# --------------------------------------------------------------------------------------------------
# the collector
# --------------------------------------------------------------------------------------------------

class NcuCollector:
    """PointCollector: runs the point under ncu and fills `hw_counters`."""

    def __init__(self, ncu: Path, source: dict[str, Any], dtype: str, mode: str, seed: int, out_dir: Path,
                 run_dir: Path | None = None, layers: int | None = None, warmup: int = 2,
                 timeout_s: float = 3600.0) -> None:
        if layers is not None and layers < 1:
            raise BadArgumentError(f"--ncu-layers {layers} must be at least 1")
        self.ncu = Path(ncu)
        self.source = source  # model_file / hf_dir / preset / backend, as strings
        self.dtype = dtype
        self.mode = mode
        self.seed = seed
        self.out_dir = Path(out_dir)
        self.run_dir = run_dir
        self.layers = layers
        self.warmup = warmup
        self.timeout_s = timeout_s

    def command(self, report: Path, spec_path: Path) -> list[str]:
        """The ncu command line that profiles the target process."""
        return [str(self.ncu), "--nvtx", "--nvtx-include", FILTER_RANGE, "--metrics", ",".join(METRICS),
                "--target-processes", "all", "--clock-control", "none", "--export", str(report),
                "--force-overwrite", sys.executable, "-m", "mambaprof.run.ncu_target", "--target", str(spec_path)]

    def export_command(self, report: Path, renamed: bool) -> list[str]:
        """The ncu command line that prints a report as CSV (with kernels renamed to NVTX ranges or not)."""
        cmd = [str(self.ncu), "--import", str(report), "--csv", "--print-units", "base"]
        return cmd + (["--print-nvtx-rename", "kernel"] if renamed else [])

    @guarded("ncu")
    def measure_point(self, ctx: PointContext, point_row: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        """Profile one marked forward of this point under ncu; rows per kernel."""
        pid = point_row["point_id"]
        spec = ctx.spec
        self.out_dir.mkdir(parents=True, exist_ok=True)
        stem = f"point{pid:05d}_b{spec.batch}_l{spec.seqlen}"
        report = self.out_dir / f"{stem}.ncu-rep"
        spec_path = self.out_dir / f"{stem}.target.json"
        log_path = self.out_dir / f"{stem}.log"
        target = {**self.source, "device": str(spec.device), "dtype": self.dtype, "mode": self.mode,
                  "seed": self.seed, "batch": spec.batch, "seqlen": spec.seqlen, "warmup": self.warmup,
                  "layers": self.layers}
        spec_path.write_text(json.dumps(target, indent=1))
        cmd = self.command(report, spec_path)
        details = {"command": cmd, "report": run_relative(report, self.run_dir),
                   "log": run_relative(log_path, self.run_dir), "layers": self.layers, "metrics": list(METRICS)}
        if spec.device.type == "cuda":
            torch.cuda.empty_cache()  # the profiled process loads its own copy of the model

        def failed(reason: str) -> dict[str, list[dict[str, Any]]]:
            return {"collector_status": [status_row(point_row, "ncu", "failed", reason, details, point_id=pid)]}

        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout_s,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1"})
        except subprocess.TimeoutExpired:
            return failed(f"ncu did not finish within {self.timeout_s:.0f} s")
        log_path.write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
        if proc.returncode != 0 or not report.exists():
            lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if "ERR" in ln or "rror" in ln]
            last = lines[-1] if lines else (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return failed(f"ncu exited with {proc.returncode}: {last.strip()[:300]}")
        exports = []
        for renamed in (False, True):
            out = subprocess.run(self.export_command(report, renamed), capture_output=True, text=True,
                                 timeout=600)
            if out.returncode != 0:
                return failed(f"ncu --import failed ({out.returncode}): {out.stderr.strip()[:300]}")
            exports.append(parse_ncu_csv(out.stdout))
        kernels, renamed_kernels = exports
        if not kernels:
            return failed("ncu profiled no kernel (is the NVTX range reached? see the log)")
        renamed_names = {k.ncu_id: k.name for k in renamed_kernels}
        families = {s.layer: s.dims.family for s in ctx.structure.mixers}
        ident = point_identity(point_row)
        rows = [{**ident, **r} for r in attribute_ncu(kernels, renamed_names, families,
                                                      ctx.structure.fused_norm_layers)]
        unattributed = sum(1 for r in rows if r["attribution"] == "none")
        details["kernels"] = len(rows)
        status, reason = ("ok", None) if not unattributed else (
            "partial", f"{unattributed} of {len(rows)} kernels outside every component range")
        return {"hw_counters": rows, "collector_status": [status_row(point_row, "ncu", status, reason, details,
                                                                     point_id=pid)]}
