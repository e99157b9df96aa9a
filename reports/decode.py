"""The decode section: a step's time per component, tokens/s against batch, CUDA graphs vs none, and the
decode roofline (the bytes each step must move against the device's memory bandwidth), from the
decode_points and decode_components tables. Shares are of the decode step only (never mixed with prefill).

For hybrids (runs with attention layers): per prompt length, the step's time by layer kind (the Mamba layers'
components, attention, mlp, moe) with the run's own spread (quartiles over the timed steps), and the decode cache
split into SSM state, conv state and KV cache; the findings say from these numbers whether attention's time and
KV bytes grow with the context while the Mamba layers' stay flat, and where a difference is within the spread."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mambaprof.paired import OUTSIDE, WITHIN, interval_verdict
from mambaprof.reports.fmt import mib, missing, ms, num, pct, rate, si
from mambaprof.reports.peaks import DevicePeaks, resolve_peaks
from mambaprof.reports.views import View
from mambaprof.storage.rundir import read_run_record, read_table
from mambaprof.taxonomy import MIXER_COMPONENTS, component_order

DECODE_TABLES = ("decode_points", "decode_components")

#: layer-kind groups of a hybrid's decode step, by component (the Mamba layers are their mixers' components; other:
#: a layer's modules that are none of these, e.g. Zamba2's hybrid linear)
KIND_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("mamba", MIXER_COMPONENTS), ("attention", ("attention",)), ("mlp", ("mlp",)), ("moe", ("moe",)),
    ("norm+residual", ("norm", "residual")), ("other", ("other",)))
#: what is left (embedding, final norm, lm_head, positions: layer -1)
MODEL_GROUP = "model"
_CACHE_PARTS = (("SSM state", "ssm_state_bytes"), ("conv state", "conv_state_bytes"), ("KV cache", "kv_cache_bytes"))


def kind_group(layer: int, component: str) -> str:
    """The layer-kind group of a (layer, component) of a decode step."""
    if layer < 0:
        return MODEL_GROUP
    return next((g for g, comps in KIND_GROUPS if component in comps), MODEL_GROUP)


def _trend(lo: pd.Series, hi: pd.Series) -> str:
    """`grows` / `shrinks` when the two points' quartile ranges do not overlap, else `within the spread`."""
    if hi.q1_ms > lo.q3_ms:
        return "grows"
    if hi.q3_ms < lo.q1_ms:
        return "shrinks"
    return "within the spread"


def is_decode_run(run_dir: Path | str) -> bool:
    """True for a run directory written by `trace --phase decode` (decode tables, no prefill points)."""
    run_dir = Path(run_dir)
    return (run_dir / "decode_points").is_dir() and not (run_dir / "points").is_dir()


def _roof_ms(nbytes: Any, peaks: DevicePeaks | None) -> float | None:
    """Milliseconds `nbytes` take at the device's peak bandwidth (None without a bandwidth)."""
    if peaks is None or not peaks.gb_per_s or missing(nbytes):
        return None
    return float(nbytes) / (peaks.gb_per_s * 1e9) * 1e3


def vs_generate_finding(r: Any) -> str | None:
    """What a decode point's step against the model's own generate says, judged by the interval over generate's
    rounds (step_vs_generate_ci_*_pct) where the run has it: None when within 5%; one line when outside, or when
    the run's spread cannot tell. Runs without the interval: a line when the GPU median is more than 5% off."""
    pct_ = getattr(r, "step_vs_generate_pct", None)
    if missing(pct_):
        return None
    lo, hi = getattr(r, "step_vs_generate_ci_low_pct", None), getattr(r, "step_vs_generate_ci_high_pct", None)
    head = (f"the step ({ms(r.ms_per_token)} ms) is {pct_:+.1f}% off the model's own generate per token "
            f"({ms(r.generate_ms_per_token)} ms)")
    if missing(lo) or missing(hi):
        return f"{head}, more than 5%" if str(r.device).startswith("cuda") and abs(pct_) > 5.0 else None
    verdict = interval_verdict(lo, hi, 5.0)
    if verdict == WITHIN:
        return None
    spread = f"[{lo:+.1f}, {hi:+.1f}] over generate's rounds"
    if verdict == OUTSIDE:
        return f"{head}, more than 5% ({spread})"
    return f"{head}: the run's spread {spread} cannot tell whether it is within 5%"


