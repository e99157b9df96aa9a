"""Scaling with sequence length: a log-log least-squares fit per component, and where the SSM scan
overtakes the projections.

time(L) ~ prefactor x L^exponent: exponent 1 is linear in L (what a scan should be), 2 quadratic.
The crossover L* is where ssm_scan time equals projections time (in_proj + ssm_params + out_proj):
interpolated in log-log space between the two measured lengths that bracket it, or, when the scan
is below the projections everywhere but grows faster, extrapolated from the two fitted power laws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mambaprof.reports.attribution import BLOCK_FAMILIES, PROJECTIONS

#: a leave-one-out exponent further than this from the full fit: the fit is carried by that one point
LOO_TOLERANCE = 0.25
GROUP_BLOCK = "block"
GROUP_PROJECTIONS = "projections"


@dataclass(frozen=True)
class Fit:
    """A power-law fit over n points: time_ms = prefactor_ms x seqlen^exponent."""

    exponent: float
    prefactor_ms: float
    r2: float | None
    n: int

    def at(self, seqlen: float) -> float:
        """Fitted time (ms) at `seqlen`."""
        return self.prefactor_ms * seqlen**self.exponent


def fit_power_law(seqlens: np.ndarray, times_ms: np.ndarray) -> Fit | None:
    """Least squares of log(time) on log(seqlen) over points with time > 0 and distinct lengths.

    None with fewer than two usable lengths. r2 is None with exactly two (the line is exact).
    """
    seqlens = np.asarray(seqlens, dtype=float)
    times_ms = np.asarray(times_ms, dtype=float)
    keep = np.isfinite(times_ms) & (times_ms > 0) & (seqlens > 0)
    x, y = np.log(seqlens[keep]), np.log(times_ms[keep])
    if len(np.unique(x)) < 2:
        return None
    slope, intercept = np.polyfit(x, y, 1)
    r2 = None
    if len(x) > 2:
        resid = y - (slope * x + intercept)
        total = float(np.sum((y - y.mean()) ** 2))
        r2 = 1.0 - float(np.sum(resid**2)) / total if total > 0 else 1.0
    return Fit(float(slope), float(math.exp(intercept)), r2, int(keep.sum()))


def theil_sen_exponent(seqlens: np.ndarray, times_ms: np.ndarray) -> float | None:
    """Theil-Sen slope of log(time) on log(seqlen): the median of the slopes between every pair of lengths
    (robust to one outlying point); None with fewer than two usable lengths."""
    x, y = _logs(seqlens, times_ms)
    slopes = [(y[j] - y[i]) / (x[j] - x[i]) for i in range(len(x)) for j in range(i + 1, len(x)) if x[j] != x[i]]
    return float(np.median(slopes)) if slopes else None


def loo_exponents(seqlens: np.ndarray, times_ms: np.ndarray) -> list[float]:
    """The least-squares exponent with each usable length left out in turn (empty with fewer than 3 lengths)."""
    x, y = _logs(seqlens, times_ms)
    if len(np.unique(x)) < 3:
        return []
    out = []
    for i in range(len(x)):
        keep = np.arange(len(x)) != i
        if len(np.unique(x[keep])) >= 2:
            out.append(float(np.polyfit(x[keep], y[keep], 1)[0]))
    return out


def _logs(seqlens: np.ndarray, times_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    seqlens, times_ms = np.asarray(seqlens, dtype=float), np.asarray(times_ms, dtype=float)
    keep = np.isfinite(times_ms) & (times_ms > 0) & (seqlens > 0)
    return np.log(seqlens[keep]), np.log(times_ms[keep])


def fit_flag(exponent: float | None, loo: list[float], n_lengths: int) -> str | None:
    """Why a fitted exponent is not stated as a finding, or None when it is trusted: `is negative` (time falls
    with length: noise, not scaling), `rests on two lengths` (nothing to check it against) or `is carried by
    one point` (leaving one length out moves it by more than LOO_TOLERANCE)."""
    if exponent is None:
        return None
    if exponent < 0:
        return "is negative"
    if n_lengths < 3:
        return "rests on two lengths"
    if loo and max(abs(e - exponent) for e in loo) > LOO_TOLERANCE:
        return "is carried by one point"
    return None


def series(components: pd.DataFrame) -> pd.DataFrame:
    """Time per (family, batch, seqlen, component) on the basis, plus the `block` and `projections`
    group sums, for block families; one column `kind` tells component rows from groups. Multiple ranks
    holding the same point are averaged."""
    block = components[components.family.isin(BLOCK_FAMILIES)]
    keys = ["family", "batch", "seqlen"]
    per_rank = block.groupby(["rank", *keys, "component"]).time_ms.sum(min_count=1).reset_index()
    comp = per_rank.groupby([*keys, "component"]).time_ms.mean().reset_index().assign(kind="component")
    groups = []
    for name, members in ((GROUP_BLOCK, None), (GROUP_PROJECTIONS, PROJECTIONS)):
        rows = comp if members is None else comp[comp.component.isin(members)]
        g = rows.groupby(keys).time_ms.sum(min_count=1).reset_index()
        groups.append(g.assign(component=name, kind="group"))
    return pd.concat([comp, *groups], ignore_index=True)


def scaling_table(components: pd.DataFrame) -> pd.DataFrame:
    """One row per family x batch x component (and group): the fitted exponent, prefactor, r2, the
    lengths fitted and the measured times at both ends."""
    rows = []
    data = series(components)
    for (family, batch, component, kind), grp in data.groupby(["family", "batch", "component", "kind"]):
        grp = grp.sort_values("seqlen")
        usable = grp[grp.time_ms > 0]
        fit = fit_power_law(grp.seqlen.to_numpy(), grp.time_ms.to_numpy())
        loo = loo_exponents(grp.seqlen.to_numpy(), grp.time_ms.to_numpy())
        rows.append({
            "family": family, "batch": int(batch), "component": component, "kind": kind,
            "n_points": int(len(usable)),
            "seqlen_min": int(usable.seqlen.min()) if len(usable) else None,
            "seqlen_max": int(usable.seqlen.max()) if len(usable) else None,
            "time_ms_at_min": float(usable.time_ms.iloc[0]) if len(usable) else None,
            "time_ms_at_max": float(usable.time_ms.iloc[-1]) if len(usable) else None,
            "exponent": fit.exponent if fit else None,
            "prefactor_ms": fit.prefactor_ms if fit else None,
            "r2": fit.r2 if fit else None,
            "exponent_theil_sen": theil_sen_exponent(grp.seqlen.to_numpy(), grp.time_ms.to_numpy()),
            "exponent_loo_min": min(loo) if loo else None,
            "exponent_loo_max": max(loo) if loo else None,
            "fit_flag": fit_flag(fit.exponent if fit else None, loo, int(usable.seqlen.nunique())),
        })
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Crossover:
    """Where ssm_scan overtakes the projections for one family and batch (see summary_crossover)."""

    family: str
    batch: int
    status: str
    seqlen: float | None
    ratio_at_max: float | None
    seqlen_min: int | None
    seqlen_max: int | None


def find_crossover(seqlens: np.ndarray, scan_ms: np.ndarray, proj_ms: np.ndarray) -> tuple[str, float | None]:
    """(status, L*) from measured scan and projection times at increasing lengths.

    measured: first upward crossing, interpolated linearly in log(ratio) vs log(L); always: scan above
    everywhere; extrapolated: below everywhere but with a larger fitted exponent (L* beyond the sweep);
    never: below everywhere and not growing faster; unknown: fewer than two usable lengths.
    """
    seqlens, scan_ms, proj_ms = (np.asarray(a, dtype=float) for a in (seqlens, scan_ms, proj_ms))
    keep = (scan_ms > 0) & (proj_ms > 0) & np.isfinite(scan_ms) & np.isfinite(proj_ms)
    seqlens, scan_ms, proj_ms = seqlens[keep], scan_ms[keep], proj_ms[keep]
    if len(seqlens) == 0:
        return "unknown", None
    order = np.argsort(seqlens)
    seqlens, scan_ms, proj_ms = seqlens[order], scan_ms[order], proj_ms[order]
    log_ratio = np.log(scan_ms / proj_ms)
    if log_ratio[0] > 0 and (log_ratio > 0).all():
        return "always", None
    for i in range(len(seqlens) - 1):
        a, b = log_ratio[i], log_ratio[i + 1]
        if a <= 0 < b:
            x0, x1 = math.log(seqlens[i]), math.log(seqlens[i + 1])
            return "measured", float(math.exp(x0 + (0 - a) * (x1 - x0) / (b - a)))
    if len(seqlens) < 2:
        return "unknown", None
    if log_ratio[-1] > 0:  # above at the end but no upward crossing found: it started above, dipped, came back
        return "always", None
    scan_fit, proj_fit = fit_power_law(seqlens, scan_ms), fit_power_law(seqlens, proj_ms)
    if scan_fit and proj_fit and scan_fit.exponent > proj_fit.exponent + 1e-3:
        lstar = math.exp(math.log(proj_fit.prefactor_ms / scan_fit.prefactor_ms)
                         / (scan_fit.exponent - proj_fit.exponent))
        if lstar > seqlens[-1]:
            return "extrapolated", lstar
    return "never", None


def crossover_table(components: pd.DataFrame) -> list[Crossover]:
    """The crossover for every block family and batch of the run."""
    data = series(components)
    out = []
    for (family, batch), grp in data.groupby(["family", "batch"]):
        wide = grp.pivot_table(index="seqlen", columns="component", values="time_ms", aggfunc="sum")
        if "ssm_scan" not in wide or GROUP_PROJECTIONS not in wide:
            out.append(Crossover(family, int(batch), "unknown", None, None, None, None))
            continue
        wide = wide.sort_index()
        status, lstar = find_crossover(wide.index.to_numpy(), wide["ssm_scan"].to_numpy(),
                                       wide[GROUP_PROJECTIONS].to_numpy())
        last = wide.iloc[-1]
        ratio = float(last["ssm_scan"] / last[GROUP_PROJECTIONS]) if last[GROUP_PROJECTIONS] > 0 else None
        out.append(Crossover(family, int(batch), status, lstar, ratio, int(wide.index.min()), int(wide.index.max())))
    return out
