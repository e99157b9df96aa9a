"""Pruning what-if report: reads the `pruning` table of a run directory (never re-runs a model) and
renders a summary table, a score comparison, and a Pareto plot of throughput vs perplexity."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich import box
from rich.table import Table

from mambaprof.rundir import read_table

MIB = float(1 << 20)


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


def summary_table(df: pd.DataFrame, seqlen: int | None = None) -> Table:
    """One row per variant at one sequence length: state size, speed, memory, accuracy (fits 100 columns)."""
    rows = at_seqlen(df, seqlen)
    length = int(rows.seqlen.iloc[0]) if len(rows) else 0
    batch = int(rows.batch.iloc[0]) if len(rows) else 0
    base = rows[rows.variant_id == 0]
    cache = base.cache_bytes.iloc[0] if len(base) else None
    cache_text = f" · unpruned decode cache {_f(cache / MIB if cache is not None else None, '.3g')} MiB"
    split = f" · {rows.per_layer.iloc[0]} per layer" if len(rows) else ""
    table = Table(title=f"pruning what-if · prefill b={batch} L={length}{split}{cache_text} · deltas vs unpruned",
                  title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("variant", "N'", "tok/s", "speed", "dec ms", "Δcache", "ppl", "Δppl", "copy", "recall"):
        table.add_column(col, justify="left" if col == "variant" else "right", no_wrap=True)
    for r in rows.itertuples():
        table.add_row(
            "unpruned" if r.variant_id == 0 else f"{r.score}@{r.ratio:g}", _f(r.d_state_kept_mean, ".3g"),
            _si(r.prefill_tokens_per_s),
            _f(r.prefill_speedup, ".2f", "x"), _f(r.decode_ms_per_token, ".3g"),
            _f(r.cache_bytes_delta_pct, "+.0f", "%"), _f(r.perplexity, ".4g"), _f(r.perplexity_delta_pct, "+.2f", "%"),
            _f(r.selective_copy_acc_pct, ".0f", "%"), _f(r.assoc_recall_acc_pct, ".0f", "%"))
    return table


def score_winners(df: pd.DataFrame) -> pd.DataFrame:
    """Per ratio > 0: the perplexity of each score, and the score with the lowest (one row per ratio)."""
    rows = at_seqlen(df)
    rows = rows[rows.variant_id > 0]
    if rows.empty:
        return pd.DataFrame()
    pivot = rows.pivot_table(index="ratio", columns="score", values="perplexity", aggfunc="first")
    pivot["winner"] = pivot.idxmin(axis=1)
    return pivot


def winners_table(df: pd.DataFrame) -> Table | None:
    """Rich table of `score_winners` (None when only one score or no pruned variant)."""
    pivot = score_winners(df)
    scores = [c for c in pivot.columns if c != "winner"]
    if pivot.empty or len(scores) < 2:
        return None
    table = Table(title="perplexity by score at equal ratio (lower wins)", title_justify="left", min_width=48,
                  box=box.SIMPLE_HEAD)
    table.add_column("ratio", justify="right")
    for s in scores:
        table.add_column(s, justify="right")
    table.add_column("winner")
    for ratio, row in pivot.iterrows():
        table.add_row(f"{ratio:g}", *[_f(row[s], ".4g") for s in scores], str(row["winner"]))
    return table


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points (throughput, perplexity) not dominated by another (higher throughput and lower perplexity)."""
    front = []
    for x, y in sorted(points, key=lambda p: (-p[0], p[1])):
        if not front or y < front[-1][1]:
            front.append((x, y))
    return sorted(front)


def pareto_plot(df: pd.DataFrame, out_base: Path, seqlen: int | None = None) -> list[Path]:
    """Throughput (tokens/s) vs perplexity per variant, Pareto front drawn; writes out_base.png and .svg."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = at_seqlen(df, seqlen).dropna(subset=["prefill_tokens_per_s", "perplexity"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
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
    ax.set_xlabel("prefill throughput (tokens/s)")
    ax.set_ylabel("held-out perplexity (per byte)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out_base = Path(out_base)
    paths = [out_base.with_suffix(".png"), out_base.with_suffix(".svg")]
    for path in paths:
        fig.savefig(path, dpi=130)
    plt.close(fig)
    return paths