@dataclass
class DecodeAnalysis:
    """One decode run's tables with the roofline columns added."""

    run_dir: Path
    record: dict[str, Any]
    points: pd.DataFrame
    components: pd.DataFrame
    peaks: DevicePeaks | None
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, run_dir: Path | str, peaks_file: Path | None = None) -> DecodeAnalysis:
        """Read a decode run (RunDirectoryError, one line, when it cannot be read)."""
        run_dir = Path(run_dir)
        record = read_run_record(run_dir)
        points = read_table(run_dir, "decode_points").to_pandas()
        comps = read_table(run_dir, "decode_components").to_pandas()
        peaks = resolve_peaks(record.get("device_name"), peaks_file)
        ok = points[points.status == "ok"]
        comps = comps.merge(ok[["rank", "point_id"]], on=["rank", "point_id"], how="inner")
        warnings = [f"decode point batch {r.batch} prompt {r.seqlen}: {r.status} ({r.error})"
                    for r in points[points.status != "ok"].itertuples()]
        for r in ok.itertuples():
            if r.graph_sum_within_5pct is False:
                warnings.append(f"batch {r.batch} prompt {r.seqlen}: the components timed inside the graph add "
                                f"up to {r.graph_sum_vs_whole_pct:+.1f}% of the whole-step graph (more than 5%): "
                                "read the per-component graph times as shares, not as absolute times")
            if r.tokens_match is False or r.tokens_match_generate is False:
                warnings.append(f"batch {r.batch} prompt {r.seqlen}: greedy tokens of the split step differ from "
                                "the model's own step or generate")
            against = vs_generate_finding(r)
            if against:
                warnings.append(f"batch {r.batch} prompt {r.seqlen}: {against}")
            if r.cache_bytes != r.cache_bytes_closed_form:
                warnings.append(f"batch {r.batch} prompt {r.seqlen}: decode cache {mib(r.cache_bytes)} "
                                f"measured vs {mib(r.cache_bytes_closed_form)} closed form")
        if "notes" in ok:
            warnings += list(dict.fromkeys(str(n) for n in ok.notes if not missing(n)))
        if peaks is None:
            warnings.append("no memory bandwidth known for this device (CPU, or a GPU not in the table): the "
                            "roofline columns are empty; give --peaks FILE")
        points = points.sort_values(["batch", "seqlen"]).reset_index(drop=True)
        points["roofline_ms"] = [_roof_ms(b, peaks) for b in points.bytes_min]
        points["of_roofline_pct"] = [
            100.0 * r / t if r is not None and not missing(t) and t > 0 else None
            for r, t in zip(points.roofline_ms, points.ms_per_token, strict=True)]
        return cls(run_dir, record, points, comps, peaks, warnings)

    @property
    def timing(self) -> str:
        """`graph` where the run replayed CUDA graphs, else `eager` (the basis of the component shares)."""
        return "graph" if (self.components.timing == "graph").any() else "eager"

    def by_component(self, batch: int, seqlen: int) -> pd.DataFrame:
        """One row per component at a point, summed over layers: time, share of the step, bytes, roofline."""
        rows = self.components[(self.components.batch == batch) & (self.components.seqlen == seqlen)
                               & (self.components.timing == self.timing)]
        grouped = rows.groupby("component", as_index=False).agg(
            time_ms=("time_ms", lambda s: s.sum(min_count=1)), bytes_min=("bytes_min", "sum"),
            weight_bytes=("weight_bytes", "sum"), state_bytes=("state_bytes", "sum"),
            cache_bytes=("cache_bytes", lambda s: s.sum(min_count=1)),
            cache_bytes_closed_form=("cache_bytes_closed_form", lambda s: s.sum(min_count=1)),
            fused_into=("fused_into", "first"))
        total = grouped.time_ms.sum()
        grouped["share_pct"] = 100.0 * grouped.time_ms / total if total > 0 else None
        grouped["roofline_ms"] = [_roof_ms(b, self.peaks) for b in grouped.bytes_min]
        grouped["of_roofline_pct"] = [100.0 * r / t if r is not None and not missing(t) and t > 0 else None
                                      for r, t in zip(grouped.roofline_ms, grouped.time_ms, strict=True)]
        grouped["order"] = [component_order(c) for c in grouped.component]
        return grouped.sort_values("order").drop(columns="order").reset_index(drop=True)

    @property
    def is_hybrid(self) -> bool:
        """True when the step has attention layers (a KV cache beside the SSM state)."""
        return bool((self.components.component == "attention").any())

    def by_kind(self) -> pd.DataFrame:
        """One row per (batch, prompt, layer-kind group) of the eager step: the medians of its (layer, component)s
        summed (time_ms) and their first and third quartiles summed (q1_ms, q3_ms: the run's own spread)."""
        rows = self.components[self.components.timing == "eager"].copy()
        for col in ("time_ms_q1", "time_ms_q3"):
            if col not in rows:
                rows[col] = rows.time_ms
        rows["group"] = [kind_group(int(layer), c) for layer, c in zip(rows.layer, rows.component, strict=True)]
        return rows.groupby(["batch", "seqlen", "group"], as_index=False).agg(
            time_ms=("time_ms", lambda v: v.sum(min_count=1)), q1_ms=("time_ms_q1", lambda v: v.sum(min_count=1)),
            q3_ms=("time_ms_q3", lambda v: v.sum(min_count=1)))

    def context_sentences(self) -> list[str]:
        """Per batch, the shortest against the longest prompt: how the KV cache, the SSM + conv state, attention's
        time and the Mamba layers' time change, each time change judged against the quartiles of both points."""
        ok = self.points[self.points.status == "ok"]
        if not self.is_hybrid or "kv_cache_bytes" not in ok:
            return []
        kinds = self.by_kind().set_index(["batch", "seqlen", "group"])
        out: list[str] = []
        for batch, at in ok.groupby("batch"):
            at = at.sort_values("seqlen")
            if at.seqlen.nunique() < 2:
                continue
            lo, hi = at.iloc[0], at.iloc[-1]
            p0, p1 = int(lo.seqlen), int(hi.seqlen)
            kv0, kv1 = float(lo.kv_cache_bytes), float(hi.kv_cache_bytes)
            st0 = float(lo.ssm_state_bytes) + float(lo.conv_state_bytes)
            st1 = float(hi.ssm_state_bytes) + float(hi.conv_state_bytes)
            growth = kv1 / kv0 if kv0 > 0 else float("nan")
            linear = abs(growth / (p1 / p0) - 1.0) < 0.01 if kv0 > 0 else False
            state = f"stays {mib(st0)}" if st0 == st1 else f"changes {mib(st0)} -> {mib(st1)}"
            out.append(f"Batch {batch}, prompt {p0} -> {p1} ({p1 / p0:.3g}x): the KV cache grows {mib(kv0)} -> "
                       f"{mib(kv1)} ({growth:.3g}x, {'linear in the prompt' if linear else 'not linear'}); the SSM + "
                       f"conv state {state}.")
            parts, trends = [], {}
            for group, label_ in (("attention", "attention"), ("mamba", "the Mamba layers")):
                if (batch, p0, group) not in kinds.index or (batch, p1, group) not in kinds.index:
                    continue
                a, b = kinds.loc[(batch, p0, group)], kinds.loc[(batch, p1, group)]
                if missing(a.time_ms) or missing(b.time_ms):
                    continue
                trends[group] = _trend(a, b)
                parts.append(f"{label_} {ms(a.time_ms)} -> {ms(b.time_ms)} ms "
                             f"({num(100.0 * (b.time_ms / a.time_ms - 1.0) if a.time_ms > 0 else None, '+.0f', '%')}; "
                             f"quartiles {ms(a.q1_ms)}-{ms(a.q3_ms)} vs {ms(b.q1_ms)}-{ms(b.q3_ms)}): {trends[group]}")
            if parts:
                verdict = ""
                if trends.get("attention") == "grows" and trends.get("mamba") == "within the spread":
                    verdict = " Attention's time grows with the context while the Mamba layers' stays flat."
                elif trends.get("attention") == "within the spread":
                    verdict = (" Attention's change is within the run's spread at these lengths: the numbers do not "
                               "show it growing.")
                out.append(f"Batch {batch}, eager step: " + "; ".join(parts) + "." + verdict)
        return out

    def sentences(self) -> list[str]:
        """Findings in words, from the numbers."""
        out: list[str] = []
        ok = self.points[self.points.status == "ok"]
        if ok.empty:
            return ["no decode point finished"]
        out += self.context_sentences()
        prompt = int(ok.seqlen.max())
        at = ok[ok.seqlen == prompt].sort_values("batch")
        lo, hi = at.iloc[0], at.iloc[-1]
        if len(at) > 1 and not missing(lo.tokens_per_s) and not missing(hi.tokens_per_s):
            out.append(f"Prompt {prompt}: {rate(lo.tokens_per_s)} tokens/s at batch {lo.batch}, "
                       f"{rate(hi.tokens_per_s)} at batch {hi.batch} ({hi.tokens_per_s / lo.tokens_per_s:.3g}x for "
                       f"{hi.batch / lo.batch:.3g}x the batch); a step is {ms(lo.ms_per_token)} ms and "
                       f"{ms(hi.ms_per_token)} ms.")
        for r in (lo, hi) if len(at) > 1 else (lo,):
            if not missing(r.launch_bound_pct):
                out.append(f"Batch {r.batch}: CUDA graphs remove {pct(r.launch_bound_pct)}% of the eager step "
                           f"({ms(r.split_eager_ms)} -> {ms(r.graph_replay_ms)} ms): the eager step is "
                           f"{'launch-bound' if r.launch_bound_pct > 50 else 'mostly device time'}.")
            if not missing(r.of_roofline_pct):
                out.append(f"Batch {r.batch}: the step moves at least {si(r.bytes_min, 'B')} "
                           f"({si(r.weight_bytes, 'B')} weights, {si(r.state_bytes, 'B')} decode-cache traffic), "
                           f"{pct(r.of_roofline_pct)}% of the memory roofline at {num(self.peaks.gb_per_s, '.4g')} "
                           "GB/s.")
        if len(at) > 1:
            a = self.by_component(int(lo.batch), prompt).set_index("component")
            b = self.by_component(int(hi.batch), prompt).set_index("component")
            if "ssm_scan" in a.index and "ssm_scan" in b.index and not missing(a.share_pct["ssm_scan"]):
                out.append(f"ssm_scan (the state update) takes {pct(a.share_pct['ssm_scan'])}% of the step at "
                           f"batch {lo.batch} and {pct(b.share_pct['ssm_scan'])}% at batch {hi.batch} "
                           f"({self.timing} timing); its state traffic grows with batch while the weights do not.")
        return out


