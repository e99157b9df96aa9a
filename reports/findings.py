"""Findings in words, computed from the analyses (the report's headline; `mambaprof study` reuses them).

Every sentence carries the number behind it (`value`, `unit`) so a reader or a test can check it
against the tables.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from mambaprof.paired import OUTSIDE, UNDECIDED, WITHIN, interval_verdict
from mambaprof.reports import noise, pruning
from mambaprof.reports.fmt import mib, num, rate
from mambaprof.reports.fmt import ms as fmt_ms
from mambaprof.reports.load import FAMILY_LABELS
from mambaprof.reports.peaks import DevicePeaks
from mambaprof.reports.roofline import ABOVE_ROOF_PCT, roofline_note
from mambaprof.reports.scaling import GROUP_PROJECTIONS, Crossover

if TYPE_CHECKING:
    from mambaprof.reports.run_analysis import RunAnalysis

COMPONENT_LABELS = {"ssm_scan": "SSM scan", "ssm_params": "SSM params", "in_proj": "in_proj",
                    "out_proj": "out_proj", "conv1d": "conv1d", "gating": "gating", "norm": "norm",
                    "residual": "residual", "embedding": "embedding", "lm_head": "lm_head",
                    "communication": "communication", "other": "other", "block": "block",
                    "forward": "forward (all components)", "model norm": "final norm (model)",
                    GROUP_PROJECTIONS: "projections"}
#: A point whose split forward costs more than this (%) over the original is outside the fidelity budget.
FIDELITY_BUDGET_PCT = 5.0
#: an extrapolated crossover further than this factor beyond the longest length measured is stated as untrusted
TRUSTED_EXTRAPOLATION = 16


@dataclass(frozen=True)
class Finding:
    """One sentence and the number behind it."""

    kind: str
    text: str
    value: float | None = None
    unit: str | None = None
    family: str | None = None
    batch: int | None = None
    seqlen: int | None = None
    component: str | None = None

    def as_row(self) -> dict[str, Any]:
        """The finding as a dict (a summary_findings row without the identity columns)."""
        return asdict(self)


def label(component: str) -> str:
    """Display name of a component (`ssm_scan` -> `SSM scan`)."""
    return COMPONENT_LABELS.get(component, component)


def family_label(family: str) -> str:
    """`mamba1` -> `Mamba-1`."""
    return FAMILY_LABELS.get(family, family)


def tokens(value: float) -> str:
    """A sequence length in words: exact when whole, else about 3 significant digits (`about 2,350`)."""
    if float(value).is_integer():
        return f"{int(value)}"
    magnitude = 10 ** max(0, int(math.floor(math.log10(abs(value)))) - 2)
    rounded = round(value / magnitude) * magnitude
    return f"about {rounded:,.0f}"


def _pct(value: float) -> str:
    return f"{value:.0f}%" if value >= 1 else f"{value:.1f}%"


def _exponent(scaling: pd.DataFrame, family: str, batch: int, component: str) -> float | None:
    """The fitted exponent of one component, None when there is none or its fit is flagged (summary_scaling
    `fit_flag`: negative, carried by one point, or over two lengths only)."""
    row = scaling[(scaling.family == family) & (scaling.batch == batch) & (scaling.component == component)]
    if row.empty or pd.isna(row.exponent.iloc[0]):
        return None
    if "fit_flag" in row and isinstance(row.fit_flag.iloc[0], str):
        return None
    return float(row.exponent.iloc[0])


def _untrusted(scaling: pd.DataFrame, family: str, batch: int, component: str) -> str:
    """`, no exponent stated (...)` when the component's fit is flagged, else ``."""
    row = scaling[(scaling.family == family) & (scaling.batch == batch) & (scaling.component == component)]
    if row.empty or "fit_flag" not in row or not isinstance(row.fit_flag.iloc[0], str):
        return ""
    return f", no exponent stated (the fit {row.fit_flag.iloc[0]})"


