"""Plots for the HTML report, as inline SVG strings (matplotlib's object API: no pyplot, no display).

Every plot function takes facade outputs (DataFrames) and returns one `<svg>...</svg>` string; text
stays text (`svg.fonttype: none`) so the page is small and searchable, and each figure gets its own
id salt so several SVGs can live in one page without id clashes.
"""

from __future__ import annotations

import io
import itertools
import math

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

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


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": f"mambaprof-{next(_SALT)}"}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _grid(n: int, width: float = 5.2, height: float = 3.6, max_cols: int = 2) -> tuple[Figure, list]:
    cols = min(max_cols, max(1, n))
    rows = math.ceil(max(1, n) / cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(max(1, n))]
    return fig, axes


def _panels(frame: pd.DataFrame) -> list[tuple[str, int, pd.DataFrame]]:
    block = frame[frame.family.isin(BLOCK_FAMILIES)]
    return [(str(f), int(b), g) for (f, b), g in block.groupby(["family", "batch"])]


def stacked_shares(components: pd.DataFrame, basis: str) -> str:
    """Stacked bars per sequence length: each block component's share of block time (per family and
    batch), with the block's total time above each bar."""
    panels = _panels(components)
    fig, axes = _grid(len(panels))
    for ax, (family, batch, grp) in zip(axes, panels, strict=False):
        seqlens = sorted(grp.seqlen.unique())
        x = np.arange(len(seqlens))
        bottom = np.zeros(len(seqlens))
        comps = sorted(grp.component.unique(), key=component_order)
        for comp in comps:
            share = grp[grp.component == comp].groupby("seqlen").share_of_block_pct.mean().reindex(seqlens)
            vals = share.fillna(0).to_numpy()
            ax.bar(x, vals, bottom=bottom, color=COLORS.get(comp, "#999999"), label=label(comp), width=0.7)
            bottom += vals
        totals = grp.groupby("seqlen").time_ms.sum().reindex(seqlens)
        for xi, tot in zip(x, totals, strict=True):
            ax.text(xi, 101, f"{tot:.3g} ms", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(x, [str(s) for s in seqlens])
        ax.set_ylim(0, 112)
        ax.set_xlabel("sequence length (tokens)")
        ax.set_ylabel(f"share of block {basis} time (%)")
        ax.set_title(f"{family_label(family)} block, batch {batch}", fontsize=10)
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
        fits = scaling[(scaling.family == family) & (scaling.batch == batch)].set_index("component").exponent
        names = sorted(grp.component.unique(), key=lambda c: (c == GROUP_PROJECTIONS, component_order(c)))
        for comp in names:
            if comp == "block":
                continue
            line = grp[grp.component == comp].sort_values("seqlen")
            line = line[line.time_ms > 0]
            if line.empty:
                continue
            exp = fits.get(comp)
            tag = f"{label(comp)} ({exp:.2f})" if exp is not None and pd.notna(exp) else label(comp)
            style = "--" if comp == GROUP_PROJECTIONS else "-"
            ax.plot(line.seqlen, line.time_ms, style, marker="o", ms=3, lw=1.4, color=COLORS.get(comp, "#999999"),
                    label=tag)
        for c in crossovers:
            if c.family == family and c.batch == batch and c.seqlen and c.status == "measured":
                ax.axvline(c.seqlen, color="#555555", ls=":", lw=1)
                ax.annotate(f"scan > projections\nfrom ~{c.seqlen:,.0f}", (c.seqlen, 0.02), fontsize=7,
                            xycoords=("data", "axes fraction"), xytext=(3, 0), textcoords="offset points")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        seqlens = sorted(grp.seqlen.unique())
        ax.set_xticks(seqlens, [str(s) for s in seqlens], fontsize=7, rotation=45 if len(seqlens) > 6 else 0)
        ax.xaxis.set_minor_locator(NullLocator())
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


def regime_chart(points: pd.DataFrame) -> str:
    """Wall vs kernel time of the whole forward per point (log scale), launch-bound points marked."""
    ok = points[points.status == "ok"].sort_values(["batch", "seqlen"])
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


def ratio_chart(aligned: pd.DataFrame, label_a: str, label_b: str) -> str:
    """B / A time ratio per component (bars per sequence length, log scale, 1 = equal), per batch."""
    both = aligned.dropna(subset=["ratio"])
    batches = sorted(both.batch.unique()) or [0]
    fig, axes = _grid(len(batches), width=8.0, height=3.6, max_cols=1)
    for ax, batch in zip(axes, batches, strict=False):
        grp = both[both.batch == batch]
        comps = list(dict.fromkeys(grp.component))
        seqlens = sorted(grp.seqlen.unique())
        width = 0.8 / max(1, len(seqlens))
        for i, seqlen in enumerate(seqlens):
            vals = grp[grp.seqlen == seqlen].set_index("component").ratio.reindex(comps)
            ax.bar(np.arange(len(comps)) + (i - (len(seqlens) - 1) / 2) * width, vals.fillna(0), width=width,
                   label=f"{seqlen} tokens", color=series_color(i))
        ax.axhline(1.0, color="black", lw=1)
        ax.set_yscale("log")
        ax.set_xticks(np.arange(len(comps)), [label(c) for c in comps], fontsize=8, rotation=30, ha="right")
        ax.set_ylabel(f"{label_b} / {label_a}")
        ax.set_title(f"Time ratio per component, batch {batch} (below 1: {label_b} is faster)", fontsize=10)
        ax.legend(fontsize=7)
    return _svg(fig)


def series_color(i: int) -> str:
    """The i-th colour of the series palette (sequence lengths in comparison charts)."""
    series = ["#a0cbe8", "#4e79a7", "#2b4c7e", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#b07aa1"]
    return series[i % len(series)]
