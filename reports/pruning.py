"""Pruning what-if report: reads the `pruning` table of a run directory (never re-runs a model) and
renders the what-if table (speed, memory, accuracy and deltas vs unpruned), which score wins at equal
ratio (or that they tie), per-variant component times and a Pareto plot of throughput vs perplexity.
`mambaprof prune` prints it when it finishes; `mambaprof report` renders it from the run directory.

Ties: two scores at one ratio tie when their perplexities differ by less than the noise of the
comparison: TIE_SIGMAS (2) standard errors of the mean paired difference of their per-window NLLs
(`eval_window_nll`: every variant is scored on the same held-out windows), and never less than
TIE_FLOOR_PCT (0.1%, the numerics of a bf16 evaluation); runs without per-window NLLs (schema 1) use
TIE_FALLBACK_PCT (1%).
"""

from __future__ import annotations

import io
import itertools
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
from mambaprof.reports.findings import Finding, label
from mambaprof.reports.fmt import missing, ms, num, pct
from mambaprof.reports.views import View, run_facts
from mambaprof.storage.rundir import read_table
from mambaprof.taxonomy import component_order

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from mambaprof.reports.run_analysis import RunAnalysis

MIB = float(1 << 20)
#: standard errors of the paired per-window NLL difference below which two scores tie
TIE_SIGMAS = 2.0
#: perplexity gaps (%) below this always tie (numerical noise of a bf16 evaluation)
TIE_FLOOR_PCT = 0.1
#: noise (%) assumed when the run stores no per-window NLLs (written before schema version 2)
TIE_FALLBACK_PCT = 1.0
#: columns of `score_winners` besides one perplexity column per score
WINNER_COLUMNS = ("winner", "verdict", "best", "runner_up", "margin_pct", "noise_pct")
RANDOM_SOURCES = ("default", "preset")
#: short column headers of the per-variant component table (it must fit 100 columns)
SHORT = {"ssm_params": "params", "ssm_scan": "scan", "residual": "resid"}
_SALT = itertools.count()


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


