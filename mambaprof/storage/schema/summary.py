"""Summary tables written by `mambaprof report RUN --parquet DIR` (one file each: DIR/<table>.parquet).

They are computed from a run directory's raw tables by `mambaprof.reports` and are what a hardware
team reads without this package. Time columns use the run's *time basis*: `kernel` (summed device
kernel durations; the default on GPU) or `wall` (span between the component's markers; the default
on CPU, where operators run synchronously on the host), named in `time_basis`.
"""

from __future__ import annotations

import pyarrow as pa

from mambaprof.storage.schema.base import Column, Table, register
from mambaprof.storage.schema.core import identity_columns

S, I32, I64, F64, B = pa.string(), pa.int32(), pa.int64(), pa.float64(), pa.bool_()

_BASIS = Column("time_basis", S, "", "`kernel` (summed kernel durations) or `wall` (marker spans): which time "
                "`time_ms` and every rate derived from it use.")


def _times(summed: bool) -> tuple[Column, ...]:
    """wall_ms, kernel_ms, time_basis, time_ms: per layer, or summed over a family's layers."""
    over = "Sum over layers of the mean" if summed else "Mean"
    return (
        Column("wall_ms", F64, "ms", f"{over} span per forward (null in as-is mode)."),
        Column("kernel_ms", F64, "ms", f"{over} summed kernel duration per forward."),
        _BASIS,
        Column("time_ms", F64, "ms", "`kernel_ms` or `wall_ms`, per `time_basis`."),
    )


def _counts() -> tuple[Column, ...]:
    """Closed-form FLOPs and minimum bytes per forward."""
    return (
        Column("flops", F64, "FLOP", "Closed-form floating-point operations per forward."),
        Column("bytes_min", F64, "bytes", "Closed-form minimum memory traffic per forward."),
    )


def _rates() -> tuple[Column, ...]:
    """Achieved compute and bandwidth on time_ms."""
    return (
        Column("achieved_tflop_per_s", F64, "TFLOP/s", "flops / time_ms."),
        Column("achieved_gb_per_s", F64, "GB/s", "bytes_min / time_ms (1 GB = 1e9 bytes)."),
    )


def _component_hardware() -> tuple[Column, ...]:
    """Hardware columns per component (run tables `hw_counters`, `energy`, `memory`); null without them."""
    return (
        Column("bytes_measured", F64, "bytes", "DRAM bytes read + written per forward, measured by Nsight Compute "
               "(run table `hw_counters`, summed over the family's kernels); null without it."),
        Column("bytes_measured_over_min", F64, "", "bytes_measured / bytes_min: how much more memory traffic the "
               "kernels make than the closed-form minimum."),
        Column("energy_j", F64, "J", "Energy per forward from the GPU energy counter (run table `energy`: one "
               "representative layer x the layers it stands for); null without it or where unresolved."),
        Column("mem_peak_delta_bytes", F64, "bytes", "Largest transient allocation of the component above the "
               "memory allocated when it started, max over layers (run table `memory`)."),
        Column("cache_state_bytes", F64, "bytes", "Decode-cache memory this component would hold, summed over the "
               "family's layers (recurrent state: ssm_scan; conv state: conv1d; run table `memory`)."),
    )


def _point_hardware() -> tuple[Column, ...]:
    """Hardware columns per point (run tables `energy`, `memory_points`); null without them."""
    return (
        Column("energy_j", F64, "J", "Energy of one forward of the model (run table `energy`, scope forward); "
               "null without it or where unresolved."),
        Column("energy_per_token_j", F64, "J", "energy_j / tokens."),
        Column("mem_peak_bytes", F64, "bytes", "Peak allocated device memory during the forward (run table "
               "`memory_points`)."),
        Column("mem_activation_peak_bytes", F64, "bytes", "Peak memory the forward allocated above what was "
               "allocated before it."),
        Column("cache_state_bytes", F64, "bytes", "Decode-cache memory (recurrent + conv state) of all layers."),
    )


