"""The pruning what-if: calibrate, prune every (score, ratio), evaluate, time, and write the rows.

Order of work, for a model loaded in fp32 (the master copy):
1. calibration scores on calibration text (one pass for all scores);
2. per variant: a copy of the master is pruned physically (variant 0 is the unpruned reference),
   optionally fine-tuned (`recover_steps`, the reference gets the same steps), cast to the serving
   dtype, and evaluated (perplexity on held-out text, synthetic task accuracy);
3. per distinct shape (state size per layer), after one untimed forward of every timed model at the
   largest prefill shape with Triton's autotuners reset (mamba_ssm's SSD kernels then use configs tuned
   at that shape for every state size; `runs.autotune_json`): prefill timing at every sequence length and
   decode timing, all models interleaved in one loop; peak memory; decode-cache bytes; one component-split
   measurement (`mambaprof.run.measure.measure_point`) at `component_seqlen`;
4. rows of the `pruning` table (plus `points`/`components`/`kernels` of the component measurements
   and the `runs` record), written through `RunWriter`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mambaprof.collectors.context import PointSpec
from mambaprof.collectors.timing import synchronize
from mambaprof.errors import BadArgumentError, RunInterrupted, StorageError, one_line
from mambaprof.evaluation.chance import accuracy_caveat
from mambaprof.evaluation.lm import Perplexity, check_byte_lm, lm_logits, perplexity
from mambaprof.evaluation.tasks import TASKS, make_task, task_accuracy
from mambaprof.evaluation.text import corpus_tokens, windows
from mambaprof.model.inputs import make_call
from mambaprof.model.loading import LoadedModel
from mambaprof.model.structure import ModelStructure, discover
from mambaprof.pruning.calibration import calibrate
from mambaprof.pruning.checkpoint import save_pruned, set_config_state_size
from mambaprof.pruning.mixers import mixer_views, to_serving_dtype
from mambaprof.pruning.plan import PruningPlan, apply_plan, kernel_multiples, make_plan
from mambaprof.pruning.recovery import TrainResult, recover
from mambaprof.pruning.timing import (
    activation_peak_bytes,
    interleaved_decode,
    interleaved_graph_decode,
    interleaved_prefill,
    median,
    random_ids,
)
from mambaprof.run.autotune import AutotunePolicy
from mambaprof.run.measure import measure_point
from mambaprof.run.sweep import TraceConfig, free_memory, interrupts_raise, is_oom, is_storage_failure, run_record
from mambaprof.storage.rundir import RunWriter, utcnow
from mambaprof.storage.schema.base import json_cell
from mambaprof.taxonomy import MIXER_COMPONENTS

#: most bytes of the calibration text the recovery fine-tune reads (the stdlib calib split is ~0.6 MB)
RECOVERY_TEXT_BYTES = 32 << 20
ProgressFn = Callable[[int, int, str], None]


@dataclass
class PruneConfig:
    """Everything `mambaprof prune` measures and how (sizes in tokens, times in ms)."""

    ratios: list[float]
    scores: list[str]
    seqlens: list[int]
    device: torch.device
    dtype: torch.dtype
    per_layer: str = "uniform"
    batch: int = 1
    repeats: int = 5
    warmup: int = 1
    decode_steps: int = 16
    decode_prompt: int = 32
    #: GPU: batches at which the decode step is also timed replayed from a CUDA graph (where the state traffic,
    #: not launch overhead, sets the step time); empty: none
    decode_graph_batches: list[int] = field(default_factory=list)
    calib_path: Path | None = None  # calibration text; the recovery fine-tune trains on all of it
    calib_tokens: int = 1 << 16
    calib_seqlen: int = 256
    calib_batch: int = 4
    eval_path: Path | None = None
    eval_tokens: int = 1 << 16
    eval_seqlen: int = 256
    eval_batch: int = 8
    task_episodes: int = 256
    recover_steps: int = 0
    recover_lr: float = 1e-4
    recover_batch: int = 8
    recover_seqlen: int = 256
    state_multiple: int = 1
    component_seqlen: int | None = None
    profile_repeats: int = 1
    seed: int = 0
    save_dir: Path | None = None
    save_ratio: float | None = None

    def as_json(self) -> str:
        """The configuration as JSON for the run record."""
        data = {k: (str(v) if isinstance(v, (Path, torch.device, torch.dtype)) else v)
                for k, v in asdict(self).items()}
        return json_cell(data)


@dataclass
class Variant:
    """One pruned model and what was measured on it (eval metrics; timings live in `Timings`)."""

    variant_id: int
    score: str
    ratio: float
    plan: PruningPlan
    params: int = 0
    weights_bytes: int = 0
    recovery: TrainResult | None = None
    ppl: Perplexity | None = None
    accuracy: dict[str, float] = field(default_factory=dict)
    answers: dict[str, int] = field(default_factory=dict)  # task -> scored answers behind `accuracy`
    timing_variant_id: int = 0

    @property
    def name(self) -> str:
        """`unpruned` or `score@ratio/per_layer`."""
        return "unpruned" if self.variant_id == 0 else f"{self.score}@{self.ratio:g}/{self.plan.per_layer}"

    @property
    def signature(self) -> tuple[int, ...]:
        """State size per layer: variants with the same signature run the same kernels on the same shapes."""
        return tuple(self.plan.state_sizes)


@dataclass
class Timings:
    """Measurements of one distinct shape (keyed by the timed variant's id)."""

    prefill_ms: dict[int, list[float]] = field(default_factory=dict)  # seqlen -> ms per repeat
    activation_peak: dict[int, int | None] = field(default_factory=dict)
    decode_ms: list[float] = field(default_factory=list)
    decode_graph_ms: dict[int, list[float]] = field(default_factory=dict)  # batch -> ms per repeat
    cache_bytes: int | None = None
    ssm_state_bytes: int = 0
    conv_state_bytes: int = 0
    components: dict[str, float] = field(default_factory=dict)
    component_source: str | None = None
    component_point_id: int | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class WhatIfResult:
    """The finished what-if: variants, the rows written, the run's status, and why its accuracy deltas
    measure nothing (None when the unpruned model has learned)."""

    variants: list[Variant]
    rows: list[dict[str, Any]]
    status: str
    reason: str | None
    saved: Path | None = None
    caveat: str | None = None


def _check_tokens(tokens: torch.Tensor, length: int, what: str, option: str) -> None:
    if windows(tokens, length).shape[0] == 0:
        raise BadArgumentError(f"{what} has {tokens.numel()} tokens, fewer than one window of {length}",
                               f"give a longer {option} file or a shorter sequence length")


def _batches(tokens: torch.Tensor, seqlen: int, batch: int) -> list[torch.Tensor]:
    rows = windows(tokens, seqlen)
    return [rows[i:i + batch] for i in range(0, rows.shape[0], batch)]


def _state_bytes(structure: ModelStructure, batch: int, elem: int) -> tuple[int, int]:
    ssm = sum(s.adapter.dims(s.module).recurrent_state_elems(batch) for s in structure.mixers) * elem
    conv = sum(s.adapter.dims(s.module).conv_state_elems(batch) for s in structure.mixers) * elem
    return ssm, conv


class WhatIf:
    """Runs the what-if for one loaded model (see the module docstring)."""

    def __init__(self, loaded: LoadedModel, config: PruneConfig, writer: RunWriter,
                 progress: ProgressFn | None = None) -> None:
        self.loaded = loaded
        self.config = config
        self.writer = writer
        self.report = progress or (lambda done, total, desc: None)
        self.master = loaded.model
        self.structure = discover(self.master)
        self.vocab = check_byte_lm(self.structure)
        self.views = mixer_views(self.structure)
        self.elem = torch.empty((), dtype=config.dtype).element_size()
        self.variants: list[Variant] = []
        self.timed: dict[int, nn.Module] = {}  # timing variant id -> model in the serving dtype
        self.timings: dict[int, Timings] = {}
        self.saved: Path | None = None
        #: variant id -> rows of the `pruning` table on disk (what the run record counts)
        self.on_disk: dict[int, int] = {}
        #: Triton autotuning of the timed variants: every kernel key retuned at the largest prefill shape
        self.autotune = AutotunePolicy("largest")
        for ratio in config.ratios:  # a ratio leaving a layer without states fails now, not after calibration
            make_plan(self._zero_scores(), ratio, config.per_layer, "check", config.state_multiple,
                      kernel_multiples(self.views))

    def _zero_scores(self) -> list[torch.Tensor]:
        return [torch.zeros(v.groups, v.d_state, dtype=torch.float64) for v in self.views]

    # ---- steps -------------------------------------------------------------------------------------
    def run(self) -> WhatIfResult:
        """All steps; returns the rows (also written)."""
        c = self.config
        started = utcnow()
        trace_cfg = TraceConfig(seqlens=c.seqlens, batches=[c.batch], device=c.device, dtype=c.dtype,
                                repeats=c.repeats, warmup=c.warmup, profile_repeats=c.profile_repeats,
                                tensorboard=False, seed=c.seed)
        self._write_record(trace_cfg, started, "running", None, 0, None)
        status, reason = "complete", None
        rows: list[dict[str, Any]] = []
        interrupted: RunInterrupted | None = None
        with interrupts_raise() as guard:  # as a trace: a signal stops the what-if, the record says so
            try:
                # calibration reads the first calib_tokens; recovery trains on all of the calibration text
                calib = corpus_tokens(c.calib_path, "calib", max(c.calib_tokens, RECOVERY_TEXT_BYTES), "--calib")
                evalt = corpus_tokens(c.eval_path, "eval", c.eval_tokens, "--eval")
                _check_tokens(calib, c.calib_seqlen, "the calibration text", "--calib")
                _check_tokens(evalt, c.eval_seqlen + 1, "the evaluation text", "--eval")
                if c.recover_steps:
                    _check_tokens(calib, c.recover_seqlen + 2, "the calibration text", "--calib")
                scores = self._calibrate(calib)
                plans = self._plans(scores)
                for i, (score, ratio, plan) in enumerate(plans):
                    self.report(i, len(plans) + 3, f"variant {i + 1}/{len(plans)} {score}@{ratio:g}")
                    self._variant(i, score, ratio, plan, calib, evalt)
                    self._write_rows(self.variants[-1:])  # accuracy now (a killed run keeps it), timings later
                self.report(len(plans), len(plans) + 3, "prefill + decode timing")
                self._time_all()
                self.report(len(plans) + 1, len(plans) + 3, "components")
                self._components()
                rows = self._write_rows(self.variants)
                self.report(len(plans) + 3, len(plans) + 3, "done")
                if any(t.notes for t in self.timings.values()):
                    status, reason = "incomplete", "; ".join(n for t in self.timings.values() for n in t.notes)[:500]
            except (RunInterrupted, KeyboardInterrupt) as exc:
                interrupted = exc if isinstance(exc, RunInterrupted) else RunInterrupted("SIGINT")
                status = "incomplete"
                reason = (f"interrupted by {interrupted.signame} after {len(self.on_disk)} variant(s) written; "
                          "finished variants are readable (their accuracy; timings only once every variant ran)")
            except BaseException as exc:
                status, reason = "failed", one_line(exc)
                if is_storage_failure(exc):
                    raise StorageError(f"results could not be written to {self.writer.out}: {reason}",
                                       "free disk space or raise the file-size limit; finished variants stay "
                                       "readable") from exc
                raise
            finally:
                guard.disarm()  # the record below is always written
                try:
                    self._write_record(trace_cfg, started, status, reason, sum(self.on_disk.values()), utcnow())
                except OSError as exc:
                    if not is_storage_failure(exc):
                        raise
        if interrupted is None and guard.received:
            interrupted = RunInterrupted(guard.received[0])
        if interrupted is not None:
            raise interrupted
        return WhatIfResult(self.variants, rows, status, reason, self.saved, self.caveat())

    def caveat(self) -> str | None:
        """Why the accuracy deltas measure nothing (random weights, perplexity or tasks at chance), or None."""
        if not self.variants:
            return None
        base = self.variants[0]
        return accuracy_caveat(base.ppl.perplexity if base.ppl else None, base.accuracy, base.answers,
                               random_weights=self.loaded.source in ("default", "preset"))

    def _write_record(self, trace_cfg: TraceConfig, started: Any, status: str, reason: str | None, n_rows: int,
                      finished: Any) -> None:
        counts = {"ok": n_rows, "oom": 0, "error": 0}
        record = run_record(self.writer, self.loaded, self.structure, trace_cfg, started, status, reason, counts,
                            finished_at=finished, autotune_json=self.autotune.as_json())
        record.update(config_json=self.config.as_json(), n_points=n_rows)
        self.writer.write_run_record(record)

    def _calibrate(self, calib: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        c = self.config
        batches = _batches(calib[:c.calib_tokens], c.calib_seqlen, c.calib_batch)
        self.report(0, 1, f"calibration ({len(batches)} batches)")
        return calibrate(self.master, self.views, batches, c.scores, c.device, seed=c.seed)

    def _plans(self, scores: dict[str, list[torch.Tensor]]) -> list[tuple[str, float, PruningPlan]]:
        c = self.config
        plans = [("none", 0.0, make_plan(self._zero_scores(), 0.0, "uniform", "none"))]
        for score in c.scores:
            for ratio in c.ratios:
                if ratio > 0:
                    plans.append((score, ratio, make_plan(scores[score], ratio, c.per_layer, score,
                                                          c.state_multiple, kernel_multiples(self.views))))
        return plans

    def _variant(self, vid: int, score: str, ratio: float, plan: PruningPlan, calib: torch.Tensor,
                 evalt: torch.Tensor) -> None:
        c = self.config
        model = copy.deepcopy(self.master)
        views = mixer_views(discover(model))
        apply_plan(views, plan)
        set_config_state_size(model, max(plan.state_sizes))
        v = Variant(vid, score, ratio, plan)
        if c.recover_steps:
            amp = torch.bfloat16 if c.device.type == "cuda" else None
            v.recovery = recover(model, calib, c.recover_steps, c.recover_seqlen, c.recover_batch, c.recover_lr,
                                 c.device, amp, seed=c.seed)
        if self._should_save(v):
            self.saved = save_pruned(model, c.save_dir, plan,
                                     {"recover_steps": c.recover_steps, "source": self.loaded.ref})
        model = to_serving_dtype(model, views, c.dtype).eval()
        v.params = sum(p.numel() for p in model.parameters())
        v.weights_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        v.ppl = perplexity(model, evalt, c.eval_seqlen, c.eval_batch, c.device)
        for task in TASKS:
            episodes = make_task(task, c.task_episodes, seed=c.seed + 1)
            v.accuracy[task] = task_accuracy(model, episodes, c.device)
            v.answers[task] = int((episodes.labels != -100).sum())
        same = next((u for u in self.variants if u.signature == v.signature), None)
        if same is None:
            v.timing_variant_id = vid
            self.timed[vid] = model
            self.timings[vid] = Timings()
        else:
            v.timing_variant_id = same.timing_variant_id
            del model
            free_memory(c.device)
        self.variants.append(v)

    def _should_save(self, v: Variant) -> bool:
        c = self.config
        if c.save_dir is None or self.saved is not None:
            return False
        target = c.save_ratio if c.save_ratio is not None else max(c.ratios)
        if target == 0:
            return v.variant_id == 0
        return v.score == c.scores[0] and abs(v.ratio - target) < 1e-12

    def _tune(self, models: list[nn.Module]) -> None:
        """Retune the Triton kernels (mamba_ssm's SSD and layer norm) at the largest prefill shape before the
        timings: left alone, each state size d_state' would keep the configs picked at whatever shape first
        ran it (the unpruned model's at calibration, a pruned one's at its perplexity pass), so the variants
        would be compared on configs tuned for different shapes. One untimed forward of every timed variant
        at the largest (batch, seqlen); an OOM tries the next; nothing happens without Triton kernels."""
        c = self.config

        def forward(batch: int, seqlen: int) -> None:
            ids = random_ids(batch, seqlen, self.vocab, c.seed, c.device)
            with torch.inference_mode():
                for model in models:
                    lm_logits(model, ids)
            synchronize(c.device)

        n = len(self.variants)
        self.autotune.before_sweep([(c.batch, s) for s in c.seqlens], forward, is_oom,
                                   lambda: free_memory(c.device), lambda desc: self.report(n, n + 3, desc))

    def _time_all(self) -> None:
        c = self.config
        ids_order = list(self.timed)
        models = [self.timed[i] for i in ids_order]
        self._tune(models)
        for seqlen in c.seqlens:
            ids = random_ids(c.batch, seqlen, self.vocab, c.seed, c.device)
            try:
                times = interleaved_prefill(models, ids, c.repeats, c.warmup, c.device)
                for vid, ms in zip(ids_order, times, strict=True):
                    self.timings[vid].prefill_ms[seqlen] = ms
                    self.timings[vid].activation_peak[seqlen] = activation_peak_bytes(self.timed[vid], ids, c.device)
            except Exception as exc:  # noqa: BLE001 - one seqlen failing must not lose the others
                if not is_oom(exc):
                    raise
                free_memory(c.device)
                for vid in ids_order:
                    self.timings[vid].notes.append(f"prefill L={seqlen}: {one_line(exc)}")
            del ids
        for vid in ids_order:
            st = discover(self.timed[vid])
            t = self.timings[vid]
            t.ssm_state_bytes, t.conv_state_bytes = _state_bytes(st, c.batch, self.elem)
        if c.decode_steps <= 0:
            return
        prompt = random_ids(c.batch, c.decode_prompt, self.vocab, c.seed + 1, c.device)
        try:
            result = interleaved_decode(models, prompt, c.decode_steps, c.repeats, c.warmup, c.device)
        except Exception as exc:  # noqa: BLE001 - decode is optional: recorded, the rest goes on
            free_memory(c.device)
            for vid in ids_order:
                self.timings[vid].notes.append(f"decode not measured: {one_line(exc)}")
            return
        for vid, ms, nbytes in zip(ids_order, result.ms_per_token, result.cache_bytes, strict=True):
            self.timings[vid].decode_ms = ms
            self.timings[vid].cache_bytes = nbytes
        if c.decode_graph_batches and c.device.type == "cuda":
            try:
                graph = interleaved_graph_decode(models, c.decode_prompt, c.decode_graph_batches, c.decode_steps,
                                                 c.repeats, c.warmup, c.device, self.vocab, c.seed + 1)
            except Exception as exc:  # noqa: BLE001 - optional: recorded, the rest goes on
                free_memory(c.device)
                for vid in ids_order:
                    self.timings[vid].notes.append(f"decode with CUDA graphs not measured: {one_line(exc)}")
                return
            for i, vid in enumerate(ids_order):
                self.timings[vid].decode_graph_ms = {b: graph.ms_per_token[b][i] for b in graph.batches
                                                     if graph.ms_per_token[b][i]}

    def _components(self) -> None:
        c = self.config
        seqlen = c.component_seqlen or max(c.seqlens)
        point_id = len(self.variants) * len(c.seqlens)
        for vid, model in self.timed.items():
            st = discover(model)
            spec = PointSpec(point_id=point_id, batch=c.batch, seqlen=seqlen, device=c.device, dtype=c.dtype,
                             repeats=max(2, c.repeats // 2), warmup=1, profile_repeats=c.profile_repeats,
                             mode="split")
            identity = {"run_id": self.writer.run_id, "rank": 0, "world_size": 1, "point_id": point_id,
                        "device": str(c.device), "batch": c.batch, "seqlen": seqlen,
                        "dtype": str(c.dtype).replace("torch.", "")}
            t = self.timings[vid]
            try:
                call = make_call(model, st, c.batch, seqlen, c.device, c.dtype, None, seed=c.seed)
                measured = measure_point(spec, st, call, identity)
            except Exception as exc:  # noqa: BLE001 - recorded; the timings already taken stand
                free_memory(c.device)
                t.notes.append(f"components L={seqlen}: {one_line(exc)}")
                point_id += 1
                continue
            measured.point.update(started_at=None, finished_at=utcnow())
            self.writer.write_rows("components", measured.components, point_id)
            self.writer.write_rows("kernels", measured.kernels, point_id)
            self.writer.write_rows("points", [measured.point], point_id)
            use_kernel = c.profile_repeats > 0 and c.device.type == "cuda"
            t.component_source = "kernel" if use_kernel else "wall"
            key = "kernel_ms_median" if use_kernel else "wall_ms_median"
            for row in measured.components:
                if row["layer"] >= 0 and row["component"] in MIXER_COMPONENTS and row.get(key) is not None:
                    t.components[row["component"]] = t.components.get(row["component"], 0.0) + row[key]
            t.component_point_id = point_id
            point_id += 1

    # ---- rows --------------------------------------------------------------------------------------
    def _write_rows(self, variants: list[Variant]) -> list[dict[str, Any]]:
        """(Re)write the `pruning` part of each variant (one part per variant, replaced atomically)."""
        rows = self._rows()
        for v in variants:
            mine = [r for r in rows if r["variant_id"] == v.variant_id]
            self.writer.write_rows("pruning", mine, v.variant_id)
            self.on_disk[v.variant_id] = len(mine)
        return rows

    def _rows(self) -> list[dict[str, Any]]:
        c = self.config
        base = self.variants[0]
        bt = self.timings[base.timing_variant_id]
        comp_seqlen = c.component_seqlen or max(c.seqlens)
        caveat = self.caveat()
        rows = []
        point_id = 0
        for v in self.variants:
            t = self.timings[v.timing_variant_id]
            decode_ms = median(t.decode_ms)
            base_decode = median(bt.decode_ms)
            for seqlen in c.seqlens:
                ms = t.prefill_ms.get(seqlen, [])
                base_ms = bt.prefill_ms.get(seqlen, [])
                peak = t.activation_peak.get(seqlen)
                base_peak = bt.activation_peak.get(seqlen)
                row: dict[str, Any] = {
                    "run_id": self.writer.run_id, "rank": 0, "world_size": 1, "point_id": point_id,
                    "device": str(c.device), "batch": c.batch, "seqlen": seqlen,
                    "dtype": str(c.dtype).replace("torch.", ""),
                    "variant_id": v.variant_id, "variant": v.name, "score": v.score, "ratio": v.ratio,
                    "per_layer": v.plan.per_layer if v.variant_id else c.per_layer,
                    "recover_steps": c.recover_steps,
                    "recover_loss": v.recovery.final_loss() if v.recovery else None,
                    "d_state_original": max(v.plan.original), "d_state_kept": v.plan.state_sizes,
                    "d_state_kept_mean": sum(v.plan.state_sizes) / len(v.plan.state_sizes),
                    "states_removed_pct": v.plan.removed_pct, "params": v.params,
                    "timing_variant_id": v.timing_variant_id,
                    "prefill_ms_median": median(ms), "prefill_ms_min": min(ms) if ms else None,
                    "prefill_tokens_per_s": c.batch * seqlen / median(ms) * 1e3 if ms else None,
                    "baseline_prefill_ms_median": median(base_ms),
                    "prefill_speedup": median(base_ms) / median(ms) if ms and base_ms else None,
                    "prefill_repeats": len(ms), "weights_bytes": v.weights_bytes,
                    "activation_peak_bytes": peak,
                    "peak_memory_bytes": v.weights_bytes + peak if peak is not None else None,
                    "peak_memory_delta_pct": _pct(v.weights_bytes + peak, base.weights_bytes + base_peak)
                    if peak is not None and base_peak is not None else None,
                    "decode_batch": c.batch if decode_ms is not None else None,
                    "decode_ms_per_token": decode_ms,
                    "decode_tokens_per_s": c.batch / decode_ms * 1e3 if decode_ms else None,
                    "decode_speedup": base_decode / decode_ms if decode_ms and base_decode else None,
                    **_graph_decode_columns(t, bt),
                    "cache_bytes": t.cache_bytes, "ssm_state_bytes": t.ssm_state_bytes,
                    "conv_state_bytes": t.conv_state_bytes,
                    "cache_bytes_delta_pct": _pct(t.cache_bytes, bt.cache_bytes),
                    "ssm_state_bytes_delta_pct": _pct(t.ssm_state_bytes, bt.ssm_state_bytes),
                    "eval_tokens": v.ppl.tokens if v.ppl else None, "eval_nll": v.ppl.nll if v.ppl else None,
                    "perplexity": v.ppl.perplexity if v.ppl else None,
                    "eval_window_nll": v.ppl.window_nll if v.ppl else None,
                    "perplexity_delta_pct": _pct(v.ppl.perplexity, base.ppl.perplexity) if v.ppl and base.ppl else None,
                    "accuracy_caveat": caveat, "note": "; ".join(t.notes) or None,
                }
                for task in TASKS:
                    acc, base_acc = v.accuracy.get(task), base.accuracy.get(task)
                    row[f"{task}_acc_pct"] = acc
                    row[f"{task}_acc_delta_pp"] = acc - base_acc if acc is not None and base_acc is not None else None
                if seqlen == comp_seqlen and t.component_point_id is not None:
                    row.update(component_seqlen=seqlen, component_point_id=t.component_point_id,
                               component_time_source=t.component_source,
                               **{f"{k}_ms": val for k, val in t.components.items()})
                rows.append(row)
                point_id += 1
        return rows


def _pct(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0:
        return None
    return 100.0 * (value / base - 1.0)


def run_whatif(loaded: LoadedModel, config: PruneConfig, writer: RunWriter,
               progress: ProgressFn | None = None) -> WhatIfResult:
    """Check the plan, prepare the run directory and run the what-if (see the module docstring)."""
    whatif = WhatIf(loaded, config, writer, progress)
    writer.prepare()
    try:
        return whatif.run()
    finally:
        writer.release()



def _graph_decode_columns(t: Timings, base: Timings) -> dict[str, Any]:
    """The CUDA-graph decode columns of one variant: batches, median ms per token, speedup vs unpruned."""
    batches = sorted(t.decode_graph_ms)
    if not batches:
        return {}
    ms = [median(t.decode_graph_ms[b]) for b in batches]
    base_ms = [median(base.decode_graph_ms.get(b, [])) for b in batches]
    return {"decode_graph_batches": batches, "decode_graph_ms_per_token": ms,
            "decode_graph_speedup": [bm / m if bm and m else None for bm, m in zip(base_ms, ms, strict=True)]}
