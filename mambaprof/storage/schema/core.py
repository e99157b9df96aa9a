"""The trace pipeline's tables: runs, points, components, kernels."""

from __future__ import annotations

import pyarrow as pa

from mambaprof.storage.schema.base import Column, Table, register

S, I32, I64, F64, B = pa.string(), pa.int32(), pa.int64(), pa.float64(), pa.bool_()
TS = pa.timestamp("us", tz="UTC")


def identity_columns(per_point: bool = True) -> tuple[Column, ...]:
    """Columns every table starts with, so any two tables join on them."""
    cols = [
        Column("run_id", S, "", "Identifier of the run (also in `runs`).", nullable=False),
        Column("rank", I32, "", "torch.distributed rank that wrote the row (0 when not distributed).",
               nullable=False),
        Column("world_size", I32, "", "Number of ranks in the run (1 when not distributed).", nullable=False),
    ]
    if per_point:
        cols += [
            Column("point_id", I32, "", "Index of the sweep point within the run (see `points`).",
                   nullable=False),
            Column("device", S, "", "Device the point ran on, e.g. `cuda:0` or `cpu`."),
            Column("batch", I32, "sequences", "Batch size of the point."),
            Column("seqlen", I32, "tokens", "Sequence length of the point."),
            Column("dtype", S, "", "Compute dtype of the model: float32, bfloat16 or float16."),
        ]
    return tuple(cols)


RUNS = register(Table(
    name="runs",
    doc="One row per run: what was run, how, where, with which software, and how it ended. "
        "Written when the run starts (status `running`) and rewritten when it ends.",
    key=("run_id",),
    columns=identity_columns(per_point=False) + (
        Column("schema_version", I32, "", "Version of this schema the run was written with.", nullable=False),
        Column("mambaprof_version", S, "", "mambaprof package version."),
        Column("status", S, "", "`running`, `complete` (every point ok), `incomplete` (some points "
               "oom/error, or the run was interrupted), `failed` (no point finished)."),
        Column("status_reason", S, "", "Why the run is not complete (interrupt, signal, errors), else null."),
        Column("command", S, "", "The command line that started the run."),
        Column("cwd", S, "", "Working directory of the command."),
        Column("hostname", S, "", "Host name of the machine."),
        Column("pid", I64, "", "Process id of the writer (to tell a live run from a killed one)."),
        Column("started_at", TS, "UTC", "When the run started."),
        Column("finished_at", TS, "UTC", "When the run ended (null while running)."),
        Column("model_source", S, "", "`default` (built-in), `preset`, `hf` (checkpoint directory) or `file` "
               "(model.py)."),
        Column("model_ref", S, "", "Preset name, checkpoint directory or model.py path."),
        Column("model_class", S, "", "Python class of the root module."),
        Column("model_family", S, "", "`mamba1`, `mamba2`, `mixed` (both) — from the mixers found."),
        Column("n_layers", I32, "", "Number of Mamba mixers split component by component (one per Mamba layer)."),
        Column("n_model_layers", I32, "", "Number of layers of the model (children of its main layer list: Mamba, "
               "attention, MLP, MoE layers)."),
        Column("layer_kinds", S, "", "Kind of every layer in order, comma-separated (see `layers.layer_kind`)."),
        Column("asis_layers", pa.list_(I32), "", "Layers whose Mamba-like mixer no adapter could split: profiled "
               "as-is, kernels attributed by name rules (empty when every mixer was split)."),
        Column("asis_reasons", S, "", "Why each as-is layer could not be split, one `layer: reason` per line."),
        Column("n_params", I64, "parameters", "Parameters of the whole model."),
        Column("mixer_classes", S, "", "Mixer classes found, comma-separated (module.Class)."),
        Column("model_config_json", S, "", "The model's config (JSON), where it has one."),
        Column("config_json", S, "", "The trace configuration (JSON): seqlens, batches, repeats, modes."),
        Column("seqlens", pa.list_(I32), "tokens", "Sequence lengths of the sweep."),
        Column("batches", pa.list_(I32), "sequences", "Batch sizes of the sweep."),
        Column("dtype", S, "", "Compute dtype."),
        Column("mode", S, "", "`split` (component-split forward with markers) or `as-is` (the model's own "
               "forward, kernels attributed by name rules)."),
        Column("repeats", I32, "", "Timed forwards per point (after warm-up)."),
        Column("warmup", I32, "", "Untimed warm-up forwards per point."),
        Column("profile_repeats", I32, "", "Forwards recorded by torch.profiler per point (0: no profiler)."),
        Column("device", S, "", "Device of the run: `cpu` or `cuda:N`."),
        Column("device_name", S, "", "Device name (GPU model, or the CPU model)."),
        Column("device_count", I32, "", "GPUs visible to the process."),
        Column("device_memory_bytes", I64, "bytes", "Total memory of the GPU (null on CPU)."),
        Column("driver_version", S, "", "NVIDIA driver version (null without NVML)."),
        Column("cuda_version", S, "", "CUDA version torch was built with."),
        Column("torch_version", S, "", "torch version."),
        Column("transformers_version", S, "", "transformers version (null if absent)."),
        Column("mamba_ssm_version", S, "", "mamba_ssm version (null if absent or not importable)."),
        Column("causal_conv1d_version", S, "", "causal_conv1d version (null if absent)."),
        Column("triton_version", S, "", "triton version (null if absent)."),
        Column("python_version", S, "", "Python version."),
        Column("platform", S, "", "OS and architecture."),
        Column("n_points", I32, "", "Sweep points planned."),
        Column("n_points_ok", I32, "", "Points that finished with status `ok`."),
        Column("n_points_oom", I32, "", "Points that ran out of memory."),
        Column("n_points_error", I32, "", "Points that failed with another error."),
        Column("autotune_json", S, "", "Triton autotuning of the run (JSON), null when no Triton autotuner was "
               "loaded (CPU, models without Triton kernels) and in runs before this column: `policy` (`largest`: "
               "tuned once at the largest point by tokens before the first point; `first`: each kernel tuned at "
               "the first shape it ran; `per-point`: retuned at every point's shape), `tuned_at` ({batch, seqlen} "
               "the configs were tuned at: the tuning forward's point, or with `per-point` the last point; else "
               "null), `reason` (why `largest` tuned at a smaller point or not at all, and whether Triton's disk "
               "cache of autotuning was on; else null), `configs` (list of {kernel, key, config}: every config "
               "the autotuners held when the record was written, i.e. at the end of the run after the sweep; with "
               "`per-point` the last point's; distributed runs: rank 0's)."),
    ),
))