def _f(value: object, spec: str, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "-"
    return format(value, spec) + suffix


def _si(value: object) -> str:
    """1234567 -> `1.23M` (3 significant digits with a k/M/G suffix)."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "-"
    v = float(value)
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.3g}"


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


# ---- display tables (one source for the terminal and the HTML) ---------------------------------------

def summary_view(df: pd.DataFrame, seqlen: int | None = None) -> View:
    """One row per variant at one sequence length: state size, speed, memory, accuracy (fits 100 columns)."""
    rows = at_seqlen(df, seqlen)
    length = int(rows.seqlen.iloc[0]) if len(rows) else 0
    batch = int(rows.batch.iloc[0]) if len(rows) else 0
    base = rows[rows.variant_id == 0]
    cache = base.cache_bytes.iloc[0] if len(base) else None
    cache_text = f" · unpruned decode cache {_f(cache / MIB if not missing(cache) else None, '.3g')} MiB"
    split = f" · {rows.per_layer.iloc[0]} per layer" if len(rows) else ""
    peak = bool(rows.peak_memory_delta_pct.notna().any()) if len(rows) else False  # measured on GPU only
    view = View(f"pruning what-if · prefill b={batch} L={length}{split}{cache_text} · deltas vs unpruned",
                ["variant", "N'", "tok/s", "speed", "dec ms", *(["Δpeak"] if peak else []), "Δcache", "ppl", "Δppl",
                 "copy", "recall"])
    for r in rows.itertuples():
        view.rows.append([
            variant_name(r.score, r.ratio, r.variant_id), _f(r.d_state_kept_mean, ".3g"),
            _si(r.prefill_tokens_per_s), _f(r.prefill_speedup, ".2f", "x"), _f(r.decode_ms_per_token, ".3g"),
            *([_f(r.peak_memory_delta_pct, "+.1f", "%")] if peak else []),
            _f(r.cache_bytes_delta_pct, "+.0f", "%"), _f(r.perplexity, ".4g"), _f(r.perplexity_delta_pct, "+.2f", "%"),
            _f(r.selective_copy_acc_pct, ".0f", "%"), _f(r.assoc_recall_acc_pct, ".0f", "%")])
    view.caption = ("N': mean kept d_state; speed: prefill throughput vs unpruned (timed interleaved); dec ms: "
                    "decode latency per token; " + ("Δpeak: prefill peak memory (weights + activations); "
                                                     if peak else "") +
                    "copy/recall: synthetic task accuracy (chance 6%/10%).")
    return view


def throughput_view(df: pd.DataFrame) -> View | None:
    """Prefill tokens/s and speedup per variant (rows) and sequence length (columns); None for one length."""
    seqlens = sorted(int(s) for s in df.seqlen.unique())
    if len(seqlens) < 2:
        return None
    batch = int(df.batch.iloc[0])
    view = View(f"prefill throughput by sequence length (batch {batch}): tokens/s (speedup vs unpruned)",
                ["variant", *[f"L={s}" for s in seqlens]])
    for vid, grp in df.groupby("variant_id", sort=True):
        by = grp.set_index("seqlen")
        first = grp.iloc[0]
        cells = [f"{_si(by.prefill_tokens_per_s.get(s))} ({_f(by.prefill_speedup.get(s), '.2f', 'x')})"
                 for s in seqlens]
        view.rows.append([variant_name(first.score, first.ratio, int(vid)), *cells])
    return view


def winners_view(df: pd.DataFrame) -> View | None:
    """`score_winners` as a table (None when no ratio has two scores)."""
    pivot = score_winners(df)
    if pivot.empty:
        return None
    scores = [c for c in pivot.columns if c not in WINNER_COLUMNS]
    view = View("perplexity by score at equal ratio (lower wins)",
                ["ratio", *scores, "winner", "runner-up", "noise"])
    for ratio, row in pivot.iterrows():
        view.rows.append([f"{ratio:g}", *[_f(row[s], ".4g") for s in scores], str(row["winner"]),
                          f"{row['runner_up']} {row['margin_pct']:+.2f}%", f"{row['noise_pct']:.2f}%"])
    view.caption = (f"tie: the runner-up's perplexity is within noise of the best ({TIE_SIGMAS:g} standard errors "
                    f"of their paired per-window NLL difference, at least {TIE_FLOOR_PCT:g}%).")
    return view


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


def component_view(analysis: RunAnalysis) -> View | None:
    """Per timed variant (rows): each block component's time, the blocks' total and its change vs unpruned,
    every number from that variant's own measurement (never summed across variants)."""
    timed = timed_variants(analysis)
    if not timed:
        return None
    times = {vid: variant_block_times(v) for vid, v in timed.items()}
    comps = [c for c in sorted({c for t in times.values() for c in t.index if c != "block"}, key=component_order)]
    ref = times.get(0)
    first = next(iter(timed.values()))
    seqlen, batch = int(first.points.seqlen.iloc[0]), int(first.points.batch.iloc[0])
    view = View(f"per-variant {analysis.basis} ms at L={seqlen}, batch {batch} (summed over the Mamba layers; "
                "each variant measured on its own)", ["variant", *[SHORT.get(c, label(c)) for c in comps], "block",
                                                      "Δblock", "Δscan"])
    for vid, t in times.items():
        d_block = _delta(t.get("block"), ref.get("block") if ref is not None else None)
        d_scan = _delta(t.get("ssm_scan"), ref.get("ssm_scan") if ref is not None else None)
        view.rows.append([timed[vid].data.variant or str(vid), *[ms(t.get(c)) for c in comps], ms(t.get("block")),
                          _f(d_block, "+.0f", "%"), _f(d_scan, "+.0f", "%")])
    shared = [f"{', '.join(names)}" for names in analysis.pruning.timing_groups.values() if len(names) > 1]
    short = ", ".join(f"{v}: {label(k)}" for k, v in SHORT.items() if k in comps)
    view.caption = f"Δ: vs unpruned{'; ' + short if short else ''}." + (
        f" Same state sizes per layer, measured once: {'; '.join(shared)}." if shared else "")
    return view


def _delta(value: Any, base: Any) -> float | None:
    if missing(value) or missing(base) or not base:
        return None
    return 100.0 * (float(value) / float(base) - 1.0)


def points_view(analysis: RunAnalysis) -> View | None:
    """Per timed variant: its component-split point's wall and kernel ms, regime, tokens/s and fidelity."""
    timed = timed_variants(analysis)
    if not timed:
        return None
    view = View("per-variant points (the component-split measurement of each variant)",
                ["variant", "seqlen", "wall ms", "kernel ms", "idle %", "regime", "tok/s", "split %", "check"])
    for v in timed.values():
        for r in v.points.itertuples():
            view.rows.append([v.data.variant or "-", str(r.seqlen), ms(r.wall_ms), ms(r.kernel_ms), pct(r.idle_pct),
                              str(r.regime or "-"), num(r.tokens_per_s, ",.0f"), num(r.split_vs_original_pct, "+.1f"),
                              str(r.output_check or "-")])
    view.caption = "split %: cost of the component-split forward vs the variant's own forward; check: outputs match."
    return view


def facts(analysis: RunAnalysis) -> list[tuple[str, str]]:
    """(name, value) pairs describing a prune run (the run facts, with the what-if instead of the sweep)."""
    pr = analysis.pruning
    df = pr.table
    config: dict[str, Any] = {}
    try:
        config = json.loads(analysis.record.get("config_json") or "{}")
    except (TypeError, ValueError):
        pass
    scores = ", ".join(s for s in dict.fromkeys(df.score) if s != "none") or "-"
    ratios = ", ".join(f"{r:g}" for r in sorted(set(df.ratio)))
    seqlens = ", ".join(str(s) for s in sorted(set(df.seqlen)))
    rows = [(k, v) for k, v in run_facts(analysis) if k != "sweep"]
    whatif = (f"ratios {ratios}; scores {scores}; {df.per_layer.iloc[0] if len(df) else '-'} per layer; prefill "
              f"seqlens {seqlens}, batch {int(df.batch.iloc[0]) if len(df) else '-'}; "
              f"{df.variant_id.nunique()} variants; recovery steps {config.get('recover_steps', 0)}; "
              f"eval {int(df.eval_tokens.max()) if df.eval_tokens.notna().any() else '-'} tokens")
    rows.insert(2, ("what-if", whatif))
    return rows


# ---- findings ----------------------------------------------------------------------------------------

def findings(analysis: RunAnalysis) -> list[Finding]:
    """The what-if's headline sentences: best prefill speedup, smallest decode cache, the score verdict per
    ratio, and what pruning does to the SSM scan vs the whole block (per variant)."""
    pr = analysis.pruning
    rows = at_seqlen(pr.table)
    out: list[Finding] = []
    pruned = rows[rows.variant_id > 0]
    if pruned.empty:
        return out
    length, batch = int(rows.seqlen.iloc[0]), int(rows.batch.iloc[0])
    fast = pruned.dropna(subset=["prefill_speedup"])
    if not fast.empty:
        r = fast.loc[fast.prefill_speedup.idxmax()]
        head = (f"Fastest pruned variant at {length} tokens (batch {batch})" if r.prefill_speedup > 1 else
                f"No pruned variant is faster than the unpruned model at {length} tokens (batch {batch}); the "
                "fastest")
        out.append(Finding("pruning_speed", f"{head}: {variant_name(r.score, r.ratio, 1)} (N' "
                           f"{r.d_state_kept_mean:.3g} of {int(r.d_state_original)}), {r.prefill_speedup:.2f}x "
                           f"the unpruned prefill throughput, decode cache {_f(r.cache_bytes_delta_pct, '+.0f', '%')}, "
                           f"perplexity {_f(r.perplexity_delta_pct, '+.2f', '%')}.", float(r.prefill_speedup), "x",
                           seqlen=length, batch=batch))
    small = pruned.dropna(subset=["cache_bytes_delta_pct"])
    if not small.empty:
        r = small.loc[small.cache_bytes_delta_pct.idxmin()]
        out.append(Finding("pruning_memory", f"Smallest decode cache: {variant_name(r.score, r.ratio, 1)}, "
                           f"{r.cache_bytes_delta_pct:+.0f}% vs unpruned (SSM state "
                           f"{_f(r.ssm_state_bytes_delta_pct, '+.0f', '%')}), perplexity "
                           f"{_f(r.perplexity_delta_pct, '+.2f', '%')}.", float(r.cache_bytes_delta_pct), "%",
                           batch=batch))
    caveat = (" (but see the caveat: this model has not learned enough for it to mean anything)"
              if pr.perplexity_means_nothing else "")
    for ratio, row in score_winners(pr.table).iterrows():
        if row.verdict == "tie":
            text = (f"At ratio {ratio:g}, the scores tie on perplexity: {row.winner[5:]} are within noise "
                    f"(runner-up {row.runner_up} {row.margin_pct:+.2f}% vs {row.best}, noise {row.noise_pct:.2f}%)")
        else:
            text = (f"At ratio {ratio:g}, {row.best} wins on perplexity ({row[row.best]:.4g}; runner-up "
                    f"{row.runner_up} {row.margin_pct:+.2f}%, above the {row.noise_pct:.2f}% noise)")
        out.append(Finding("pruning_score", text + caveat + ".", float(row.margin_pct), "%"))
    timed = timed_variants(analysis)
    if 0 in timed and len(timed) > 1:
        ref = variant_block_times(timed[0])
        vid = max((v for v in timed if v), key=lambda v: (pr.table[pr.table.variant_id == v].ratio.max(), -v))
        t = variant_block_times(timed[vid])
        d_scan, d_block = _delta(t.get("ssm_scan"), ref.get("ssm_scan")), _delta(t.get("block"), ref.get("block"))
        if d_block is not None:
            seqlen = int(timed[vid].points.seqlen.iloc[0])
            scan = (f"its SSM scan takes {ms(t.get('ssm_scan'))} ms vs {ms(ref.get('ssm_scan'))} ms unpruned "
                    f"({d_scan:+.0f}%), " if d_scan is not None else "")
            out.append(Finding("pruning_components", f"At {seqlen} tokens, {timed[vid].data.variant}: {scan}the Mamba "
                               f"blocks {d_block:+.0f}% ({analysis.basis} time; each variant measured on its own).",
                               d_block, "%", seqlen=seqlen, component="ssm_scan"))
    return out


# ---- summary table (report --parquet) ----------------------------------------------------------------

SUMMARY_COLUMNS = ("variant_id", "variant", "score", "ratio", "per_layer", "recover_steps", "d_state_kept_mean",
                   "states_removed_pct", "device", "dtype", "batch", "seqlen", "prefill_tokens_per_s",
                   "prefill_speedup", "decode_ms_per_token", "decode_tokens_per_s", "decode_speedup",
                   "peak_memory_bytes", "peak_memory_delta_pct", "cache_bytes", "cache_bytes_delta_pct",
                   "ssm_state_bytes_delta_pct", "perplexity", "perplexity_delta_pct", "selective_copy_acc_pct",
                   "selective_copy_acc_delta_pp", "assoc_recall_acc_pct", "assoc_recall_acc_delta_pp")


def summary_frame(analysis: RunAnalysis) -> pd.DataFrame:
    """Rows of `summary_pruning`: one per variant x prefill seqlen, with the score verdict at its ratio and
    the block / SSM-scan time of its own component measurement (in rows at that measurement's seqlen)."""
    pr = analysis.pruning
    df = pr.table
    out = df[[c for c in SUMMARY_COLUMNS if c in df.columns]].copy()
    out["variant"] = [variant_name(s, r, int(v)) for s, r, v in zip(df.score, df.ratio, df.variant_id, strict=True)]
    for col in ("run_id", "rank", "world_size"):
        out[col] = df[col]
    ranking = score_ranking(df).set_index("variant_id")
    for col, src in (("score_rank", "score_rank"), ("score_verdict", "verdict"),
                     ("perplexity_vs_best_pct", "perplexity_vs_best_pct"), ("tie_threshold_pct", "noise_pct")):
        out[col] = df.variant_id.map(ranking[src]) if len(ranking) else None
    timed = timed_variants(analysis)
    times = {vid: variant_block_times(v) for vid, v in timed.items()}
    seqlen_of = {vid: int(v.points.seqlen.iloc[0]) for vid, v in timed.items()}
    ref = times.get(0)
    for col, key in (("block_ms", "block"), ("ssm_scan_ms", "ssm_scan")):
        values, deltas = [], []
        for r in df.itertuples():
            t = times.get(int(r.timing_variant_id))
            here = t is not None and seqlen_of.get(int(r.timing_variant_id)) == int(r.seqlen)
            values.append(t.get(key) if here else None)
            deltas.append(_delta(t.get(key), ref.get(key)) if here and ref is not None else None)
        out[col] = values
        out[col.replace("_ms", "_delta_pct")] = deltas
    out["time_basis"] = analysis.basis if timed else None
    out["accuracy_caveat"] = pr.caveat
    return out.reset_index(drop=True)


# ---- Pareto plot -------------------------------------------------------------------------------------

def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points (throughput, perplexity) not dominated by another (higher throughput and lower perplexity)."""
    front = []
    for x, y in sorted(points, key=lambda p: (-p[0], p[1])):
        if not front or y < front[-1][1]:
            front.append((x, y))
    return sorted(front)


def pareto_figure(df: pd.DataFrame, seqlen: int | None = None, caveat: bool = False) -> Figure:
    """Throughput (tokens/s) vs perplexity per variant at one prefill length, Pareto front dashed; caveat:
    say on the plot that the perplexity axis measures nothing (see `perplexity_means_nothing`)."""
    from matplotlib.figure import Figure

    rows = at_seqlen(df, seqlen).dropna(subset=["prefill_tokens_per_s", "perplexity"])
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    markers = {"none": "*", "delta": "o", "energy": "s", "magnitude": "^", "random": "x"}
    for score, grp in rows.groupby("score"):
        ax.scatter(grp.prefill_tokens_per_s, grp.perplexity, marker=markers.get(score, "."), s=60 if score != "none"
                   else 160, label="unpruned" if score == "none" else score)
        for r in grp.itertuples():
            if r.variant_id:
                ax.annotate(f"{r.ratio:g}", (r.prefill_tokens_per_s, r.perplexity), textcoords="offset points",
                            xytext=(4, 3), fontsize=7)
    front = pareto_front(list(zip(rows.prefill_tokens_per_s, rows.perplexity, strict=True)))
    if len(front) > 1:
        ax.plot([p[0] for p in front], [p[1] for p in front], "k--", lw=0.8, label="Pareto front")
    if len(rows):
        ax.set_title(f"prefill b={int(rows.batch.iloc[0])} L={int(rows.seqlen.iloc[0])} on "
                     f"{rows.device.iloc[0]} ({rows.dtype.iloc[0]}); labels: ratio")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no variant has both a throughput and a perplexity", ha="center", transform=ax.transAxes)
    if caveat:
        ax.text(0.5, 0.02, "caveat: the model has not learned; perplexity differences mean nothing", ha="center",
                va="bottom", transform=ax.transAxes, fontsize=8, color="#b3261e")
    ax.set_xlabel("prefill throughput (tokens/s)")
    ax.set_ylabel("held-out perplexity (per byte)")
    ax.grid(alpha=0.3)
    return fig


def pareto_plot(df: pd.DataFrame, out_base: Path, seqlen: int | None = None, caveat: bool = False) -> list[Path]:
    """Write the Pareto plot (see pareto_figure) to out_base.png and out_base.svg."""
    fig = pareto_figure(df, seqlen, caveat)
    out_base = Path(out_base)
    paths = [out_base.with_suffix(".png"), out_base.with_suffix(".svg")]
    for path in paths:
        fig.savefig(path, dpi=130)
    return paths


def pareto_svg(df: pd.DataFrame, seqlen: int | None = None, caveat: bool = False) -> str:
    """The Pareto plot as one inline `<svg>` string (text kept as text, ids salted per figure)."""
    from matplotlib import rc_context

    buf = io.StringIO()
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": f"mambaprof-pareto-{next(_SALT)}"}):
        pareto_figure(df, seqlen, caveat).savefig(buf, format="svg")
    text = buf.getvalue()
    return text[text.index("<svg"):]
