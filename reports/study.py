"""A study directory (`mambaprof study`) analysed as a whole: each model's run, and Mamba-1 vs Mamba-2
at each scale (models of the two families paired by size). Reads data only; never re-runs a model."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from mambaprof.errors import RunDirectoryError
from mambaprof.reports.findings import (
    BARE_FIDELITY,
    FIDELITY_BUDGET_PCT,
    MARKED_FIDELITY,
    PAIRED_COLUMNS,
    PAIRED_FIDELITY,
    fidelity_column,
    interval_clause,
    noise_clause,
)
from mambaprof.reports.run_analysis import RunAnalysis, RunComparison
from mambaprof.storage.rundir import STUDY_FILE


def is_study_dir(path: Path | str) -> bool:
    """True when `path` holds a study manifest."""
    return (Path(path) / STUDY_FILE).is_file()


class StudyAnalysis:
    """All models of a study: their RunAnalysis, the Mamba-1 vs Mamba-2 pairs, study-level tables."""

    def __init__(self, study_dir: Path | str, basis: str = "auto", peaks_file: Path | None = None,
                 use_calibration: bool = True) -> None:
        self.study_dir = Path(study_dir)
        try:
            self.manifest: dict[str, Any] = json.loads((self.study_dir / STUDY_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise RunDirectoryError(f"{self.study_dir / STUDY_FILE} is unreadable: {exc}",
                                    "is this a `mambaprof study` directory?") from exc
        self.runs: dict[str, RunAnalysis] = {}
        self.skipped: dict[str, str] = {}
        for entry in self.manifest.get("models", []):
            name, run_dir = entry["model"], entry.get("run_dir")
            if not run_dir or not entry.get("n_ok"):
                self.skipped[name] = entry.get("reason") or "no finished point"
                continue
            local = self.study_dir / Path(run_dir).name  # the study may have been moved since it ran
            self.runs[name] = RunAnalysis(local, basis, peaks_file, use_calibration)
        if not self.runs:
            raise RunDirectoryError(f"the study in {self.study_dir} has no model with a finished point",
                                    "see study.json for why each model stopped")
        self.basis, self.peaks_file, self.use_calibration = basis, peaks_file, use_calibration

    def family_of(self, name: str) -> str:
        """`mamba1`, `mamba2` or `mixed` for a model of the study."""
        return str(self.runs[name].record.get("model_family"))

    @cached_property
    def pairs(self) -> list[tuple[str, str]]:
        """(Mamba-1 model, Mamba-2 model) pairs, matched by size (parameters) in order."""
        def by_size(family: str) -> list[str]:
            names = [n for n in self.runs if self.family_of(n) == family]
            return sorted(names, key=lambda n: int(self.runs[n].record.get("n_params") or 0))

        return list(zip(by_size("mamba1"), by_size("mamba2"), strict=False))

    @cached_property
    def comparisons(self) -> list[RunComparison]:
        """A RunComparison per pair (A = Mamba-1, B = Mamba-2)."""
        return [RunComparison(self.runs[a].run_dir, self.runs[b].run_dir, self.basis, self.peaks_file,
                              self.use_calibration) for a, b in self.pairs]

    @cached_property
    def models(self) -> pd.DataFrame:
        """One row per model: family, layers, parameters, status, points ok / planned, device."""
        rows = []
        for entry in self.manifest.get("models", []):
            name = entry["model"]
            analysis = self.runs.get(name)
            record = analysis.record if analysis else {}
            rows.append({"model": name, "family": record.get("model_family"), "layers": record.get("n_layers"),
                         "params": record.get("n_params"), "status": entry.get("status"),
                         "points_ok": entry.get("n_ok"), "points": entry.get("n_points"),
                         "device": record.get("device_name"), "reason": entry.get("reason") or self.skipped.get(name)})
        return pd.DataFrame(rows)

    @cached_property
    def fidelity(self) -> pd.DataFrame:
        """Per model and point (from each run's point table): split vs original time (%), the original
        forward's own spread and regime, kernel share attributed, output check."""
        frames = []
        for name, analysis in self.runs.items():
            pts = analysis.points
            # the point table has every column (null where a run did not measure it: before schema 3, no bare split)
            frame = pts[["batch", "seqlen", "status", MARKED_FIDELITY, BARE_FIDELITY, *PAIRED_COLUMNS,
                         "fidelity_verdict", "original_spread_pct", "regime", "attributed_kernel_pct",
                         "output_check"]].copy()
            frame.insert(0, "model", name)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True).sort_values(["model", "batch", "seqlen"])

    def sentences(self) -> list[str]:
        """Study findings: each pair's comparison, then each model's own findings (prefixed by its name)."""
        out: list[str] = []
        for comparison in self.comparisons:
            out += comparison.sentences()
        for name, analysis in self.runs.items():
            out += [f"{name}: {s}" for s in analysis.sentences()]
        ok = self.fidelity[self.fidelity.status == "ok"]
        if not ok.empty and MARKED_FIDELITY in ok:
            col = fidelity_column(ok)
            ok = ok[ok[col].notna()]
            worst = ok.loc[ok[col].abs().idxmax()]
            within = int((ok[col].abs() <= FIDELITY_BUDGET_PCT).sum())
            what = {PAIRED_FIDELITY: "the component-split forward (without its markers, median of back-to-back "
                                     "pairs with the original)",
                    BARE_FIDELITY: "the component-split forward (without its markers)"}.get(
                col, "the component-split forward (with its markers)")
            over = ok[ok[col].abs() > FIDELITY_BUDGET_PCT]
            detail = f"; {interval_clause(ok)}" if col == PAIRED_FIDELITY else noise_clause(over, col)
            out.append(f"Fidelity: {what} stayed within {FIDELITY_BUDGET_PCT:.0f}% of the original at {within} of "
                       f"{len(ok)} points{detail}; the largest difference was {worst[col]:+.1f}% "
                       f"({worst.model}, batch {int(worst.batch)}, {int(worst.seqlen)} tokens).")
        return out