def points_view(analysis: DecodeAnalysis) -> View:
    """One row per decode point: tokens/s against batch, graphs vs none, generate, roofline, cache."""
    cols = [("batch", "batch", str), ("prompt", "seqlen", str), ("status", "status", str),
            ("ms/token", "ms_per_token", ms), ("tokens/s", "tokens_per_s", rate),
            ("own eager ms", "own_eager_ms", ms), ("split eager ms", "split_eager_ms", ms),
            ("graph ms", "graph_replay_ms", ms), ("parts/graph %", "graph_sum_vs_whole_pct", num),
            ("launch %", "launch_bound_pct", pct), ("own graph ms", "own_graph_ms", ms),
            ("generate ms", "generate_ms_per_token", ms), ("vs generate %", "step_vs_generate_pct", num),
            ("min bytes", "bytes_min", si), ("roofline ms", "roofline_ms", ms), ("% roof", "of_roofline_pct", pct),
            ("cache", "cache_bytes", mib), ("cache closed", "cache_bytes_closed_form", mib)]
    pts = analysis.points
    cols = [c for c in cols if c[1] in ("batch", "seqlen", "status") or pts[c[1]].notna().any()]
    rows = [[fmt(r[col]) for _, col, fmt in cols] for _, r in pts.iterrows()]
    return View("Decode: one generated token per sequence per step", [c[0] for c in cols], rows,
                caption="ms/token: whole step from one CUDA graph in a greedy loop (GPU), else the model's own "
                        "eager step. graph ms: whole-step graph replays; parts/graph %: per-component graphs summed "
                        "vs it; launch %: share of the eager step graphs remove; generate ms: the model's own "
                        "generate per new token; roofline ms: min bytes at peak bandwidth.", keys=2)


