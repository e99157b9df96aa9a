"""Noise: how far a run's own numbers can be trusted, computed from the run (never assumed).

Three signals, all from the raw tables:
- the repeats' spread of each point's original forward: (slowest - fastest repeat) / median, in %
  (`points.original_ms_min/max/median`; the same figure as `summary_points.original_spread_pct`);
- the markers' cost: what the component markers add to the forward, `split_vs_original_pct` minus
  `split_bare_vs_original_pct` (the split without markers; runs before schema 3 have only the first,
  which then stands for the markers' cost);
- how much a share moves with the statistic: the report's shares are sums of per-repeat *means*
  (`wall_ms_mean` / `kernel_ms_mean`: means add up); the same share on *medians* (`wall_ms_median` /
  `kernel_ms_median`) and on the other time basis tells whether outliers or the markers carry it.

A share finding is `unstable` when the median share or (where the markers cost more than
MARKER_COST_PCT on the wall basis) the kernel-basis share differs from it by more than SHARE_NOISE_PP
percentage points, or when the largest component is another one on medians. A host is `loaded`
when the original forward's repeats spread by more than LOADED_SPREAD_PCT at half the points that
have at least two repeats, or by more than EXTREME_SPREAD_PCT at any of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mambaprof.reports.attribution import BLOCK_FAMILIES
from mambaprof.reports.load import RunData

#: a share that moves more than this (percentage points) with the statistic or the basis is not stated as firm
SHARE_NOISE_PP = 5.0
#: markers adding more than this (%) to the forward make wall-basis spans carry their host cost
MARKER_COST_PCT = 25.0
#: a point whose original forward's repeats spread more than this (%) is noisy
LOADED_SPREAD_PCT = 50.0
#: one point spreading more than this (%) marks the whole host as loaded
EXTREME_SPREAD_PCT = 200.0
_MEDIAN = {"kernel": "kernel_ms_median", "wall": "wall_ms_median"}
_MEAN = {"kernel": "kernel_ms_mean", "wall": "wall_ms_mean"}


def spread_pct(points: pd.DataFrame) -> pd.Series:
    """Per raw `points` row: (original_ms_max - original_ms_min) / original_ms_median x 100; NaN where unknown
    or the point had fewer than two timed repeats."""
    if not {"original_ms_min", "original_ms_max", "original_ms_median"} <= set(points.columns):
        return pd.Series(np.nan, index=points.index, dtype="float64")
    median = points.original_ms_median.astype(float)
    out = 100.0 * (points.original_ms_max - points.original_ms_min).astype(float) / median.where(median > 0)
    if "repeats" in points.columns:
        out = out.where(points.repeats.fillna(2).astype(float) >= 2)
    return out


def marker_cost_pct(points: pd.DataFrame) -> pd.Series:
    """Per point: what the component markers add to the forward (%): split with markers minus split without
    (`split_vs_original_pct - split_bare_vs_original_pct`), or split with markers alone before schema 3."""
    marked = points.split_vs_original_pct.astype(float) if "split_vs_original_pct" in points else None
    if marked is None:
        return pd.Series(np.nan, index=points.index, dtype="float64")
    bare = points.get("split_bare_vs_original_pct")
    if bare is None:
        return marked
    return (marked - bare.astype(float)).where(bare.notna(), marked)


def noisy_points(points: pd.DataFrame) -> pd.Series:
    """Per point of a point table (with `original_spread_pct`): True when its repeats spread more than
    LOADED_SPREAD_PCT, False when less, null when the spread is unknown."""
    spread = points.original_spread_pct.astype(float) if "original_spread_pct" in points else None
    if spread is None:
        return pd.Series(pd.NA, index=points.index, dtype="boolean")
    return (spread > LOADED_SPREAD_PCT).astype("boolean").where(spread.notna(), pd.NA)


@dataclass(frozen=True)
class HostLoad:
    """Whether the run's host was loaded, judged from the run's own repeats (see the module docstring)."""

    loaded: bool | None
    text: str


def host_load(points: pd.DataFrame) -> HostLoad:
    """The host-load verdict of a point table: loaded (True), quiet (False) or unknown (None: no point has
    two repeats), with one sentence giving the spreads it rests on."""
    ok = points[points.status == "ok"] if "status" in points else points
    spread = ok.original_spread_pct.astype(float).dropna() if "original_spread_pct" in ok else pd.Series([], float)
    if spread.empty:
        return HostLoad(None, "unknown (no point has two timed repeats of its forward)")
    noisy = int((spread > LOADED_SPREAD_PCT).sum())
    loaded = noisy * 2 >= len(spread) or float(spread.max()) > EXTREME_SPREAD_PCT
    lo, hi = f"{spread.min():.0f}", f"{spread.max():.0f}"
    span = f"{lo}%" if lo == hi else f"{lo}-{hi}%"
    counts = f"{noisy} of {len(spread)} points above {LOADED_SPREAD_PCT:.0f}%"
    if loaded:
        return HostLoad(True, f"LOADED: the original forward's repeats spread {span} ({counts}); another process "
                              "was competing for the host, so times and shares carry its noise")
    return HostLoad(False, f"quiet: the original forward's repeats spread {span} ({counts})")


def share_noise(data: RunData, components: pd.DataFrame, basis: str) -> pd.DataFrame:
    """Per point x block family x component: the report's share of block time (on sums of means) beside the
    same share on sums of medians (`share_median_pct`) and on the other time basis (`share_other_pct`), and
    the point's repeats' spread and markers' cost (%)."""
    raw = data.components[data.components.family.isin(BLOCK_FAMILIES)]
    keys = ["rank", "point_id", "family"]
    other = "wall" if basis == "kernel" else "kernel"
    sums = raw.groupby([*keys, "component"])[[_MEDIAN[basis], _MEAN[other]]].sum(min_count=1).reset_index()
    for col, name in ((_MEDIAN[basis], "share_median_pct"), (_MEAN[other], "share_other_pct")):
        total = sums.groupby(keys)[col].transform("sum")
        sums[name] = 100.0 * sums[col] / total.where(total > 0)
    block = components[components.family.isin(BLOCK_FAMILIES)][[*keys, "batch", "seqlen", "component",
                                                                "share_of_block_pct"]]
    out = block.merge(sums[[*keys, "component", "share_median_pct", "share_other_pct"]], on=[*keys, "component"],
                      how="left")
    pts = data.points.assign(spread_pct=spread_pct(data.points), marker_cost_pct=marker_cost_pct(data.points),
                             repeat_min_ms=data.points.get("original_ms_min"),
                             repeat_max_ms=data.points.get("original_ms_max"))
    pts = pts[["rank", "point_id", "spread_pct", "marker_cost_pct", "repeat_min_ms", "repeat_max_ms"]]
    pts = pts.astype({"rank": out["rank"].dtype, "point_id": out["point_id"].dtype})
    return out.merge(pts, on=["rank", "point_id"], how="left")


