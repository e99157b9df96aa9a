"""Plots for the HTML report, as inline SVG strings (matplotlib's object API: no pyplot, no display).

Every plot function takes facade outputs (DataFrames) and returns one `<svg>...</svg>` string; text
stays text (`svg.fonttype: none`) so the page is small and searchable, and each figure gets its own
id salt so several SVGs can live in one page without id clashes.

Figure sizes never grow with the number of points: past a few sequence lengths per panel the bar charts
turn into areas or lines over a log2 axis (every point still drawn), tick labels are thinned to a
log-even subset, and roofline markers are medians over log2 bins of sequence length.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from mambaprof.reports import pruning
from mambaprof.reports.attribution import BLOCK_FAMILIES
from mambaprof.reports.findings import family_label, label
from mambaprof.reports.peaks import DevicePeaks
from mambaprof.reports.scaling import GROUP_PROJECTIONS, Crossover
from mambaprof.taxonomy import COMPONENT_NAMES, component_order

_PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
            "#9c755f", "#bab0ac", "#86bcb6", "#d37295"]
COLORS = {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(COMPONENT_NAMES)}
COLORS[GROUP_PROJECTIONS] = "#333333"
_SALT = itertools.count()
#: Most bars (sequence lengths) a panel draws as bars; past it, stacked areas / lines on a log2 axis.
MAX_BARS = 16
#: Most regime points drawn as bar pairs; past it, one line per batch over sequence length.
MAX_REGIME_BARS = 24
#: Most labelled ticks (and total-time labels) on a sequence-length axis.
MAX_TICKS = 9
#: Most sequence lengths per (family, component, batch) in the roofline before they are binned.
MAX_ROOFLINE_LENGTHS = 12
#: Most sequence lengths in the comparison's ratio chart (a log-even subset past it; the title says so).
MAX_RATIO_LENGTHS = 10
#: Most vertices per line or area; past it, means over log2-even bins of sequence length (bounds SVG size).
MAX_LINE_POINTS = 128


def _svg(fig: Figure, tight: bool = True) -> str:
    """The figure as one inline `<svg>` string: text kept as text, ids salted per figure; tight: crop to the
    drawn area (the figures laid out with `layout="constrained"` at a fixed size keep their size)."""
    buf = io.StringIO()
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": f"mambaprof-{next(_SALT)}"}):
        fig.savefig(buf, format="svg", bbox_inches="tight" if tight else None)
    text = buf.getvalue()
    return text[text.index("<svg"):]


#: resolution of the PNG files plots are written to (`save_figure`)
PNG_DPI = 130


def save_figure(fig: Figure, out_base: Path, tight: bool = True) -> list[Path]:
    """Write the figure to out_base.png (PNG_DPI) and out_base.svg (text kept as text); returns both paths."""
    out_base = Path(out_base)
    paths = [out_base.with_suffix(".png"), out_base.with_suffix(".svg")]
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": f"mambaprof-{next(_SALT)}"}):
        for path in paths:
            fig.savefig(path, dpi=PNG_DPI, bbox_inches="tight" if tight else None)
    return paths


def _grid(n: int, width: float = 5.2, height: float = 3.6, max_cols: int = 2) -> tuple[Figure, list]:
    cols = min(max_cols, max(1, n))
    rows = math.ceil(max(1, n) / cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(max(1, n))]
    return fig, axes


def spread(values: Iterable[float], k: int) -> list[float]:
    """At most k of the distinct positive values, evenly spaced in log2 (the smallest and largest always
    kept): the sequence lengths that get a tick label, a bar or a legend entry when there are many."""
    vals = sorted(set(pd.Series(values).dropna().tolist()))
    if len(vals) <= k:
        return vals
    logs = np.log2(np.asarray(vals, dtype=float))
    picked = {int(np.abs(logs - t).argmin()) for t in np.linspace(logs[0], logs[-1], k)}
    return [vals[i] for i in sorted(picked)]


def log2_binned(frame: pd.DataFrame, x: str, k: int = MAX_LINE_POINTS) -> pd.DataFrame:
    """`frame` (one row per distinct positive `x`) with at most k rows: past k, the mean of every numeric
    column over k log2-even bins of `x`, at the bin's geometric-mean `x` (empty bins dropped)."""
    if frame[x].nunique() <= k:
        return frame
    logs = np.log2(frame[x].astype(float))
    edges = np.linspace(logs.min(), logs.max(), k + 1)
    bins = np.clip(np.searchsorted(edges, logs, side="right") - 1, 0, k - 1)
    numeric = frame.select_dtypes("number").drop(columns=[x]).astype(float)
    out = numeric.groupby(bins).mean()
    out.insert(0, x, np.exp2(logs.groupby(bins).mean()))
    return out.reset_index(drop=True)


