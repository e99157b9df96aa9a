"""Display tables (titles, headers, formatted cells) built from facade outputs; the terminal and HTML
renderers both draw these, so a number reads the same in both."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from mambaprof.reports import pruning
from mambaprof.reports.attribution import BLOCK_FAMILIES
from mambaprof.reports.findings import family_label, label
from mambaprof.reports.fmt import mib, ms, num, pct, rate, ratio, si
from mambaprof.reports.scaling import GROUP_BLOCK, GROUP_PROJECTIONS, Crossover
from mambaprof.storage.rundir import run_state
from mambaprof.taxonomy import component_order

if TYPE_CHECKING:
    from mambaprof.reports.run_analysis import RunAnalysis


@dataclass
class View:
    """A table to draw: title, column headers, rows of strings, an optional caption, and how many leading
    columns identify a row (repeated when a narrow terminal splits the table)."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    caption: str = ""
    keys: int = 1


def _bytes(value: Any) -> str:
    """Memory held (peaks, decode cache) in MiB, as the findings state it (one unit per quantity)."""
    return mib(value)


def _has(frame: pd.DataFrame, column: str) -> bool:
    return column in frame.columns and frame[column].notna().any()


def attribution_view(components: pd.DataFrame, family: str, batch: int, seqlen: int, basis: str,
                     compact: bool = False) -> View:
    """Every component of one family at one point: times, shares, rates and roofline verdict.
    compact: leave out the FLOP and byte counts (for 100-column terminals)."""
    rows = components[(components.family == family) & (components.batch == batch) & (components.seqlen == seqlen)]
    cols: list[tuple[str, str, Callable[[Any], str]]] = [
        ("component", "component", label), (f"{basis} ms", "time_ms", ms), ("% block", "share_of_block_pct", pct),
        ("kern/wall %", "kernel_of_wall_pct", pct), ("FLOP", "flops", si), ("min bytes", "bytes_min", si),
        ("FLOP/B", "intensity_flop_per_byte", rate), ("TFLOP/s", "achieved_tflop_per_s", rate),
        ("GB/s", "achieved_gb_per_s", rate), ("% roof", "roof_pct", pct),
        ("verdict", "verdict", str),
    ]
    if family not in BLOCK_FAMILIES:
        cols[2] = ("% fwd", "share_of_forward_pct", pct)
    if compact:
        cols = [c for c in cols if c[1] not in ("flops", "bytes_min")]
        cols[-1] = ("bound", "verdict", lambda v: str(v).replace("-bound", ""))
    extra = [("meas. bytes", "bytes_measured", si), ("meas/min", "bytes_measured_over_min", rate),
             ("energy J", "energy_j", lambda v: num(v, ".3g")), ("mem peak", "mem_peak_delta_bytes", _bytes),
             ("cache", "cache_state_bytes", _bytes)]
    cols += [e for e in extra if _has(rows, e[1])]
    view = View(f"{family_label(family)} at {seqlen} tokens, batch {batch}", [c[0] for c in cols])
    for _, r in rows.iterrows():
        view.rows.append([fmt(r[key]) if key in r else "-" for _, key, fmt in cols])
    notes = sorted({str(n) for n in rows.note.dropna()}) if "note" in rows else []
    if notes:
        view.caption = "Notes: " + "; ".join(notes)
    return view


def share_matrix(components: pd.DataFrame, scaling: pd.DataFrame, family: str, batch: int, basis: str) -> View:
    """Share of block time per component (rows) and sequence length (columns), with the fitted exponent."""
    grp = components[(components.family == family) & (components.batch == batch)]
    seqlens = sorted(grp.seqlen.unique())
    fits = exponent_cells(scaling[(scaling.family == family) & (scaling.batch == batch)])
    view = View(f"{family_label(family)}, batch {batch}: % of block {basis} time by sequence length",
                ["component", *[str(s) for s in seqlens], "exponent"])
    for comp in sorted(grp.component.unique(), key=component_order):
        shares = grp[grp.component == comp].groupby("seqlen").share_of_block_pct.mean().reindex(seqlens)
        view.rows.append([label(comp), *[pct(v) for v in shares], fits.get(comp, "-")])
    totals = grp.groupby("seqlen").time_ms.sum().reindex(seqlens)
    view.rows.append([f"block {basis} ms", *[ms(v) for v in totals], fits.get(GROUP_BLOCK, "-")])
    if any(c.endswith(UNTRUSTED_MARK) for c in fits.values()):
        view.caption = UNTRUSTED_CAPTION
    return view


