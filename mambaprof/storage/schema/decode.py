"""The decode phase's tables: decode_points (one row per batch x prompt length) and decode_components."""

from __future__ import annotations

import pyarrow as pa

from mambaprof.storage.schema.base import Column, Table, register
from mambaprof.storage.schema.core import identity_columns

S, I32, I64, F64, B = pa.string(), pa.int32(), pa.int64(), pa.float64(), pa.bool_()
TS = pa.timestamp("us", tz="UTC")

_PHASE = Column("phase", S, "", "`decode` (one generated token per sequence per step, after a prompt of "
                "`seqlen` tokens). Reports never mix phases in one share.", nullable=False)

DECODE_POINTS = register(Table(
    name="decode_points",
    doc="One row per decode point (batch x prompt length; `seqlen` is the prompt length): how one generated "
        "token per sequence costs, with CUDA graphs (GPU) and without, checked against the model's own step "
        "and its `generate`. Written last for its point (after decode_components). Times are per step, i.e. "
        "per generated token of every sequence of the batch.",
    key=("run_id", "rank", "point_id"),
    columns=identity_columns() + (
        _PHASE,
        Column("status", S, "", "`ok`, `oom` (did not fit) or `error` (see `error`)."),
        Column("error", S, "", "One-line error for oom/error points, else null."),
        Column("backend", S, "", "What runs the model's own step: `transformers` or `mamba_ssm`."),
        Column("cuda_graphs", B, "", "Whether the step was also replayed from CUDA graphs (GPU only)."),
        Column("steps", I32, "", "Timed decode steps per pass."),
        Column("warmup", I32, "", "Untimed steps before each timed pass."),
        Column("ms_per_token", F64, "ms", "The headline step time: the whole split step replayed from one CUDA "
               "graph in a greedy loop (token copy, replay, argmax) with graphs, else the model's own eager "
               "step (median)."),
        Column("tokens_per_s", F64, "tokens/s", "batch x 1000 / ms_per_token: generated tokens per second "
               "over the batch."),
        Column("own_eager_ms", F64, "ms", "The model's own cached step, eager (median over steps)."),
        Column("split_eager_ms", F64, "ms", "The component-split step without timers, eager (median)."),
        Column("split_vs_own_pct", F64, "%", "split_eager_ms vs own_eager_ms (100 x (split/own - 1))."),
        Column("component_eager_sum_ms", F64, "ms", "Sum of the eager component times of one step (median "
               "step of the timed pass with a timestamp between components)."),
        Column("graph_loop_ms", F64, "ms", "Per step: the split step captured as one CUDA graph, run in a "
               "greedy loop (copy token in, replay, argmax), events around the whole loop."),
        Column("graph_replay_ms", F64, "ms", "Per step: the whole-step graph replayed back to back (no "
               "token copy or argmax)."),
        Column("component_graph_sum_ms", F64, "ms", "Per step: the sum over (layer, component) of the times "
               "measured inside the whole-step graph (timing events around each component, spread over several "
               "captures, less graph_event_ms each)."),
        Column("graph_event_ms", F64, "ms", "What one timing event inside the graph adds to the step where it "
               "sits between two kernels: (replay with an event at every component boundary - plain replay) / "
               "events; an interval around a component carries it once, so it is subtracted from each."),
        Column("graph_events_vs_whole_pct", F64, "%", "The slowest capture with timing events inside against "
               "graph_replay_ms (100 x (events/whole - 1)): how much the events perturbed the step they timed."),
        Column("graph_sum_vs_whole_pct", F64, "%", "component_graph_sum_ms vs graph_replay_ms "
               "(100 x (sum/whole - 1))."),
        Column("graph_sum_within_5pct", B, "", "|graph_sum_vs_whole_pct| <= 5: the in-graph attribution "
               "accounts for the whole-step graph."),
        Column("isolated_graph_sum_ms", F64, "ms", "Per step, for comparison: each (layer, component) captured "
               "as its own graph and replayed in order, an event between graphs; the sum (each pays a graph "
               "launch and loses its overlap with its neighbours)."),
        Column("own_graph_ms", F64, "ms", "Per step: the model's own CUDA-graph decode (mamba_ssm's "
               "capture_graph, the graph generate(cg=True) replays), greedy loop; null where the model has none."),
        Column("generate_ms_per_token", F64, "ms", "The model's own generate per new token: per round, (time "
               "of generate for 1 + steps new tokens - time for 1, back to back) / steps; the median over the "
               "rounds (DecodeConfig.generate_repeats); mamba_ssm with cg=True on GPU when graphs are on, "
               "transformers' generate otherwise."),
        Column("step_vs_generate_pct", F64, "%", "ms_per_token vs generate_ms_per_token "
               "(100 x (ours/generate - 1)); within 5 on the GPU is the target."),
        Column("step_vs_generate_ci_low_pct", F64, "%", "Low end of step_vs_generate_pct's interval over "
               "generate's rounds (each round's long minus short generate per token against ms_per_token; 95% "
               "order-statistics interval of the median from 6 rounds, the rounds' range below); null without "
               "generate."),
        Column("step_vs_generate_ci_high_pct", F64, "%", "High end of that interval."),
        Column("launch_bound_pct", F64, "%", "Share of the eager step that CUDA graphs remove: "
               "100 x (1 - graph_replay_ms / split_eager_ms); the launch-bound share without graphs. Null "
               "without graphs."),
        Column("logits_max_abs_diff", F64, "", "Largest |logit| difference of the split step vs the model's "
               "own step from the same cache state."),
        Column("tokens_match", B, "", "Greedy tokens of the split step (graph replay when graphs are on) "
               "equal the model's own step's over the check steps."),
        Column("tokens_match_generate", B, "", "Greedy tokens of the split step equal those of the model's "
               "generate from the same prompt (null when not compared)."),
        Column("cache_bytes", I64, "bytes", "Decode cache measured right after the prompt: bytes of the live "
               "conv/SSM state tensors and KV caches (ssm_state_bytes + conv_state_bytes + kv_cache_bytes)."),
        Column("cache_bytes_closed_form", I64, "bytes", "Decode cache from the closed form (model.counts)."),
        Column("ssm_state_bytes", I64, "bytes", "Measured SSM state of every Mamba layer (constant in the prompt "
               "length)."),
        Column("conv_state_bytes", I64, "bytes", "Measured conv state of every Mamba layer (constant in the prompt "
               "length)."),
        Column("kv_cache_bytes", I64, "bytes", "Measured KV cache of every attention layer after the prompt "
               "(2 x kv_heads x head_dim x prompt_len x elem per sequence and layer; 0 without attention)."),
        Column("weight_bytes", F64, "bytes", "Closed-form parameter bytes a step reads."),
        Column("state_bytes", F64, "bytes", "Closed-form cache bytes a step reads and writes."),
        Column("bytes_min", F64, "bytes", "Closed-form minimum bytes of one step (weights + cache + "
               "activations)."),
        Column("flops", F64, "flops", "Closed-form FLOPs of one step."),
        Column("fused_json", S, "", "Components the split could not separate on this kernel path -> note "
               "(JSON)."),
        Column("notes", S, "", "What the point did not measure and why (e.g. no CUDA graphs for a model whose "
               "decode cache a graph cannot replay), else null."),
        Column("started_at", TS, "UTC", "When the point started."),
        Column("finished_at", TS, "UTC", "When the point finished."),
    ),
))