SUMMARY_COMPONENTS = register(Table(
    name="summary_components",
    doc="Summary (report --parquet): one row per point x family x component, summed over the layers of that "
        "family. Family `model` holds the components outside the blocks (embedding, final norm, lm_head, other).",
    key=("run_id", "rank", "point_id", "family", "component"),
    columns=identity_columns() + (
        Column("family", S, "", "`mamba1`, `mamba2` (the layers of that mixer family) or `model` (layer -1)."),
        Column("component", S, "", "Component of the taxonomy (see README)."),
        Column("n_layers", I32, "", "Layers summed into this row."),
        *_times(summed=True),
        Column("share_of_block_pct", F64, "%", "time_ms / the family's block time (all its mixer, norm and "
               "residual components) x 100; null for family `model`."),
        Column("share_of_forward_pct", F64, "%", "time_ms / the whole forward's time on the same basis x 100."),
        Column("kernel_of_wall_pct", F64, "%", "kernel_ms / wall_ms x 100: how busy the device was during the "
               "component's span (low: launch gaps or host overhead)."),
        Column("kernel_count", I64, "", "Kernels (GPU) or leaf operators (CPU) per forward."),
        *_counts(),
        Column("intensity_flop_per_byte", F64, "FLOP/byte", "flops / bytes_min (arithmetic intensity)."),
        *_rates(),
        Column("peak_tflop_per_s", F64, "TFLOP/s", "Device peak for the run's dtype (see `peaks_source` in "
               "summary_run); null when unknown."),
        Column("peak_gb_per_s", F64, "GB/s", "Device peak memory bandwidth; null when unknown."),
        Column("ridge_flop_per_byte", F64, "FLOP/byte", "peak_tflop_per_s / peak_gb_per_s: the roofline's ridge."),
        Column("roof_pct", F64, "%", "achieved / attainable x 100, attainable = min(peak FLOP/s, intensity x "
               "peak bandwidth). Above 100 means the time is under-counted."),
        Column("verdict", S, "", "`memory-bound` (intensity below the ridge), `compute-bound`, or `unknown` "
               "(no peaks, or no FLOPs/bytes)."),
        *_component_hardware(),
        Column("note", S, "", "Caveats carried from the run (e.g. fused components)."),
    ),
))

SUMMARY_LAYERS = register(Table(
    name="summary_layers",
    doc="Summary (report --parquet): one row per point x layer x component; the per-layer view of "
        "summary_components (same definitions, one layer per row).",
    key=("run_id", "rank", "point_id", "layer", "component"),
    columns=identity_columns() + (
        Column("layer", I32, "", "Mamba layer index; -1 outside the blocks."),
        Column("family", S, "", "`mamba1`, `mamba2` or `model`."),
        Column("component", S, "", "Component of the taxonomy."),
        *_times(summed=False),
        Column("share_of_layer_pct", F64, "%", "time_ms / the layer's block time x 100; null for layer -1."),
        *_counts(),
        *_rates(),
    ),
))

