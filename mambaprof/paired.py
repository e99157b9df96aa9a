"""Paired timing comparisons: how much slower (or faster) B is than A when both were timed back to back.

A forward that is launch-bound runs at the host's pace, and a busy or frequency-scaling host makes its
time jump by tens of percent from one forward to the next. Comparing the *medians* of two such series
mixes that noise into the difference. Timing A and B back to back, many times, and taking the median of
the per-pair ratios B_i / A_i cancels whatever both forwards of a pair share (the host's state at the
time). The median comes with a distribution-free confidence interval from the order statistics of the
ratios (the sign-test interval: no assumption on the noise's shape), so a reader can tell a real cost
from noise.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

#: confidence of the interval around the paired median
CONFIDENCE = 0.95
#: where an interval lies against a ±bound: wholly inside, wholly beyond one side, or across a bound
WITHIN, OUTSIDE, UNDECIDED = "within", "outside", "undecided"


def interval_verdict(low_pct: float, high_pct: float, bound_pct: float) -> str:
    """`within` when [low_pct, high_pct] lies inside ±bound_pct, `outside` when it lies wholly beyond one
    bound, `undecided` when it straddles a bound (the interval cannot tell)."""
    if -bound_pct <= low_pct and high_pct <= bound_pct:
        return WITHIN
    if low_pct > bound_pct or high_pct < -bound_pct:
        return OUTSIDE
    return UNDECIDED


@dataclass(frozen=True)
class PairedDifference:
    """B relative to A over pairs timed back to back.

    pairs: number of (A, B) pairs; median_pct: median over pairs of (B_i / A_i - 1) x 100, in %;
    ci_low_pct / ci_high_pct: confidence interval of that median, in % (order statistics of the
    per-pair differences); coverage: the interval's actual coverage probability (>= CONFIDENCE from
    6 pairs on; with fewer pairs the interval is [min, max] and its coverage is 1 - 2^(1 - pairs)).
    """

    pairs: int
    median_pct: float
    ci_low_pct: float
    ci_high_pct: float
    coverage: float

    @property
    def half_width_pct(self) -> float:
        """Half the interval's width, in percentage points: the precision of `median_pct`."""
        return (self.ci_high_pct - self.ci_low_pct) / 2.0

    def inside(self, bound_pct: float) -> bool:
        """The whole interval lies within ±bound_pct."""
        return interval_verdict(self.ci_low_pct, self.ci_high_pct, bound_pct) == WITHIN

    def outside(self, bound_pct: float) -> bool:
        """The whole interval lies beyond ±bound_pct (on one side)."""
        return interval_verdict(self.ci_low_pct, self.ci_high_pct, bound_pct) == OUTSIDE


def _binomial_cdf_half(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2)."""
    if k < 0:
        return 0.0
    return sum(math.comb(n, i) for i in range(min(k, n) + 1)) / 2.0**n


def median_interval_ranks(n: int, confidence: float = CONFIDENCE) -> tuple[int, int, float]:
    """0-based ranks (lo, hi) of the sorted sample bounding a confidence interval of its median, and the
    interval's coverage: the narrowest symmetric order-statistic interval whose coverage is at least
    `confidence`, or (0, n - 1) when even that falls short (fewer than 6 values at 95%)."""
    if n < 1:
        raise ValueError("need at least one value")
    best = 0
    for k in range((n - 1) // 2 + 1):  # [x_k, x_(n-1-k)] (0-based) misses the median with prob 2 P(X <= k)
        if 1.0 - 2.0 * _binomial_cdf_half(k, n) >= confidence:
            best = k
        else:
            break
    coverage = 1.0 - 2.0 * _binomial_cdf_half(best, n)
    return best, n - 1 - best, coverage


def paired_difference(a_ms: Sequence[float], b_ms: Sequence[float],
                      confidence: float = CONFIDENCE) -> PairedDifference | None:
    """B vs A over the pairs (a_ms[i], b_ms[i]) in %, with the median's confidence interval; None
    without a pair whose A is positive. Pairs beyond the shorter series are ignored."""
    diffs = sorted(100.0 * (b / a - 1.0) for a, b in zip(a_ms, b_ms, strict=False) if a > 0)
    if not diffs:
        return None
    lo, hi, coverage = median_interval_ranks(len(diffs), confidence)
    return PairedDifference(pairs=len(diffs), median_pct=statistics.median(diffs), ci_low_pct=diffs[lo],
                            ci_high_pct=diffs[hi], coverage=coverage)
