"""Measure one sweep point: original vs split timing, output check, profiler attribution.

Everything here produces plain rows for the schema's tables; nothing is written or rendered.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from mambaprof.collectors import profiler
from mambaprof.collectors.context import PointCollector, PointContext, PointSpec
from mambaprof.collectors.markers import BLOCK, FORWARD, MIXER, RangeListener, Window
from mambaprof.collectors.timing import ForwardTimer, WindowTimer
from mambaprof.model.counts import (
    Count,
    attention_count,
    attention_dims,
    embedding_count,
    lm_head_count,
    mixer_counts,
    mlp_count,
    moe_count,
    norm_count,
    residual_count,
)
from mambaprof.model.inputs import ModelCall, OutputCheck, compare_outputs
from mambaprof.model.structure import ModelStructure, expected_components
from mambaprof.paired import PairedDifference, paired_difference
from mambaprof.run.instrument import Instrumenter
from mambaprof.taxonomy import MIXER_COMPONENTS, MODEL_LAYER

#: Fewest timed (original, split) pairs a point gets, whatever the time cap.
MIN_TIMED_REPEATS = 3
#: After the planned repeats, (original, bare split) pairs go on while the confidence interval of their paired
#: difference is wider than this (half-width, percentage points) and time is left (see `more_fidelity_pairs`).
FIDELITY_PRECISION_PCT = 1.0
#: Most (original, bare split) pairs a point times.
MAX_FIDELITY_PAIRS = 100


def more_fidelity_pairs(diff: PairedDifference | None, pairs: int, elapsed_s: float, budget_s: float) -> bool:
    """Whether to time another (original, bare split) pair: the paired difference is not yet known to
    FIDELITY_PRECISION_PCT, fewer than MAX_FIDELITY_PAIRS pairs ran, and `elapsed_s` of timing is below
    `budget_s` (the point's time cap, or as long again as the planned repeats took when there is none)."""
    if diff is None or pairs >= MAX_FIDELITY_PAIRS or elapsed_s >= budget_s:
        return False
    return diff.half_width_pct > FIDELITY_PRECISION_PCT


def agreed(spec: PointSpec, value: float) -> float:
    """`value` as every rank running this point sees it: its MAX over them (`spec.agree_max`), or itself
    in a single process. Each call is a collective under ranks: call it unconditionally at the same place."""
    return value if spec.agree_max is None else float(spec.agree_max(float(value)))


@dataclass
class PointMeasurement:
    """Rows produced for one point."""

    point: dict[str, Any]
    components: list[dict[str, Any]] = field(default_factory=list)
    kernels: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "mean": statistics.fmean(values), "min": min(values),
            "max": max(values), "std": statistics.pstdev(values) if len(values) > 1 else 0.0}


#: components marked inside a layer block besides the mixer (their spans are subtracted to get `residual`)
_LAYER_MARKED = ("norm", "other", "attention", "mlp", "moe")


def component_walls(spans: dict[Window, float], structure: ModelStructure) -> dict[tuple[int, str], float]:
    """Per (layer, component) wall ms of one forward from window spans.

    Direct windows give their span; `residual` (or the fused `norm`) is the block's span minus its
    marked children; `other` at layer -1 is the forward's span minus everything marked inside it.
    """
    out: dict[tuple[int, str], float] = defaultdict(float)
    for w, ms in spans.items():
        if w.name not in (FORWARD, BLOCK, MIXER):
            out[(w.layer, w.name)] += ms
    inside_forward = 0.0
    for ls in structure.layers:
        layer = ls.layer
        mixer_ms = spans.get(Window(layer, MIXER), 0.0)
        if ls.block is not None:
            block_ms = spans.get(Window(layer, BLOCK), 0.0)
            children = mixer_ms + sum(out.get((layer, c), 0.0) for c in _LAYER_MARKED)
            leftover = max(block_ms - children, 0.0)
            out[(layer, "norm" if ls.fused_add_norm else "residual")] += leftover
            inside_forward += block_ms
        else:
            inside_forward += mixer_ms
    for name in ("embedding", "lm_head", "norm"):
        inside_forward += out.get((MODEL_LAYER, name), 0.0)
    forward_ms = spans.get(Window(MODEL_LAYER, FORWARD), 0.0)
    out[(MODEL_LAYER, "other")] += max(forward_ms - inside_forward, 0.0)
    return dict(out)