SUMMARY_POINTS = register(Table(
    name="summary_points",
    doc="Summary (report --parquet): one row per sweep point: status, whole-forward times, the regime "
        "(launch-bound or not) and throughput.",
    key=("run_id", "rank", "point_id"),
    columns=identity_columns() + (
        Column("tokens", I64, "tokens", "batch x seqlen."),
        Column("status", S, "", "`ok`, `oom` or `error`."),
        Column("error", S, "", "Error of a failed point."),
        Column("wall_ms", F64, "ms", "Median time of the model's own forward (points.original_ms_median)."),
        Column("kernel_ms", F64, "ms", "Summed kernel (or CPU leaf-operator) time of one forward "
               "(points.forward_kernel_ms)."),
        Column("idle_pct", F64, "%", "(1 - kernel_ms / wall_ms) x 100, floored at 0: the share of the forward with "
               "no kernel running (launch gaps, host overhead)."),
        Column("regime", S, "", "`launch-bound` (wall >= 2 x kernel time), `mixed` (idle 20-50%) or "
               "`device-bound`."),
        Column("advice", S, "", "What would help a launch-bound point (null otherwise)."),
        Column("tokens_per_s", F64, "tokens/s", "tokens / wall_ms."),
        Column("split_vs_original_pct", F64, "%", "Cost of the component-split forward with its markers vs the "
               "original."),
        Column("split_bare_vs_original_pct", F64, "%", "Cost of the component-split forward without markers vs "
               "the original: the split's fidelity (null for runs before schema 3)."),
        Column("original_spread_pct", F64, "%", "(slowest - fastest timed repeat of the original forward) / its "
               "median x 100: the reference's own noise; a split-vs-original difference inside it cannot be told "
               "from noise (schema 4 on)."),
        Column("fidelity_pairs", I32, "", "(original, bare split) pairs timed back to back (points.fidelity_pairs; "
               "schema 5 on)."),
        Column("split_bare_paired_pct", F64, "%", "The split's fidelity as the median over those pairs of the split "
               "forward without markers vs the original (points.split_bare_paired_pct; budget within 5)."),
        Column("split_bare_ci_low_pct", F64, "%", "Lower end of its confidence interval (95% from 6 pairs on)."),
        Column("split_bare_ci_high_pct", F64, "%", "Upper end of its confidence interval."),
        Column("fidelity_verdict", S, "", "`within` (the interval lies inside ±5%), `outside` (wholly beyond a "
               "bound) or `undecided` (it straddles a bound: the host's noise is too large to tell); null before "
               "schema 5."),
        Column("output_check", S, "", "`pass`, `fail` or `skipped` (split output vs original)."),
        Column("attributed_kernel_pct", F64, "%", "Kernel time attributed to a named component."),
        Column("host_noisy", B, "", "original_spread_pct above 50: this point's repeats were disturbed (null with "
               "one repeat; schema 7 on)."),
        *_point_hardware(),
    ),
))

SUMMARY_SCALING = register(Table(
    name="summary_scaling",
    doc="Summary (report --parquet): per family x batch x component, the least-squares fit "
        "log(time_ms) = log(prefactor_ms) + exponent x log(seqlen) over the sweep's ok points. Rows of kind "
        "`group` are sums: `block` (all block components) and `projections` (in_proj + ssm_params + out_proj).",
    key=("run_id", "family", "batch", "component"),
    columns=identity_columns(per_point=False) + (
        Column("family", S, "", "`mamba1`, `mamba2` or `model`."),
        Column("batch", I32, "sequences", "Batch size the fit is over."),
        Column("component", S, "", "Component, or `block` / `projections` for groups."),
        Column("kind", S, "", "`component` or `group`."),
        _BASIS,
        Column("n_points", I32, "", "Sequence lengths used (those with time > 0)."),
        Column("seqlen_min", I32, "tokens", "Shortest sequence length fitted."),
        Column("seqlen_max", I32, "tokens", "Longest sequence length fitted."),
        Column("time_ms_at_min", F64, "ms", "Measured time at seqlen_min."),
        Column("time_ms_at_max", F64, "ms", "Measured time at seqlen_max."),
        Column("exponent", F64, "", "Fitted log-log slope: 1 is linear in sequence length, 2 quadratic."),
        Column("prefactor_ms", F64, "ms", "Fitted time at seqlen 1 (exp of the intercept)."),
        Column("r2", F64, "", "Coefficient of determination of the fit in log space (null with 2 points)."),
        Column("exponent_theil_sen", F64, "", "Theil-Sen exponent: the median of the log-log slopes between every "
               "pair of lengths (robust to one outlying point; schema 7 on)."),
        Column("exponent_loo_min", F64, "", "Smallest least-squares exponent with one length left out (null with "
               "fewer than 3 lengths)."),
        Column("exponent_loo_max", F64, "", "Largest least-squares exponent with one length left out."),
        Column("fit_flag", S, "", "Why the report states no exponent for this fit: `is negative`, `rests on two "
               "lengths` or `is carried by one point` (a leave-one-out exponent more than 0.25 from `exponent`); "
               "null when the fit is trusted."),
    ),
))