POINTS = register(Table(
    name="points",
    doc="One row per sweep point (batch x seqlen): its status, whole-forward timings of the original "
        "and the component-split forward, the output check, and kernel-time totals.",
    key=("run_id", "rank", "point_id"),
    columns=identity_columns() + (
        Column("tokens", I64, "tokens", "batch x seqlen."),
        Column("mode", S, "", "`split` or `as-is` (see `runs.mode`)."),
        Column("status", S, "", "`ok`, `oom` (out of memory; the sweep went on), `error` (see `error`)."),
        Column("error", S, "", "One-line error message when status is not ok."),
        Column("started_at", TS, "UTC", "When the point started."),
        Column("finished_at", TS, "UTC", "When the point finished."),
        Column("original_ms_median", F64, "ms", "Median time of the model's own forward (no markers): CUDA "
               "events around the forward on GPU, perf_counter on CPU."),
        Column("original_ms_min", F64, "ms", "Fastest repeat of the original forward."),
        Column("original_ms_max", F64, "ms", "Slowest repeat of the original forward."),
        Column("split_ms_median", F64, "ms", "Median time of the component-split forward with its markers, "
               "timed the same way, interleaved with the original in the same run."),
        Column("split_ms_min", F64, "ms", "Fastest repeat of the split forward."),
        Column("split_ms_max", F64, "ms", "Slowest repeat of the split forward."),
        Column("split_vs_original_pct", F64, "%", "(split_ms_median / original_ms_median - 1) x 100: the "
               "cost of the split forward with its markers (the split's own cost plus the markers' host cost, "
               "which shows 1:1 where the forward is launch-bound)."),
        Column("split_bare_ms_median", F64, "ms", "Median time of the component-split forward with no marker "
               "listener, timed the same way, interleaved with the other two (schema 3 on; null before)."),
        Column("split_bare_ms_min", F64, "ms", "Fastest repeat of the split forward without markers."),
        Column("split_bare_ms_max", F64, "ms", "Slowest repeat of the split forward without markers."),
        Column("split_bare_vs_original_pct", F64, "%", "(split_bare_ms_median / original_ms_median - 1) x 100: "
               "the split's own cost from the medians of the two series."),
        Column("fidelity_pairs", I32, "", "(original, bare split) pairs timed back to back: the planned repeats, "
               "then more while the paired difference below is less precise than ±1 percentage point and the "
               "point's time is not spent (schema 5 on; 0 before)."),
        Column("split_bare_paired_pct", F64, "%", "Median over the pairs of (split_bare_ms / original_ms - 1) x 100, "
               "each pair timed back to back: the fidelity of the split itself (budget: within 5), robust to host "
               "noise both forwards of a pair share (schema 5 on)."),
        Column("split_bare_ci_low_pct", F64, "%", "Lower end of the distribution-free confidence interval of "
               "split_bare_paired_pct (order statistics of the per-pair differences; 95% from 6 pairs on, "
               "[min, max] below)."),
        Column("split_bare_ci_high_pct", F64, "%", "Upper end of that interval."),
        Column("host_ms_median", F64, "ms", "Median host wall time of the original forward including the "
               "final synchronisation (what a user waits)."),
        Column("forward_kernel_ms", F64, "ms", "Median over profiled forwards of the summed duration of all "
               "device kernels (GPU) or operator self times (CPU) in one forward."),
        Column("attributed_kernel_pct", F64, "%", "Share of forward_kernel_ms attributed to a named component "
               "(anything but `other`)."),
        Column("kernel_count", I32, "", "Kernels (GPU) or operators with self time (CPU) per forward."),
        Column("output_check", S, "", "`pass`, `fail` (split output differs from the original beyond the "
               "tolerance) or `skipped`."),
        Column("output_max_abs_err", F64, "", "max |split - original| over the model output."),
        Column("output_rel_err", F64, "", "output_max_abs_err / max |original|."),
        Column("output_tolerance", F64, "", "Tolerance on output_rel_err for this dtype."),
        Column("repeats", I32, "", "Timed repeats of the three forwards (original, bare split, split with markers; "
               "fewer than the run's when the run's `point_seconds` cap stopped timing, never fewer than 3 then); "
               "the original and the bare split run `fidelity_pairs` times in all."),
        Column("warmup", I32, "", "Warm-up forwards of each kind."),
        Column("profile_repeats", I32, "", "Forwards recorded by the profiler."),
    ),
))