def component_counts(structure: ModelStructure, batch: int, seqlen: int, elem: int) -> dict[tuple[int, str], Count]:
    """Closed-form counts per (layer, component) for one forward (mixers, attention, mlp, moe, norms)."""
    out: dict[tuple[int, str], Count] = {}
    dm = structure.d_model
    for site in structure.mixers:
        for comp, count in mixer_counts(site.dims, batch, seqlen, elem).items():
            out[(site.layer, comp)] = count
    for ls in structure.layers:
        key = ls.layer
        for m in ls.attention:
            d = attention_dims(m)
            if d is not None:
                c = attention_count(d, dm, batch, seqlen, elem)
                out[(key, "attention")] = out[(key, "attention")] + c if (key, "attention") in out else c
        for m in ls.mlp:
            c = mlp_count(m, dm, batch, seqlen, elem)
            out[(key, "mlp")] = out[(key, "mlp")] + c if (key, "mlp") in out else c
        for m in ls.moe:
            mc = moe_count(m, dm, batch, seqlen, elem)
            if mc is not None:
                out[(key, "moe")] = out[(key, "moe")] + mc if (key, "moe") in out else mc
        if ls.block is not None and dm:
            norm = Count(0.0, 0.0)
            for _ in ls.norms or [None]:
                norm = norm + norm_count(dm, batch, seqlen, elem)
            res = residual_count(dm, batch, seqlen, elem)
            if ls.fused_add_norm:
                out[(key, "norm")] = norm + res
            else:
                out[(key, "norm")] = norm
                out[(key, "residual")] = res
    dm = structure.d_model
    if structure.embeddings:
        out[(MODEL_LAYER, "embedding")] = embedding_count(dm, batch, seqlen, elem)
    if structure.final_norms or structure.fused_final_norm:
        out[(MODEL_LAYER, "norm")] = norm_count(dm, batch, seqlen, elem)
    if structure.lm_heads and structure.vocab_size:
        out[(MODEL_LAYER, "lm_head")] = lm_head_count(dm, structure.vocab_size, batch, seqlen, elem)
    return out


