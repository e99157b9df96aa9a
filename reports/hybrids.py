"""The hybrid view of a run: where the time goes by layer kind against sequence length, where attention overtakes
the Mamba layers, and the decode cache split into SSM + conv state (constant in length) and KV cache (growing).

Where the run has them, energy (`energy` table: the representative Mamba layer's components, scaled by the
layers it represents, against the whole forward's energy) and memory (`memory` table: per-component transient
peaks and net allocations) by layer kind too.

Reads the run directory's Parquet tables only (`components`, `layers`, `runs`, `energy`, `memory`); no model,
no torch.

    python -m mambaprof.reports.hybrids RUN_DIR [--basis kernel|wall]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
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
    at, measured, how = overtake(df.index.to_numpy(dtype=float), df["attention"].to_numpy(dtype=float),
                                 df["mamba"].to_numpy(dtype=float), "attention", "the Mamba layers")
    return Crossover(batch, at, measured, how)


def overtake(lengths: np.ndarray, rising: np.ndarray, linear: np.ndarray, rising_name: str,
             linear_name: str) -> tuple[float | None, bool, str]:
    """Where `rising` (ms, quadratic in length at most) passes `linear` (ms, linear in length), in tokens.

    Returns (length or None, measured, how in words). Measured when the sign of (rising - linear) changes
    between two measured lengths (linear interpolation between them); otherwise extrapolated from
    least-squares fits over the measured lengths (rising as a + b L + c L^2, linear as a + b L), and said so;
    None with fewer than three lengths to fit or fits that do not cross beyond the longest length.
    """
    diff = rising - linear
    if len(diff) and diff[0] > 0:
        return (float(lengths[0]), True, f"{rising_name} already takes longer than {linear_name} at the shortest "
                f"length ({int(lengths[0])} tokens)")
    for i in range(1, len(diff)):
        if diff[i - 1] <= 0 < diff[i]:
            x0, x1, d0, d1 = lengths[i - 1], lengths[i], diff[i - 1], diff[i]
            return (float(x0 + (x1 - x0) * (-d0) / (d1 - d0)), True,
                    f"measured: between {int(x0)} and {int(x1)} tokens (interpolated)")
    if len(lengths) < 3:
        return None, False, f"{rising_name} stays below {linear_name}; too few lengths to fit"
    quad = np.polyfit(lengths, rising, 2)
    lin = np.polyfit(lengths, linear, 1)
    roots = np.roots(np.polysub(quad, lin))
    ahead = sorted(r.real for r in roots if abs(r.imag) < 1e-9 and r.real > lengths[-1])
    if not ahead or quad[0] <= 0:
        return None, False, f"{rising_name} stays below {linear_name} and the fits do not cross"
    return (float(ahead[0]), False, f"extrapolated from fits over {int(lengths[0])}..{int(lengths[-1])} tokens "
            f"({rising_name} quadratic, {linear_name} linear in length): not measured")


@dataclass(frozen=True)
class PrefillCrossover:
    """Where a Transformer's whole prefill forward becomes slower than a Mamba's (one batch size).

    transformer / mamba: the runs' labels; seqlen: the length (tokens) or None; measured: between measured
    points rather than extrapolated; how: in words; params_ratio: the Transformer's parameters over the Mamba's.
    """

    batch: int
    transformer: str
    mamba: str
    seqlen: float | None
    measured: bool
    how: str
    params_ratio: float | None
    time: str = "wall"


def _has_kernel(points: pd.DataFrame) -> bool:
    return "kernel_ms" in points and bool(points["kernel_ms"].notna().any())


def _forward_ms(points: pd.DataFrame, col: str) -> pd.DataFrame:
    ok = points[points["status"] == "ok"] if "status" in points else points
    return ok.groupby(["batch", "seqlen"], as_index=False)[col].median().rename(columns={col: "ms"})


def prefill_crossovers(points_a: pd.DataFrame, points_b: pd.DataFrame, record_a: dict, record_b: dict,
                       label_a: str, label_b: str, basis: str) -> list[PrefillCrossover]:
    """For a Transformer run beside a Mamba run (either order): per common batch, the prefill length (tokens)
    where the Transformer's forward (points' wall_ms or kernel_ms by basis) passes the Mamba's (see overtake).
    Empty unless exactly one of the runs is a pure Transformer (`model_family` transformer) and the other
    has Mamba layers."""
    fam_a, fam_b = str(record_a.get("model_family")), str(record_b.get("model_family"))
    if (fam_a == "transformer") == (fam_b == "transformer") or "transformer" not in (fam_a, fam_b):
        return []
    if fam_a == "transformer":
        t_pts, m_pts, t_rec, m_rec, t_lab, m_lab = points_a, points_b, record_a, record_b, label_a, label_b
    else:
        t_pts, m_pts, t_rec, m_rec, t_lab, m_lab = points_b, points_a, record_b, record_a, label_b, label_a
    time = "kernel" if basis == "kernel" and _has_kernel(t_pts) and _has_kernel(m_pts) else "wall"
    t_ms, m_ms = _forward_ms(t_pts, f"{time}_ms"), _forward_ms(m_pts, f"{time}_ms")
    both = t_ms.merge(m_ms, on=["batch", "seqlen"], suffixes=("_t", "_m")).dropna().sort_values(["batch", "seqlen"])
    tp, mp = t_rec.get("n_params"), m_rec.get("n_params")
    ratio = float(tp) / float(mp) if tp and mp else None
    out = []
    for batch, grp in both.groupby("batch"):
        at, measured, how = overtake(grp["seqlen"].to_numpy(dtype=float), grp["ms_t"].to_numpy(dtype=float),
                                     grp["ms_m"].to_numpy(dtype=float), "the Transformer", "the Mamba")
        out.append(PrefillCrossover(int(batch), t_lab, m_lab, at, measured, how, ratio, time))
    return out


def format_prefill_crossovers(found: list[PrefillCrossover]) -> list[str]:
    """The prefill crossovers as plain text lines (terminal and HTML)."""
    lines = []
    for c in found:
        at = f"{c.seqlen:,.0f} tokens" if c.seqlen is not None else "none found"
        size = f"; parameters {c.transformer} / {c.mamba} = {c.params_ratio:.2f}x" if c.params_ratio else ""
        if c.params_ratio and not 0.5 <= c.params_ratio <= 2.0:
            size += " (not the same size: the crossover mostly measures the size difference)"
        lines.append(f"B={c.batch}: {c.transformer}'s prefill forward becomes slower than {c.mamba}'s at {at} "
                     f"({c.time} time of the whole forward) — {c.how}{size}")
    return lines


def compare_runs_crossovers(run_a: Path | str, run_b: Path | str, label_a: str, label_b: str,
                            basis: str) -> list[PrefillCrossover]:
    """prefill_crossovers read from two run directories (their `points` and `runs` tables: the model's own
    forward, original_ms_median, as wall time; forward_kernel_ms as kernel time)."""
    def points(run: Path | str) -> pd.DataFrame:
        raw = read_table(run, "points").to_pandas()
        return raw.assign(wall_ms=raw["original_ms_median"], kernel_ms=raw.get("forward_kernel_ms"))

    return prefill_crossovers(points(run_a), points(run_b), read_run_record(run_a), read_run_record(run_b),
                              label_a, label_b, basis)


def ssm_state_element_bytes(record: dict, elem_bytes: int) -> int:
    """Bytes per SSM state element in the model's decode cache: mamba_ssm allocates its states in the model's
    dtype (`allocate_inference_cache`), transformers keeps the scan's float32 final state (4)."""
    mixers = str(record.get("mixer_classes") or "")
    return elem_bytes if mixers and all(m.startswith("mamba_ssm.") for m in mixers.split(",") if m) else 4


