"""Number formatting shared by the findings, the terminal and the HTML (a number reads the same everywhere)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def missing(value: Any) -> bool:
    """True for None, pd.NA and NaN."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def num(value: Any, spec: str = ".3g", suffix: str = "") -> str:
    """A number in format `spec` followed by `suffix` (`+12%`, `1.05x`), or `-` when missing."""
    return "-" if missing(value) else format(float(value), spec) + suffix


def rate(value: Any) -> str:
    """A rate or ratio of any size: 3 significant digits below 1000, whole with separators above."""
    if missing(value):
        return "-"
    v = float(value)
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def ms(value: Any) -> str:
    """Milliseconds with 3-4 significant digits."""
    if missing(value):
        return "-"
    v = float(value)
    return f"{v:.4g}" if abs(v) >= 1 else f"{v:.3g}"


def pct(value: Any) -> str:
    """Percent with one decimal."""
    return "-" if missing(value) else f"{float(value):.1f}"


def si(value: Any, unit: str = "", sep: str = " ") -> str:
    """Engineering notation with 3 significant digits: 1.2 G, 340 M (FLOPs, bytes); sep="" for compact
    cells (`1.23M` tokens/s)."""
    if missing(value):
        return "-"
    v = float(value)
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= factor:
            return f"{v / factor:.3g}{sep}{prefix}{unit}"
    return f"{v:.3g}{sep}{unit}".strip()


def mib(value: Any, digits: int = 4) -> str:
    """Bytes as MiB: `digits` significant digits, whole MiB with separators from 10,000 MiB up (never 1.3e+04)."""
    if missing(value):
        return "-"
    v = float(value) / 2**20
    return f"{v:,.0f} MiB" if abs(v) >= 1e4 else f"{v:,.{digits}g} MiB"


def ratio(value: Any) -> str:
    """A ratio as `0.62x`."""
    return "-" if missing(value) else f"{float(value):.2f}x"
