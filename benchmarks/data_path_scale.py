"""Data-path benchmark: build a 1-million-kernel-event run from real event rows, then time writing it,
reading it, validating it and `mambaprof report RUN --html --parquet` over it.

The source is a real GPU run with a kernels table (default: the H200 trace of mamba-1.4b committed in
benchmarks/data/2026-12-02-h200-hardware/, 724 kernels per profiled forward of its 48 layers). The
synthetic run is what a long real sweep of that model family would write:

- layers: the source's per-layer rows (kernels, components, memory) are repeated to `--layers` layers
  (default 64, the depth of the largest public Mamba checkpoints), renumbered, with their range names;
- profiled forwards: `--profile-repeats` iterations per point (default 3, `mambaprof trace`'s default),
  each a copy of the real forward with 1% noise per kernel;
- points: a batch x sequence-length grid (default batches 1,2,4,8; sequence lengths geometrically spaced
  from 64 to 16384) with as many sequence lengths as the kernel target needs. Each real kernel's duration
  follows a power law in tokens fitted between the two nearest real points (exponent clipped to 0..1.5,
  at least 1 us or its real value); FLOPs and bytes are affine in tokens through those points (exact for
  closed-form counts); component kernel times are re-summed from the synthetic kernels; wall time =
  kernel time + the real launch gap (so small points come out launch-bound, as on a real GPU). Tables
  that are not per layer (energy, io, nvml_samples, memory_points, collector_status) are copied from the
  nearest real point with their identity columns rewritten (values not rescaled).

Every table is written through RunWriter.write_rows, one atomic part per point, as `mambaprof trace`
writes it. Timings: write (sum over write_rows calls), read (read_table of each table, in-process),
validation and the full report as subprocesses (wall time, median of --repeats runs). The JSON carries
benchmarks/provenance.py's stamp ("provenance") and this machine's CPU, memory and load ("machine").

    python benchmarks/data_path_scale.py --out /tmp/synth-1m --json benchmarks/data/DATE-cpu-data-path/data_path.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import mambaprof
from mambaprof.storage.rundir import RunWriter, read_run_record, read_table
from mambaprof.storage.schema import TABLES

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT / "benchmarks/data/2026-12-02-h200-hardware/mamba-1.4b"
#: Tables written once per run, not per point.
RUN_LEVEL = ("runs",)
#: Smallest synthetic kernel duration (us) unless the real kernel was shorter.
MIN_KERNEL_US = 1.0
#: Gap between two profiled forwards of one point (us).
ITERATION_GAP_US = 2000.0
_LAYER_IN_RANGE = re.compile(r"/L\d+/")


@dataclass(frozen=True)
class Shape:
    """The synthetic sweep: target kernel rows, layers, profiled forwards per point, the grid."""

    target_kernels: int = 1_000_000
    layers: int = 64
    profile_repeats: int = 3
    batches: tuple[int, ...] = (1, 2, 4, 8)
    seqlen_min: int = 64
    seqlen_max: int = 16384
    seed: int = 0


@dataclass
class BuildResult:
    """Sizes (rows, bytes) and write timings (s) of the synthetic run."""

    out: str
    points: int
    seqlens: int
    kernels_per_forward: int
    kernels_per_point: int
    rows: dict[str, int] = field(default_factory=dict)
    bytes_on_disk: dict[str, int] = field(default_factory=dict)
    write_s: dict[str, float] = field(default_factory=dict)
    write_total_s: float = 0.0
    build_wall_s: float = 0.0


# -- the real source ---------------------------------------------------------------------------------


class Source:
    """A real run's per-point tables, with what is needed to scale them to other sizes."""

    def __init__(self, run: Path) -> None:
        self.run = run
        self.record = read_run_record(run)
        points = read_table(run, "points").to_pandas()
        self.points = points[points.status == "ok"].sort_values("point_id").reset_index(drop=True)
        names = [t for t in TABLES if t not in RUN_LEVEL and (run / t).is_dir()]
        self.tables = {t: read_table(run, t).to_pandas() for t in names}
        kernels = self.tables.get("kernels")
        if kernels is None or kernels.empty:
            raise SystemExit(f"{run} has no kernels table to replicate; pass --source with a GPU trace "
                             f"(default {DEFAULT_SOURCE.relative_to(ROOT)})")
        ok_ids = set(kernels.point_id) & set(self.points.point_id)
        self.points = self.points[self.points.point_id.isin(ok_ids)].reset_index(drop=True)
        comps = self.tables["components"]
        self.n_layers = int(comps.layer.max()) + 1
        self.tokens = (self.points.batch * self.points.seqlen).astype(float).to_numpy()

    def rows(self, table: str, point_id: int) -> pd.DataFrame:
        """One real point's rows of a table (kernels: its first profiled forward only)."""
        frame = self.tables[table]
        if "point_id" not in frame.columns:
            return frame.iloc[0:0]
        rows = frame[frame.point_id == point_id]
        if table == "kernels":
            rows = rows[rows.iteration == rows.iteration.min()].sort_values("seq")
        return rows.reset_index(drop=True)

    def pair(self, tokens: float) -> tuple[int, int | None]:
        """Indices (into self.points) of the two real points nearest in log-tokens, the smaller first (the
        anchor, so that values stay continuous in tokens); the second is None when the source has one point."""
        order = np.argsort(np.abs(np.log(self.tokens) - np.log(tokens)), kind="stable")[:2]
        order = sorted(order, key=lambda i: self.tokens[i])
        return int(order[0]), (int(order[1]) if len(order) > 1 else None)

    def per_layer(self, table: str) -> bool:
        """True when each point of the table has rows for every layer (so layers can be replicated)."""
        frame = self.tables[table]
        if "layer" not in frame.columns or "point_id" not in frame.columns:
            return False
        pid = int(self.points.point_id.iloc[0])
        layers = set(frame.loc[(frame.point_id == pid) & (frame.layer >= 0), "layer"])
        return layers == set(range(self.n_layers))