def decode_cache(layers: pd.DataFrame, seqlens: list[int], batch: int, elem_bytes: int,
                 ssm_state_bytes: int = 4) -> pd.DataFrame:
    """Decode-cache memory per context length, from the closed forms in the `layers` table.

    SSM state (`ssm_state_bytes` per element: 4 as transformers keeps it, see ssm_state_element_bytes) and conv
    state are constant in length; the attention
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


def energy_by_kind(energy: pd.DataFrame) -> pd.DataFrame:
    """Per (batch, seqlen, kind): energy per forward (mJ) of the component rows whose counter window resolved,
    each representative layer's row times the layers it represents (`layers_represented`), and its share (%)
    of the whole forward's energy (scope `forward`). Columns: batch, seqlen, kind, energy_mj,
    share_of_forward_pct (null without a resolved forward row). Kinds without resolved rows are absent: the
    energy collector measures one representative Mamba layer's components (with what else that layer holds)
    and the model-level ones, never the attention-only layers.
    """
    cols = ["batch", "seqlen", "kind", "energy_mj", "share_of_forward_pct"]
    if energy.empty or "scope" not in energy:
        return pd.DataFrame(columns=cols)
    ok = energy[(energy["status"] == "resolved") & energy["energy_mj"].notna()]
    comp = ok[ok["scope"] == "component"].copy()
    comp["kind"] = comp["component"].map(component_kind)
    comp["mj"] = comp["energy_mj"] * comp["layers_represented"].fillna(1)
    per = comp.groupby(["batch", "seqlen", "kind"], as_index=False)["mj"].sum().rename(columns={"mj": "energy_mj"})
    fwd = ok[ok["scope"] == "forward"].groupby(["batch", "seqlen"])["energy_mj"].median().rename("forward_mj")
    per = per.merge(fwd.reset_index(), on=["batch", "seqlen"], how="left")
    per["share_of_forward_pct"] = 100.0 * per["energy_mj"] / per["forward_mj"].where(per["forward_mj"] > 0)
    return per[cols].sort_values(["batch", "seqlen", "kind"]).reset_index(drop=True)


def memory_by_kind(memory: pd.DataFrame) -> pd.DataFrame:
    """Per (batch, seqlen, kind) from the `memory` table: the largest transient peak of one component window
    (peak_max_bytes), the net allocation left behind summed over the kind's components (alloc_delta_bytes), and
    the kind's share (%) of the summed per-component peaks (peak_share_pct)."""
    cols = ["batch", "seqlen", "kind", "peak_max_bytes", "alloc_delta_bytes", "peak_share_pct"]
    if memory.empty:
        return pd.DataFrame(columns=cols)
    df = memory.copy()
    df["kind"] = df["component"].map(component_kind)
    per = df.groupby(["batch", "seqlen", "kind"], as_index=False).agg(
        peak_max_bytes=("peak_delta_bytes", "max"), peak_sum=("peak_delta_bytes", "sum"),
        alloc_delta_bytes=("alloc_delta_bytes", "sum"))
    total = per.groupby(["batch", "seqlen"])["peak_sum"].transform("sum")
    per["peak_share_pct"] = np.where(total > 0, 100.0 * per["peak_sum"] / total, np.nan)
    return per[cols].sort_values(["batch", "seqlen", "kind"]).reset_index(drop=True)