DECODE_COMPONENTS = register(Table(
    name="decode_components",
    doc="One row per (decode point, layer, component, timing): a decode step's time per component, with its "
        "closed-form traffic and its decode cache (measured and closed form). `timing` says how it was timed: "
        "`eager` (timestamps between components of the eager step: CUDA events on GPU, perf_counter on CPU) "
        "or `graph` (measured inside the whole step's CUDA graph, see decode_points.component_graph_sum_ms). "
        "Layer -1 is the model level.",
    key=("run_id", "rank", "point_id", "layer", "component", "timing"),
    columns=identity_columns() + (
        _PHASE,
        Column("layer", I32, "", "Layer index, -1 for the model level (embedding, final norm, lm_head; `other`: "
               "a hybrid's positions)."),
        Column("component", S, "", "Taxonomy component (see `components`)."),
        Column("timing", S, "", "`eager` or `graph`."),
        Column("layer_kind", S, "", "Kind of the layer (see `layers.layer_kind`: mamba1, mamba2, attention, mlp, moe "
               "joined by `+`); `model` for layer -1."),
        Column("time_ms", F64, "ms", "Per step (median over the timed steps)."),
        Column("time_ms_q1", F64, "ms", "First quartile of the per-step times (eager timing; null for graph)."),
        Column("time_ms_q3", F64, "ms", "Third quartile of the per-step times (eager timing; null for graph)."),
        Column("flops", F64, "flops", "Closed-form FLOPs of this component in one step."),
        Column("bytes_min", F64, "bytes", "Closed-form minimum bytes in one step (weights + cache + "
               "activations)."),
        Column("weight_bytes", F64, "bytes", "Closed-form parameter bytes read in one step."),
        Column("state_bytes", F64, "bytes", "Closed-form decode-cache bytes read and written in one step."),
        Column("cache_bytes", I64, "bytes", "Decode cache this component owns, measured from the live tensors "
               "right after the prompt: conv state (conv1d), SSM state (ssm_scan), KV cache (attention); null where "
               "it owns none."),
        Column("cache_bytes_closed_form", I64, "bytes", "The same from the closed form."),
        Column("fused_into", S, "", "For a component the split cannot separate: the note saying where its "
               "time is (its time_ms is then null)."),
    ),
))