def share_findings(components: pd.DataFrame, scaling: pd.DataFrame, basis: str,
                   share_noise: pd.DataFrame | None = None) -> list[Finding]:
    """Per block family and batch, at the longest length: the SSM scan's share of block time with its
    exponent (where the fit is trusted), and the dominant component when that is not the scan; with
    `share_noise` (noise.share_noise), each sentence states the noise it rests on and says when that noise is
    large enough to change the share or the ranking."""
    out: list[Finding] = []
    block = components[components.share_of_block_pct.notna()]
    for (family, batch), grp in block.groupby(["family", "batch"]):
        longest = grp[grp.seqlen == grp.seqlen.max()]
        per_comp = longest.groupby("component").share_of_block_pct.mean().sort_values(ascending=False)
        if per_comp.empty:
            continue
        seqlen = int(longest.seqlen.iloc[0])
        where = f"of {family_label(family)} block {basis} time at {seqlen} tokens (batch {int(batch)})"
        for component, kind in (("ssm_scan", "scan"), (per_comp.index[0], "dominant")):
            if component not in per_comp or (kind == "dominant" and component == "ssm_scan"):
                continue
            share = float(per_comp[component])
            exp = _exponent(scaling, family, int(batch), component)
            tail = f", exponent {exp:.2f}" if exp is not None else _untrusted(scaling, family, int(batch), component)
            if share_noise is not None:
                rows = share_noise[(share_noise.family == family) & (share_noise.batch == batch)
                                   & (share_noise.seqlen == seqlen)]
                rows = rows[rows.point_id == rows.point_id.iloc[0]] if len(rows) else rows
                tail += noise.noise_clause(rows, component, share, per_comp.index[0], basis, label)
            head = f"{label(component)}:" if kind == "scan" else f"Largest component: {label(component)},"
            out.append(Finding(kind, f"{head} {_pct(share)} {where}{tail}.", share, "%",
                               family, int(batch), seqlen, component))
    return out


def crossover_findings(crossovers: list[Crossover], scaling: pd.DataFrame) -> list[Finding]:
    """Where the SSM scan overtakes the projections, per family and batch."""
    out = []
    for c in crossovers:
        fam = family_label(c.family)
        span = f"{c.seqlen_min}-{c.seqlen_max}"
        head = f"{fam} (batch {c.batch}): SSM scan"
        if c.status == "measured":
            text = f"{head} overtakes the projections (in_proj + SSM params + out_proj) at {tokens(c.seqlen)} tokens."
        elif c.status == "always":
            text = f"{head} takes longer than the projections at every measured length ({span} tokens)."
        elif c.status == "extrapolated" and (_untrusted(scaling, c.family, c.batch, "ssm_scan")
                                             or _untrusted(scaling, c.family, c.batch, GROUP_PROJECTIONS)):
            why = (_untrusted(scaling, c.family, c.batch, "ssm_scan")
                   or _untrusted(scaling, c.family, c.batch, GROUP_PROJECTIONS)).split("(", 1)[1].rstrip(")")
            text = (f"{head} stays below the projections over {span} tokens; no crossover is extrapolated: {why}.")
        elif c.status == "extrapolated" and c.seqlen_max and c.seqlen > TRUSTED_EXTRAPOLATION * c.seqlen_max:
            es = _exponent(scaling, c.family, c.batch, "ssm_scan")
            ep = _exponent(scaling, c.family, c.batch, GROUP_PROJECTIONS)
            grow = f" (exponents {es:.2f} vs {ep:.2f})" if es is not None and ep is not None else ""
            text = (f"{head} stays below the projections over {span} tokens and grows only slightly faster{grow}: "
                    f"the fits cross at {tokens(c.seqlen)} tokens, more than {TRUSTED_EXTRAPOLATION}x "
                    "beyond the sweep, too far to trust.")
        elif c.status == "extrapolated":
            text = (f"{head} stays below the projections over {span} tokens; the fitted exponents put the "
                    f"crossover at {tokens(c.seqlen)} tokens (extrapolated).")
        elif c.status == "never":
            es = _exponent(scaling, c.family, c.batch, "ssm_scan")
            ep = _exponent(scaling, c.family, c.batch, GROUP_PROJECTIONS)
            grow = f" (exponents {es:.2f} vs {ep:.2f})" if es is not None and ep is not None else ""
            text = f"{head} stays below the projections over {span} tokens and grows no faster{grow}: no crossover."
        else:
            text = f"{head}: too few lengths to place a crossover."
        out.append(Finding("crossover", text, c.seqlen, "tokens", c.family, c.batch, None, "ssm_scan"))
    return out