def _ms(value: float) -> str:
    return f"{value:.4g}" if abs(value) >= 1 else f"{value:.3g}"


def noise_clause(rows: pd.DataFrame, component: str, share: float, ranked_first: str | None, basis: str,
                 name: Callable[[str], str] = str) -> str:
    """`; noise: ...` for one share finding: the repeats' spread and the markers' cost behind it, and, when
    they are large enough to move the share by SHARE_NOISE_PP or change which component is largest, what the
    share is on medians and on the basis that excludes the markers' cost (`rows`: share_noise rows of the
    finding's point and family)."""
    if rows.empty:
        return ""
    first = rows.iloc[0]
    parts = []
    if pd.notna(first.spread_pct):
        span = (f" ({_ms(first.repeat_min_ms)}-{_ms(first.repeat_max_ms)} ms)"
                if pd.notna(first.repeat_min_ms) and pd.notna(first.repeat_max_ms) else "")
        parts.append(f"the forward's repeats spread {first.spread_pct:.0f}%{span}")
    else:
        parts.append("the forward's repeat spread is not recorded")
    if pd.notna(first.marker_cost_pct):
        parts.append(f"the markers cost {first.marker_cost_pct:+.0f}%")
    row = rows[rows.component == component]
    median = float(row.share_median_pct.iloc[0]) if len(row) and pd.notna(row.share_median_pct.iloc[0]) else None
    other = float(row.share_other_pct.iloc[0]) if len(row) and pd.notna(row.share_other_pct.iloc[0]) else None
    markers_heavy = pd.notna(first.marker_cost_pct) and abs(first.marker_cost_pct) > MARKER_COST_PCT
    moves = []
    if median is not None and abs(median - share) > SHARE_NOISE_PP:
        moves.append(f"on medians it is {median:.0f}%")
    by_median = rows.dropna(subset=["share_median_pct"]).sort_values("share_median_pct", ascending=False)
    if ranked_first is not None and len(by_median) and by_median.component.iloc[0] != ranked_first:
        moves.append(f"on medians the largest component is {name(by_median.component.iloc[0])}")
    if basis == "wall" and markers_heavy and other is not None and abs(other - share) > SHARE_NOISE_PP:
        moves.append(f"on the kernel basis (operator time, which excludes the markers' host cost) it is "
                     f"{other:.0f}%, the basis that holds here")
    text = "; noise: " + ", ".join(parts)
    if moves:
        text += f"; large enough to change it: {'; '.join(moves)}, so this share is not firm"
    elif median is not None:
        text += f"; the share holds within {SHARE_NOISE_PP:.0f} points on medians ({median:.0f}%)"
    return text


def is_unstable(text: str) -> bool:
    """True when a finding's noise clause says the share is not firm."""
    return "is not firm" in text