SUMMARY_CROSSOVER = register(Table(
    name="summary_crossover",
    doc="Summary (report --parquet): per family x batch, where ssm_scan time overtakes the projections "
        "(in_proj + ssm_params + out_proj).",
    key=("run_id", "family", "batch"),
    columns=identity_columns(per_point=False) + (
        Column("family", S, "", "`mamba1` or `mamba2`."),
        Column("batch", I32, "sequences", "Batch size."),
        _BASIS,
        Column("status", S, "", "`measured` (crossed within the sweep; log-log interpolation), `always` (scan "
               "above the projections at every length), `extrapolated` (beyond the sweep, from the fitted "
               "exponents), `never` (below everywhere and growing no faster), `unknown` (too few points)."),
        Column("crossover_seqlen", F64, "tokens", "Sequence length where scan time = projections time "
               "(null for always/never/unknown)."),
        Column("scan_over_proj_at_max", F64, "", "ssm_scan time / projections time at the longest length."),
    ),
))

SUMMARY_FINDINGS = register(Table(
    name="summary_findings",
    doc="Summary (report --parquet): the findings the report states, as sentences with the number behind "
        "each (reused by `mambaprof study`).",
    key=("run_id", "kind", "family", "batch"),
    columns=identity_columns(per_point=False) + (
        Column("kind", S, "", "`scan`, `dominant`, `crossover`, `regime`, `peaks`, `roofline`, `energy`, "
               "`memory`, `dram`, `fidelity`, `status`."),
        Column("family", S, "", "Family the finding is about (null for run-wide findings)."),
        Column("batch", I32, "sequences", "Batch size it is about (null for run-wide findings)."),
        Column("seqlen", I32, "tokens", "Sequence length it is about (null where none)."),
        Column("component", S, "", "Component it is about (null where none)."),
        Column("value", F64, "", "The headline number of the sentence (its unit is in `unit`)."),
        Column("unit", S, "", "Unit of `value`, e.g. `%`, `tokens`, `ms`."),
        Column("text", S, "", "The sentence."),
    ),
))

SUMMARY_RUN = register(Table(
    name="summary_run",
    doc="Summary (report --parquet): one row describing the run and how the summary was computed.",
    key=("run_id",),
    columns=identity_columns(per_point=False) + (
        Column("label", S, "", "Short name of the run (model reference or directory name)."),
        Column("model_ref", S, "", "Preset, checkpoint or model.py of the run."),
        Column("model_family", S, "", "`mamba1`, `mamba2` or `mixed`."),
        Column("n_layers", I32, "", "Mamba layers."),
        Column("device_name", S, "", "GPU or CPU model."),
        Column("dtype", S, "", "Compute dtype."),
        Column("mode", S, "", "`split` or `as-is`."),
        Column("status", S, "", "Run status as a reader sees it (a `running` record whose writer is gone "
               "reads `incomplete`)."),
        _BASIS,
        Column("peaks_source", S, "", "Where the peaks came from: a datasheet entry (with its URL), a "
               "`mambaprof calibrate` measurement, a --peaks file, or `none`."),
        Column("peak_tflop_per_s", F64, "TFLOP/s", "Peak compute for the run's dtype (null when unknown)."),
        Column("peak_gb_per_s", F64, "GB/s", "Peak memory bandwidth (null when unknown)."),
        Column("n_points", I32, "", "Points in the run."),
        Column("n_points_ok", I32, "", "Points with status ok."),
        Column("host_loaded", B, "", "The run was taken on a loaded host, judged from its own repeats: the original "
               "forward spread more than 50% (slowest - fastest over median) at half the points with two repeats, "
               "or more than 200% at one; null when no point has two repeats (schema 7 on)."),
        Column("host_load", S, "", "That verdict in words, with the spreads it rests on."),
        Column("mambaprof_version", S, "", "Version of mambaprof that wrote the summary."),
    ),
))

