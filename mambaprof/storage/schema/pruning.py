"""The pruning what-if table: one row per pruned variant x prefill sequence length."""

from __future__ import annotations

import pyarrow as pa

from mambaprof.storage.schema.base import Column, Table, register
from mambaprof.storage.schema.core import identity_columns

S, I32, I64, F64 = pa.string(), pa.int32(), pa.int64(), pa.float64()

_COMPONENT_COLUMNS = tuple(
    Column(f"{comp}_ms", F64, "ms", f"Time of `{comp}` summed over all Mamba layers for one forward at "
           "`component_seqlen` (kernel time where the profiler ran on a GPU, else wall time; see "
           "`component_time_source`); null in rows at other sequence lengths and where the component "
           "is fused into another (Mamba-1 gating on the CUDA scan).")
    for comp in ("in_proj", "conv1d", "ssm_params", "ssm_scan", "gating", "out_proj")
)

PRUNING = register(Table(
    name="pruning",
    doc="Pruning what-if (`mambaprof prune`): one row per variant (score x ratio x per-layer split, after the "
        "optional recovery fine-tune) x prefill sequence length. Variant 0 is the unpruned model, processed "
        "exactly like the others (same recovery steps on the same data), and every `_delta_`/`speedup` "
        "column compares with it. Timings of variants with identical state sizes per layer are measured "
        "once, on `timing_variant_id`, interleaved with the unpruned model in the same run.",
    key=("run_id", "rank", "point_id"),
    columns=identity_columns() + (
        Column("variant_id", I32, "", "Index of the variant (0: the unpruned reference).", nullable=False),
        Column("variant", S, "", "Readable name, e.g. `delta@0.25/uniform`."),
        Column("score", S, "", "State score that chose the kept states: delta, energy, magnitude, random, or "
               "`none` for the unpruned reference."),
        Column("ratio", F64, "fraction", "Requested share of state indices removed (0 <= ratio < 1)."),
        Column("per_layer", S, "", "`uniform` (every layer loses the same share) or `adaptive` (a global budget "
               "split by score mass)."),
        Column("recover_steps", I32, "steps", "Recovery fine-tune steps applied after pruning (0: none)."),
        Column("recover_loss", F64, "nats/token", "Mean training loss of the last 10% of recovery steps."),
        Column("d_state_original", I32, "states", "Largest d_state of the model before pruning."),
        Column("d_state_kept", pa.list_(I32), "states", "Kept d_state (N') per layer."),
        Column("d_state_kept_mean", F64, "states", "Mean kept d_state over layers."),
        Column("states_removed_pct", F64, "%", "Share of all state indices removed, over all layers."),
        Column("params", I64, "parameters", "Parameters of the pruned model."),
        Column("timing_variant_id", I32, "", "Variant whose model was timed for this row (same state sizes)."),
        Column("prefill_ms_median", F64, "ms", "Median time of one full forward (batch x seqlen tokens, "
               "logits included): CUDA events on GPU, perf_counter on CPU."),
        Column("prefill_ms_min", F64, "ms", "Fastest timed forward."),
        Column("prefill_tokens_per_s", F64, "tokens/s", "batch x seqlen / prefill_ms_median."),
        Column("baseline_prefill_ms_median", F64, "ms", "Median forward time of the unpruned model, timed "
               "interleaved with this variant in the same loop."),
        Column("prefill_speedup", F64, "x", "baseline_prefill_ms_median / prefill_ms_median (> 1: faster)."),
        Column("prefill_repeats", I32, "", "Timed forwards per model (after warm-up)."),
        Column("weights_bytes", I64, "bytes", "Bytes of the model's parameters in the serving dtype."),
        Column("activation_peak_bytes", I64, "bytes", "Peak GPU memory allocated during one forward above what "
               "was allocated before it (null on CPU)."),
        Column("peak_memory_bytes", I64, "bytes", "weights_bytes + activation_peak_bytes: the prefill's peak "
               "footprint of this model alone (null on CPU)."),
        Column("peak_memory_delta_pct", F64, "%", "Change of peak_memory_bytes vs the unpruned model."),
        Column("decode_batch", I32, "sequences", "Sequences decoded together."),
        Column("decode_ms_per_token", F64, "ms", "Median latency of one decode step (one token per sequence) "
               "after a prompt, with the model's recurrent cache."),
        Column("decode_tokens_per_s", F64, "tokens/s", "decode_batch / decode_ms_per_token."),
        Column("decode_speedup", F64, "x", "Unpruned decode_ms_per_token / this one (interleaved timing)."),
        Column("decode_graph_batches", pa.list_(I32), "sequences", "GPU: batches at which the decode step was "
               "also replayed from one CUDA graph (--decode-graph-batches); null when not measured."),
        Column("decode_graph_ms_per_token", pa.list_(F64), "ms", "Per decode_graph_batches entry: median ms of "
               "one decode step replayed from a CUDA graph in a greedy loop (no launch overhead: the state "
               "traffic shows)."),
        Column("decode_graph_speedup", pa.list_(F64), "x", "Per decode_graph_batches entry: unpruned "
               "decode_graph_ms_per_token / this one (models interleaved)."),
        Column("cache_bytes", I64, "bytes", "Bytes of the decode cache the model allocated (conv + SSM states "
               "of all layers) for decode_batch sequences, measured on the cache objects."),
        Column("ssm_state_bytes", I64, "bytes", "Closed-form SSM-state part of the cache: sum over layers of "
               "decode_batch x d_inner x N' (Mamba-1) or x nheads x headdim x N' (Mamba-2), at the cache dtype."),
        Column("conv_state_bytes", I64, "bytes", "Closed-form conv-state part of the cache (conv channels x "
               "d_conv per layer; Mamba-2's B and C channels shrink with N')."),
        Column("cache_bytes_delta_pct", F64, "%", "Change of cache_bytes vs the unpruned model."),
        Column("ssm_state_bytes_delta_pct", F64, "%", "Change of ssm_state_bytes vs the unpruned model."),
        Column("component_seqlen", I32, "tokens", "Sequence length of the per-component measurement."),
        Column("component_point_id", I32, "", "`point_id` of that measurement in the `points`, `components` and "
               "`kernels` tables of this run."),
        Column("component_time_source", S, "", "`kernel` (profiler kernel time) or `wall` (marker spans)."),
        *_COMPONENT_COLUMNS,
        Column("eval_tokens", I64, "tokens", "Held-out tokens scored for perplexity."),
        Column("eval_nll", F64, "nats/token", "Mean next-token negative log-likelihood on the held-out text."),
        Column("perplexity", F64, "", "exp(eval_nll), per byte token."),
        Column("eval_window_nll", pa.list_(F64), "nats/token", "Mean NLL of each held-out window, in order (the "
               "same windows for every variant: paired differences between two variants give the noise of "
               "their perplexity comparison, see `mambaprof report`'s score winners)."),
        Column("perplexity_delta_pct", F64, "%", "Change of perplexity vs the unpruned model."),
        Column("selective_copy_acc_pct", F64, "%", "Teacher-forced accuracy on synthetic selective copying "
               "(chance 6.25)."),
        Column("selective_copy_acc_delta_pp", F64, "percentage points", "Change vs the unpruned model."),
        Column("assoc_recall_acc_pct", F64, "%", "Teacher-forced accuracy on synthetic associative recall "
               "(chance 10)."),
        Column("assoc_recall_acc_delta_pp", F64, "percentage points", "Change vs the unpruned model."),
        Column("accuracy_caveat", S, "", "Why the accuracy deltas of this run measure nothing, in words: the "
               "unpruned model has random weights, its perplexity is at chance (>= 128 per byte, within ln 2 of "
               "a uniform guess over 256 bytes) or a task's accuracy is within 3 binomial standard errors of "
               "chance (mambaprof.evaluation.chance); null when the model has learned. Same on every row."),
        Column("note", S, "", "Caveats of the timing (e.g. decode not measured and why)."),
    ),
))
