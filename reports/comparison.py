"""Comparison of two runs (Mamba-1 vs Mamba-2, before vs after): aligned by point (batch, seqlen) and
component, with ratios B / A.

Component times are summed over all block layers of each run (whatever their family), so a Mamba-1
model and a Mamba-2 model compare component by component; `block` is the sum of the block
components and `forward` the whole forward on the same time basis.
"""

from __future__ import annotations

import pandas as pd

from mambaprof.reports.attribution import BLOCK_FAMILIES
from mambaprof.reports.findings import Finding, label
from mambaprof.taxonomy import component_order

BLOCK_ROW = "block"
#: the `forward` row in words: the sum of every component (block and model-level) on the time basis
FORWARD_WORDS = "forward (all components)"
#: the points table's whole-forward wall time, in words (the original forward, timed on its own)
WALL_WORDS = "wall time of the original forward"
FORWARD_ROW = "forward"
#: prefix of a model-level component whose name is also a block component (the final norm: `model norm`)
MODEL_PREFIX = "model "
_ROW_ORDER = {BLOCK_ROW: 100, FORWARD_ROW: 101}


def component_totals(components: pd.DataFrame) -> pd.DataFrame:
    """Per (batch, seqlen, component): time_ms summed over the block layers, plus the model-level components
    (layer -1: embedding, final norm, lm_head, other) as rows of their own (`model norm` where the name is also a
    block component, so the final norm is never added into the blocks' norm), plus `block` (the block
    components: their shares sum to 100) and `forward` (every component, block and model-level, on the same
    time basis); ranks holding the same point are averaged."""
    keys = ["rank", "batch", "seqlen"]
    is_block = components.family.isin(BLOCK_FAMILIES)
    block, outside = components[is_block], components[~is_block]
    per_block = block.groupby([*keys, "component"]).time_ms.sum(min_count=1).reset_index().assign(in_block=True)
    per_model = outside.groupby([*keys, "component"]).time_ms.sum(min_count=1).reset_index().assign(in_block=False)
    in_block = set(per_block.component)
    per_model["component"] = [f"{MODEL_PREFIX}{c}" if c in in_block else c for c in per_model.component]
    blk = block.groupby(keys).time_ms.sum(min_count=1).reset_index().assign(component=BLOCK_ROW, in_block=False)
    fwd = components.groupby(keys).time_ms.sum(min_count=1).reset_index().assign(component=FORWARD_ROW,
                                                                                 in_block=False)
    rows = pd.concat([per_block, per_model, blk, fwd], ignore_index=True)
    rows = rows.groupby(["batch", "seqlen", "component"]).agg(time_ms=("time_ms", "mean"),
                                                              in_block=("in_block", "first")).reset_index()
    block_ms = rows[rows.component == BLOCK_ROW].set_index(["batch", "seqlen"]).time_ms
    idx = pd.MultiIndex.from_frame(rows[["batch", "seqlen"]])
    rows["share_of_block_pct"] = (rows.time_ms.to_numpy() / block_ms.reindex(idx).to_numpy() * 100)
    rows.loc[~rows.in_block, "share_of_block_pct"] = float("nan")
    return rows.drop(columns="in_block")


def _order(component: str) -> int:
    if component.startswith(MODEL_PREFIX):
        return 50 + component_order(component[len(MODEL_PREFIX):])
    return _ROW_ORDER.get(component, component_order(component))


