"""Hardware-signal tables: NVML samples, energy, memory, I/O, Nsight Compute counters, collector status.

Every table starts with the identity columns, and per-component tables carry `layer` and
`component`, so a report joins them to `points` on (run_id, rank, point_id) and to `components`
on (run_id, rank, point_id, layer, component). Host timestamps (`host_ns`, `start_ns`) are
`time.perf_counter_ns()` (CLOCK_MONOTONIC on Linux) of the process that wrote the run, the clock
every hardware collector marks its windows on; `unix_ns` is the wall clock for joining with
outside logs. See docs/HARDWARE.md for how each number is measured.
"""

from __future__ import annotations

import pyarrow as pa

from mambaprof.storage.schema.base import Column, Table, register
from mambaprof.storage.schema.core import identity_columns

S, I32, I64, F64 = pa.string(), pa.int32(), pa.int64(), pa.float64()


def _where() -> tuple[Column, ...]:
    return (
        Column("layer", I32, "", "Layer (as in `components`); -1 for model-level components.", nullable=False),
        Column("component", S, "", "Component (as in `components`).", nullable=False),
    )


NVML_SAMPLES = register(Table(
    name="nvml_samples",
    doc="Samples of the GPU's NVML counters taken by a background thread while the point ran (every "
        "`interval` ms; see `collector_status` for the interval). A metric whose driver sample period "
        "NVML exposes (power, utilisation) is read no faster than that period and is null in the samples "
        "in between; a metric the GPU does not support is null throughout. No rows when NVML is "
        "unavailable: `collector_status` says why.",
    key=("run_id", "rank", "point_id", "host_ns"),
    columns=identity_columns() + (
        Column("host_ns", I64, "ns", "Host monotonic time of the sample (time.perf_counter_ns).", nullable=False),
        Column("unix_ns", I64, "ns", "Wall-clock time of the sample, ns since the Unix epoch."),
        Column("phase", S, "", "What the point was doing: warm-up, timing, profiler, a collector's phase "
               "(`memory`, `io/upload`, `io/forward`, `io/download`, `energy/idle`, `energy/forward`, "
               "`energy/L3/ssm_scan`, ...)."),
        Column("gpu_index", I32, "", "NVML index of the GPU sampled."),
        Column("power_w", F64, "W", "Board power draw (nvmlDeviceGetPowerUsage; averaged by the driver "
               "over its own window, 1 s on many recent GPUs)."),
        Column("power_instant_w", F64, "W", "Instantaneous power (NVML field POWER_INSTANT) where supported."),
        Column("energy_mj", I64, "mJ", "Total-energy counter (nvmlDeviceGetTotalEnergyConsumption): mJ since "
               "the driver loaded; differences give energy over an interval."),
        Column("gpu_util_pct", F64, "%", "Share of the driver's last sample period in which a kernel ran."),
        Column("mem_util_pct", F64, "%", "Share of the driver's last sample period in which device memory "
               "was read or written."),
        Column("memory_used_bytes", I64, "bytes", "Device memory in use (all processes)."),
        Column("memory_total_bytes", I64, "bytes", "Device memory in total."),
        Column("sm_clock_mhz", F64, "MHz", "SM clock."),
        Column("mem_clock_mhz", F64, "MHz", "Memory clock."),
        Column("temperature_c", F64, "degC", "GPU die temperature."),
        Column("pcie_tx_bytes_per_s", F64, "bytes/s", "PCIe transmit (device to host) throughput: from the "
               "cumulative PCIe byte counter between consecutive samples where the GPU has it, else "
               "nvmlDeviceGetPcieThroughput (a 20 ms window, read at most every 100 ms)."),
        Column("pcie_rx_bytes_per_s", F64, "bytes/s", "PCIe receive (host to device) throughput, as above."),
        Column("throttle_reasons", I64, "", "Clock event (throttle) reason bitmask (nvmlDeviceGetCurrent"
               "ClocksEventReasons)."),
        Column("throttle_names", S, "", "The bitmask's active reasons by name, comma-separated "
               "(e.g. `gpu_idle`, `sw_power_cap`, `hw_thermal`)."),
    ),
))