def measure_point(spec: PointSpec, structure: ModelStructure, call: ModelCall,
                  identity: dict[str, Any], extra_collectors: Sequence[PointCollector] = (),
                  on_phase: Callable[[str], None] | None = None) -> PointMeasurement:
    """Run every pass of one point and return its rows (status `ok`).

    Passes: warm-up; `repeats` interleaved timings of the original forward, the instrumented forward
    with no listener (the split's own cost) and the instrumented forward with its window timers (the
    component spans), then more (original, bare split) pairs while their paired difference is imprecise
    and time is left (`more_fidelity_pairs`); the output check; `profile_repeats` forwards under
    torch.profiler with ranges (kernel attribution, TensorBoard trace); extra collectors.
    Exceptions (OOM, user errors) propagate to the sweep, which records them.
    """
    phase = on_phase or (lambda _: None)
    split = spec.mode == "split"
    inst = Instrumenter(structure, split=split)
    ctx = PointContext(spec, structure, call, inst)
    timer = ForwardTimer(spec.device)
    windows = WindowTimer(spec.device)

    cap = spec.point_seconds
    phase("warm-up")
    t0 = time.perf_counter()
    warm_rounds = 0
    for i in range(spec.warmup):  # time caps compare the slowest rank's elapsed time (agreed): same rounds on all
        if cap is not None and i > 0 and agreed(spec, time.perf_counter() - t0) > cap / 2:
            break
        ctx.run_original()
        ctx.run_instrumented([windows])
        warm_rounds += 1

    phase("timing")
    reference = ctx.run_original()
    candidate = ctx.run_instrumented([])
    check: OutputCheck = compare_outputs(reference, candidate, spec.dtype)
    del reference, candidate
    orig_ms: list[float] = []
    host_ms: list[float] = []
    bare_ms: list[float] = []
    split_ms: list[float] = []
    walls: list[dict[tuple[int, str], float]] = []

    def time_original() -> None:
        dev_ms, h_ms, out = timer.time(ctx.run_original)
        del out
        orig_ms.append(dev_ms)
        host_ms.append(h_ms)

    def time_bare() -> None:
        # the split forward with no listener: what splitting itself costs (fidelity), apart from the markers;
        # the hooks go in and out around the timed forward, as they would once around many forwards
        with ctx.instrumented([]) as forward:
            dev_ms, _, out = timer.time(forward)
        del out
        bare_ms.append(dev_ms)

    def time_marked() -> None:
        windows.reset()
        with ctx.instrumented([windows]) as forward:
            dev_ms, _, out = timer.time(forward)
        del out
        split_ms.append(dev_ms)
        if split:
            walls.append(component_walls(windows.spans(), structure))

    # the three forwards of a repeat take turns going first, so none always follows the same one
    passes = (time_original, time_bare, time_marked)
    t0 = time.perf_counter()
    for i in range(spec.repeats):
        if cap is not None and i >= MIN_TIMED_REPEATS and agreed(spec, time.perf_counter() - t0) > cap:
            break
        for k in range(len(passes)):
            passes[(i + k) % len(passes)]()
    # the fidelity pairs go on (original and bare split, taking turns going first) until their paired
    # difference is precise, within the point's cap (or as long again as the planned repeats took)
    # under ranks every rank takes another pair when any of them wants one (and the slowest one's time decides)
    planned_s = agreed(spec, time.perf_counter() - t0)
    budget_s = cap if cap is not None else 2.0 * planned_s
    fidelity = paired_difference(orig_ms, bare_ms)

    def another_pair() -> bool:
        if len(bare_ms) >= MAX_FIDELITY_PAIRS:  # the same count on every rank: no collective needed to stop here
            return False
        want = more_fidelity_pairs(fidelity, len(bare_ms), time.perf_counter() - t0, budget_s)
        return agreed(spec, 1.0 if want else 0.0) > 0.0

    while another_pair():
        first, second = (time_original, time_bare) if len(bare_ms) % 2 == 0 else (time_bare, time_original)
        first()
        second()
        fidelity = paired_difference(orig_ms, bare_ms)

    kernel_rows: list[profiler.KernelEvent] = []
    kstats: dict[tuple[int, str], profiler.KernelStats] = {}
    fwd_kernel_ms = attributed_pct = None
    kernel_count = None
    if spec.profile_repeats > 0:
        phase("profiler")
        worker = f"point{spec.point_id:04d}_b{spec.batch}_l{spec.seqlen}"
        recording = profiler.record(lambda: ctx.run_instrumented([RangeListener()]), spec.device,
                                    spec.profile_repeats, spec.trace_dir, worker)
        families = {s.layer: s.dims.family for s in structure.mixers}
        families.update({a.layer: a.family for a in structure.asis})
        kernel_rows = profiler.attribute(recording, families, structure.fused_norm_layers)
        del recording
        kstats = profiler.component_stats(kernel_rows, spec.profile_repeats)
        fwd_kernel_ms, attributed_pct, kernel_count = profiler.forward_totals(kernel_rows, spec.profile_repeats)

    o, s, b = _stats(orig_ms), _stats(split_ms), _stats(bare_ms)
    point = {
        **identity, "tokens": spec.batch * spec.seqlen, "mode": spec.mode, "status": "ok",
        "original_ms_median": o["median"], "original_ms_min": o["min"], "original_ms_max": o["max"],
        "split_ms_median": s["median"], "split_ms_min": s["min"], "split_ms_max": s["max"],
        "split_vs_original_pct": 100.0 * (s["median"] / o["median"] - 1.0) if o["median"] > 0 else None,
        "split_bare_ms_median": b["median"], "split_bare_ms_min": b["min"], "split_bare_ms_max": b["max"],
        "split_bare_vs_original_pct": 100.0 * (b["median"] / o["median"] - 1.0) if o["median"] > 0 else None,
        "fidelity_pairs": fidelity.pairs if fidelity else 0,
        "split_bare_paired_pct": fidelity.median_pct if fidelity else None,
        "split_bare_ci_low_pct": fidelity.ci_low_pct if fidelity else None,
        "split_bare_ci_high_pct": fidelity.ci_high_pct if fidelity else None,
        "host_ms_median": statistics.median(host_ms),
        "forward_kernel_ms": fwd_kernel_ms, "attributed_kernel_pct": attributed_pct, "kernel_count": kernel_count,
        "output_check": "pass" if check.passed else "fail", "output_max_abs_err": check.max_abs_err,
        "output_rel_err": check.rel_err, "output_tolerance": check.tolerance,
        "repeats": len(split_ms), "warmup": warm_rounds, "profile_repeats": spec.profile_repeats,
    }
    result = PointMeasurement(point=point)
    result.components = _component_rows(spec, structure, identity, walls, kstats, split)
    result.kernels = [{**identity, **vars(k)} for k in kernel_rows]

    for collector in extra_collectors:
        phase(type(collector).__name__)
        for table, rows in collector.measure_point(ctx, point).items():
            result.extra.setdefault(table, []).extend(rows)
    return result


