"""The hybrid view of a run: where the time goes by layer kind against sequence length, where attention overtakes
the Mamba layers, and the decode cache split into SSM + conv state (constant in length) and KV cache (growing).

Reads the run directory's Parquet tables only (`components`, `layers`, `runs`); no model, no torch.

    python -m mambaprof.reports.hybrids RUN_DIR [--basis kernel|wall]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mambaprof.errors import MambaprofError
from mambaprof.storage.rundir import read_run_record, read_table
from mambaprof.taxonomy import COMPONENT_KIND

#: the groups of the hybrid view, in display order
KINDS = ("mamba", "attention", "mlp", "moe", "rest")
_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def component_kind(component: str) -> str:
    """The hybrid-view group of a component: mamba (every mixer component), attention, mlp, moe, or rest."""
    return COMPONENT_KIND.get(component, "rest")


def choose_basis(components: pd.DataFrame, basis: str = "auto") -> str:
    """`kernel` when kernel times were recorded on a GPU run, else `wall` (the CPU default), unless given."""
    if basis != "auto":
        return basis
    has_kernel = "kernel_ms_median" in components and components["kernel_ms_median"].notna().any()
    on_gpu = "device" in components and components["device"].astype(str).str.startswith("cuda").any()
    return "kernel" if has_kernel and on_gpu else "wall"


def kind_shares(components: pd.DataFrame, basis: str) -> pd.DataFrame:
    """Per (batch, seqlen): milliseconds and share (%) of the forward by layer kind.

    Columns: batch, seqlen, kind, ms, share_pct. Time is `wall_ms_median` or `kernel_ms_median` (basis) summed
    over layers; `rest` is norms, residuals, embedding, lm_head, communication and other.
    """
    col = "kernel_ms_median" if basis == "kernel" else "wall_ms_median"
    df = components[["batch", "seqlen", "component", col]].dropna(subset=[col]).copy()
    df["kind"] = df["component"].map(component_kind)
    per = df.groupby(["batch", "seqlen", "kind"], as_index=False)[col].sum().rename(columns={col: "ms"})
    total = per.groupby(["batch", "seqlen"])["ms"].transform("sum")
    per["share_pct"] = np.where(total > 0, 100.0 * per["ms"] / total, np.nan)
    return per.sort_values(["batch", "seqlen", "kind"]).reset_index(drop=True)


@dataclass(frozen=True)
class Crossover:
    """Where attention time passes the Mamba layers' time (per forward, one batch size).

    seqlen: the length (tokens), or None when it cannot be placed; measured: found between measured points
    (interpolated) rather than extrapolated from fits; how: in words, for the report.
    """

    batch: int
    seqlen: float | None
    measured: bool
    how: str


def crossover(shares: pd.DataFrame, batch: int) -> Crossover:
    """The sequence length where attention's time overtakes the Mamba layers' time at batch `batch`.

    Measured when the sign of (attention - mamba) changes between two measured lengths (linear interpolation
    between them); otherwise extrapolated from least-squares fits over the measured lengths, attention as
    a + b L + c L^2 (projections linear, scores quadratic) and Mamba as a + b L, and said so. None when the
    run has no attention or no Mamba layer, or fewer than three lengths to fit.
    """
    df = shares[shares["batch"] == batch].pivot_table(index="seqlen", columns="kind", values="ms", aggfunc="sum")
    if "attention" not in df or "mamba" not in df:
        return Crossover(batch, None, False, "no attention or no Mamba layer in this run")
    df = df[["attention", "mamba"]].dropna().sort_index()
    lengths = df.index.to_numpy(dtype=float)
    diff = (df["attention"] - df["mamba"]).to_numpy(dtype=float)
    if len(diff) and diff[0] > 0:
        return Crossover(batch, float(lengths[0]), True,
                         f"attention already takes longer than the Mamba layers at the shortest length "
                         f"({int(lengths[0])} tokens)")
    for i in range(1, len(diff)):
        if diff[i - 1] <= 0 < diff[i]:
            x0, x1, d0, d1 = lengths[i - 1], lengths[i], diff[i - 1], diff[i]
            at = x0 + (x1 - x0) * (-d0) / (d1 - d0)
            return Crossover(batch, float(at), True,
                             f"measured: between {int(x0)} and {int(x1)} tokens (interpolated)")
    if len(lengths) < 3:
        return Crossover(batch, None, False, "attention stays below the Mamba layers; too few lengths to fit")
    att = np.polyfit(lengths, df["attention"].to_numpy(dtype=float), 2)
    mam = np.polyfit(lengths, df["mamba"].to_numpy(dtype=float), 1)
    roots = np.roots(np.polysub(att, mam))
    ahead = sorted(r.real for r in roots if abs(r.imag) < 1e-9 and r.real > lengths[-1])
    if not ahead or att[0] <= 0:
        return Crossover(batch, None, False, "attention stays below the Mamba layers and the fits do not cross")
    return Crossover(batch, float(ahead[0]), False,
                     f"extrapolated from fits over {int(lengths[0])}..{int(lengths[-1])} tokens (attention "
                     "quadratic, Mamba linear in length): not measured")


def decode_cache(layers: pd.DataFrame, seqlens: list[int], batch: int, elem_bytes: int,
                 ssm_state_bytes: int = 4) -> pd.DataFrame:
    """Decode-cache memory per context length, from the closed forms in the `layers` table.

    SSM state (held in fp32 by default, `ssm_state_bytes`) and conv state are constant in length; the attention
    KV cache grows linearly. Columns: seqlen, ssm_state_bytes, conv_state_bytes, kv_cache_bytes, total_bytes,
    kv_share_pct.
    """
    ssm = int(layers["ssm_state_elems_per_seq"].fillna(0).sum()) * batch * ssm_state_bytes
    conv = int(layers["conv_state_elems_per_seq"].fillna(0).sum()) * batch * elem_bytes
    kv_per_token = int(layers["kv_cache_elems_per_token"].fillna(0).sum()) * batch * elem_bytes
    rows = []
    for length in seqlens:
        kv = kv_per_token * length
        total = ssm + conv + kv
        rows.append({"seqlen": length, "ssm_state_bytes": ssm, "conv_state_bytes": conv, "kv_cache_bytes": kv,
                     "total_bytes": total, "kv_share_pct": 100.0 * kv / total if total else float("nan")})
    return pd.DataFrame(rows)


@dataclass
class HybridView:
    """Everything the hybrid view shows for one run."""

    basis: str
    layer_kinds: pd.Series
    shares: pd.DataFrame
    crossovers: list[Crossover]
    cache: pd.DataFrame
    asis_layers: list[int]


def hybrid_view(run_dir: Path | str, basis: str = "auto", cache_seqlens: list[int] | None = None) -> HybridView:
    """The hybrid view of a run directory (see the module docstring)."""
    components = read_table(run_dir, "components").to_pandas()
    record = read_run_record(run_dir)
    try:
        layers = read_table(run_dir, "layers").to_pandas()
    except MambaprofError:
        layers = pd.DataFrame(columns=["layer", "layer_kind", "ssm_state_elems_per_seq", "conv_state_elems_per_seq",
                                       "kv_cache_elems_per_token"])
    basis = choose_basis(components, basis)
    shares = kind_shares(components, basis)
    batches = sorted(int(b) for b in shares["batch"].unique())
    seqlens = cache_seqlens or sorted({int(s) for s in record.get("seqlens") or []} | {4096, 16384, 65536})
    elem = _DTYPE_BYTES.get(str(record.get("dtype")), 2)
    kinds = layers.set_index("layer")["layer_kind"] if len(layers) else pd.Series(dtype=str)
    return HybridView(basis, kinds, shares, [crossover(shares, b) for b in batches],
                      decode_cache(layers, seqlens, 1, elem), list(record.get("asis_layers") or []))


def format_view(view: HybridView) -> list[str]:
    """The view as plain text lines (terminal and logs)."""
    lines = []
    counts = view.layer_kinds.value_counts()
    lines.append("layers by kind: " + ", ".join(f"{k} x{n}" for k, n in counts.items()))
    if view.asis_layers:
        lines.append(f"profiled as-is (no split): layers {', '.join(map(str, view.asis_layers))}")
    lines.append(f"share of the forward by layer kind ({view.basis} time):")
    table = view.shares.pivot_table(index=["batch", "seqlen"], columns="kind", values="share_pct")
    cols = [k for k in KINDS if k in table.columns]
    lines.append("  B      L  " + "".join(f"{k:>11}" for k in cols))
    for (b, s), row in table.iterrows():
        lines.append(f"  {b:<2} {s:>6}  " + "".join(f"{row[k]:>10.1f}%" for k in cols))
    for c in view.crossovers:
        at = f"{c.seqlen:,.0f} tokens" if c.seqlen is not None else "none"
        lines.append(f"attention overtakes the Mamba layers (B={c.batch}): {at} — {c.how}")
    lines.append("decode cache per sequence (closed form): SSM+conv state constant, KV cache growing:")
    for _, r in view.cache.iterrows():
        lines.append(f"  L={int(r.seqlen):>7}: SSM {r.ssm_state_bytes / 2**20:9.1f} MiB  conv "
                     f"{r.conv_state_bytes / 2**20:7.2f} MiB  KV {r.kv_cache_bytes / 2**20:10.1f} MiB  "
                     f"({r.kv_share_pct:.0f}% KV)")
    return lines


def main(argv: list[str] | None = None) -> int:
    """`python -m mambaprof.reports.hybrids RUN_DIR [--basis kernel|wall]`: print the hybrid view."""
    args = list(sys.argv[1:] if argv is None else argv)
    basis = "auto"
    if "--basis" in args:
        i = args.index("--basis")
        basis = args[i + 1] if i + 1 < len(args) else "auto"
        del args[i:i + 2]
    if len(args) != 1:
        print("usage: python -m mambaprof.reports.hybrids RUN_DIR [--basis kernel|wall]", file=sys.stderr)
        return 2
    try:
        view = hybrid_view(args[0], basis)
    except MambaprofError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(format_view(view)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def maybe_view(run_dir: Path | str, basis: str = "auto") -> HybridView | None:
    """The hybrid view when the run has layers other than pure Mamba ones (attention, MLP, MoE) or as-is
    layers; None for a pure Mamba run or a run written before the `layers` table existed."""
    try:
        layers = read_table(run_dir, "layers", columns=["layer_kind"]).to_pandas()
    except MambaprofError:
        return None
    if layers.empty or set(layers["layer_kind"]) <= {"mamba1", "mamba2"}:
        return None
    return hybrid_view(run_dir, "auto" if basis not in ("kernel", "wall") else basis)
