"""The decode phase: after a prompt, one generated token per sequence per step, timed per component.

Per point (batch x prompt length): prefill the prompt through the model's own forward (filling its cache),
check the component-split step against the model's own step from the same cache state (logits, greedy
tokens), then time
- eager: the model's own step and the bare split step, interleaved; the split step with a timestamp between
  components (CUDA events on GPU, perf_counter on CPU) for the per-component times;
- CUDA graphs (GPU, unless turned off): the split step captured as one graph in a greedy loop (what a
  server's decode loop does) and replayed back to back; the per-component times measured inside that graph
  (collectors.graphs.time_within_graph: timing events around the components, spread over captures, their
  own latency measured and subtracted), their sum checked against the whole graph; for comparison each
  (layer, component) captured as its own graph (the isolated sum: what separate graphs would cost); the
  model's own graph where it has one (mamba_ssm's capture_graph);
- the model's own `generate` per new token (mamba_ssm `generate(cg=True)` on GPU with graphs).
Closed-form weight, cache and activation bytes per component come with the times; the report puts them
against the device's bandwidth. The sweep reuses the prefill sweep's run record, interrupts and statuses:
an oom or error point is recorded and the sweep goes on.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mambaprof.collectors import graphs
from mambaprof.collectors.timing import ForwardTimer, make_clock, synchronize
from mambaprof.errors import StorageError, one_line
from mambaprof.model.counts import (
    DecodeCount,
    attention_decode_count,
    attention_dims,
    decode_cache_bytes,
    decode_model_counts,
    kv_cache_bytes,
    mixer_decode_counts,
    mlp_decode_count,
    moe_decode_count,
)
from mambaprof.model.decode import DecodeStep, decode_step_for
from mambaprof.model.inputs import TOLERANCE
from mambaprof.model.loading import LoadedModel
from mambaprof.model.structure import ModelStructure
from mambaprof.paired import paired_difference
from mambaprof.run.sweep import (
    ProgressFn,
    RunInterrupted,
    SweepResult,
    TraceConfig,
    free_memory,
    is_oom,
    is_storage_failure,
    run_points,
    run_record,
)
from mambaprof.storage.rundir import RunWriter, utcnow
from mambaprof.storage.schema.base import json_cell
from mambaprof.taxonomy import MODEL_LAYER

#: |component-graph sum / whole-step graph - 1| above this is flagged (graph_sum_within_5pct false)
GRAPH_SUM_TOLERANCE_PCT = 5.0
#: pieces timed per capture of the whole step with events inside (fewer: the step runs closer to the plain
#: graph, at one more capture each)
EVENTS_PER_GRAPH = 16


@dataclass
class DecodeConfig(TraceConfig):
    """A decode sweep: prompt lengths (`seqlens`) x batches; `repeats` timed steps per pass, `warmup` untimed."""

    cuda_graphs: bool = True
    #: greedy steps compared between the split step and the model's own step / generate
    check_steps: int = 4
    #: time the model's own generate per token (and compare its tokens)
    generate: bool = True
    #: generate repeats per length (medians); the per-token figure is a difference of two wall-clock medians,
    #: and with 3 repeats it came out 13% under the model's own decode graph once at batch 1 on the H200
    generate_repeats: int = 5

    def as_json(self) -> str:
        """The configuration as JSON for the run record (`phase: decode`)."""
        return json_cell({"phase": "decode", "prompt_lens": self.seqlens, "batches": self.batches,
                          "device": str(self.device), "dtype": str(self.dtype).replace("torch.", ""),
                          "steps": self.repeats, "warmup": self.warmup, "cuda_graphs": self.cuda_graphs,
                          "check_steps": self.check_steps, "generate": self.generate,
                          "generate_repeats": self.generate_repeats, "seed": self.seed})

    @property
    def graphs_on(self) -> bool:
        """Whether this sweep replays CUDA graphs (asked for, and on a CUDA device)."""
        return self.cuda_graphs and graphs.graphs_available(self.device)


def _pct(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return 100.0 * (a / b - 1.0)


def _greedy(step: Callable[[torch.Tensor], torch.Tensor], first: torch.Tensor, n: int
            ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """n greedy steps from token `first`: (tokens fed, incl. first; logits of each step, cloned)."""
    tokens, logits = [first], []
    tok = first
    for _ in range(n):
        out = step(tok).clone()
        logits.append(out)
        tok = out.argmax(-1, keepdim=True)
        tokens.append(tok)
    return tokens, logits


def step_counts(structure: ModelStructure, stepper: DecodeStep, batch: int, context: int = 0,
                state_elem: Mapping[str, int] | None = None) -> dict[tuple[int, str], DecodeCount]:
    """Closed-form traffic per (layer, component) of one decode step, keyed as the step's segments are; attention
    layers read a KV cache of `context` tokens (the prompt length for the step right after the prompt). state_elem:
    bytes per cache element by component as the model keeps its cache (DecodeStep.state_element_bytes), default
    the model's dtype."""
    elem = torch.empty((), dtype=stepper.dtype).element_size()
    se = dict(state_elem or {})
    d_model = structure.d_model
    out: dict[tuple[int, str], DecodeCount] = {}
    model = decode_model_counts(d_model, structure.vocab_size, batch, elem)

    def add(key: tuple[int, str], count: DecodeCount | None) -> None:
        if count is not None:
            out[key] = out[key] + count if key in out else count

    for ls in structure.layers:
        if ls.mixer is not None:
            for comp, count in mixer_decode_counts(ls.mixer.dims, batch, elem, se.get("ssm_scan"),
                                                   se.get("conv1d")).items():
                out[(ls.layer, comp)] = count
        for m in ls.attention:
            dims = attention_dims(m)
            kv = se.get("attention", elem)
            add((ls.layer, "attention"), attention_decode_count(dims, d_model, batch, context, kv) if dims else None)
        for m in ls.mlp:
            add((ls.layer, "mlp"), mlp_decode_count(m, d_model, batch, elem))
        for m in ls.moe:
            add((ls.layer, "moe"), moe_decode_count(m, d_model, batch, elem))
        if ls.mixer is None and not (ls.attention or ls.mlp or ls.moe):
            continue
        n_norms = len(ls.norms) or 1  # a pre-norm residual step per norm of the layer
        if ls.fused_add_norm:
            n, r = model["norm"], model["residual"]
            out[(ls.layer, "norm")] = DecodeCount(n.flops + r.flops, n.bytes_min + r.bytes_min,
                                                  n.weight_bytes, 0.0).scaled(n_norms)
        else:
            out[(ls.layer, "norm")] = model["norm"].scaled(n_norms)
            out[(ls.layer, "residual")] = model["residual"].scaled(n_norms)
    out[(MODEL_LAYER, "embedding")] = model["embedding"]
    out[(MODEL_LAYER, "norm")] = model["final_norm"]
    if "lm_head" in model:
        out[(MODEL_LAYER, "lm_head")] = model["lm_head"]
    return out