def regime_findings(points: pd.DataFrame, on_gpu: bool) -> list[Finding]:
    """How many points are launch-bound, which, and what would help."""
    ok = points[points.status == "ok"]
    bound = ok[ok.regime == "launch-bound"]
    if ok.empty:
        return []
    if bound.empty:
        worst = float(ok.idle_pct.max()) if ok.idle_pct.notna().any() else float("nan")
        text = (f"No point is launch-bound (wall time under 2x kernel time everywhere; idle at most "
                f"{worst:.0f}%).")
        return [Finding("regime", text, 0.0, "points")]
    which = "; ".join(f"batch {int(b)} at {', '.join(str(int(s)) for s in g.seqlen)} tokens"
                      for b, g in bound.groupby("batch"))
    idle = float(bound.idle_pct.max())
    idle_word = "GPU idle" if on_gpu else "host overhead"
    text = (f"{len(bound)} of {len(ok)} points are launch-bound (wall time at least 2x kernel time): {which}; "
            f"{idle_word} up to {idle:.0f}% of the forward. What helps: {bound.advice.iloc[0]}.")
    return [Finding("regime", text, float(len(bound)), "points")]


def roofline_findings(components: pd.DataFrame, peaks: DevicePeaks | None, device_name: str, dtype: str,
                      basis: str) -> list[Finding]:
    """The peaks used, then for the SSM scan and the largest GEMM of each family at its longest point:
    achieved rates, share of the roof and the verdict."""
    if peaks is None or peaks.tflops(dtype) is None or not peaks.gb_per_s:
        text = (f"No {dtype} peaks known for {device_name}: roofline verdicts need `mambaprof calibrate` on that "
                "machine or --peaks FILE.")
        return [Finding("peaks", text)]
    tf, bw = peaks.tflops(dtype), peaks.gb_per_s
    out = [Finding("peaks", f"Peaks: {rate(tf)} TFLOP/s ({dtype}) and {rate(bw)} GB/s, from {peaks.describe()}.",
                   tf, "TFLOP/s")]
    block = components[components.share_of_block_pct.notna()]
    for (family, batch), grp in block.groupby(["family", "batch"]):
        longest = grp[grp.seqlen == grp.seqlen.max()]
        for component in ("ssm_scan", "in_proj"):
            row = longest[longest.component == component]
            if row.empty or pd.isna(row.roof_pct.iloc[0]):
                continue
            r = row.iloc[0]
            caveat = f" ({roofline_note(r)})" if r.roof_pct > ABOVE_ROOF_PCT else ""
            text = (f"{family_label(family)} {label(component)} at {int(r.seqlen)} tokens (batch {int(batch)}): "
                    f"{rate(r.achieved_gb_per_s)} GB/s and {rate(r.achieved_tflop_per_s)} TFLOP/s on {basis} time, "
                    f"{r.roof_pct:.0f}% of its roof, {r.verdict} (intensity {rate(r.intensity_flop_per_byte)} "
                    f"FLOP/byte, ridge {rate(r.ridge_flop_per_byte)}){caveat}.")
            out.append(Finding("roofline", text, float(r.roof_pct), "%", family, int(batch), int(r.seqlen),
                               component))
    return out


#: the split forward without markers vs the original (schema 3 on): the split's own fidelity, from two medians
BARE_FIDELITY = "split_bare_vs_original_pct"
#: the split forward with its markers vs the original (every schema)
MARKED_FIDELITY = "split_vs_original_pct"
#: the split without markers vs the original as the median of back-to-back pairs, with the confidence
#: interval of that median (schema 5 on)
PAIRED_FIDELITY = "split_bare_paired_pct"
CI_LOW, CI_HIGH = "split_bare_ci_low_pct", "split_bare_ci_high_pct"
PAIRED_COLUMNS = ("fidelity_pairs", PAIRED_FIDELITY, CI_LOW, CI_HIGH)


def fidelity_column(points: pd.DataFrame) -> str:
    """The column that judges fidelity: the paired split without markers where the run timed pairs (schema 5
    on), else the split without markers from medians (schema 3-4), else the split with its markers."""
    for col in (PAIRED_FIDELITY, BARE_FIDELITY):
        if col in points.columns and points[col].notna().any():
            return col
    return MARKED_FIDELITY