#: appended to an exponent whose fit is flagged (summary_scaling.fit_flag); such exponents are no finding
UNTRUSTED_MARK = "?"
UNTRUSTED_CAPTION = ("?: exponent not stated as a finding: its fit is negative, rests on two lengths, or is carried "
                     "by one point (summary_scaling.fit_flag; exponent_theil_sen is the robust fit).")


def exponent_cells(fits: pd.DataFrame) -> dict[str, str]:
    """Component -> its exponent as a table cell (`1.02`, `-1.12?` where the fit is flagged)."""
    out = {}
    for r in fits.itertuples():
        flagged = isinstance(getattr(r, "fit_flag", None), str)
        out[r.component] = num(r.exponent, ".2f") + (UNTRUSTED_MARK if flagged and pd.notna(r.exponent) else "")
    return out


def points_view(points: pd.DataFrame, on_gpu: bool) -> View:
    """One row per point: status, wall and kernel ms, idle %, regime, tokens/s, split cost and check."""
    view = View("Points: regime (launch-bound when wall time >= 2x kernel time)",
                ["batch", "seqlen", "status", "wall ms", "kernel ms", "idle %", "regime", "tokens/s",
                 "split %", "check"], keys=2)
    extras = [("energy J", "energy_j", lambda v: num(v, ".3g")),
              ("mJ/token", "energy_per_token_j", lambda v: num(v * 1e3, ".3g")),
              ("peak mem", "mem_peak_bytes", _bytes), ("cache", "cache_state_bytes", _bytes)]
    extras = [e for e in extras if _has(points, e[1])]
    view.headers += [e[0] for e in extras]
    for _, r in points.iterrows():
        ok = r.status == "ok"
        view.rows.append([str(r.batch), str(r.seqlen), str(r.status) if ok else f"{r.status}: {r.error or ''}"[:60],
                          ms(r.wall_ms), ms(r.kernel_ms), pct(r.idle_pct), str(r.regime or "-"),
                          num(r.tokens_per_s, ",.0f"), num(r.split_vs_original_pct, "+.1f"),
                          str(r.output_check or "-"), *[f(r[c]) for _, c, f in extras]])
    advice = points.advice.dropna()
    view.caption = "split %: cost of the component-split forward vs the original; check: their outputs match."
    if len(advice):
        view.caption += f" Launch-bound points: {advice.iloc[0]}." + (
            "" if on_gpu else " (CPU run: the gap is host overhead between operators.)")
    return view


def scaling_view(scaling: pd.DataFrame, crossovers: list[Crossover], basis: str) -> View:
    """Fitted exponents per component (rows) for each family and batch (columns), and the crossover."""
    if not {"family", "batch", "component"} <= set(scaling.columns):  # no Mamba block (a pure Transformer run)
        scaling = pd.DataFrame(columns=["family", "batch", "component", "exponent"])
    keys = sorted({(f, int(b)) for f, b in zip(scaling.family, scaling.batch, strict=True)},
                  key=lambda k: (k[0], k[1]))
    view = View(f"Scaling: fitted exponent of {basis} time vs sequence length (log-log)",
                ["component", *[f"{family_label(f)} b{b}" for f, b in keys]])
    comps = sorted(set(scaling.component), key=lambda c: (c in (GROUP_PROJECTIONS, GROUP_BLOCK),
                                                          component_order(c), c))
    for comp in comps:
        cells = []
        for f, b in keys:
            row = scaling[(scaling.family == f) & (scaling.batch == b) & (scaling.component == comp)]
            cells.append(exponent_cells(row).get(comp, "-"))
        view.rows.append([label(comp), *cells])
    if any(c.endswith(UNTRUSTED_MARK) for row in view.rows for c in row[1:]):
        view.caption = UNTRUSTED_CAPTION
    cross = []
    for f, b in keys:
        c = next((c for c in crossovers if c.family == f and c.batch == b), None)
        if c is None:
            cross.append("-")
        elif c.seqlen is not None:
            cross.append(f"{c.status} {c.seqlen:,.0f}")
        else:
            cross.append(c.status)
    view.rows.append(["scan > proj at", *cross])
    return view