ENERGY = register(Table(
    name="energy",
    doc="Energy from the GPU's total-energy counter over windows long enough to resolve it. Scope "
        "`forward`: the model's own forward repeated back to back (layer -1, component `forward`). Scope "
        "`component`: each component's kernels of one split forward, captured into CUDA graphs and replayed "
        "back to back, for one representative Mamba layer (`layers_represented` identical layers share its "
        "numbers) and the model-level components. A window shorter than `min_updates` counter updates, or "
        "a component whose kernels could not be captured, has status `unresolved` / `capture_failed` and "
        "null energy: never an invented number. Component rows exist in split mode only.",
    key=("run_id", "rank", "point_id", "layer", "component"),
    columns=identity_columns() + _where() + (
        Column("scope", S, "", "`forward` (whole forward) or `component` (one component's kernels)."),
        Column("status", S, "", "`resolved`, `unresolved` (see reason), `capture_failed` (the component's "
               "kernels could not be captured into a CUDA graph: reason), `empty` (no kernels to replay)."),
        Column("reason", S, "", "Why the energy is null or doubtful."),
        Column("executions", I64, "", "Back-to-back executions (forwards or graph replays) inside the window."),
        Column("window_ms", F64, "ms", "Host time between the two counter reads."),
        Column("exec_ms", F64, "ms", "GPU time per execution: CUDA events from the first execution's start to "
               "the last one's end, / executions (includes any launch gaps between executions)."),
        Column("busy_pct", F64, "%", "executions x exec_ms / window_ms: the share of the window covered by the "
               "executions on the GPU (the rest is counter reads and synchronisation)."),
        Column("counter_update_ms", F64, "ms", "Measured update period of the energy counter on this GPU."),
        Column("counter_updates", F64, "", "window_ms / counter_update_ms: counter updates the window spans."),
        Column("energy_mj", F64, "mJ", "Device energy per execution: counter difference / executions."),
        Column("energy_rel_err", F64, "", "Bound on the counter's quantisation error relative to energy_mj "
               "(counter_update_ms / window_ms)."),
        Column("power_w", F64, "W", "Average power over the window (counter difference / window)."),
        Column("idle_power_w", F64, "W", "Average power of the idle GPU measured just before, same method."),
        Column("dynamic_energy_mj", F64, "mJ", "Energy above idle per execution: (counter difference - "
               "idle_power_w x window) / executions."),
        Column("tokens", I64, "tokens", "Tokens per execution (batch x seqlen)."),
        Column("energy_per_token_j", F64, "J", "energy_mj / 1000 / tokens."),
        Column("layers_represented", I32, "", "Mamba layers with the same mixer class and shape as this "
               "representative layer (1 for model-level rows)."),
        Column("capture_check", S, "", "`pass` when the forward with captured segments reproduced the "
               "original output (the graphs compute what the model computes), `fail`, or null."),
        Column("note", S, "", "Caveats (replays back to back without launch gaps, fused components, ...)."),
    ),
))

