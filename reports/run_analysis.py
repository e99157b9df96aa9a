"""The facade: one object per run directory exposing every analysis; renderers, the CLI and `study`
use only this (and `RunComparison` for two runs).

    analysis = RunAnalysis("runs/m1")
    analysis.components      # attribution per point x family x component, with roofline columns
    analysis.layers          # the same per layer
    analysis.points          # regime per point (launch-bound or not), throughput, fidelity
    analysis.scaling         # fitted log-log exponents per component
    analysis.crossovers      # where the SSM scan overtakes the projections
    analysis.findings()      # the sentences, with the numbers behind them
    analysis.summary_frames()  # the summary_* tables, exactly as written to Parquet

A `mambaprof prune` run holds one component measurement per distinct pruned shape: its attribution
(components, layers, points, scaling, findings) is that of the unpruned reference alone, each variant's
is in `analysis.variants`, and the what-if (the `pruning` table) in `analysis.pruning`; nothing is ever
summed across variants.

    analysis.pruning         # PruningAnalysis (None for a trace): table, caveat, timing groups
    analysis.variants        # timed variant id -> RunAnalysis of that variant's own measurement
    analysis.pruning_findings()  # the what-if's sentences
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

import mambaprof
from mambaprof.reports import attribution, comparison, findings, noise, regime, roofline, scaling
from mambaprof.reports.calibration import load_calibration
from mambaprof.reports.findings import Finding
from mambaprof.reports.load import RunData, load_run
from mambaprof.reports.peaks import DevicePeaks, resolve_peaks
from mambaprof.reports.pruning import PruningAnalysis
from mambaprof.storage.rundir import run_state
from mambaprof.storage.schema import get_table


class RunAnalysis:
    """All analyses of one run directory, computed on first use from tables read once.

    basis: `auto` (kernel time on GPU, wall time on CPU), `kernel` or `wall`.
    peaks_file: a JSON file of peaks (overrides calibration and the known-GPU table).
    use_calibration: use a stored `mambaprof calibrate` result for the run's device name.
    """

    def __init__(self, run_dir: Path | str, basis: str = "auto", peaks_file: Path | None = None,
                 use_calibration: bool = True) -> None:
        data = load_run(run_dir)
        self.basis: str = attribution.choose_basis(data, basis)
        if data.components.empty and basis == "auto":  # a prune run whose component measurements all failed
            self.basis = "kernel" if data.on_gpu else "wall"
        self.pruning: PruningAnalysis | None = PruningAnalysis.load(data.run_dir, data.record)
        self._all: RunData = data
        if self.pruning is not None:
            data = data.subset([p for v, p in self.pruning.component_points.items() if v == 0], "unpruned")
        self.data: RunData = data
        device_name = self.device_name
        calibrated = load_calibration(device_name) if use_calibration and peaks_file is None else None
        self.peaks: DevicePeaks | None = resolve_peaks(device_name, peaks_file, calibrated)

    @classmethod
    def of_data(cls, data: RunData, basis: str, peaks: DevicePeaks | None) -> RunAnalysis:
        """An analysis of already-read tables (e.g. one pruning variant's points), on a given basis and peaks."""
        self = cls.__new__(cls)
        self.data, self._all, self.basis, self.peaks, self.pruning = data, data, basis, peaks, None
        return self

    # -- facts about the run -------------------------------------------------------------------------

    @property
    def run_dir(self) -> Path:
        """The run directory."""
        return self.data.run_dir

    @property
    def record(self) -> dict[str, Any]:
        """The run record (`runs` table row)."""
        return self.data.record

    @property
    def label(self) -> str:
        """Short name of the run (preset, checkpoint or model file)."""
        return self.data.label

    @property
    def device_name(self) -> str:
        """The GPU or CPU model the run ran on."""
        return str(self.record.get("device_name") or self.record.get("device") or "unknown device")

    @property
    def dtype(self) -> str:
        """Compute dtype of the run."""
        return self.data.dtype

    @property
    def warnings(self) -> list[str]:
        """What validation and loading noticed (incomplete run, failed output checks, unreadable tables), and a
        loaded host (judged from the run's own repeats: its times and shares carry another process's noise)."""
        load = self.host_load if not self.points.empty else None
        return list(self.data.warnings) + ([f"host {load.text}"] if load is not None and load.loaded else [])

    @property
    def peaks_source(self) -> str:
        """Where the roofline's peaks come from, in words."""
        return self.peaks.describe() if self.peaks else "none"

    @property
    def optional_tables(self) -> list[str]:
        """Names of the hardware tables the run has."""
        return sorted(self.data.optional)

    # -- analyses ------------------------------------------------------------------------------------

    @cached_property
    def components(self) -> pd.DataFrame:
        """Attribution per point x family x component (see summary_components for every column)."""
        table = attribution.component_table(self.data, self.basis)
        return roofline.add_roofline(table, self.peaks, self.dtype)

    @cached_property
    def layers(self) -> pd.DataFrame:
        """Attribution per point x layer x component (see summary_layers)."""
        return roofline.add_rates(attribution.layer_table(self.data, self.basis))

    @cached_property
    def points(self) -> pd.DataFrame:
        """Regime, throughput and fidelity per point (see summary_points)."""
        return regime.point_table(self.data)

    @cached_property
    def share_noise(self) -> pd.DataFrame:
        """Per point x block family x component: the share on means (the report's), on medians and on the other
        basis, with the point's repeats' spread and markers' cost (see `noise.share_noise`)."""
        return noise.share_noise(self.data, self.components, self.basis)

    @property
    def host_load(self) -> noise.HostLoad:
        """Whether the run's host was loaded, from its own repeats (see `noise.host_load`)."""
        return noise.host_load(self.points)

    @cached_property
    def scaling(self) -> pd.DataFrame:
        """Fitted exponents per family x batch x component and group (see summary_scaling)."""
        return scaling.scaling_table(self.components)

    @cached_property
    def scaling_series(self) -> pd.DataFrame:
        """The times the scaling fits are over: family, batch, seqlen, component, kind, time_ms."""
        return scaling.series(self.components)

    @cached_property
    def variants(self) -> dict[int, RunAnalysis]:
        """Prune runs: per timed variant id (variants with the same state sizes share one measurement; see
        `pruning.timing_groups`), the analysis of that variant's own component measurement. Else empty."""
        if self.pruning is None:
            return {}
        return {vid: RunAnalysis.of_data(self._all.subset([point], self.pruning.name(vid)), self.basis, self.peaks)
                for vid, point in sorted(self.pruning.component_points.items())}

    def pruning_findings(self) -> list[Finding]:
        """Prune runs: the what-if's sentences (speed, memory, score verdicts, per-variant components)."""
        return findings.pruning_findings(self) if self.pruning is not None else []

    @cached_property
    def crossovers(self) -> list[scaling.Crossover]:
        """Where the SSM scan overtakes the projections, per family and batch."""
        return scaling.crossover_table(self.components)

    def findings(self) -> list[Finding]:
        """The report's findings in words, each with its number (see summary_findings)."""
        return [
            *findings.status_findings(self.points),
            *findings.host_findings(self.points),
            *findings.share_findings(self.components, self.scaling, self.basis, self.share_noise),
            *findings.crossover_findings(self.crossovers, self.scaling),
            *findings.regime_findings(self.points, self.data.on_gpu),
            *findings.roofline_findings(self.components, self.peaks, self.device_name, self.dtype, self.basis),
            *findings.hardware_findings(self.points, self.components),
            *findings.fidelity_findings(self.points),
        ]

    def sentences(self) -> list[str]:
        """Just the sentences of `findings()`."""
        return [f.text for f in self.findings()]

    # -- summary tables ------------------------------------------------------------------------------

    def _run_identity(self) -> dict[str, Any]:
        rec = self.record
        return {"run_id": self.data.run_id, "rank": int(rec.get("rank") or 0),
                "world_size": int(rec.get("world_size") or 1)}

    def summary_frames(self) -> dict[str, pd.DataFrame]:
        """Every summary_* table as a DataFrame with exactly its schema's columns, in order."""
        ident = self._run_identity()
        rec = self.record
        frames: dict[str, pd.DataFrame] = {
            "summary_components": self.components,
            "summary_layers": self.layers,
            "summary_points": self.points,
            "summary_scaling": self.scaling.assign(**ident, time_basis=self.basis),
            "summary_crossover": pd.DataFrame([
                {**ident, "family": c.family, "batch": c.batch, "time_basis": self.basis, "status": c.status,
                 "crossover_seqlen": c.seqlen, "scan_over_proj_at_max": c.ratio_at_max}
                for c in self.crossovers]),
            "summary_findings": pd.DataFrame([{**ident, **f.as_row()} for f in self.findings()]),
            "summary_run": pd.DataFrame([{
                **ident, "label": self.label, "model_ref": rec.get("model_ref"),
                "model_family": rec.get("model_family"), "n_layers": rec.get("n_layers"),
                "device_name": self.device_name, "dtype": self.dtype, "mode": rec.get("mode"),
                "status": run_state(rec)[0], "time_basis": self.basis, "peaks_source": self.peaks_source,
                "peak_tflop_per_s": self.peaks.tflops(self.dtype) if self.peaks else None,
                "peak_gb_per_s": self.peaks.gb_per_s if self.peaks else None,
                "n_points": len(self.points), "n_points_ok": int((self.points.status == "ok").sum()),
                "host_loaded": self.host_load.loaded, "host_load": self.host_load.text,
                "mambaprof_version": mambaprof.__version__}]),
        }
        out = {}
        for name, frame in frames.items():
            columns = get_table(name).column_names
            frame = frame.copy()
            for col in columns:
                if col not in frame.columns:
                    frame[col] = None
            out[name] = frame[columns].reset_index(drop=True)
        return out


class RunComparison:
    """Two runs side by side (A = baseline, B = the other): aligned by point and component, ratios B / A.

    Both runs are analysed on the same time basis: `auto` is kernel time when both ran on a GPU,
    otherwise wall time.
    """

    def __init__(self, run_a: Path | str, run_b: Path | str, basis: str = "auto", peaks_file: Path | None = None,
                 use_calibration: bool = True) -> None:
        self.a = RunAnalysis(run_a, basis, peaks_file, use_calibration)
        self.b = RunAnalysis(run_b, basis, peaks_file, use_calibration)
        if basis == "auto" and self.a.basis != self.b.basis:
            common = "kernel" if self.a.data.on_gpu and self.b.data.on_gpu else "wall"
            for analysis in (self.a, self.b):  # nothing is computed yet: the basis can still change
                analysis.basis = attribution.choose_basis(analysis.data, common)
        self.basis = self.a.basis

    @property
    def labels(self) -> tuple[str, str]:
        """Names of A and B (directory names are added when both runs have the same model name)."""
        la, lb = self.a.label, self.b.label
        if la == lb:
            return f"{la} ({self.a.run_dir.name})", f"{lb} ({self.b.run_dir.name})"
        return la, lb

    @property
    def warnings(self) -> list[str]:
        """Why the two runs may not be comparable, plus each run's own warnings."""
        out = [f"A: {w}" for w in self.a.warnings] + [f"B: {w}" for w in self.b.warnings]
        if self.a.device_name != self.b.device_name:
            out.append(f"the runs ran on different devices ({self.a.device_name} vs {self.b.device_name})")
        if self.a.dtype != self.b.dtype:
            out.append(f"the runs used different dtypes ({self.a.dtype} vs {self.b.dtype})")
        if self.a.basis != self.b.basis:
            out.append(f"the runs have different time bases ({self.a.basis} vs {self.b.basis})")
        common = set(zip(self.a.points.batch, self.a.points.seqlen, strict=True)) & set(
            zip(self.b.points.batch, self.b.points.seqlen, strict=True))
        if not common:
            out.append("the runs share no (batch, seqlen) point: nothing to align")
        return out

    @cached_property
    def components(self) -> pd.DataFrame:
        """Per (batch, seqlen, component) incl. `block` and `forward`: a_ms, b_ms, ratio, a/b share of block."""
        return comparison.align_components(comparison.component_totals(self.a.components),
                                           comparison.component_totals(self.b.components))

    @cached_property
    def points(self) -> pd.DataFrame:
        """Per (batch, seqlen): status, wall/kernel ms, tokens/s, regime of A and B, and wall/kernel ratios."""
        return comparison.align_points(self.a.points, self.b.points)

    def findings(self) -> list[Finding]:
        """Headline sentences of the comparison."""
        la, lb = self.labels
        return comparison.comparison_findings(self.components, self.points, self.a.scaling, self.b.scaling,
                                              la, lb, self.basis)

    def sentences(self) -> list[str]:
        """Just the sentences of `findings()`."""
        return [f.text for f in self.findings()]