COMPONENTS = register(Table(
    name="components",
    doc="One row per point x layer x component: wall and kernel time statistics over repeats, closed-form "
        "FLOPs and minimum bytes. Layer -1 holds model-level components (embedding, final norm, lm_head, "
        "other). Wall time is the span between the component's markers (CUDA events on GPU: it includes "
        "launch gaps); kernel time is the summed duration of the kernels attributed to it.",
    key=("run_id", "rank", "point_id", "layer", "component"),
    columns=identity_columns() + (
        Column("layer", I32, "", "Index of the layer (order in the model's main layer list; for a pure Mamba "
               "model the order of the mixers); -1 outside the layers."),
        Column("component", S, "", "Component (see the taxonomy in README): in_proj, conv1d, ssm_params, "
               "ssm_scan, gating, out_proj, norm, residual, attention, mlp, moe, embedding, lm_head, "
               "communication, other."),
        Column("family", S, "", "`mamba1` or `mamba2` for Mamba layers, `none` for layers without a Mamba mixer, "
               "`model` for layer -1."),
        Column("mixer_class", S, "", "Class of the mixer of this layer (module.Class)."),
        Column("layer_kind", S, "", "Kind of the layer: its kinds joined by `+` (mamba1, mamba2, attention, mlp, "
               "moe; e.g. `mamba2+attention+mlp` for a Falcon-H1 layer); `model` for layer -1."),
        Column("wall_ms_median", F64, "ms", "Median span of the component per forward (null in as-is mode "
               "and where the component is fused into another)."),
        Column("wall_ms_mean", F64, "ms", "Mean span per forward."),
        Column("wall_ms_min", F64, "ms", "Smallest span per forward."),
        Column("wall_ms_max", F64, "ms", "Largest span per forward."),
        Column("wall_ms_std", F64, "ms", "Standard deviation of the span over repeats."),
        Column("wall_samples", I32, "", "Repeats behind the wall statistics."),
        Column("kernel_ms_median", F64, "ms", "Median over profiled forwards of the summed kernel duration."),
        Column("kernel_ms_mean", F64, "ms", "Mean summed kernel duration per forward."),
        Column("kernel_ms_min", F64, "ms", "Smallest summed kernel duration per forward."),
        Column("kernel_ms_max", F64, "ms", "Largest summed kernel duration per forward."),
        Column("kernel_samples", I32, "", "Profiled forwards behind the kernel statistics."),
        Column("kernel_count", I32, "", "Kernels (or CPU operators with self time) per forward in this component."),
        Column("attribution", S, "", "How kernels were attributed: `range` (record_function markers of the "
               "split forward) or `name_rule` (kernel-name rules, as-is mode)."),
        Column("flops", F64, "FLOP", "Closed-form floating-point operations of the component per forward."),
        Column("bytes_min", F64, "bytes", "Closed-form minimum memory traffic per forward: each input read "
               "once, each output written once."),
        Column("note", S, "", "Caveats, e.g. `fused into ssm_scan` for Mamba-1 gating on GPU."),
    ),
))