def fidelity_verdicts(points: pd.DataFrame) -> pd.Series:
    """Per point of a point table: `within` when the confidence interval of the paired fidelity lies inside
    ±FIDELITY_BUDGET_PCT, `outside` when it lies wholly beyond one bound, `undecided` when it straddles a
    bound (the host's noise is too large to tell at that many pairs); null without an interval (before
    schema 5)."""
    out = pd.Series(None, index=points.index, dtype="object")
    if not {CI_LOW, CI_HIGH} <= set(points.columns):
        return out
    lo, hi = points[CI_LOW].astype(float), points[CI_HIGH].astype(float)
    known = lo.notna() & hi.notna()
    out[known] = [interval_verdict(a, b, FIDELITY_BUDGET_PCT) for a, b in zip(lo[known], hi[known], strict=True)]
    return out


def reference_spread_pct(points: pd.DataFrame) -> pd.Series:
    """Per point of a `points` table, how much the original forward itself varied: (slowest - fastest timed
    repeat) / median, in %. A split-vs-original difference inside it cannot be told from the reference's noise."""
    if not {"original_ms_min", "original_ms_max", "original_ms_median"} <= set(points.columns):
        return pd.Series(float("nan"), index=points.index, dtype="float64")
    median = points.original_ms_median.astype(float)
    return 100.0 * (points.original_ms_max - points.original_ms_min).astype(float) / median.where(median > 0)


def noise_clause(over: pd.DataFrame, col: str) -> str:
    """` (k of n inside ...)`: whether the differences in `col` of these summary point rows (the point table:
    `original_spread_pct`, `regime`) lie inside the original forward's own spread."""
    if over.empty or "original_spread_pct" not in over or over.original_spread_pct.isna().all():
        return ""
    spread = over.original_spread_pct.astype(float)
    inside = int((over[col].abs() <= spread).sum())
    regime = f", {int((over.regime == 'launch-bound').sum())} of them launch-bound" if "regime" in over else ""
    return (f" ({inside} of {len(over)} inside the original forward's own spread between its fastest and slowest "
            f"repeat, {spread.min():.0f}-{spread.max():.0f}% there{regime})")


def _span(values: pd.Series) -> str:
    """`is +1.0%` or `ranges +0.2% to +3.4%`."""
    lo, hi = f"{values.min():+.1f}%", f"{values.max():+.1f}%"
    return f"is {lo}" if lo == hi else f"ranges {lo} to {hi}"


#: points listed by name in a fidelity sentence before the rest are counted
MAX_LISTED_POINTS = 6


def _where(rows: pd.DataFrame, with_interval: bool = False) -> str:
    """`batch 1 x 64, batch 8 x 512` (with each point's interval: `batch 1 x 64 [-7.1%, +2.0%]`; prefixed by the
    model where rows carry one; past MAX_LISTED_POINTS the rest are counted)."""
    parts = []
    for r in rows.head(MAX_LISTED_POINTS).itertuples():
        model = f"{r.model} " if "model" in rows.columns else ""
        interval = f" [{getattr(r, CI_LOW):+.1f}%, {getattr(r, CI_HIGH):+.1f}%]" if with_interval else ""
        parts.append(f"{model}batch {int(r.batch)} x {int(r.seqlen)}{interval}")
    if len(rows) > MAX_LISTED_POINTS:
        parts.append(f"and {len(rows) - MAX_LISTED_POINTS} more")
    return ", ".join(parts)


def interval_clause(ok: pd.DataFrame) -> str:
    """How the confidence intervals of the paired fidelity of these ok point rows sit against the budget:
    `its 95% interval lies inside the ±5% budget at 70 of 72 points, undecided at 2 (...)`."""
    verdicts = fidelity_verdicts(ok)
    known = ok[verdicts.notna()]
    if known.empty:
        return ""
    pairs = known["fidelity_pairs"].astype(float) if "fidelity_pairs" in known else pd.Series(dtype=float)
    level = "95% " if not pairs.empty and pairs.min() >= 6 else ""
    within = int((verdicts == WITHIN).sum())
    text = f"its {level}confidence interval lies inside the ±{FIDELITY_BUDGET_PCT:.0f}% budget at "
    text += "every point" if within == len(known) else f"{within} of {len(known)} points"
    verdict_words = ((OUTSIDE, "lies wholly outside it"), (UNDECIDED, "straddles a bound (noise too large to tell)"))
    for verdict, how in verdict_words:
        rows = known[verdicts[known.index] == verdict]
        if len(rows):
            text += f"; it {how} at {len(rows)} ({_where(rows, with_interval=True)})"
    if not pairs.empty:
        text += (f"; {int(pairs.min())}-{int(pairs.max())} back-to-back pairs per point" if pairs.min() != pairs.max()
                 else f"; {int(pairs.min())} back-to-back pairs per point")
    return text