def _optional(run_dir: Path | str, table: str) -> pd.DataFrame:
    try:
        return read_table(run_dir, table).to_pandas()
    except MambaprofError:
        return pd.DataFrame()


@dataclass
class HybridView:
    """Everything the hybrid view shows for one run (energy / memory empty when the run has no such table)."""

    basis: str
    layer_kinds: pd.Series
    shares: pd.DataFrame
    crossovers: list[Crossover]
    cache: pd.DataFrame
    asis_layers: list[int]
    energy: pd.DataFrame = field(default_factory=pd.DataFrame)
    memory: pd.DataFrame = field(default_factory=pd.DataFrame)


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
                      decode_cache(layers, seqlens, 1, elem, ssm_state_element_bytes(record, elem)),
                      list(record.get("asis_layers") or []),
                      energy_by_kind(_optional(run_dir, "energy")), memory_by_kind(_optional(run_dir, "memory")))


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
    if not view.energy.empty:
        lines.append("energy per forward by layer kind (representative layer x layers it stands for; % of the "
                     "forward's energy):")
        for (b, s), grp in view.energy.groupby(["batch", "seqlen"]):
            lines.append(f"  B={b} L={s}: " + ", ".join(
                f"{r.kind} {r.energy_mj:.2f} mJ" + (f" ({r.share_of_forward_pct:.0f}%)"
                                                    if pd.notna(r.share_of_forward_pct) else "")
                for r in grp.itertuples()))
    if not view.memory.empty:
        lines.append("memory by layer kind (largest transient peak of one component; share of summed peaks):")
        for (b, s), grp in view.memory.groupby(["batch", "seqlen"]):
            lines.append(f"  B={b} L={s}: " + ", ".join(
                f"{r.kind} {r.peak_max_bytes / 2**20:.2f} MiB ({r.peak_share_pct:.0f}%)"
                for r in grp.itertuples() if pd.notna(r.peak_max_bytes)))
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