def align_components(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Outer-join two component_totals on (batch, seqlen, component): a_ms, b_ms, ratio (b/a; null when
    either is missing or a is 0), a_share_pct, b_share_pct."""
    left = a.rename(columns={"time_ms": "a_ms", "share_of_block_pct": "a_share_pct"})
    right = b.rename(columns={"time_ms": "b_ms", "share_of_block_pct": "b_share_pct"})
    out = left.merge(right, on=["batch", "seqlen", "component"], how="outer")
    out["ratio"] = out.b_ms / out.a_ms.where(out.a_ms > 0)
    out["_o"] = out.component.map(_order)
    return out.sort_values(["batch", "seqlen", "_o"]).drop(columns="_o").reset_index(drop=True)


def align_points(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Outer-join two point tables on (batch, seqlen): status, wall/kernel ms, tokens/s and regime of
    each, with wall_ratio and kernel_ratio (b/a)."""
    cols = ["batch", "seqlen", "status", "wall_ms", "kernel_ms", "tokens_per_s", "regime", "idle_pct"]
    left = a[cols].groupby(["batch", "seqlen"], as_index=False).first().add_prefix("a_")
    right = b[cols].groupby(["batch", "seqlen"], as_index=False).first().add_prefix("b_")
    left = left.rename(columns={"a_batch": "batch", "a_seqlen": "seqlen"})
    right = right.rename(columns={"b_batch": "batch", "b_seqlen": "seqlen"})
    out = left.merge(right, on=["batch", "seqlen"], how="outer").sort_values(["batch", "seqlen"])
    out["wall_ratio"] = out.b_wall_ms / out.a_wall_ms.where(out.a_wall_ms > 0)
    out["kernel_ratio"] = out.b_kernel_ms / out.a_kernel_ms.where(out.a_kernel_ms > 0)
    return out.reset_index(drop=True)


def comparison_findings(aligned: pd.DataFrame, points: pd.DataFrame, scaling_a: pd.DataFrame,
                        scaling_b: pd.DataFrame, label_a: str, label_b: str, basis: str) -> list[Finding]:
    """Headline sentences: at the longest length both runs share (per batch), B's block time as a multiple
    of A's with the biggest component ratios, the forward wall-time ratio, and the SSM scan's share and
    exponent in each run."""
    out: list[Finding] = []
    both = aligned.dropna(subset=["a_ms", "b_ms"])
    for batch, grp in both.groupby("batch"):
        seqlen = int(grp.seqlen.max())
        at = grp[grp.seqlen == seqlen].set_index("component")
        if BLOCK_ROW not in at.index or pd.isna(at.loc[BLOCK_ROW, "ratio"]):
            continue
        parts = [f"{label(c)} {at.loc[c, 'ratio']:.2f}x" for c in ("ssm_scan", "in_proj", "out_proj", "conv1d")
                 if c in at.index and pd.notna(at.loc[c, "ratio"])]
        fwd = at.loc[FORWARD_ROW, "ratio"] if FORWARD_ROW in at.index else None
        wall = points[(points.batch == batch) & (points.seqlen == seqlen)].wall_ratio
        wall_text = f"; {FORWARD_WORDS} {basis} time {fwd:.2f}x" if fwd is not None and pd.notna(fwd) else ""
        if len(wall) and pd.notna(wall.iloc[0]):
            wall_text += f" ({WALL_WORDS} {wall.iloc[0]:.2f}x)"
        ratio = float(at.loc[BLOCK_ROW, "ratio"])
        text = (f"At {seqlen} tokens (batch {int(batch)}), {label_b}'s block {basis} time is {ratio:.2f}x "
                f"{label_a}'s ({', '.join(parts)}){wall_text}.")
        out.append(Finding("comparison", text, ratio, "x", None, int(batch), seqlen, BLOCK_ROW))
        shares = [(lab, at.loc["ssm_scan", col]) for lab, col in ((label_a, "a_share_pct"), (label_b, "b_share_pct"))
                  if "ssm_scan" in at.index and pd.notna(at.loc["ssm_scan", col])]
        if len(shares) == 2:
            exps = []
            for sc in (scaling_a, scaling_b):
                row = sc[(sc.batch == batch) & (sc.component == "ssm_scan")]
                exps.append(float(row.exponent.mean()) if len(row) and row.exponent.notna().any() else None)
            exp_text = (f"; exponents {exps[0]:.2f} vs {exps[1]:.2f}" if None not in exps else "")
            text = (f"SSM scan share of block {basis} time at {seqlen} tokens (batch {int(batch)}): "
                    f"{shares[0][1]:.0f}% in {label_a}, {shares[1][1]:.0f}% in {label_b}{exp_text}.")
            out.append(Finding("comparison_scan", text, float(shares[1][1] - shares[0][1]), "points of %",
                               None, int(batch), seqlen, "ssm_scan"))
    return out