MEMORY = register(Table(
    name="memory",
    doc="Memory per point x layer x component, measured around the component windows of one split forward: "
        "the net allocation change and the peak above the window's start. GPU: torch.cuda allocator "
        "statistics. CPU: the profiler's allocation events. Decode-cache sizes are attached to the "
        "component that would hold them (recurrent state: ssm_scan, conv state: conv1d).",
    key=("run_id", "rank", "point_id", "layer", "component"),
    columns=identity_columns() + _where() + (
        Column("source", S, "", "`cuda_allocator` (torch.cuda memory statistics) or `profiler` (allocation "
               "events of torch.profiler with profile_memory, CPU)."),
        Column("windows", I32, "", "Windows of this component in the forward (several for `residual`)."),
        Column("alloc_delta_bytes", I64, "bytes", "Net change of allocated memory over the component's "
               "windows (what it leaves allocated: its outputs minus what it freed)."),
        Column("peak_delta_bytes", I64, "bytes", "Largest allocated memory inside a window above the "
               "allocated memory at that window's start (its transient working set)."),
        Column("allocated_at_start_bytes", I64, "bytes", "Allocated memory when the component's first window "
               "opened (GPU only: includes weights and live activations)."),
        Column("cache_state_bytes", I64, "bytes", "Decode-cache memory this component would hold per layer "
               "for this batch: recurrent SSM state (ssm_scan: B x d_inner x d_state, Mamba-2: B x heads x "
               "headdim x d_state) or conv state (conv1d: B x conv channels x d_conv), at the model dtype."),
    ),
))

MEMORY_POINTS = register(Table(
    name="memory_points",
    doc="Memory per point: weights, the original forward's peak and activations, and the decode-cache "
        "sizes summed over layers.",
    key=("run_id", "rank", "point_id"),
    columns=identity_columns() + (
        Column("source", S, "", "`cuda_allocator` or `profiler` (see `memory`)."),
        Column("weights_bytes", I64, "bytes", "Parameters (shared tensors counted once)."),
        Column("buffers_bytes", I64, "bytes", "Registered buffers."),
        Column("inputs_bytes", I64, "bytes", "Tensors passed to the model for this point."),
        Column("output_bytes", I64, "bytes", "The model output's main tensor (logits / hidden states)."),
        Column("allocated_before_bytes", I64, "bytes", "Allocated device memory before the forward (GPU)."),
        Column("peak_allocated_bytes", I64, "bytes", "Peak allocated device memory during one original "
               "forward (GPU; null on CPU, which has no allocator statistics)."),
        Column("peak_reserved_bytes", I64, "bytes", "Peak memory reserved by the caching allocator during "
               "the forward (GPU)."),
        Column("activation_peak_bytes", I64, "bytes", "Peak memory allocated by the forward above what was "
               "allocated before it (GPU: allocator statistics; CPU: profiler allocation events)."),
        Column("recurrent_state_bytes", I64, "bytes", "SSM state a decode cache would hold, all layers."),
        Column("conv_state_bytes", I64, "bytes", "Conv state a decode cache would hold, all layers."),
        Column("timeline_path", S, "", "Memory snapshot/timeline written for this point with "
               "--memory-timeline, relative to the run directory (GPU: torch.cuda.memory snapshot pickle for "
               "pytorch.org/memory_viz; CPU: profiler memory timeline JSON)."),
        Column("note", S, "", "Why a value is null, and other caveats."),
    ),
))

IO = register(Table(
    name="io",
    doc="Host<->device traffic of one explicit run of the point by phase: `upload` (the inputs, from host "
        "tensors to the device), `forward` (the model's own forward; copies it makes itself), `download` "
        "(the output's main tensor back to the host). Copies and bytes come from the profiler's memcpy "
        "events; PCIe bytes from the GPU's PCIe counters and NVML samples where available.",
    key=("run_id", "rank", "point_id", "phase"),
    columns=identity_columns() + (
        Column("phase", S, "", "`upload`, `forward` or `download`.", nullable=False),
        Column("phase_ms", F64, "ms", "Host time of the phase, ending with a device synchronisation."),
        Column("h2d_bytes", I64, "bytes", "Bytes copied host to device (memcpy events)."),
        Column("d2h_bytes", I64, "bytes", "Bytes copied device to host."),
        Column("d2d_bytes", I64, "bytes", "Bytes copied device to device."),
        Column("h2d_count", I32, "", "Host-to-device copies."),
        Column("d2h_count", I32, "", "Device-to-host copies."),
        Column("d2d_count", I32, "", "Device-to-device copies."),
        Column("memcpy_us", F64, "us", "Device time of all copies of the phase."),
        Column("h2d_bytes_per_s", F64, "bytes/s", "h2d_bytes over the device time of those copies."),
        Column("d2h_bytes_per_s", F64, "bytes/s", "d2h_bytes over the device time of those copies."),
        Column("pcie_tx_bytes", I64, "bytes", "Change of the GPU's PCIe transmit byte counter over the phase "
               "(null where the GPU has no such counter)."),
        Column("pcie_rx_bytes", I64, "bytes", "Change of the GPU's PCIe receive byte counter over the phase."),
        Column("pcie_tx_bytes_per_s_mean", F64, "bytes/s", "Mean PCIe transmit throughput of the NVML samples "
               "taken during the phase (null when none fell inside it)."),
        Column("pcie_rx_bytes_per_s_mean", F64, "bytes/s", "Mean PCIe receive throughput of those samples."),
        Column("nvml_samples", I32, "", "NVML samples inside the phase."),
        Column("note", S, "", "Caveats, e.g. no host-device transfers on a CPU run."),
    ),
))

