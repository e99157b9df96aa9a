"""Display tables (titles, headers, formatted cells) built from facade outputs; the terminal and HTML
renderers both draw these, so a number reads the same in both."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mambaprof.reports.attribution import BLOCK_FAMILIES
from mambaprof.reports.findings import family_label, label
from mambaprof.reports.fmt import ms, num, pct, rate, ratio, si
from mambaprof.reports.scaling import GROUP_BLOCK, GROUP_PROJECTIONS, Crossover
from mambaprof.storage.rundir import run_state
from mambaprof.taxonomy import component_order


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
    return si(value, "B")


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
    fits = scaling[(scaling.family == family) & (scaling.batch == batch)].set_index("component").exponent
    view = View(f"{family_label(family)}, batch {batch}: % of block {basis} time by sequence length",
                ["component", *[str(s) for s in seqlens], "exponent"])
    for comp in sorted(grp.component.unique(), key=component_order):
        shares = grp[grp.component == comp].groupby("seqlen").share_of_block_pct.mean().reindex(seqlens)
        view.rows.append([label(comp), *[pct(v) for v in shares], num(fits.get(comp), ".2f")])
    totals = grp.groupby("seqlen").time_ms.sum().reindex(seqlens)
    view.rows.append([f"block {basis} ms", *[ms(v) for v in totals], num(fits.get(GROUP_BLOCK), ".2f")])
    return view


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
            cells.append(num(row.exponent.iloc[0], ".2f") if len(row) else "-")
        view.rows.append([label(comp), *cells])
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
    view = View("Whole forward per point", ["batch", "seqlen", "A wall ms", "B wall ms", "B/A wall", "B/A kernel",
                                            "A tok/s", "B tok/s", "A regime", "B regime"], keys=2)
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
        ("peaks", analysis.peaks_source),
        ("hardware tables", ", ".join(analysis.optional_tables) or "none"),
    ]