def closed_form_cache(structure: ModelStructure, batch: int, context: int, elem: int,
                      state_elem: Mapping[str, int] | None = None) -> dict[tuple[int, str], float]:
    """Closed-form decode cache per (layer, component) after `context` tokens: conv and SSM state per Mamba layer
    (constant in the context), the KV cache per attention layer (linear in it). Shapes come from the structure;
    bytes per element from state_elem by component where given (the dtype the model keeps its cache in), else elem."""
    se = dict(state_elem or {})
    out: dict[tuple[int, str], float] = {}
    for ls in structure.layers:
        if ls.mixer is not None:
            cache = decode_cache_bytes(ls.mixer.dims, batch, se.get("ssm_scan", elem), se.get("conv1d", elem))
            for comp, nbytes in cache.items():
                out[(ls.layer, comp)] = nbytes
        dims = [d for d in (attention_dims(m) for m in ls.attention) if d is not None]
        if dims:
            out[(ls.layer, "attention")] = sum(kv_cache_bytes(d, batch, context, se.get("attention", elem))
                                               for d in dims)
    return out


def state_dtype_note(state_elem: Mapping[str, int], elem: int) -> str | None:
    """One line naming the cache parts the model keeps in another element size than its weights, or None."""
    names = {"ssm_scan": "SSM state", "conv1d": "conv state", "attention": "KV cache"}
    odd = [f"{names.get(c, c)} {n} bytes per element" for c, n in sorted(state_elem.items()) if n != elem]
    if not odd:
        return None
    return f"cache kept in another dtype than the model's ({elem} bytes per element): {', '.join(odd)}; " \
           "the closed forms count it so"