def fidelity_findings(points: pd.DataFrame) -> list[Finding]:
    """The split forward's output check and its cost against the original forward (the split alone where
    the run timed it without markers, as a paired median with its confidence interval where the run timed
    pairs; the markers' own cost stated beside it)."""
    ok = points[points.status == "ok"]
    if ok.empty or MARKED_FIDELITY not in ok:
        return []
    col = fidelity_column(ok)
    values = ok[col]
    if values.isna().all():
        return []
    failed = int((ok.output_check == "fail").sum())
    over = ok[values.abs() > FIDELITY_BUDGET_PCT]
    check = ("The split forward's output matched the original at every point" if failed == 0 else
             f"The split forward's output differed from the original at {failed} point(s)")
    where = {PAIRED_FIDELITY: " (without markers, median of back-to-back pairs)",
             BARE_FIDELITY: " (without markers)"}.get(col, "")
    cost = f"its cost vs the original forward{where} {_span(values)}"
    if col == PAIRED_FIDELITY:
        budget = f"; {interval_clause(ok)}"
    else:
        budget = (f", outside the ±{FIDELITY_BUDGET_PCT:.0f}% budget at {len(over)} point(s) ({_where(over)})"
                  f"{noise_clause(over, col)}"
                  if len(over) else f", within the ±{FIDELITY_BUDGET_PCT:.0f}% budget")
    markers = ""
    if col != MARKED_FIDELITY and ok[MARKED_FIDELITY].notna().any():
        markers = (f"; with its timing markers the cost {_span(ok[MARKED_FIDELITY])} (the markers' host cost, "
                   "which a launch-bound forward shows in full)")
    worst = float(values.loc[values.abs().idxmax()])
    return [Finding("fidelity", f"{check}; {cost}{budget}{markers}.", worst, "%")]


def host_findings(points: pd.DataFrame) -> list[Finding]:
    """One finding when the run's own repeats show a loaded host (noise.host_load), stating the spread."""
    load = noise.host_load(points)
    if not load.loaded:
        return []
    spread = points.original_spread_pct.astype(float)
    return [Finding("host", f"Host {load.text}.", float(spread.max()), "%")]


def status_findings(points: pd.DataFrame) -> list[Finding]:
    """Points that did not finish (out of memory or errors)."""
    bad = points[points.status != "ok"]
    if bad.empty:
        return []
    parts = [f"{len(g)} {status} ({', '.join(f'batch {int(r.batch)} x {int(r.seqlen)}' for r in g.itertuples())})"
             for status, g in bad.groupby("status")]
    return [Finding("status", f"Points that did not finish: {'; '.join(parts)}.", float(len(bad)), "points")]


def hardware_findings(points: pd.DataFrame, components: pd.DataFrame) -> list[Finding]:
    """Where the run has hardware tables: energy per forward and per token and peak memory at the longest
    point of each batch, and the component moving the most DRAM traffic over its minimum."""
    out = []
    ok = points[points.status == "ok"]
    for batch, grp in ok.groupby("batch"):
        last = grp.sort_values("seqlen").iloc[-1]
        where = f"at {int(last.seqlen)} tokens (batch {int(batch)})"
        if pd.notna(last.get("energy_j")):
            per_token = last.energy_j / last.tokens * 1e3
            out.append(Finding("energy", f"Energy {where}: {last.energy_j:.3g} J per forward, {per_token:.3g} mJ "
                                         "per token.", float(last.energy_j), "J", None, int(batch), int(last.seqlen)))
        parts = [f"{what} {mib(last[col])}" for what, col in (
            ("peak allocated", "mem_peak_bytes"), ("activations", "mem_activation_peak_bytes"),
            ("decode cache", "cache_state_bytes")) if pd.notna(last.get(col))]
        if parts:
            value = last.get("mem_peak_bytes")
            value = last.get("mem_activation_peak_bytes") if pd.isna(value) else value
            out.append(Finding("memory", f"Memory {where}: {', '.join(parts)}.",
                               None if pd.isna(value) else float(value), "bytes", None, int(batch), int(last.seqlen)))
    measured = components[components.bytes_measured_over_min.notna() & components.family.isin(("mamba1", "mamba2"))]
    for (family, batch, seqlen), grp in measured.groupby(["family", "batch", "seqlen"]):
        worst = grp.sort_values("bytes_measured_over_min").iloc[-1]
        text = (f"Measured DRAM traffic, {family_label(family)} at {int(seqlen)} tokens (batch {int(batch)}): "
                f"{label(worst.component)} moves {worst.bytes_measured_over_min:.2f}x its minimum bytes, the most "
                "of any component.")
        out.append(Finding("dram", text, float(worst.bytes_measured_over_min), "x", family, int(batch), int(seqlen),
                           worst.component))
    return out


