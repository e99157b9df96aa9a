"""Regime: is a point launch-bound (the device idles between kernels) or device-bound?

idle = 1 - kernel time / wall time of the model's own forward. At batch 1 and short sequences
Mamba models launch many small kernels and the GPU waits on the host: wall time far exceeds the
kernel time. Such points are flagged with the advice that would help.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mambaprof.reports import findings, hardware, noise
from mambaprof.reports.load import RunData

#: wall >= LAUNCH_BOUND_RATIO x kernel time: launch-bound.
LAUNCH_BOUND_RATIO = 2.0
#: idle share (%) from which a point counts as `mixed`.
MIXED_IDLE_PCT = 20.0

GPU_ADVICE = ("larger batch (more work per launch) or CUDA graphs (torch.cuda.graphs, or torch.compile with "
              "mode='reduce-overhead') to remove the launch gaps")
CPU_ADVICE = ("larger batch to amortise the per-operator host overhead; torch.compile to fuse the small "
              "operators")


def classify(idle_pct: float) -> str:
    """`launch-bound`, `mixed` or `device-bound` from the idle share in percent."""
    if np.isnan(idle_pct):
        return "unknown"
    if idle_pct >= (1 - 1 / LAUNCH_BOUND_RATIO) * 100:
        return "launch-bound"
    if idle_pct >= MIXED_IDLE_PCT:
        return "mixed"
    return "device-bound"


def point_table(data: RunData) -> pd.DataFrame:
    """One row per point: status, wall and kernel ms of one forward, idle %, regime, advice, tokens/s,
    split overhead, output check, and hardware columns where the run has them."""
    p = data.points
    out = p[["run_id", "rank", "world_size", "point_id", "device", "batch", "seqlen", "dtype"]].copy()
    out["tokens"] = (p["tokens"] if "tokens" in p else p.batch * p.seqlen).astype("int64")
    out["status"] = p.status
    out["error"] = p.get("error")
    ok = p.status == "ok"
    out["wall_ms"] = p.original_ms_median.astype(float).where(ok)
    out["kernel_ms"] = p.forward_kernel_ms.astype(float).where(ok)
    idle = (1 - out.kernel_ms / out.wall_ms.where(out.wall_ms > 0)).clip(lower=0) * 100
    out["idle_pct"] = idle
    out["regime"] = [classify(v) if s else None for v, s in zip(idle.fillna(np.nan), ok, strict=True)]
    advice = GPU_ADVICE if data.on_gpu else CPU_ADVICE
    out["advice"] = [advice if r == "launch-bound" else None for r in out.regime]
    out["tokens_per_s"] = out.tokens / (out.wall_ms.where(out.wall_ms > 0) * 1e-3)
    for col in ("split_vs_original_pct", "split_bare_vs_original_pct", *findings.PAIRED_COLUMNS):
        out[col] = p[col] if col in p else None
    out["original_spread_pct"] = noise.spread_pct(p).where(ok)
    out["fidelity_verdict"] = findings.fidelity_verdicts(out).where(ok)
    out["host_noisy"] = noise.noisy_points(out)
    for col in ("output_check", "attributed_kernel_pct"):
        out[col] = p[col] if col in p else None
    extras = hardware.point_extras(data.optional)
    if extras.empty:
        out = out.assign(**{c: np.nan for c in hardware.POINT_COLUMNS})
    else:
        extras = extras.astype({"rank": out["rank"].dtype, "point_id": out["point_id"].dtype})
        out = out.merge(extras, on=hardware.POINT_KEYS, how="left")
    return out.sort_values(["rank", "batch", "seqlen", "point_id"]).reset_index(drop=True)