HW_COUNTERS = register(Table(
    name="hw_counters",
    doc="Nsight Compute (ncu) counters per kernel of one split forward, run under `ncu` in a separate "
        "process with `--ncu`. Kernels are attributed to components by the NVTX ranges the split forward "
        "pushes (one per component window). Sum per component and compare `dram_bytes` with "
        "`components.bytes_min` to see which component moves more memory than it must.",
    key=("run_id", "rank", "point_id", "seq"),
    columns=identity_columns() + _where() + (
        Column("seq", I32, "", "Order of the kernel within the profiled forward.", nullable=False),
        Column("ncu_id", I32, "", "ncu's result ID of the kernel."),
        Column("name", S, "", "Kernel name as ncu reports it."),
        Column("range_name", S, "", "Innermost mambaprof NVTX range of the launch (null outside all ranges)."),
        Column("attribution", S, "", "`nvtx` (range), `name_rule` (kernel-name rules inside an unsplit mixer) "
               "or `none` (outside every range: component `other`)."),
        Column("dram_read_bytes", F64, "bytes", "dram__bytes_read.sum: bytes read from device memory."),
        Column("dram_write_bytes", F64, "bytes", "dram__bytes_write.sum: bytes written to device memory."),
        Column("dram_bytes", F64, "bytes", "dram_read_bytes + dram_write_bytes."),
        Column("sm_throughput_pct", F64, "%", "sm__throughput.avg.pct_of_peak_sustained_elapsed."),
        Column("achieved_occupancy_pct", F64, "%", "sm__warps_active.avg.pct_of_peak_sustained_active."),
        Column("duration_us", F64, "us", "gpu__time_duration.sum under ncu (clocks not locked, caches "
               "flushed before each kernel)."),
    ),
))

COLLECTOR_STATUS = register(Table(
    name="collector_status",
    doc="Whether each hardware collector measured, and why not when it did not (no GPU, no NVML, NVML "
        "failing mid-run, no ncu, ...). One run-level row per collector (`point_id` null), plus per-point "
        "rows where a point's measurement differs.",
    key=("run_id", "rank", "collector", "point_id"),
    columns=identity_columns(per_point=False) + (
        Column("collector", S, "", "`nvml` (run-level and, when NVML failed during a point, that point), "
               "`energy` or `ncu` (per point); `memory` or `io` only for a point where they failed.",
               nullable=False),
        Column("point_id", I32, "", "Sweep point the row is about; null for the whole run."),
        Column("status", S, "", "`ok`, `unavailable` (nothing measured: reason), `partial` (some values "
               "missing: reason) or `failed` (stopped by an error: reason)."),
        Column("reason", S, "", "One line: why the collector did not measure everything."),
        Column("details_json", S, "", "Facts about the collection (JSON): intervals, update periods, sample "
               "counts, unsupported metrics, ncu command..."),
    ),
))