def _component_rows(spec: PointSpec, structure: ModelStructure, identity: dict[str, Any],
                    walls: list[dict[tuple[int, str], float]], kstats: dict[tuple[int, str], profiler.KernelStats],
                    split: bool) -> list[dict[str, Any]]:
    elem = torch.empty((), dtype=spec.dtype).element_size()
    counts = component_counts(structure, spec.batch, spec.seqlen, elem)
    sites = {s.layer: s for s in structure.mixers}
    layer_sites = {ls.layer: ls for ls in structure.layers}
    for site in structure.mixers:
        if "gating" in site.adapter.fused_components(site.module) and (site.layer, "gating") in counts:
            # the scan kernel does the gating: its count includes the gating FLOPs and reading z
            gating = counts[(site.layer, "gating")]
            z_bytes = float(elem * spec.batch * spec.seqlen * site.dims.d_inner)
            counts[(site.layer, "ssm_scan")] = counts[(site.layer, "ssm_scan")] + Count(gating.flops, z_bytes)
    keys = expected_components(structure)
    marked = set(keys)  # components with a marker window; others (e.g. communication) have kernel time only
    keys += [k for k in kstats if k not in marked]
    rows = []
    for layer, comp in keys:
        site = sites.get(layer)
        fused = site.adapter.fused_components(site.module) if site is not None else {}
        ls = layer_sites.get(layer)
        asis = ls.asis[0] if ls is not None and ls.asis else None
        row: dict[str, Any] = {
            **identity, "layer": layer, "component": comp,
            "family": site.dims.family if site is not None else (ls.family if ls is not None else "model"),
            "mixer_class": site.mixer_class if site is not None else (asis.mixer_class if asis else None),
            "layer_kind": ls.kind if ls is not None else "model",
        }
        note = fused.get(comp)
        if ls is not None and ls.fused_add_norm and comp == "norm":
            note = "includes the residual add (fused add+norm kernel)"
        if asis is not None and comp in MIXER_COMPONENTS:
            note = f"mixer profiled as-is ({asis.reason}): kernel-name rules, no wall split"
        row["note"] = note
        if split and walls and comp not in fused and (layer, comp) in marked:
            values = [w.get((layer, comp), 0.0) for w in walls]
            st = _stats(values)
            row.update({"wall_ms_median": st["median"], "wall_ms_mean": st["mean"], "wall_ms_min": st["min"],
                        "wall_ms_max": st["max"], "wall_ms_std": st["std"], "wall_samples": len(values)})
        ks = kstats.get((layer, comp))
        if ks is not None:
            row.update({"kernel_ms_median": ks.median_ms, "kernel_ms_mean": ks.mean_ms, "kernel_ms_min": ks.min_ms,
                        "kernel_ms_max": ks.max_ms, "kernel_samples": ks.samples,
                        "kernel_count": ks.count_per_forward, "attribution": ks.attribution})
        elif kstats and comp not in fused:
            row.update({"kernel_ms_median": 0.0, "kernel_ms_mean": 0.0, "kernel_ms_min": 0.0, "kernel_ms_max": 0.0,
                        "kernel_samples": spec.profile_repeats, "kernel_count": 0})
        count = counts.get((layer, comp))
        if count is not None and comp not in fused:
            row["flops"], row["bytes_min"] = count.flops, count.bytes_min
        rows.append(row)
    return rows
