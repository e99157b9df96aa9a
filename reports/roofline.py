"""Roofline: arithmetic intensity, achieved throughput, and the verdict against the device's peaks.

attainable(I) = min(peak FLOP/s, I x peak bandwidth); a component whose intensity I lies below the
ridge (peak FLOP/s / peak bandwidth) is memory-bound, above it compute-bound. `roof_pct` says how
close to its roof it runs; above 100 the time is under-counted (e.g. work done outside the
attributed kernels), which the report flags instead of believing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mambaprof.reports.peaks import DevicePeaks

#: roof_pct above this: the measured time cannot be the whole story.
ABOVE_ROOF_PCT = 110.0
#: roof_pct below this: far from any roof (latency/launch-bound, or poor kernels).
FAR_BELOW_ROOF_PCT = 10.0


def add_rates(frame: pd.DataFrame) -> pd.DataFrame:
    """Add intensity (FLOP/byte), achieved TFLOP/s and GB/s (from flops, bytes_min and time_ms)."""
    out = frame.copy()
    seconds = out.time_ms.where(out.time_ms > 0) * 1e-3
    out["intensity_flop_per_byte"] = out.flops / out.bytes_min.where(out.bytes_min > 0)
    out["achieved_tflop_per_s"] = out.flops / seconds / 1e12
    out["achieved_gb_per_s"] = out.bytes_min / seconds / 1e9
    return out


def add_roofline(frame: pd.DataFrame, peaks: DevicePeaks | None, dtype: str) -> pd.DataFrame:
    """Add rates and the roofline columns: peak_tflop_per_s, peak_gb_per_s, ridge_flop_per_byte, roof_pct,
    verdict (`memory-bound`, `compute-bound` or `unknown`)."""
    out = add_rates(frame)
    tf = peaks.tflops(dtype) if peaks else None
    bw = peaks.gb_per_s if peaks else None
    ridge = peaks.ridge(dtype) if peaks else None
    out["peak_tflop_per_s"] = np.nan if tf is None else tf
    out["peak_gb_per_s"] = np.nan if bw is None else bw
    out["ridge_flop_per_byte"] = np.nan if ridge is None else ridge
    if tf is None or bw is None:
        out["roof_pct"] = np.nan
        out["verdict"] = "unknown"
        return out
    intensity = out.intensity_flop_per_byte
    attainable = np.minimum(tf, intensity * bw / 1e3)  # TFLOP/s
    out["roof_pct"] = out.achieved_tflop_per_s / attainable.where(attainable > 0) * 100
    verdict = np.where(intensity >= ridge, "compute-bound", "memory-bound")
    out["verdict"] = pd.Series(verdict, index=out.index).where(intensity.notna() & (out.flops > 0), "unknown")
    return out


def roofline_note(row: pd.Series) -> str | None:
    """A caveat for one row: above the roof (time under-counted) or far below it."""
    pct = row.get("roof_pct")
    if pct is None or pd.isna(pct):
        return None
    if pct > ABOVE_ROOF_PCT:
        return "above the roof: its time is under-counted or the peaks are too low"
    if pct < FAR_BELOW_ROOF_PCT:
        return "far below the roof"
    return None