def measure_decode_point(loaded: LoadedModel, structure: ModelStructure, config: DecodeConfig, batch: int,
                         prompt_len: int, base: dict[str, Any],
                         on_phase: Callable[[str], None] | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """All passes of one decode point; returns (its decode_points row, its decode_components rows)."""
    phase = on_phase or (lambda name: None)
    device, steps, warmup = config.device, max(1, config.repeats), config.warmup
    check = max(1, config.check_steps)
    gen_new = 1 + steps
    max_seqlen = prompt_len + max(steps * 4 + warmup * 4 + check * 3 + 16, gen_new + 1)
    vocab = structure.vocab_size or 2
    g = torch.Generator().manual_seed(config.seed)
    ids = torch.randint(0, vocab, (batch, prompt_len), generator=g).to(device)
    stepper = decode_step_for(loaded.model, structure, batch, max_seqlen)
    no_graphs = stepper.graph_capturable() if config.graphs_on else None
    graphs_on = config.graphs_on and no_graphs is None
    row: dict[str, Any] = {**base, "phase": "decode", "status": "ok", "backend": stepper.backend,
                           "cuda_graphs": graphs_on, "steps": steps, "warmup": warmup,
                           "notes": f"no CUDA graphs: {no_graphs}" if no_graphs else None}
    try:
        with torch.inference_mode():
            phase("prefill")
            first = stepper.prefill(ids).argmax(-1, keepdim=True)
            stepper.token.copy_(first)
            cache_measured = stepper.cache_bytes()  # right after the prompt: the KV cache holds prompt_len tokens
            state_elem = stepper.state_element_bytes()
            dtype_note = state_dtype_note(state_elem, torch.empty((), dtype=stepper.dtype).element_size())
            if dtype_note:
                row["notes"] = "; ".join(n for n in (row["notes"], dtype_note) if n)
            phase("check")
            snap = stepper.snapshot()
            own_tokens, own_logits = _greedy(stepper.own_step, first, check)
            stepper.restore(snap)
            split_tokens, split_logits = _greedy(stepper.split_step, first, check)
            row["logits_max_abs_diff"] = max(float((a.float() - b.float()).abs().max())
                                             for a, b in zip(own_logits, split_logits, strict=True))
            # greedy tokens alone are a weak check (random weights: the embedding often decides the argmax), so the
            # split step's logits must also agree with the own step's within the output check's dtype tolerance
            scale = max(float(a.float().abs().max()) for a in own_logits) or 1.0
            logits_ok = row["logits_max_abs_diff"] / scale <= TOLERANCE.get(config.dtype, 1e-2)
            tokens_match = logits_ok and all(bool(torch.equal(a, b))
                                             for a, b in zip(own_tokens, split_tokens, strict=True))
            stepper.restore(snap)

            # each pass starts from the state after the prompt, so a KV cache holds about prompt_len tokens
            phase("eager")
            own_ms, split_ms = _time_eager(stepper, first, steps, warmup)
            row["own_eager_ms"], row["split_eager_ms"] = own_ms, split_ms
            row["split_vs_own_pct"] = _pct(split_ms, own_ms)
            stepper.restore(snap)
            stepper.token.copy_(first)
            eager, spread = _time_components_eager(stepper, steps, warmup)
            row["component_eager_sum_ms"] = sum(eager.values())
            stepper.restore(snap)
            graph_times: dict[tuple[int, str], float] = {}
            if graphs_on:
                phase("cuda graphs")
                graph_row, graph_times, graph_match = _time_graphs(stepper, first, snap, own_tokens, steps,
                                                                   warmup, prompt_len)
                row.update(graph_row)
                tokens_match = tokens_match and graph_match
                row["launch_bound_pct"] = (100.0 * (1.0 - row["graph_replay_ms"] / split_ms)
                                           if split_ms > 0 else None)
            row["tokens_match"] = tokens_match
            row["ms_per_token"] = row.get("graph_loop_ms") if graphs_on else own_ms
            if config.generate:
                phase("generate")
                stepper.release()  # the split step's context is not needed any more; generate needs memory
                gen_ms, gen_rounds, gen_tokens = _time_generate(stepper, ids, gen_new, config, graphs_on)
                row["generate_ms_per_token"] = gen_ms
                k = min(len(split_tokens), gen_tokens.shape[1])
                ours = torch.cat(split_tokens, dim=1)[:, :k]
                row["tokens_match_generate"] = bool(torch.equal(ours.to(gen_tokens.device), gen_tokens[:, :k]))
                row["step_vs_generate_pct"] = _pct(row["ms_per_token"], gen_ms)
                row.update(_vs_generate_interval(row["ms_per_token"], gen_rounds))
        if row.get("ms_per_token"):
            row["tokens_per_s"] = batch * 1000.0 / row["ms_per_token"]
        components = _component_rows(structure, stepper, batch, prompt_len, base, eager, spread, graph_times,
                                     cache_measured, row, state_elem)
    finally:
        stepper.release()
    return row, components


#: steps of one kind timed back to back before the eager timing switches to the other kind
EAGER_BLOCK = 5


def _time_eager(stepper: DecodeStep, tok: torch.Tensor, steps: int, warmup: int) -> tuple[float, float]:
    """Median ms of the model's own step and of the bare split step, interleaved in blocks of EAGER_BLOCK steps
    of each (blocks share the host's drift as single steps would, but a cost of switching from one code path to
    the other, which a step-by-step alternation pays every step, lands on at most one step in a block)."""
    timer = ForwardTimer(stepper.device)
    for _ in range(warmup):
        stepper.own_step(tok)
        stepper.split_step(tok)
    own: list[float] = []
    split: list[float] = []
    while len(own) < steps:
        block = min(EAGER_BLOCK, steps - len(own))
        own += [timer.time(lambda: stepper.own_step(tok))[0] for _ in range(block)]
        split += [timer.time(lambda: stepper.split_step(tok))[0] for _ in range(block)]
    return statistics.median(own), statistics.median(split)


def _time_components_eager(stepper: DecodeStep, steps: int, warmup: int
                           ) -> tuple[dict[tuple[int, str], float], dict[tuple[int, str], tuple[float, float]]]:
    """Median ms per (layer, component) of the eager split step, one timestamp per segment boundary; and the
    first and third quartiles over the timed steps (the spread a difference between points is judged by)."""
    segments = stepper.segments()
    clock = make_clock(stepper.device)
    for _ in range(warmup):
        stepper.split_step()
    per: dict[tuple[int, str], list[float]] = {}
    for _ in range(steps):
        clock.reset()
        synchronize(stepper.device)
        marks = [clock.mark()]
        for seg in segments:
            seg.run()
            marks.append(clock.mark())
        clock.sync()
        step: dict[tuple[int, str], float] = {}
        for i, seg in enumerate(segments):
            key = (seg.layer, seg.component)
            step[key] = step.get(key, 0.0) + clock.elapsed_ms(marks[i], marks[i + 1])
        for key, ms in step.items():
            per.setdefault(key, []).append(ms)
    return {k: statistics.median(v) for k, v in per.items()}, {k: _quartiles(v) for k, v in per.items()}


def _quartiles(values: Sequence[float]) -> tuple[float, float]:
    """(first, third) quartile of `values` (both the value itself for one value)."""
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def _time_graphs(stepper: DecodeStep, first: torch.Tensor, snap: list[torch.Tensor],
                 own_tokens: Sequence[torch.Tensor], steps: int, warmup: int, prompt_len: int
                 ) -> tuple[dict[str, Any], dict[tuple[int, str], float], bool]:
    """The CUDA-graph passes: whole split step (loop and replay), per-component graphs, the model's own graph."""
    device = stepper.device
    out: dict[str, Any] = {}
    stepper.token.copy_(first)
    whole = graphs.capture(lambda: stepper.split_step(), warmup=max(warmup, 2))
    logits = stepper.ctx["logits"]
    stepper.restore(snap)  # graph tokens from the same state as the model's own
    tokens = [first]
    tok = first
    for _ in range(len(own_tokens) - 1):
        stepper.token.copy_(tok)
        whole.replay()
        tok = logits.argmax(-1, keepdim=True)
        tokens.append(tok)
    match = all(bool(torch.equal(a, b)) for a, b in zip(tokens, own_tokens, strict=True))
    state = {"tok": tok}

    def loop_body() -> None:
        stepper.token.copy_(state["tok"])
        whole.replay()
        state["tok"] = logits.argmax(-1, keepdim=True)

    out["graph_loop_ms"] = graphs.time_loop(loop_body, steps, device, warmup)
    out["graph_replay_ms"] = graphs.time_loop(whole.replay, steps, device, warmup)
    segments = stepper.segments()
    fns = [s.run for s in segments]
    inside = graphs.time_within_graph(fns, graphs.spread_groups(len(fns), EVENTS_PER_GRAPH), steps, device,
                                      warmup=max(warmup, 2))
    per: dict[tuple[int, str], float] = {}
    for seg, ms in zip(segments, inside.piece_ms, strict=True):
        per[(seg.layer, seg.component)] = per.get((seg.layer, seg.component), 0.0) + (ms or 0.0)
    total = sum(ms or 0.0 for ms in inside.piece_ms)
    whole_ms = out["graph_replay_ms"]
    out["component_graph_sum_ms"] = total
    out["graph_event_ms"] = inside.event_ms
    out["graph_events_vs_whole_pct"] = _pct(max(inside.graph_ms), whole_ms)
    out["graph_sum_vs_whole_pct"] = _pct(total, whole_ms)
    out["graph_sum_within_5pct"] = (abs(out["graph_sum_vs_whole_pct"]) <= GRAPH_SUM_TOLERANCE_PCT
                                    if out["graph_sum_vs_whole_pct"] is not None else None)
    parts = graphs.capture_sequence(fns, warmup=max(warmup, 2))
    out["isolated_graph_sum_ms"] = sum(graphs.time_sequence(parts, steps, device, warmup))
    del parts
    own = stepper.own_graph(prompt_len)
    if own is not None:
        own_state = {"tok": first}

        def own_body() -> None:
            own_state["tok"] = own(own_state["tok"]).argmax(-1, keepdim=True)

        out["own_graph_ms"] = graphs.time_loop(own_body, steps, device, warmup)
        del own
    torch.cuda.synchronize(device)
    return out, per, match


def _vs_generate_interval(step_ms: float | None, gen_rounds: Sequence[float]) -> dict[str, float | None]:
    """The interval of step_vs_generate_pct over generate's rounds: each round's per-token estimate (its long
    minus its short generate) against the step's median, order statistics as for paired timing (the range of
    the rounds below 6 of them); None where a round's estimate is not positive."""
    cols: dict[str, float | None] = {"step_vs_generate_ci_low_pct": None, "step_vs_generate_ci_high_pct": None}
    rounds = [g for g in gen_rounds if g > 0]
    if step_ms is None or not rounds or len(rounds) != len(gen_rounds):
        return cols
    diff = paired_difference(rounds, [step_ms] * len(rounds))
    if diff is not None:
        cols["step_vs_generate_ci_low_pct"] = diff.ci_low_pct
        cols["step_vs_generate_ci_high_pct"] = diff.ci_high_pct
    return cols


def _time_generate(stepper: DecodeStep, ids: torch.Tensor, new: int, config: DecodeConfig,
                   graphs_on: bool | None = None) -> tuple[float, list[float], torch.Tensor]:
    """The model's own generate per new token, in ms of wall time (the host loop is part of it): each round
    times generate for `new` tokens and then for 1, back to back, and estimates (long - short) / (new - 1) (a
    pair shares the host's state, as in paired timing); returns the median over the rounds, every round's
    estimate (the spread) and the tokens of the long run. The long run goes first so that a graph cache sized
    for it serves the short one."""
    timer = ForwardTimer(stepper.device)
    graphs_on = config.graphs_on if graphs_on is None else graphs_on
    tokens = stepper.generate(ids, new, graphs_on)  # warm-up (and graph capture under cg)
    stepper.generate(ids, 1, graphs_on)
    long, short = [], []
    for _ in range(max(1, config.generate_repeats)):
        _dev, host_ms, tokens = timer.time(lambda: stepper.generate(ids, new, graphs_on))
        long.append(host_ms)
        _dev, host_ms, _out = timer.time(lambda: stepper.generate(ids, 1, graphs_on))
        short.append(host_ms)
    rounds = [(a - b) / max(new - 1, 1) for a, b in zip(long, short, strict=True)]
    return statistics.median(rounds), rounds, tokens


def _component_rows(structure: ModelStructure, stepper: DecodeStep, batch: int, prompt_len: int,
                    base: dict[str, Any], eager: dict[tuple[int, str], float],
                    spread: dict[tuple[int, str], tuple[float, float]], graph_times: dict[tuple[int, str], float],
                    measured: dict[tuple[int, str], int], point: dict[str, Any],
                    state_elem: Mapping[str, int]) -> list[dict[str, Any]]:
    """decode_components rows (eager, and graph where measured), plus the point's byte totals. `measured`: the
    decode cache per (layer, component) right after the prompt; state_elem: its bytes per element by component."""
    counts = step_counts(structure, stepper, batch, prompt_len, state_elem)
    elem = torch.empty((), dtype=stepper.dtype).element_size()
    closed = closed_form_cache(structure, batch, prompt_len, elem, state_elem)
    fused = stepper.fused_components()
    kinds = structure.layer_kinds
    point["fused_json"] = json_cell(fused) if fused else None
    point["cache_bytes"] = int(sum(measured.values()))
    point["cache_bytes_closed_form"] = int(sum(closed.values()))
    for col, comp in (("ssm_state_bytes", "ssm_scan"), ("conv_state_bytes", "conv1d"), ("kv_cache_bytes", "attention")):
        point[col] = int(sum(v for (_, c), v in measured.items() if c == comp))
    point["weight_bytes"] = sum(c.weight_bytes for c in counts.values())
    point["state_bytes"] = sum(c.state_bytes for c in counts.values())
    point["bytes_min"] = sum(c.bytes_min for c in counts.values())
    point["flops"] = sum(c.flops for c in counts.values())
    keys = list(eager)
    keys += [k for k in counts if k not in eager]  # fused components: counted, not timed
    rows: list[dict[str, Any]] = []
    for timing, times in (("eager", eager), ("graph", graph_times)):
        if timing == "graph" and not graph_times:
            continue
        for key in keys:
            layer, comp = key
            count = counts.get(key)
            note = fused.get(comp) if key not in times else None
            q1, q3 = spread.get(key, (None, None)) if timing == "eager" else (None, None)
            rows.append({**base, "phase": "decode", "layer": layer, "component": comp, "timing": timing,
                         "layer_kind": kinds.get(layer, "model") if layer != MODEL_LAYER else "model",
                         "time_ms": times.get(key), "time_ms_q1": q1, "time_ms_q3": q3,
                         "flops": count.flops if count else None,
                         "bytes_min": count.bytes_min if count else None,
                         "weight_bytes": count.weight_bytes if count else None,
                         "state_bytes": count.state_bytes if count else None,
                         "cache_bytes": measured.get(key), "cache_bytes_closed_form":
                             int(closed[key]) if key in closed else None, "fused_into": note})
    return rows


def run_decode_sweep(loaded: LoadedModel, structure: ModelStructure, config: DecodeConfig, writer: RunWriter,
                     progress: ProgressFn | None = None, debug: bool = False,
                     identity: dict[str, Any] | None = None) -> SweepResult:
    """Every (batch, prompt length) decode point, each written as it finishes (decode_components first,
    decode_points last); oom/error points are recorded and the sweep goes on; SIGINT/SIGTERM end it as
    `incomplete` with the run record written."""
    identity = identity or {"rank": 0, "world_size": 1}
    todo = [(i, b, s) for i, (b, s) in enumerate(config.points())]
    report = progress or (lambda done, total, desc: None)
    started = utcnow()
    counts: dict[str, int] = {"ok": 0, "oom": 0, "error": 0}
    writer.write_run_record(run_record(writer, loaded, structure, config, started, "running", None, counts,
                                       identity=identity))

    def run_one(pid: int, batch: int, prompt_len: int, report_phase: Callable[[str], None]) -> dict[str, Any]:
        return _decode_point(pid, batch, prompt_len, loaded, structure, config, writer, identity, debug,
                             report_phase)

    def finish(status: str, reason: str | None, counts: dict[str, int]) -> str | None:
        try:
            writer.write_run_record(run_record(writer, loaded, structure, config, started, status, reason,
                                               counts, finished_at=utcnow(), identity=identity))
        except OSError as exc:
            if not is_storage_failure(exc):
                raise
            reason = f"{reason}; the run record could not be updated either ({exc.strerror})"
        return reason

    return run_points(todo, run_one, writer, identity.get("rank", 0), report,
                      lambda b, p: f"decode b={b} prompt={p}", points_table="decode_points", finish=finish)


def _decode_point(pid: int, batch: int, prompt_len: int, loaded: LoadedModel, structure: ModelStructure,
                  config: DecodeConfig, writer: RunWriter, identity: dict[str, Any], debug: bool,
                  phase: Callable[[str], None]) -> dict[str, Any]:
    base = {"run_id": writer.run_id, **identity, "point_id": pid, "device": str(config.device), "batch": batch,
            "seqlen": prompt_len, "dtype": str(config.dtype).replace("torch.", "")}
    started = utcnow()
    try:
        row, components = measure_decode_point(loaded, structure, config, batch, prompt_len, base, phase)
    except RunInterrupted:
        raise
    except BaseException as exc:  # noqa: BLE001 - recorded, the sweep goes on
        if isinstance(exc, KeyboardInterrupt):
            raise RunInterrupted("SIGINT") from exc
        if debug and not is_oom(exc):
            raise
        free_memory(config.device)
        row = {**base, "phase": "decode", "status": "oom" if is_oom(exc) else "error", "error": one_line(exc),
               "cuda_graphs": config.graphs_on, "steps": config.repeats, "warmup": config.warmup,
               "started_at": started, "finished_at": utcnow()}
        writer.write_rows("decode_points", [row], pid)
        return row
    row.update(started_at=started, finished_at=utcnow())
    try:
        writer.write_rows("decode_components", components, pid)
        writer.write_rows("decode_points", [row], pid)
    except OSError as exc:
        writer.remove_point_parts(pid)
        raise StorageError(f"could not write decode point {pid} (b={batch} prompt={prompt_len}): "
                           f"{exc.strerror or exc}") from exc
    free_memory(config.device)
    return row