def power_law(y1: np.ndarray, y2: np.ndarray | None, t1: float, t2: float, t: float) -> np.ndarray:
    """y at t tokens from y1 at t1 (and y2 at t2): y1 * (t/t1)**e, e fitted and clipped to 0..1.5; at
    least min(MIN_KERNEL_US, y1)."""
    if y2 is None or t1 == t2:
        e = np.ones_like(y1)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            e = np.log(y2 / y1) / np.log(t2 / t1)
        e = np.clip(np.nan_to_num(e, nan=1.0), 0.0, 1.5)
    return np.maximum(y1 * (t / t1) ** e, np.minimum(MIN_KERNEL_US, y1))


def affine(y1: np.ndarray, y2: np.ndarray | None, t1: float, t2: float, t: float) -> np.ndarray:
    """y at t tokens on the line through (t1, y1) and (t2, y2) (proportional without y2), at least 0."""
    if y2 is None or t1 == t2:
        return y1 * (t / t1)
    return np.maximum(y1 + (y2 - y1) * (t - t1) / (t2 - t1), 0.0)


def layer_index(layers: np.ndarray, n_src: int, n_new: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices into a real forward (rows in order, layer -1 = outside the blocks) and the new layer
    numbers, for a forward of n_new layers: rows before the first block, blocks 0..n_new-1 (block l a copy
    of real block l % n_src), then the rows after the last block."""
    rows = np.arange(len(layers))
    in_block = layers >= 0
    first = rows[in_block].min() if in_block.any() else len(rows)
    before = rows[(~in_block) & (rows < first)]
    after = rows[(~in_block) & (rows >= first)]  # after the blocks (any between them move here too)
    by_layer = {layer: rows[layers == layer] for layer in range(n_src)}
    idx = [before]
    new_layers = [layers[before]]
    for layer in range(n_new):
        block = by_layer[layer % n_src]
        idx.append(block)
        new_layers.append(np.full(len(block), layer))
    idx.append(after)
    new_layers.append(layers[after])
    return np.concatenate(idx), np.concatenate(new_layers)


def expand_layers(frame: pd.DataFrame, n_src: int, n_new: int) -> pd.DataFrame:
    """A real point's per-layer rows replicated to n_new layers (range names renumbered)."""
    idx, new_layers = layer_index(frame.layer.to_numpy(), n_src, n_new)
    out = frame.iloc[idx].reset_index(drop=True)
    out["layer"] = new_layers
    if "range_name" in out.columns:
        names = out.range_name.astype(object).to_numpy()
        out["range_name"] = [n if (lay < 0 or not isinstance(n, str)) else _LAYER_IN_RANGE.sub(f"/L{lay}/", n, 1)
                             for n, lay in zip(names, new_layers, strict=True)]
    return out


# -- one synthetic point ---------------------------------------------------------------------------------


class PointMaker:
    """Builds every table's rows of one synthetic point from the real points nearest in size."""

    def __init__(self, source: Source, shape: Shape, run_id: str) -> None:
        self.src = source
        self.shape = shape
        self.run_id = run_id
        self.rng = np.random.default_rng(shape.seed)
        self._expanded: dict[tuple[str, int], pd.DataFrame] = {}

    def _real(self, table: str, i: int) -> pd.DataFrame:
        return self.src.rows(table, int(self.src.points.point_id.iloc[i]))

    def _template(self, table: str, i: int) -> pd.DataFrame:
        key = (table, i)
        if key not in self._expanded:
            rows = self._real(table, i)
            if table == "kernels":  # idle time before each kernel, from the real forward (us)
                start, dur = rows.start_us.to_numpy(dtype=float), rows.duration_us.to_numpy(dtype=float)
                rows["_gap_us"] = np.clip(start - np.concatenate([[0.0], start[:-1] + dur[:-1]]), 0.0, None)
            if self.src.per_layer(table):
                rows = expand_layers(rows, self.src.n_layers, self.shape.layers)
            self._expanded[key] = rows
        return self._expanded[key]

    def _fit_pair(self, table: str, a: int, b: int | None, col: str) -> tuple[np.ndarray, np.ndarray | None]:
        """Column `col` of the expanded rows of real points a and b, row by row (b None if rows differ)."""
        ya = self._template(table, a)[col].to_numpy(dtype=float)
        if b is None:
            return ya, None
        yb = self._template(table, b)[col].to_numpy(dtype=float)
        ta, tb = self._template(table, a), self._template(table, b)
        same = len(ya) == len(yb) and all(
            (ta[k].astype(str).to_numpy() == tb[k].astype(str).to_numpy()).all()
            for k in ("layer", "component", "name") if k in ta.columns)
        return ya, (yb if same else None)

    def make(self, point_id: int, batch: int, seqlen: int) -> dict[str, pd.DataFrame]:
        """Every per-point table of one synthetic point."""
        t = float(batch * seqlen)
        a, b = self.src.pair(t)
        ta = float(self.src.tokens[a])
        tb = float(self.src.tokens[b]) if b is not None else ta
        out: dict[str, pd.DataFrame] = {}
        kernels = self._kernels(a, b, ta, tb, t)
        out["kernels"] = kernels
        out["components"] = self._components(a, b, ta, tb, t, kernels)
        out["points"] = self._points(a, kernels, out["components"])
        nearest = int(np.abs(np.log(self.src.tokens) - np.log(t)).argmin())
        for table in self.src.tables:
            if table in out:
                continue
            fitted = table in ("memory", "memory_points")
            rows = self._template(table, a if fitted else nearest).copy()
            if rows.empty:
                continue
            if fitted:
                for col in [c for c in rows.columns if c.endswith("_bytes")]:
                    ya, yb = self._fit_pair(table, a, b, col)
                    rows[col] = affine(ya, yb, ta, tb, t)
            out[table] = rows
        for frame in out.values():
            frame["run_id"] = self.run_id
            frame["point_id"] = point_id
            for col, val in (("batch", batch), ("seqlen", seqlen), ("tokens", batch * seqlen)):
                if col in frame.columns:
                    frame[col] = val
        return out

    def _kernels(self, a: int, b: int | None, ta: float, tb: float, t: float) -> pd.DataFrame:
        rows = self._template("kernels", a)
        ya, yb = self._fit_pair("kernels", a, b, "duration_us")
        base = power_law(ya, yb, ta, tb, t)
        gaps = rows._gap_us.to_numpy(dtype=float)
        rows = rows.drop(columns="_gap_us")
        frames = []
        offset = 0.0
        scale = float(self.rng.normal(1.0, 0.02))
        for it in range(self.shape.profile_repeats):
            dur = base * scale * self.rng.normal(1.0, 0.01, len(base)).clip(0.9, 1.1)
            begin = offset + np.cumsum(gaps + np.concatenate([[0.0], dur[:-1]]))
            frame = rows.copy()
            frame["iteration"] = it
            frame["seq"] = np.arange(len(frame))
            frame["duration_us"] = dur
            frame["start_us"] = begin
            frames.append(frame)
            offset = float(begin[-1] + dur[-1] + ITERATION_GAP_US)
        return pd.concat(frames, ignore_index=True)

    def _components(self, a: int, b: int | None, ta: float, tb: float, t: float,
                    kernels: pd.DataFrame) -> pd.DataFrame:
        rows = self._template("components", a).copy()
        for col in ("flops", "bytes_min"):
            ya, yb = self._fit_pair("components", a, b, col)
            rows[col] = affine(ya, yb, ta, tb, t)
        per_it = kernels.groupby(["layer", "component", "iteration"]).duration_us.agg(["sum", "size"])
        per_it["ms"] = per_it["sum"] / 1e3
        stats = per_it.groupby(level=["layer", "component"]).agg(
            kernel_ms_median=("ms", "median"), kernel_ms_mean=("ms", "mean"), kernel_ms_min=("ms", "min"),
            kernel_ms_max=("ms", "max"), kernel_samples=("ms", "size"), kernel_count=("size", "median"))
        keyed = rows.set_index(["layer", "component"])
        old_kernel = keyed.kernel_ms_mean.to_numpy(dtype=float)
        new = stats.reindex(keyed.index)
        has = new.kernel_ms_mean.notna().to_numpy() & ~np.isnan(old_kernel)
        for col in stats.columns:
            vals = keyed[col].to_numpy(dtype=float).copy()
            vals[has] = new[col].to_numpy(dtype=float)[has]
            rows[col] = vals
        delta = np.where(has, rows.kernel_ms_mean.to_numpy(dtype=float) - np.nan_to_num(old_kernel), 0.0)
        for col in ("wall_ms_median", "wall_ms_mean", "wall_ms_min", "wall_ms_max"):
            rows[col] = np.maximum(rows[col].to_numpy(dtype=float) + delta, 1e-4)
        return rows

    def _points(self, a: int, kernels: pd.DataFrame, comps: pd.DataFrame) -> pd.DataFrame:
        real = self.src.points.iloc[[a]].reset_index(drop=True).copy()
        per_forward = len(kernels) / self.shape.profile_repeats
        kernel_ms = kernels.duration_us.sum() / 1e3 / self.shape.profile_repeats
        real_kernel = float(real.forward_kernel_ms.iloc[0])
        real_orig = float(real.original_ms_median.iloc[0])
        gap = max(real_orig - real_kernel, 0.0) * per_forward / float(real.kernel_count.iloc[0])
        orig = kernel_ms + gap
        ratio = orig / real_orig
        for col in [c for c in real.columns if c.startswith(("original_ms", "split_ms", "host_ms"))]:
            real[col] = real[col] * ratio
        real["forward_kernel_ms"] = kernel_ms
        real["kernel_count"] = int(per_forward)
        real["profile_repeats"] = self.shape.profile_repeats
        return real


def grid(shape: Shape, kernels_per_point: int) -> list[tuple[int, int]]:
    """(batch, seqlen) points, batch-major, with enough sequence lengths for the kernel target."""
    need = -(-shape.target_kernels // kernels_per_point)
    per_batch = max(1, -(-need // len(shape.batches)))
    n = per_batch
    while True:
        raw = np.geomspace(shape.seqlen_min, shape.seqlen_max, n)
        seqlens = sorted({int(round(s / 8) * 8) or 8 for s in raw})
        if len(seqlens) >= per_batch:
            break
        n += 1
    return [(b, s) for b in shape.batches for s in seqlens]


def build(source_dir: Path, out: Path, shape: Shape) -> BuildResult:
    """Write the synthetic run to `out` (replaced); return its sizes and write timings."""
    wall0 = time.perf_counter()
    src = Source(source_dir)
    writer = RunWriter(out, force=True)
    writer.prepare()
    maker = PointMaker(src, shape, writer.run_id)
    probe = maker.make(0, int(src.points.batch.iloc[0]), int(src.points.seqlen.iloc[0]))
    per_point = len(probe["kernels"])
    points = grid(shape, per_point)
    record = dict(src.record)
    for key in ("run_id", "schema_version"):
        record.pop(key, None)
    seqlens = sorted({s for _, s in points})
    cfg = json.loads(record.get("config_json") or "{}")
    cfg.update(batches=list(shape.batches), seqlens=seqlens, profile_repeats=shape.profile_repeats)
    record.update(status="complete", status_reason=None, n_layers=shape.layers, n_points=len(points),
                  n_points_ok=len(points), n_points_oom=0, n_points_error=0, seqlens=seqlens,
                  batches=list(shape.batches), profile_repeats=shape.profile_repeats, config_json=json.dumps(cfg),
                  finished_at=record.get("started_at"),
                  model_ref=f"synthetic-{source_dir.name}-{shape.layers}L",
                  command=f"synthetic: {len(points)} points x {shape.layers} layers x {shape.profile_repeats} "
                          f"profiled forwards from {source_dir.name} ({src.record.get('device_name')})")
    result = BuildResult(out=str(out), points=len(points), seqlens=len(seqlens),
                         kernels_per_forward=per_point // shape.profile_repeats, kernels_per_point=per_point)
    t0 = time.perf_counter()
    writer.write_run_record(record)
    result.write_s["runs"] = time.perf_counter() - t0
    for pid, (batch, seqlen) in enumerate(points):
        for table, frame in maker.make(pid, batch, seqlen).items():
            records = frame.to_dict("records")
            t0 = time.perf_counter()
            writer.write_rows(table, records, pid)
            result.write_s[table] = result.write_s.get(table, 0.0) + time.perf_counter() - t0
            result.rows[table] = result.rows.get(table, 0) + len(records)
    result.write_total_s = sum(result.write_s.values())
    result.rows["runs"] = 1
    for table in result.write_s:
        result.bytes_on_disk[table] = sum(f.stat().st_size for f in (out / table).rglob("*.parquet"))
    result.build_wall_s = time.perf_counter() - wall0
    return result


# -- timings -----------------------------------------------------------------------------------------------


def timed(fn: Any, repeats: int) -> list[float]:
    """Wall seconds of `repeats` calls of fn()."""
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def run_cmd(cmd: list[str], repeats: int, stdout: Path) -> list[float]:
    """Wall seconds of `repeats` runs of a command (stdout to a file); exits on a non-zero status."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with open(stdout, "w") as fh:
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.PIPE, text=True, check=False)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"{shlex.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return times


def validate_cmd(run: Path) -> tuple[list[str], str]:
    """`mambaprof validate RUN` when this mambaprof has it, else the same check (validate_run, what
    `report` runs first) in a fresh Python process."""
    probe = subprocess.run([sys.executable, "-m", "mambaprof", "validate", "--help"], capture_output=True, check=False)
    if probe.returncode == 0:
        return [sys.executable, "-m", "mambaprof", "validate", str(run)], "mambaprof validate"
    code = ("import sys; from mambaprof.reports.validate import validate_run; v = validate_run(sys.argv[1]); "
            "print(*[p.one_line() for p in v.problems], sep='\\n'); sys.exit(0 if v.ok else 1)")
    return [sys.executable, "-c", code, str(run)], "validate_run (no `mambaprof validate` command in this version)"


def baseline_report_cmd(plots_file: Path, args: list[str]) -> list[str]:
    """`mambaprof ARGS` in a fresh Python process with reports/plots.py replaced by `plots_file` (e.g. the
    file before a change, from `git show REV:reports/plots.py`), to time both under the same load."""
    code = ("import importlib.util, sys; import mambaprof.reports as pkg; "
            "spec = importlib.util.spec_from_file_location('mambaprof.reports.plots', sys.argv[1]); "
            "mod = importlib.util.module_from_spec(spec); sys.modules[spec.name] = mod; spec.loader.exec_module(mod); "
            "pkg.plots = mod; from mambaprof.cli import main; main(sys.argv[2:])")
    return [sys.executable, "-c", code, str(plots_file), *args]


def kernel_summary(run: Path) -> pd.DataFrame:
    """What a per-kernel report section would compute: the ten kernels with the most time (us)."""
    kernels = read_table(run, "kernels", columns=["point_id", "component", "name", "duration_us"]).to_pandas()
    return kernels.groupby(["component", "name"]).duration_us.sum().nlargest(10).reset_index()


def report_phases(run: Path, scratch: Path) -> dict[str, float]:
    """Seconds of each phase of the report, in-process (load, analyses, each plot, HTML, Parquet)."""
    from mambaprof.reports import plots
    from mambaprof.reports.render_html import render_report
    from mambaprof.reports.run_analysis import RunAnalysis
    from mambaprof.reports.summary_parquet import write_summary

    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    a = RunAnalysis(run)
    phases["load"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    _ = (a.components, a.layers, a.points, a.scaling, a.crossovers, a.sentences())
    phases["analyses"] = time.perf_counter() - t0
    calls = {"plot_stacked": lambda: plots.stacked_shares(a.components, a.basis),
             "plot_regime": lambda: plots.regime_chart(a.points),
             "plot_scaling": lambda: plots.scaling_lines(a.scaling_series, a.scaling, a.crossovers, a.basis),
             "plot_roofline": lambda: plots.roofline_chart(a.components, a.peaks, a.dtype, a.device_name)}
    for name, fn in calls.items():
        t0 = time.perf_counter()
        svg = fn()
        phases[name] = time.perf_counter() - t0
        phases[f"{name}_kb"] = len(svg) / 1024
    t0 = time.perf_counter()
    render_report(a)
    phases["html_total"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_summary(a, scratch / "phases-summary")
    phases["parquet_summary"] = time.perf_counter() - t0
    return phases


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, OS and library versions of this machine."""
    model, mem = platform.processor() or "unknown", None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem = next(int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))
    except (OSError, StopIteration):
        pass
    import matplotlib
    import pyarrow

    return {"cpu_model": model, "cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
            "memory_bytes": mem, "platform": platform.platform(), "python": platform.python_version(),
            "pyarrow": pyarrow.__version__, "pandas": pd.__version__, "matplotlib": matplotlib.__version__,
            "mambaprof": mambaprof.__version__, "load_avg_at_start": list(os.getloadavg())}


def summary(values: list[float]) -> dict[str, Any]:
    """Raw seconds and their median, min and max."""
    return {"raw_s": [round(v, 4) for v in values], "median_s": round(statistics.median(values), 4),
            "min_s": round(min(values), 4), "max_s": round(max(values), 4)}


def main() -> None:
    """Build the run, time each step, print and write the JSON."""
    from provenance import stamp  # benchmarks/ is on sys.path when this runs as a script (tests load it by path)

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="real run with a kernels table")
    ap.add_argument("--out", type=Path, default=Path("/tmp/mambaprof-synthetic-1m"), help="synthetic run (replaced)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--kernels", type=int, default=Shape.target_kernels, help="kernel rows to reach")
    ap.add_argument("--layers", type=int, default=Shape.layers)
    ap.add_argument("--profile-repeats", type=int, default=Shape.profile_repeats)
    ap.add_argument("--batches", default=",".join(map(str, Shape.batches)))
    ap.add_argument("--seqlen-min", type=int, default=Shape.seqlen_min)
    ap.add_argument("--seqlen-max", type=int, default=Shape.seqlen_max)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each timed read/validate/report")
    ap.add_argument("--reuse", action="store_true", help="time an existing --out run instead of building one")
    ap.add_argument("--no-phases", action="store_true", help="skip the in-process breakdown of the report")
    ap.add_argument("--baseline-plots", type=Path, default=None,
                    help="also time the report with this reports/plots.py instead (alternating runs)")
    a = ap.parse_args()
    shape = Shape(target_kernels=a.kernels, layers=a.layers, profile_repeats=a.profile_repeats,
                  batches=tuple(int(b) for b in a.batches.split(",")), seqlen_min=a.seqlen_min,
                  seqlen_max=a.seqlen_max)
    result: dict[str, Any] = {"provenance": stamp("cpu"), "machine": machine(), "source": str(a.source),
                              "shape": asdict(shape)}
    if not a.reuse:
        built = build(a.source, a.out, shape)
        result["build"] = asdict(built)
        print(f"built {built.rows['kernels']:,} kernel rows, {built.points} points in {built.build_wall_s:.1f} s "
              f"(write {built.write_total_s:.1f} s)", flush=True)
    tables = sorted(p.name for p in a.out.iterdir() if p.is_dir() and p.name in TABLES)
    reads: dict[str, Any] = {}
    for table in tables:
        rows = read_table(a.out, table).num_rows
        reads[table] = {"rows": rows, **summary(timed(lambda t=table: read_table(a.out, t), a.repeats))}
    reads["all_tables_median_s"] = round(sum(v["median_s"] for v in reads.values()), 4)
    result["read"] = reads
    result["kernel_top10"] = summary(timed(lambda: kernel_summary(a.out), a.repeats))
    scratch = a.out.parent / f"{a.out.name}-report"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    vcmd, vkind = validate_cmd(a.out)
    result["validate"] = {"command": shlex.join(vcmd), "kind": vkind,
                          **summary(run_cmd(vcmd, a.repeats, scratch / "validate.txt"))}
    rargs = ["report", str(a.out), "--html", str(scratch / "report.html"), "--parquet", str(scratch / "summary")]
    rcmd = [sys.executable, "-m", "mambaprof", *rargs]
    bargs = ["report", str(a.out), "--html", str(scratch / "baseline.html"), "--parquet",
             str(scratch / "baseline-summary")]
    times, base_times = [], []
    for _ in range(a.repeats):  # current and baseline alternate, so both see the same load
        times += run_cmd(rcmd, 1, scratch / "report.txt")
        if a.baseline_plots:
            base_times += run_cmd(baseline_report_cmd(a.baseline_plots, bargs), 1, scratch / "baseline.txt")
    html = scratch / "report.html"
    result["report"] = {"command": shlex.join(rcmd), **summary(times), "html_bytes": html.stat().st_size,
                        "terminal_lines": len((scratch / "report.txt").read_text().splitlines()),
                        "target_s": 30.0, "met": statistics.median(times) < 30.0}
    print(f"report: median {result['report']['median_s']:.1f} s of {times}", flush=True)
    if a.baseline_plots:
        result["report_baseline_plots"] = {
            "plots_file": str(a.baseline_plots), "command": shlex.join(baseline_report_cmd(a.baseline_plots, bargs)),
            **summary(base_times), "html_bytes": (scratch / "baseline.html").stat().st_size}
        print(f"baseline plots: median {statistics.median(base_times):.1f} s of {base_times}", flush=True)
    if not a.no_phases:
        result["report_phases_s"] = {k: round(v, 4) for k, v in report_phases(a.out, scratch).items()}
    result["machine"]["load_avg_at_end"] = list(os.getloadavg())
    text = json.dumps(result, indent=1, default=str)
    print(text)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