def pruning_findings(analysis: RunAnalysis) -> list[Finding]:
    """The what-if's headline sentences: best prefill speedup, smallest decode cache, the score verdict per
    ratio, and what pruning does to the SSM scan vs the whole block (per variant)."""
    pr = analysis.pruning
    rows = pruning.at_seqlen(pr.table)
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
        out.append(Finding("pruning_speed", f"{head}: {pruning.variant_name(r.score, r.ratio, 1)} (N' "
                           f"{r.d_state_kept_mean:.3g} of {int(r.d_state_original)}), {r.prefill_speedup:.2f}x "
                           "the unpruned prefill throughput, decode cache "
                           f"{num(r.cache_bytes_delta_pct, '+.0f', '%')}, "
                           f"perplexity {num(r.perplexity_delta_pct, '+.2f', '%')}.", float(r.prefill_speedup), "x",
                           seqlen=length, batch=batch))
    small = pruned.dropna(subset=["cache_bytes_delta_pct"])
    if not small.empty:
        r = small.loc[small.cache_bytes_delta_pct.idxmin()]
        out.append(Finding("pruning_memory", f"Smallest decode cache: {pruning.variant_name(r.score, r.ratio, 1)}, "
                           f"{r.cache_bytes_delta_pct:+.0f}% vs unpruned (SSM state "
                           f"{num(r.ssm_state_bytes_delta_pct, '+.0f', '%')}), perplexity "
                           f"{num(r.perplexity_delta_pct, '+.2f', '%')}.", float(r.cache_bytes_delta_pct), "%",
                           batch=batch))
    caveat = (" (but see the caveat: this model has not learned enough for it to mean anything)"
              if pr.perplexity_means_nothing else "")
    for ratio, row in pruning.score_winners(pr.table).iterrows():
        if row.verdict == "tie":
            text = (f"At ratio {ratio:g}, the scores tie on perplexity: {row.winner[5:]} are within noise "
                    f"(runner-up {row.runner_up} {row.margin_pct:+.2f}% vs {row.best}, noise {row.noise_pct:.2f}%)")
        else:
            text = (f"At ratio {ratio:g}, {row.best} wins on perplexity ({row[row.best]:.4g}; runner-up "
                    f"{row.runner_up} {row.margin_pct:+.2f}%, above the {row.noise_pct:.2f}% noise)")
        out.append(Finding("pruning_score", text + caveat + ".", float(row.margin_pct), "%"))
    timed = pruning.timed_variants(analysis)
    if 0 in timed and len(timed) > 1:
        ref = pruning.variant_block_times(timed[0])
        vid = max((v for v in timed if v), key=lambda v: (pr.table[pr.table.variant_id == v].ratio.max(), -v))
        t = pruning.variant_block_times(timed[vid])
        d_scan = pruning.delta_pct(t.get("ssm_scan"), ref.get("ssm_scan"))
        d_block = pruning.delta_pct(t.get("block"), ref.get("block"))
        if d_block is not None:
            seqlen = int(timed[vid].points.seqlen.iloc[0])
            scan = (f"its SSM scan takes {fmt_ms(t.get('ssm_scan'))} ms vs {fmt_ms(ref.get('ssm_scan'))} ms unpruned "
                    f"({d_scan:+.0f}%), " if d_scan is not None else "")
            out.append(Finding("pruning_components", f"At {seqlen} tokens, {timed[vid].data.variant}: {scan}the Mamba "
                               f"blocks {d_block:+.0f}% ({analysis.basis} time; each variant measured on its own).",
                               d_block, "%", seqlen=seqlen, component="ssm_scan"))
    return out