KERNELS = register(Table(
    name="kernels",
    doc="One row per kernel event (GPU) or operator (CPU, its self time) recorded by torch.profiler, with the "
        "component it is attributed to.",
    key=("run_id", "rank", "point_id", "iteration", "seq"),
    columns=identity_columns() + (
        Column("iteration", I32, "", "Which profiled forward (0-based) the kernel belongs to."),
        Column("seq", I32, "", "Order of the kernel within its forward (by start time)."),
        Column("name", S, "", "Kernel (or operator) name as the profiler reports it."),
        Column("layer", I32, "", "Layer the kernel is attributed to (-1: model level)."),
        Column("component", S, "", "Component the kernel is attributed to."),
        Column("attribution", S, "", "`range`, `name_rule` or `none` (outside every marker: component `other`)."),
        Column("range_name", S, "", "Innermost mambaprof marker enclosing the launch, e.g. `mambaprof/L3/ssm_scan`."),
        Column("device_type", S, "", "`cuda` for device kernels and copies, `cpu` for CPU operators."),
        Column("device_index", I32, "", "Device index."),
        Column("start_us", F64, "us", "Start, relative to the start of the forward's marker."),
        Column("duration_us", F64, "us", "Duration of the kernel (device time) or operator (self CPU time)."),
    ),
))


LAYERS = register(Table(
    name="layers",
    doc="One row per run x layer: what the layer holds, how its mixer was profiled, and the closed-form sizes of "
        "its decode cache (SSM and conv state, constant in sequence length; attention KV cache, growing with it). "
        "Written once when the run starts.",
    key=("run_id", "rank", "layer"),
    columns=identity_columns(per_point=False) + (
        Column("layer", I32, "", "Index of the layer (as in `components.layer`)."),
        Column("name", S, "", "Module name of the layer in the model."),
        Column("layer_kind", S, "", "Kinds joined by `+`: mamba1, mamba2, attention, mlp, moe."),
        Column("mixer_class", S, "", "Class of the Mamba mixer (module.Class), null without one."),
        Column("recipe", S, "", "Family recipe of the split forward (e.g. falcon_h1, jamba, derived, "
               "registered), null without one."),
        Column("profiled", S, "", "`split` (component-split forward), `as-is` (no adapter could split the "
               "mixer: kernel-name rules) or `none` (no Mamba mixer)."),
        Column("asis_reason", S, "", "Why the mixer was profiled as-is, else null."),
        Column("d_model", I32, "", "Width of the residual stream."),
        Column("ssm_state_elems_per_seq", I64, "elements", "SSM state of this layer's decode cache per sequence "
               "(Mamba-1: d_inner x d_state; Mamba-2: nheads x headdim x d_state); 0 without a mixer."),
        Column("conv_state_elems_per_seq", I64, "elements", "Conv state per sequence: conv channels x d_conv."),
        Column("kv_cache_elems_per_token", I64, "elements", "Attention KV cache per sequence per token of context: "
               "2 x kv heads x head_dim, summed over this layer's attention modules; 0 without attention."),
        Column("attention_heads", I32, "", "Query heads of the layer's attention (null without)."),
        Column("attention_kv_heads", I32, "", "Key/value heads of the layer's attention (null without)."),
        Column("attention_head_dim", I32, "", "Head size of the layer's attention (null without)."),
        Column("shared_attention", B, "", "The attention module is shared with other layers (Zamba2)."),
    ),
))