def layers_view(layers: pd.DataFrame, batch: int, seqlen: int, basis: str) -> View:
    """Per layer (rows) and component (columns): time in ms at one point, with the layer's block total."""
    rows = layers[(layers.batch == batch) & (layers.seqlen == seqlen) & (layers.layer >= 0)]
    comps = sorted(rows.component.unique(), key=component_order)
    view = View(f"Per layer at {seqlen} tokens, batch {batch} ({basis} ms)", ["layer", "family",
                                                                               *[label(c) for c in comps], "total"],
                keys=2)
    for layer, grp in rows.groupby("layer"):
        by = grp.set_index("component").time_ms
        view.rows.append([str(layer), family_label(str(grp.family.iloc[0])), *[ms(by.get(c)) for c in comps],
                          ms(by.sum())])
    return view


def comparison_matrix(aligned: pd.DataFrame, batch: int, label_a: str, label_b: str) -> View:
    """B / A time ratio per component (rows) and sequence length (columns)."""
    grp = aligned[aligned.batch == batch]
    seqlens = sorted(grp.seqlen.unique())
    view = View(f"{label_b} / {label_a} time ratio, batch {batch}", ["component", *[str(s) for s in seqlens]])
    for comp in dict.fromkeys(grp.component):
        vals = grp[grp.component == comp].set_index("seqlen").ratio.reindex(seqlens)
        view.rows.append([label(comp), *[ratio(v) for v in vals]])
    return view


def comparison_view(aligned: pd.DataFrame, batch: int, seqlen: int, label_a: str, label_b: str,
                    basis: str) -> View:
    """Both runs at one point: per component ms and share of block, and the ratio."""
    grp = aligned[(aligned.batch == batch) & (aligned.seqlen == seqlen)]
    view = View(f"{label_a} vs {label_b} at {seqlen} tokens, batch {batch} ({basis} time)",
                ["component", "A ms", "A % block", "B ms", "B % block", "B/A"])
    view.caption = f"A = {label_a}, B = {label_b}."
    for _, r in grp.iterrows():
        view.rows.append([label(r.component), ms(r.a_ms), pct(r.a_share_pct), ms(r.b_ms), pct(r.b_share_pct),
                          ratio(r.ratio)])
    return view


def compare_points_view(points: pd.DataFrame, label_a: str, label_b: str) -> View:
    """Both runs per point: wall ms, tokens/s, regime and the wall/kernel ratios."""
    view = View("Wall time of the original forward per point (timed on its own, not the sum of components)",
                ["batch", "seqlen", "A wall ms", "B wall ms", "B/A wall", "B/A kernel", "A tok/s", "B tok/s",
                 "A regime", "B regime"], keys=2)
    view.caption = f"A = {label_a}, B = {label_b}."
    for _, r in points.iterrows():
        view.rows.append([str(r.batch), str(r.seqlen), ms(r.a_wall_ms), ms(r.b_wall_ms), ratio(r.wall_ratio),
                          ratio(r.kernel_ratio), num(r.a_tokens_per_s, ",.0f"), num(r.b_tokens_per_s, ",.0f"),
                          str(r.a_regime if isinstance(r.a_regime, str) else r.a_status),
                          str(r.b_regime if isinstance(r.b_regime, str) else r.b_status)])
    return view


BASIS_WORDS = {"kernel": "summed kernel durations", "wall": "spans between component markers"}