def _log2_ticks(ax: Axes, values: Iterable[float], fontsize: float = 7) -> list[float]:
    """Label a log2 x axis at `values` when there are few, else at the powers of two within their range
    (a log-even subset: at most MAX_TICKS); no minor ticks. Returns the tick positions."""
    vals = sorted(set(values))
    ticks = vals
    if len(vals) > MAX_TICKS:
        powers = [2.0 ** e for e in range(math.ceil(math.log2(vals[0])), math.floor(math.log2(vals[-1])) + 1)]
        ticks = spread(powers if len(powers) >= 3 else vals, MAX_TICKS)
    ax.set_xticks(ticks, [str(int(t)) for t in ticks], fontsize=fontsize, rotation=45 if len(ticks) > 6 else 0)
    ax.xaxis.set_minor_locator(NullLocator())
    return ticks


def _panels(frame: pd.DataFrame) -> list[tuple[str, int, pd.DataFrame]]:
    block = frame[frame.family.isin(BLOCK_FAMILIES)]
    return [(str(f), int(b), g) for (f, b), g in block.groupby(["family", "batch"])]


def stacked_shares(components: pd.DataFrame, basis: str) -> str:
    """Stacked bars per sequence length: each block component's share of block time (%, per family and
    batch), with the block's total time (ms) above each bar; past MAX_BARS lengths, stacked areas over a
    log2 axis with the totals above the labelled ticks."""
    panels = _panels(components)
    fig, axes = _grid(len(panels))
    for ax, (family, batch, grp) in zip(axes, panels, strict=False):
        seqlens = sorted(grp.seqlen.unique())
        comps = sorted(grp.component.unique(), key=component_order)
        shares = grp.pivot_table(index="seqlen", columns="component", values="share_of_block_pct",
                                 aggfunc="mean").reindex(index=seqlens, columns=comps).fillna(0)
        # a sequence length seen at several points (ranks, repeated sweeps): their mean total
        totals = (grp.groupby(["seqlen", "rank", "point_id"]).time_ms.sum().groupby(level="seqlen").mean()
                  .reindex(seqlens))
        if len(seqlens) <= MAX_BARS:
            x = np.arange(len(seqlens))
            bottom = np.zeros(len(seqlens))
            for comp in comps:
                vals = shares[comp].to_numpy()
                ax.bar(x, vals, bottom=bottom, color=COLORS.get(comp, "#999999"), label=label(comp), width=0.7)
                bottom += vals
            for xi, tot in zip(x, totals, strict=True):
                ax.text(xi, 101, f"{tot:.3g} ms", ha="center", va="bottom", fontsize=7)
            ax.set_xticks(x, [str(s) for s in seqlens])
        else:  # many lengths: stacked areas over a log2 axis; totals at the measured lengths nearest the ticks
            area = log2_binned(shares.rename_axis("seqlen").reset_index(), "seqlen")
            ax.stackplot(area.seqlen, [area[c].to_numpy() for c in comps], labels=[label(c) for c in comps],
                         colors=[COLORS.get(c, "#999999") for c in comps], linewidth=0)
            ax.set_xscale("log", base=2)
            logs = np.log2(np.asarray(seqlens, dtype=float))
            for tick in _log2_ticks(ax, seqlens):
                seqlen = seqlens[int(np.abs(logs - math.log2(tick)).argmin())]
                tot = totals[seqlen]
                ax.text(seqlen, 101, f"{tot:,.0f}" if tot >= 100 else f"{tot:.3g}", ha="center", va="bottom",
                        fontsize=6)
            ax.set_xlim(seqlens[0], seqlens[-1])
        ax.set_ylim(0, 112)
        ax.set_xlabel("sequence length (tokens)")
        ax.set_ylabel(f"share of block {basis} time (%)")
        tag = "" if len(seqlens) <= MAX_BARS else f", {len(seqlens)} lengths (top: block ms)"
        ax.set_title(f"{family_label(family)} block, batch {batch}{tag}", fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    return _svg(fig)


def scaling_lines(series: pd.DataFrame, scaling: pd.DataFrame, crossovers: list[Crossover], basis: str) -> str:
    """Time per component vs sequence length on log-log axes, one panel per family and batch; the legend
    gives each fitted exponent; a dotted line marks where the SSM scan overtakes the projections."""
    panels = _panels(series)
    fig, axes = _grid(len(panels))
    for ax, (family, batch, grp) in zip(axes, panels, strict=False):
        panel = scaling[(scaling.family == family) & (scaling.batch == batch)].set_index("component")
        fits = panel.exponent
        flagged = panel.fit_flag.map(lambda f: isinstance(f, str)) if "fit_flag" in panel else {}
        names = sorted(grp.component.unique(), key=lambda c: (c == GROUP_PROJECTIONS, component_order(c)))
        for comp in names:
            if comp == "block":
                continue
            line = grp[grp.component == comp].sort_values("seqlen")
            line = line[line.time_ms > 0]
            if line.empty:
                continue
            exp = fits.get(comp)
            mark = "?" if flagged.get(comp, False) else ""  # an untrusted fit (see views.UNTRUSTED_CAPTION)
            tag = f"{label(comp)} ({exp:.2f}{mark})" if exp is not None and pd.notna(exp) else label(comp)
            style = "--" if comp == GROUP_PROJECTIONS else "-"
            line = line.groupby("seqlen", as_index=False).time_ms.mean()  # ranks / repeated sweeps: one value
            marker = "o" if len(line) <= MAX_BARS else None
            line = log2_binned(line, "seqlen")
            ax.plot(line.seqlen, line.time_ms, style, marker=marker, ms=3, lw=1.4, color=COLORS.get(comp, "#999999"),
                    label=tag)
        for c in crossovers:
            if c.family == family and c.batch == batch and c.seqlen and c.status == "measured":
                ax.axvline(c.seqlen, color="#555555", ls=":", lw=1)
                ax.annotate(f"scan > projections\nfrom ~{c.seqlen:,.0f}", (c.seqlen, 0.02), fontsize=7,
                            xycoords=("data", "axes fraction"), xytext=(3, 0), textcoords="offset points")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        _log2_ticks(ax, grp.seqlen.unique())
        ax.set_xlabel("sequence length (tokens)")
        ax.set_ylabel(f"{basis} time per forward (ms)")
        ax.set_title(f"{family_label(family)}, batch {batch}: component (exponent)", fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return _svg(fig)


def roofline_chart(components: pd.DataFrame, peaks: DevicePeaks | None, dtype: str, device_name: str) -> str:
    """Achieved TFLOP/s vs arithmetic intensity (log-log) for every block component at every point, under
    the device's roof (when peaks are known); marker size grows with sequence length."""
    fig = Figure(figsize=(8.5, 5.0), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    rows = components[components.family.isin(BLOCK_FAMILIES) & (components.intensity_flop_per_byte > 0)
                      & (components.achieved_tflop_per_s > 0)]
    markers = {"mamba1": "o", "mamba2": "s"}
    rows = _bin_lengths(rows, ["family", "component", "batch"],
                        ["intensity_flop_per_byte", "achieved_tflop_per_s", "seqlen"], MAX_ROOFLINE_LENGTHS)
    if not rows.empty:
        smin, smax = math.log2(rows.seqlen.min()), math.log2(rows.seqlen.max())
        for (family, comp), grp in rows.groupby(["family", "component"]):
            size = 14 + 50 * ((np.log2(grp.seqlen) - smin) / max(smax - smin, 1))
            ax.scatter(grp.intensity_flop_per_byte, grp.achieved_tflop_per_s, s=size, alpha=0.8,
                       marker=markers.get(family, "^"), color=COLORS.get(comp, "#999999"),
                       label=f"{family_label(family)} {label(comp)}", edgecolors="black", linewidths=0.4)
    tf = peaks.tflops(dtype) if peaks else None
    if peaks and tf and peaks.gb_per_s:
        lo = min(rows.intensity_flop_per_byte.min() / 2, 0.1) if not rows.empty else 0.1
        hi = max(rows.intensity_flop_per_byte.max() * 2, 1e4) if not rows.empty else 1e4
        x = np.logspace(math.log10(lo), math.log10(hi), 200)
        ax.plot(x, np.minimum(tf, x * peaks.gb_per_s / 1e3), color="black", lw=1.5,
                label=f"roof: {tf:,.0f} TFLOP/s, {peaks.gb_per_s:,.0f} GB/s")
        ridge = peaks.ridge(dtype)
        ax.axvline(ridge, color="#777777", ls=":", lw=1)
        ax.annotate(f"ridge {ridge:.0f} FLOP/B", (ridge, 0.02), xycoords=("data", "axes fraction"), fontsize=7,
                    xytext=(3, 0), textcoords="offset points")
        title = f"Roofline on {peaks.name} ({dtype})"
    else:
        title = f"Achieved rates on {device_name} ({dtype}; no peaks known: no roof)"
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / minimum byte)")
    ax.set_ylabel("achieved TFLOP/s")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, fontsize=7, loc="outside right upper")
    return _svg(fig)


def _bin_lengths(rows: pd.DataFrame, keys: list[str], values: list[str], k: int) -> pd.DataFrame:
    """Rows with more than k sequence lengths per `keys` group -> the median of `values` over k log2-even
    bins of sequence length (fewer rows, same picture); groups with at most k lengths stay as they are."""
    if rows.empty:
        return rows
    many = (rows.groupby(keys).seqlen.transform("nunique") > k).to_numpy()
    if not many.any():
        return rows
    big = rows[many]
    logs = np.log2(big.seqlen.astype(float))
    edges = np.linspace(logs.min(), logs.max(), k + 1)
    big = big.assign(_bin=np.clip(np.searchsorted(edges, logs, side="right") - 1, 0, k - 1))
    binned = big.groupby([*keys, "_bin"], as_index=False)[values].median().drop(columns="_bin")
    return pd.concat([binned, rows.loc[~many, [*keys, *values]]], ignore_index=True)


def regime_chart(points: pd.DataFrame) -> str:
    """Wall vs kernel time of the whole forward per point (ms, log scale), launch-bound points marked: bar
    pairs for up to MAX_REGIME_BARS points, else one line per batch over sequence length (fixed size)."""
    ok = points[points.status == "ok"].sort_values(["batch", "seqlen"])
    if len(ok) > MAX_REGIME_BARS:
        return _regime_lines(ok)
    fig = Figure(figsize=(max(5.0, 0.7 * len(ok) + 2.5), 3.4), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(ok))
    ax.bar(x - 0.2, ok.wall_ms, width=0.4, color="#bab0ac", label="wall (forward)")
    ax.bar(x + 0.2, ok.kernel_ms, width=0.4, color="#4e79a7", label="kernel (summed)")
    for xi, (regime, wall) in enumerate(zip(ok.regime, ok.wall_ms, strict=True)):
        if regime == "launch-bound":
            ax.annotate("launch-bound", (xi, wall), ha="center", va="bottom", fontsize=7, color="#e15759")
    ax.set_xticks(x, [f"b{b}\n{s}" for b, s in zip(ok.batch, ok.seqlen, strict=True)], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("ms per forward")
    ax.set_title("Wall vs kernel time per point (batch / sequence length)", fontsize=10)
    ax.legend(fontsize=8)
    return _svg(fig)


def _regime_lines(ok: pd.DataFrame) -> str:
    """The regime chart of many points: wall (solid) and kernel (dashed) ms per forward vs sequence length,
    one colour per batch (median where a batch and length repeat; past MAX_LINE_POINTS lengths, means over
    log2 bins), launch-bound points ringed in red."""
    fig = Figure(figsize=(8.5, 4.0), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    per = ok.groupby(["batch", "seqlen"], as_index=False).agg(
        wall_ms=("wall_ms", "median"), kernel_ms=("kernel_ms", "median"),
        bound=("regime", lambda r: bool((r == "launch-bound").mean() >= 0.5)))
    batches = sorted(per.batch.unique())
    many = per.groupby("batch").size().max() > MAX_BARS
    for i, batch in enumerate(batches):
        grp = log2_binned(per.loc[per.batch == batch, ["seqlen", "wall_ms", "kernel_ms"]], "seqlen")
        color = series_color(i)
        ax.plot(grp.seqlen, grp.wall_ms, "-", marker=None if many else "o", ms=3, lw=1.4, color=color,
                label=f"batch {batch}")
        ax.plot(grp.seqlen, grp.kernel_ms, "--", lw=1.2, color=color)
    bound = per[per.bound]
    if not bound.empty:  # rings at most MAX_LINE_POINTS per batch (bin means past that), the count exact
        rings = pd.concat([log2_binned(g[["seqlen", "wall_ms"]], "seqlen") for _, g in bound.groupby("batch")])
        ax.scatter(rings.seqlen, rings.wall_ms, s=28, facecolors="none", edgecolors="#e15759", linewidths=1.0,
                   label=f"launch-bound ({len(bound)})", zorder=3)
    ax.plot([], [], "-", color="#555555", label="wall (forward)")
    ax.plot([], [], "--", color="#555555", label="kernel (summed)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    _log2_ticks(ax, per.seqlen)
    ax.set_xlabel("sequence length (tokens)")
    ax.set_ylabel("ms per forward")
    ax.set_title(f"Wall vs kernel time per forward, {len(ok)} points", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return _svg(fig)


def ratio_chart(aligned: pd.DataFrame, label_a: str, label_b: str) -> str:
    """B / A time ratio per component (bars per sequence length, log scale, 1 = equal), per batch."""
    both = aligned.dropna(subset=["ratio"])
    batches = sorted(both.batch.unique()) or [0]
    fig, axes = _grid(len(batches), width=8.0, height=3.6, max_cols=1)
    for ax, batch in zip(axes, batches, strict=False):
        grp = both[both.batch == batch]
        comps = list(dict.fromkeys(grp.component))
        every = sorted(grp.seqlen.unique())
        seqlens = spread(every, MAX_RATIO_LENGTHS)
        width = 0.8 / max(1, len(seqlens))
        for i, seqlen in enumerate(seqlens):
            vals = grp[grp.seqlen == seqlen].set_index("component").ratio.reindex(comps)
            ax.bar(np.arange(len(comps)) + (i - (len(seqlens) - 1) / 2) * width, vals.fillna(0), width=width,
                   label=f"{seqlen} tokens", color=series_color(i))
        ax.axhline(1.0, color="black", lw=1)
        ax.set_yscale("log")
        ax.set_xticks(np.arange(len(comps)), [label(c) for c in comps], fontsize=8, rotation=30, ha="right")
        ax.set_ylabel(f"{label_b} / {label_a}")
        shown = "" if len(seqlens) == len(every) else f"; {len(seqlens)} of {len(every)} lengths"
        ax.set_title(f"Time ratio per component, batch {batch} (below 1: {label_b} is faster{shown})", fontsize=10)
        ax.legend(fontsize=7)
    return _svg(fig)


def series_color(i: int) -> str:
    """The i-th colour of the series palette (sequence lengths in comparison charts)."""
    series = ["#a0cbe8", "#4e79a7", "#2b4c7e", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#b07aa1"]
    return series[i % len(series)]


KIND_COLORS = {"mamba": "#4e79a7", "attention": "#e15759", "mlp": "#59a14f", "moe": "#edc948", "rest": "#bab0ac"}


def kind_shares_chart(shares: pd.DataFrame, kinds: Iterable[str], basis: str) -> str:
    """Stacked bars per sequence length (one panel per batch): each layer kind's share (%) of the forward's
    time (the hybrid view's `shares`: batch, seqlen, kind, share_pct), lengths on a log2-spaced axis."""
    batches = sorted(int(b) for b in shares.batch.unique())
    fig, axes = _grid(len(batches))
    order = list(kinds)
    for ax, batch in zip(axes, batches, strict=False):
        grp = shares[shares.batch == batch]
        table = grp.pivot_table(index="seqlen", columns="kind", values="share_pct", aggfunc="mean").fillna(0)
        table = table.reindex(columns=[k for k in order if k in table.columns])
        x = np.arange(len(table.index))
        bottom = np.zeros(len(x))
        for kind in table.columns:
            vals = table[kind].to_numpy()
            ax.bar(x, vals, bottom=bottom, color=KIND_COLORS.get(kind, "#999999"), label=kind, width=0.7)
            bottom += vals
        ax.set_xticks(x, [str(int(s)) for s in table.index], fontsize=7)
        ax.set_ylim(0, 105)
        ax.set_xlabel("sequence length (tokens)")
        ax.set_ylabel(f"share of forward {basis} time (%)")
        ax.set_title(f"layer kinds, batch {batch}", fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    return _svg(fig)


# ---- pruning what-if: throughput vs perplexity ------------------------------------------------------

def pareto_figure(df: pd.DataFrame, seqlen: int | None = None, caveat: bool = False) -> Figure:
    """Throughput (tokens/s) vs perplexity per variant at one prefill length, Pareto front dashed; caveat:
    say on the plot that the perplexity axis measures nothing (see `perplexity_means_nothing`)."""
    rows = pruning.at_seqlen(df, seqlen).dropna(subset=["prefill_tokens_per_s", "perplexity"])
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
    front = pruning.pareto_front(list(zip(rows.prefill_tokens_per_s, rows.perplexity, strict=True)))
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
    return save_figure(pareto_figure(df, seqlen, caveat), out_base, tight=False)


def pareto_svg(df: pd.DataFrame, seqlen: int | None = None, caveat: bool = False) -> str:
    """The Pareto plot as one inline `<svg>` string (text kept as text, ids salted per figure)."""
    return _svg(pareto_figure(df, seqlen, caveat), tight=False)