SUMMARY_PRUNING = register(Table(
    name="summary_pruning",
    doc="Summary of a `mambaprof prune` run (report --parquet; such a run's per-variant attribution is in "
        "DIR/<variant>/summary_*.parquet): one row per variant x prefill sequence length, the what-if's "
        "speed, memory and accuracy with deltas vs the unpruned model (definitions as in the run table "
        "`pruning`), which score wins at the variant's ratio, and the block / SSM-scan time of the variant's "
        "own component measurement.",
    key=("run_id", "variant_id", "seqlen"),
    columns=identity_columns(per_point=False) + (
        Column("variant_id", I32, "", "Index of the variant (0: the unpruned reference).", nullable=False),
        Column("variant", S, "", "`unpruned` or `score@ratio`."),
        Column("score", S, "", "State score: delta, energy, magnitude, random, or `none` (unpruned)."),
        Column("ratio", F64, "fraction", "Requested share of state indices removed."),
        Column("per_layer", S, "", "`uniform` or `adaptive`."),
        Column("recover_steps", I32, "steps", "Recovery fine-tune steps (the unpruned model got the same)."),
        Column("d_state_kept_mean", F64, "states", "Mean kept d_state (N') over layers."),
        Column("states_removed_pct", F64, "%", "Share of all state indices removed."),
        Column("device", S, "", "Device of the timing, e.g. `cuda:0` or `cpu`."),
        Column("dtype", S, "", "Serving dtype of evaluation and timing."),
        Column("batch", I32, "sequences", "Batch of the prefill and decode timing."),
        Column("seqlen", I32, "tokens", "Prefill sequence length of the row."),
        Column("prefill_tokens_per_s", F64, "tokens/s", "Prefill throughput (batch x seqlen / median forward)."),
        Column("prefill_speedup", F64, "x", "Unpruned prefill time / this one (timed interleaved; > 1: faster)."),
        Column("decode_ms_per_token", F64, "ms", "Median latency of one decode step."),
        Column("decode_tokens_per_s", F64, "tokens/s", "Decode throughput."),
        Column("decode_speedup", F64, "x", "Unpruned decode latency / this one."),
        Column("peak_memory_bytes", I64, "bytes", "Weights + prefill activation peak (null on CPU)."),
        Column("peak_memory_delta_pct", F64, "%", "Change of peak_memory_bytes vs unpruned."),
        Column("cache_bytes", I64, "bytes", "Decode cache (conv + SSM states of all layers), measured."),
        Column("cache_bytes_delta_pct", F64, "%", "Change of cache_bytes vs unpruned."),
        Column("ssm_state_bytes_delta_pct", F64, "%", "Change of the closed-form SSM-state bytes vs unpruned."),
        Column("perplexity", F64, "", "Held-out perplexity per byte token."),
        Column("perplexity_delta_pct", F64, "%", "Change of perplexity vs unpruned."),
        Column("selective_copy_acc_pct", F64, "%", "Selective-copying accuracy (chance 6.25)."),
        Column("selective_copy_acc_delta_pp", F64, "percentage points", "Change vs unpruned."),
        Column("assoc_recall_acc_pct", F64, "%", "Associative-recall accuracy (chance 10)."),
        Column("assoc_recall_acc_delta_pp", F64, "percentage points", "Change vs unpruned."),
        Column("score_rank", I32, "", "Rank of this variant's perplexity among the scores at its ratio (1: lowest); "
               "null for the unpruned model."),
        Column("score_verdict", S, "", "`winner` (lowest perplexity, runner-up beyond noise), `tie` (lowest, or "
               "within noise of the lowest), `behind`, or `only` (one score at this ratio); null for unpruned."),
        Column("perplexity_vs_best_pct", F64, "%", "Perplexity over the best score's at the same ratio."),
        Column("tie_threshold_pct", F64, "%", "Noise of the comparison with the best (for the best: with the "
               "runner-up): 2 standard errors of the paired per-window NLL difference as a perplexity ratio, at "
               "least 0.1%; 1% for runs without per-window NLLs. Below it: a tie."),
        _BASIS,
        Column("block_ms", F64, "ms", "Time of the Mamba blocks (all their components, summed over layers) in "
               "the component measurement of this variant's shape; null in rows at other sequence lengths."),
        Column("block_delta_pct", F64, "%", "Change of block_ms vs the unpruned model's own measurement."),
        Column("ssm_scan_ms", F64, "ms", "Time of the SSM scan, summed over layers, in the same measurement."),
        Column("ssm_scan_delta_pct", F64, "%", "Change of ssm_scan_ms vs unpruned."),
        Column("accuracy_caveat", S, "", "Why the accuracy deltas measure nothing (the unpruned model has random "
               "weights, or its perplexity or task accuracy is at chance); null when it has learned."),
    ),
))
