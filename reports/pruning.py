"""Pruning what-if analysis: reads the `pruning` table of a run directory (never re-runs a model) and
decides which score wins at equal ratio (or that they tie), why the accuracy deltas may mean nothing, and
which variants have their own component measurement. Its tables are drawn by `views` (`pruning_*_view`),
its sentences written by `findings.pruning_findings`, its Pareto plot by `plots.pareto_svg` /
`plots.pareto_plot`, its summary by `summary_parquet.pruning_summary_frame`.
`mambaprof prune` prints it when it finishes; `mambaprof report` renders it from the run directory.

Ties: two scores at one ratio tie when their perplexities differ by less than the noise of the
comparison: TIE_SIGMAS (2) standard errors of the mean paired difference of their per-window NLLs
(`eval_window_nll`: every variant is scored on the same held-out windows), and never less than
TIE_FLOOR_PCT (0.1%, the numerics of a bf16 evaluation); runs without per-window NLLs (schema 1) use
TIE_FALLBACK_PCT (1%).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mambaprof.evaluation.chance import ANSWERS_PER_EPISODE, accuracy_caveat, perplexity_at_chance
from mambaprof.reports.attribution import BLOCK_FAMILIES
from mambaprof.reports.fmt import missing
from mambaprof.storage.rundir import read_table
from mambaprof.taxonomy import component_order

if TYPE_CHECKING:
    from mambaprof.reports.run_analysis import RunAnalysis

#: standard errors of the paired per-window NLL difference below which two scores tie
TIE_SIGMAS = 2.0
#: perplexity gaps (%) below this always tie (numerical noise of a bf16 evaluation)
TIE_FLOOR_PCT = 0.1
#: noise (%) assumed when the run stores no per-window NLLs (written before schema version 2)
TIE_FALLBACK_PCT = 1.0
#: columns of `score_winners` besides one perplexity column per score
WINNER_COLUMNS = ("winner", "verdict", "best", "runner_up", "margin_pct", "noise_pct")
RANDOM_SOURCES = ("default", "preset")


def has_pruning(run_dir: Path | str) -> bool:
    """True when the run directory has a `pruning` table (written by `mambaprof prune`)."""
    return (Path(run_dir) / "pruning").is_dir()


def read_pruning(run_dir: Path) -> pd.DataFrame:
    """The `pruning` table of a run directory as a DataFrame, ordered by variant and seqlen."""
    df = read_table(run_dir, "pruning").to_pandas()
    return df.sort_values(["variant_id", "seqlen"]).reset_index(drop=True)


def at_seqlen(df: pd.DataFrame, seqlen: int | None = None) -> pd.DataFrame:
    """Rows of one prefill sequence length (default: the largest measured)."""
    if df.empty:
        return df
    seqlen = int(df.seqlen.max()) if seqlen is None else seqlen
    return df[df.seqlen == seqlen]


def variant_name(score: str, ratio: float, variant_id: int) -> str:
    """`unpruned` or `score@ratio` (the per-layer split is the same for every variant of a run)."""
    return "unpruned" if variant_id == 0 else f"{score}@{ratio:g}"


class PruningAnalysis:
    """The what-if of one prune run: its `pruning` table (ordered by variant and seqlen) and run record."""

    def __init__(self, table: pd.DataFrame, record: Mapping[str, Any]) -> None:
        self.table = table
        self.record = record

    @classmethod
    def load(cls, run_dir: Path | str, record: Mapping[str, Any]) -> PruningAnalysis | None:
        """The what-if of a run directory, or None when it has no `pruning` table."""
        return cls(read_pruning(Path(run_dir)), record) if has_pruning(run_dir) else None

    @cached_property
    def caveat(self) -> str | None:
        """Why the accuracy deltas measure nothing (see `run_caveat`), or None."""
        return run_caveat(self.table, self.record)

    @property
    def perplexity_means_nothing(self) -> bool:
        """True when perplexity comparisons (score verdicts, the Pareto plot) measure nothing: random weights
        or an unpruned perplexity at chance."""
        return perplexity_means_nothing(self.table, self.record.get("model_source"))

    def name(self, variant_id: int) -> str:
        """`unpruned` or `score@ratio` of a variant id."""
        rows = self.table[self.table.variant_id == variant_id]
        return variant_name(rows.score.iloc[0], rows.ratio.iloc[0], variant_id) if len(rows) else str(variant_id)

    @property
    def timing_groups(self) -> dict[int, list[str]]:
        """Timed variant id -> names of the variants measured on it (same state sizes per layer), in order."""
        first = self.table.drop_duplicates("variant_id")
        groups: dict[int, list[str]] = {}
        for r in first.itertuples():
            groups.setdefault(int(r.timing_variant_id), []).append(variant_name(r.score, r.ratio, int(r.variant_id)))
        return groups

    @property
    def component_points(self) -> dict[int, int]:
        """Timed variant id -> `point_id` of its component measurement (variants whose measurement finished)."""
        rows = self.table.dropna(subset=["component_point_id"])
        rows = rows[rows.variant_id == rows.timing_variant_id].drop_duplicates("variant_id")
        return {int(r.variant_id): int(r.component_point_id) for r in rows.itertuples()}


# ---- scores at equal ratio: winner or tie ------------------------------------------------------------

def _windows(value: Any) -> np.ndarray | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    arr = np.asarray(value, dtype=float)
    return arr if arr.ndim == 1 and arr.size else None


def noise_pct(best_windows: Any, other_windows: Any) -> float:
    """Perplexity gap (%) within which two variants scored on the same windows tie: TIE_SIGMAS standard
    errors of the mean paired per-window NLL difference (nats/token) as a perplexity ratio, at least
    TIE_FLOOR_PCT; TIE_FALLBACK_PCT when either has no per-window NLLs."""
    a, b = _windows(best_windows), _windows(other_windows)
    if a is None or b is None or a.size != b.size or a.size < 2:
        return TIE_FALLBACK_PCT
    diff = b - a
    se = float(np.std(diff, ddof=1)) / math.sqrt(diff.size)
    return max(100.0 * math.expm1(TIE_SIGMAS * se), TIE_FLOOR_PCT)


def score_ranking(df: pd.DataFrame) -> pd.DataFrame:
    """One row per pruned variant: its rank by perplexity among the scores at its ratio (1 = lowest),
    verdict (`winner`, `tie`, `behind`, `only`), perplexity_vs_best_pct and noise_pct (the tie threshold:
    vs the best for the others, vs the runner-up for the best)."""
    rows = at_seqlen(df)
    rows = rows[(rows.variant_id > 0) & rows.perplexity.notna()]
    cols = ["variant_id", "ratio", "score", "perplexity", "score_rank", "verdict", "perplexity_vs_best_pct",
            "noise_pct"]
    out: list[dict[str, Any]] = []
    has_windows = "eval_window_nll" in rows.columns
    for ratio, grp in rows.groupby("ratio"):
        grp = grp.sort_values(["perplexity", "variant_id"])
        best = grp.iloc[0]
        best_w = best.eval_window_nll if has_windows else None
        tied_best = False
        ranked = []
        for rank, r in enumerate(grp.itertuples(), start=1):
            margin = 100.0 * (r.perplexity / best.perplexity - 1.0)
            noise = noise_pct(best_w, r.eval_window_nll if has_windows else None) if rank > 1 else None
            tie = rank > 1 and margin < noise
            tied_best |= tie
            ranked.append([r.variant_id, ratio, r.score, r.perplexity, rank, "tie" if tie else "behind", margin,
                           noise])
        if len(ranked) == 1:
            ranked[0][5] = "only"
        else:
            ranked[0][5] = "tie" if tied_best else "winner"
            ranked[0][7] = ranked[1][7]
        out += [dict(zip(cols, r, strict=True)) for r in ranked]
    return pd.DataFrame(out, columns=cols)


def score_winners(df: pd.DataFrame) -> pd.DataFrame:
    """Per ratio with more than one score: the perplexity of each score (one column each), and `winner`
    (the score, or `tie: a, b` when the runner-up is within noise), `verdict`, `best`, `runner_up`,
    `margin_pct` (runner-up over best, %) and `noise_pct` (the tie threshold, %)."""
    ranking = score_ranking(df)
    ranking = ranking[ranking.verdict != "only"]
    if ranking.empty:
        return pd.DataFrame()
    pivot = ranking.pivot_table(index="ratio", columns="score", values="perplexity", aggfunc="first")
    pivot.columns.name = None
    for col in WINNER_COLUMNS:
        pivot[col] = None
    for ratio, grp in ranking.groupby("ratio"):
        grp = grp.sort_values("score_rank")
        best, runner = grp.iloc[0], grp.iloc[1]
        tied = [best.score, *grp[(grp.score_rank > 1) & (grp.verdict == "tie")].score]
        pivot.loc[ratio, list(WINNER_COLUMNS)] = [
            f"tie: {', '.join(tied)}" if best.verdict == "tie" else best.score, best.verdict, best.score,
            runner.score, runner.perplexity_vs_best_pct, runner.noise_pct]
    return pivot


# ---- the caveat --------------------------------------------------------------------------------------

def run_caveat(df: pd.DataFrame, record: Mapping[str, Any]) -> str | None:
    """Why this run's accuracy deltas measure nothing (None when its unpruned model has learned): the
    stored `accuracy_caveat`; for runs written before that column, recomputed from the unpruned row."""
    if df.empty:
        return None
    if "accuracy_caveat" in df.columns:
        stored = df.accuracy_caveat.dropna()
        return str(stored.iloc[0]) if len(stored) else None
    base = df[df.variant_id == 0]
    if base.empty:
        return None
    row = base.iloc[0]
    try:
        episodes = int(json.loads(record.get("config_json") or "{}").get("task_episodes", 256))
    except (TypeError, ValueError):
        episodes = 256
    accuracy = {t: None if missing(row.get(f"{t}_acc_pct")) else float(row.get(f"{t}_acc_pct"))
                for t in ANSWERS_PER_EPISODE}
    return accuracy_caveat(None if missing(row.perplexity) else float(row.perplexity), accuracy,
                           {t: n * episodes for t, n in ANSWERS_PER_EPISODE.items()},
                           random_weights=record.get("model_source") in RANDOM_SOURCES)


def perplexity_means_nothing(df: pd.DataFrame, model_source: str | None) -> bool:
    """True when the model has random weights (a preset or the default) or the unpruned perplexity is at
    chance (mambaprof.evaluation.chance): perplexity differences between variants then mean nothing."""
    base = df[(df.variant_id == 0) & df.perplexity.notna()] if len(df) else df
    return model_source in RANDOM_SOURCES or (not base.empty and perplexity_at_chance(float(base.perplexity.iloc[0])))


def timed_variants(analysis: RunAnalysis) -> dict[int, RunAnalysis]:
    """The variants of a prune run that have their own component measurement, by variant id."""
    return {vid: v for vid, v in analysis.variants.items() if not v.components.empty}


def variant_block_times(variant: RunAnalysis) -> pd.Series:
    """Time (ms, on the analysis' basis) per block component summed over the Mamba layers of one variant's
    own measurement, plus `block` (their sum)."""
    comps = variant.components
    block = comps[comps.family.isin(BLOCK_FAMILIES)]
    times = block.groupby("component").time_ms.sum(min_count=1)
    times = times.reindex(sorted(times.index, key=component_order))
    times["block"] = times.sum(min_count=1)
    return times


def delta_pct(value: Any, base: Any) -> float | None:
    """Change of `value` over `base` in %, None when either is missing or base is 0."""
    if missing(value) or missing(base) or not base:
        return None
    return 100.0 * (float(value) / float(base) - 1.0)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points (throughput, perplexity) not dominated by another (higher throughput and lower perplexity)."""
    front = []
    for x, y in sorted(points, key=lambda p: (-p[0], p[1])):
        if not front or y < front[-1][1]:
            front.append((x, y))
    return sorted(front)