def autotune_fact(record: dict[str, Any]) -> str | None:
    """One line on the run's Triton autotuning (`runs.autotune_json`): the policy, where the configs were tuned
    and for how many kernels; None when the run has no such record (no Triton autotuner, or an older run)."""
    raw = record.get("autotune_json")
    if not raw:
        return None
    try:
        info = json.loads(raw)
    except (TypeError, ValueError):
        return "unreadable autotune_json"
    if not isinstance(info, dict):
        return None
    n = len({c.get("kernel") for c in info.get("configs") or [] if isinstance(c, dict)})
    kernels = f"{n} kernel{'' if n == 1 else 's'}"
    policy, reason = info.get("policy"), info.get("reason")
    at = info.get("tuned_at") or {}
    shape = f"batch {at.get('batch')} x {at.get('seqlen')}" if at else None
    note = f"; {reason}" if reason else ""
    if policy == "largest" and shape:
        fell_back = str(reason or "").startswith("out of memory")
        return f"tuned at {shape} ({'largest point that fit' if fell_back else 'largest point'}), {kernels}{note}"
    if policy == "largest":
        return f"policy largest, not tuned ({reason or 'no reason recorded'}): each kernel tuned at the first " \
               f"shape it ran, {kernels}"
    if policy == "per-point":
        last = f", the last at {shape}" if shape else ""
        return f"policy per-point (every point tuned at its own shape{last}), {kernels}{note}"
    if policy == "first":
        return f"policy first (each kernel tuned at the first shape it ran), {kernels}{note}"
    return f"policy {policy}, {kernels}{note}"


def run_facts(analysis: Any) -> list[tuple[str, str]]:
    """(name, value) pairs describing a run, for headers (a `Triton autotune` line where the run has one)."""
    rec = analysis.record
    ok = int((analysis.points.status == "ok").sum())
    seqlens = sorted(analysis.points.seqlen.unique())
    batches = sorted(analysis.points.batch.unique())
    autotune = autotune_fact(rec)
    return [
        ("model", f"{rec.get('model_ref')} ({rec.get('model_class')}, {analysis.data.family_label}, "
                  f"{rec.get('n_layers')} Mamba layers)"),
        ("device", f"{analysis.device_name} ({rec.get('device')}), {analysis.dtype}"),
        ("sweep", f"seqlens {', '.join(map(str, seqlens))}; batch {', '.join(map(str, batches))}; "
                  f"{ok}/{len(analysis.points)} points ok; mode {rec.get('mode')}"),
        *([("Triton autotune", autotune)] if autotune else []),
        ("run", f"{analysis.data.run_id} ({run_state(rec)[0]}), {analysis.run_dir}"),
        ("time basis", f"{analysis.basis} ({BASIS_WORDS.get(analysis.basis, analysis.basis)})"),
        ("host load", analysis.host_load.text),
        ("peaks", analysis.peaks_source),
        ("hardware tables", ", ".join(analysis.optional_tables) or "none"),
    ]

# ---- pruning what-if (a `mambaprof prune` run; the analysis is `pruning`) -------------------------------

#: short column headers of the per-variant component table (it must fit 100 columns)
PRUNING_SHORT = {"ssm_params": "params", "ssm_scan": "scan", "residual": "resid"}


def pruning_summary_view(df: pd.DataFrame, seqlen: int | None = None) -> View:
    """One row per variant at one sequence length: state size, speed, memory, accuracy (fits 100 columns)."""
    rows = pruning.at_seqlen(df, seqlen)
    length = int(rows.seqlen.iloc[0]) if len(rows) else 0
    batch = int(rows.batch.iloc[0]) if len(rows) else 0
    base = rows[rows.variant_id == 0]
    cache = base.cache_bytes.iloc[0] if len(base) else None
    cache_text = f" · unpruned decode cache {_bytes(cache)}"
    split = f" · {rows.per_layer.iloc[0]} per layer" if len(rows) else ""
    peak = bool(rows.peak_memory_delta_pct.notna().any()) if len(rows) else False  # measured on GPU only
    view = View(f"pruning what-if · prefill b={batch} L={length}{split}{cache_text} · deltas vs unpruned",
                ["variant", "N'", "tok/s", "speed", "dec ms", *(["Δpeak"] if peak else []), "Δcache", "ppl", "Δppl",
                 "copy", "recall"])
    for r in rows.itertuples():
        view.rows.append([
            pruning.variant_name(r.score, r.ratio, r.variant_id), num(r.d_state_kept_mean, ".3g"),
            si(r.prefill_tokens_per_s, sep=""), num(r.prefill_speedup, ".2f", "x"), num(r.decode_ms_per_token, ".3g"),
            *([num(r.peak_memory_delta_pct, "+.1f", "%")] if peak else []),
            num(r.cache_bytes_delta_pct, "+.0f", "%"), num(r.perplexity, ".4g"),
            num(r.perplexity_delta_pct, "+.2f", "%"),
            num(r.selective_copy_acc_pct, ".0f", "%"), num(r.assoc_recall_acc_pct, ".0f", "%")])
    view.caption = ("N': mean kept d_state; speed: prefill throughput vs unpruned (timed interleaved); dec ms: "
                    "decode latency per token; " + ("Δpeak: prefill peak memory (weights + activations); "
                                                     if peak else "") +
                    "copy/recall: synthetic task accuracy (chance 6%/10%).")
    return view