def components_view(analysis: DecodeAnalysis, batch: int, seqlen: int) -> View:
    """A step's time per component at one point (summed over layers), with its bytes and roofline."""
    frame = analysis.by_component(batch, seqlen)
    cols = [("component", "component", str), (f"{analysis.timing} ms", "time_ms", ms), ("% step", "share_pct", pct),
            ("min bytes", "bytes_min", si), ("weights", "weight_bytes", si), ("cache r+w", "state_bytes", si),
            ("roofline ms", "roofline_ms", ms), ("% roof", "of_roofline_pct", pct),
            ("cache", "cache_bytes", mib),
            ("cache closed", "cache_bytes_closed_form", mib), ("note", "fused_into", str)]
    cols = [c for c in cols if c[1] == "component" or frame[c[1]].notna().any()]
    rows = [[("-" if missing(r[col]) else fmt(r[col])) for _, col, fmt in cols] for _, r in frame.iterrows()]
    return View(f"Decode step by component: batch {batch}, prompt {seqlen}", [c[0] for c in cols], rows,
                caption=f"{analysis.timing}: " + ("each (layer, component) replayed as its own CUDA graph"
                                                 if analysis.timing == "graph" else
                                                 "timestamps between the components of the eager step"))


def kinds_view(analysis: DecodeAnalysis) -> View:
    """A hybrid's step by layer kind per (batch, prompt): eager ms with quartiles, and the decode cache split."""
    kinds = analysis.by_kind()
    groups = [g for g, _ in KIND_GROUPS if g in set(kinds.group)] + [MODEL_GROUP]
    ok = analysis.points[analysis.points.status == "ok"].sort_values(["batch", "seqlen"])
    parts = [(name, col) for name, col in _CACHE_PARTS if col in ok]
    by = kinds.set_index(["batch", "seqlen", "group"])
    rows = []
    for _, r in ok.iterrows():
        cells = [str(r.batch), str(r.seqlen)]
        for g in groups:
            key = (r.batch, r.seqlen, g)
            if key not in by.index or missing(by.loc[key].time_ms):
                cells.append("-")
                continue
            k = by.loc[key]
            cells.append(f"{ms(k.time_ms)} ({ms(k.q1_ms)}-{ms(k.q3_ms)})")
        cells += [mib(r[col]) for _, col in parts]
        rows.append(cells)
    return View("Decode step by layer kind (hybrid)", ["batch", "prompt", *[f"{g} ms" for g in groups],
                                                       *[name for name, _ in parts]], rows,
                caption="eager step, medians summed over the kind's layers and components, in brackets the sums of "
                        "their first and third quartiles over the timed steps; mamba: the Mamba mixers' components; "
                        "other: a layer's modules that are none of these (Zamba2's hybrid linear); model: embedding, "
                        "positions, final norm, lm_head. Cache measured right after the prompt: SSM "
                        "and conv state per Mamba layer (constant in the prompt), KV cache per attention layer "
                        "(linear in it).", keys=2)


def decode_views(analysis: DecodeAnalysis) -> list[View]:
    """Every table of the decode section: points, for hybrids the step by layer kind, then the step by component
    at the smallest and largest batch of the longest prompt."""
    views = [points_view(analysis)]
    if analysis.is_hybrid:
        views.append(kinds_view(analysis))
    ok = analysis.points[analysis.points.status == "ok"]
    if not ok.empty:
        prompt = int(ok.seqlen.max())
        batches = sorted(ok[ok.seqlen == prompt].batch.unique())
        for batch in dict.fromkeys([batches[0], batches[-1]]):
            views.append(components_view(analysis, int(batch), prompt))
    return views


def run_facts(analysis: DecodeAnalysis) -> list[tuple[str, str]]:
    """Key facts of the run for the header."""
    r = analysis.record
    return [("model", str(r.get("model_ref"))), ("family", str(r.get("model_family"))),
            ("device", str(r.get("device_name") or r.get("device"))), ("dtype", str(r.get("dtype"))),
            ("status", str(r.get("status"))),
            ("bandwidth", analysis.peaks.describe() if analysis.peaks else "unknown")]