def pruning_throughput_view(df: pd.DataFrame) -> View | None:
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
        cells = [f"{si(by.prefill_tokens_per_s.get(s), sep='')} ({num(by.prefill_speedup.get(s), '.2f', 'x')})"
                 for s in seqlens]
        view.rows.append([pruning.variant_name(first.score, first.ratio, int(vid)), *cells])
    return view


def pruning_winners_view(df: pd.DataFrame) -> View | None:
    """`score_winners` as a table (None when no ratio has two scores)."""
    pivot = pruning.score_winners(df)
    if pivot.empty:
        return None
    scores = [c for c in pivot.columns if c not in pruning.WINNER_COLUMNS]
    view = View("perplexity by score at equal ratio (lower wins)",
                ["ratio", *scores, "winner", "runner-up", "noise"])
    for at_ratio, row in pivot.iterrows():
        view.rows.append([f"{at_ratio:g}", *[num(row[s], ".4g") for s in scores], str(row["winner"]),
                          f"{row['runner_up']} {row['margin_pct']:+.2f}%", f"{row['noise_pct']:.2f}%"])
    view.caption = ("tie: the runner-up's perplexity is within noise of the best "
                    f"({pruning.TIE_SIGMAS:g} standard errors of their paired per-window NLL difference, at least "
                    f"{pruning.TIE_FLOOR_PCT:g}%).")
    return view


def pruning_component_view(analysis: RunAnalysis) -> View | None:
    """Per timed variant (rows): each block component's time, the blocks' total and its change vs unpruned,
    every number from that variant's own measurement (never summed across variants)."""
    timed = pruning.timed_variants(analysis)
    if not timed:
        return None
    times = {vid: pruning.variant_block_times(v) for vid, v in timed.items()}
    comps = [c for c in sorted({c for t in times.values() for c in t.index if c != "block"}, key=component_order)]
    ref = times.get(0)
    first = next(iter(timed.values()))
    seqlen, batch = int(first.points.seqlen.iloc[0]), int(first.points.batch.iloc[0])
    view = View(f"per-variant {analysis.basis} ms at L={seqlen}, batch {batch} (summed over the Mamba layers; "
                "each variant measured on its own)",
                ["variant", *[PRUNING_SHORT.get(c, label(c)) for c in comps], "block", "Δblock", "Δscan"])
    for vid, t in times.items():
        d_block = pruning.delta_pct(t.get("block"), ref.get("block") if ref is not None else None)
        d_scan = pruning.delta_pct(t.get("ssm_scan"), ref.get("ssm_scan") if ref is not None else None)
        view.rows.append([timed[vid].data.variant or str(vid), *[ms(t.get(c)) for c in comps], ms(t.get("block")),
                          num(d_block, "+.0f", "%"), num(d_scan, "+.0f", "%")])
    shared = [f"{', '.join(names)}" for names in analysis.pruning.timing_groups.values() if len(names) > 1]
    short = ", ".join(f"{v}: {label(k)}" for k, v in PRUNING_SHORT.items() if k in comps)
    view.caption = f"Δ: vs unpruned{'; ' + short if short else ''}." + (
        f" Same state sizes per layer, measured once: {'; '.join(shared)}." if shared else "")
    return view


def pruning_points_view(analysis: RunAnalysis) -> View | None:
    """Per timed variant: its component-split point's wall and kernel ms, regime, tokens/s and fidelity."""
    timed = pruning.timed_variants(analysis)
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


def pruning_facts(analysis: RunAnalysis) -> list[tuple[str, str]]:
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
