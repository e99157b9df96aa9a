"""Print the hardware tables of run directories as plain text (device-run summary; reads Parquet only).

What the hardware collectors recorded, per run: points, collector status, NVML samples per point and phase,
energy, memory, I/O and Nsight Compute counters against the closed-form minimum bytes. The first line is
benchmarks/provenance.py's stamp of this summary.

    python benchmarks/summarize_hardware.py RUN_DIR [RUN_DIR ...]
"""

import sys
from pathlib import Path

import pandas as pd
from provenance import line, stamp

from mambaprof.storage.rundir import read_run_record, read_table

pd.set_option("display.width", 250)
pd.set_option("display.max_columns", 40)
pd.set_option("display.max_colwidth", 70)
pd.set_option("display.max_rows", 400)


def table(run, name, columns=None):
    frame = read_table(run, name).to_pandas()
    if columns is not None:
        frame = frame[[c for c in columns if c in frame.columns]]
    return frame


def show(title, frame):
    print(f"\n--- {title} ({len(frame)} rows)")
    if len(frame):
        print(frame.to_string(index=False))


def summarize(run):
    rec = read_run_record(run)
    print(f"\n===== {run}: {rec['model_ref']} on {rec['device_name']} ({rec['status']}"
          f"{': ' + rec['status_reason'] if rec['status_reason'] else ''}) run {rec['run_id']}")
    show("points", table(run, "points", ["point_id", "batch", "seqlen", "status", "error", "original_ms_median",
                                         "split_ms_median", "split_vs_original_pct", "forward_kernel_ms",
                                         "output_check"]))
    show("collector_status", table(run, "collector_status", ["collector", "point_id", "status", "reason",
                                                             "details_json"]))
    samples = table(run, "nvml_samples")
    if len(samples):
        agg = samples.groupby("point_id").agg(
            samples=("host_ns", "size"), span_s=("host_ns", lambda s: (s.max() - s.min()) / 1e9),
            power_w_mean=("power_w", "mean"), power_w_max=("power_w", "max"),
            gpu_util_mean=("gpu_util_pct", "mean"), sm_mhz_mean=("sm_clock_mhz", "mean"),
            temp_c_max=("temperature_c", "max"), mem_used_gib_max=("memory_used_bytes", lambda s: s.max() / 2**30),
            pcie_rx_max=("pcie_rx_bytes_per_s", "max"),
            throttles=("throttle_names", lambda s: ",".join(sorted({x for v in s.dropna() for x in v.split(",")
                                                                    if x}))))
        show("nvml_samples per point", agg.reset_index())
        gaps = samples.sort_values("host_ns").groupby("point_id").host_ns.diff().dropna() / 1e6
        print(f"sample spacing ms: median {gaps.median():.2f}, p90 {gaps.quantile(0.9):.2f}")
        show("nvml_samples per phase (point 0)", samples[samples.point_id == samples.point_id.min()].groupby(
            "phase", sort=False).agg(n=("host_ns", "size"), power_w=("power_w", "mean")).reset_index())
    show("energy", table(run, "energy", ["point_id", "seqlen", "layer", "component", "status", "executions",
                                         "window_ms", "exec_ms", "busy_pct", "counter_update_ms", "counter_updates",
                                         "energy_mj", "energy_rel_err", "power_w", "idle_power_w",
                                         "dynamic_energy_mj", "energy_per_token_j", "layers_represented",
                                         "capture_check", "reason"]))
    show("memory_points", table(run, "memory_points", ["point_id", "seqlen", "weights_bytes", "inputs_bytes",
                                                       "output_bytes", "allocated_before_bytes",
                                                       "peak_allocated_bytes", "peak_reserved_bytes",
                                                       "activation_peak_bytes", "recurrent_state_bytes",
                                                       "conv_state_bytes", "timeline_path", "note"]))
    mem = table(run, "memory")
    if len(mem):
        show("memory (layer 0 and model level)", mem[mem.layer <= 0][
            ["point_id", "layer", "component", "windows", "alloc_delta_bytes", "peak_delta_bytes",
             "allocated_at_start_bytes", "cache_state_bytes"]])
    show("io", table(run, "io", ["point_id", "seqlen", "phase", "phase_ms", "h2d_bytes", "d2h_bytes", "d2d_bytes",
                                 "h2d_count", "d2h_count", "memcpy_us", "h2d_bytes_per_s", "d2h_bytes_per_s",
                                 "pcie_tx_bytes", "pcie_rx_bytes", "pcie_rx_bytes_per_s_mean", "nvml_samples",
                                 "note"]))
    hw = table(run, "hw_counters")
    if len(hw):
        comps = table(run, "components", ["point_id", "layer", "component", "bytes_min", "kernel_ms_median"])
        per = hw.groupby(["point_id", "layer", "component"]).agg(
            kernels=("seq", "size"), dram_bytes=("dram_bytes", "sum"), duration_us=("duration_us", "sum"),
            sm_pct=("sm_throughput_pct", "mean"), occupancy_pct=("achieved_occupancy_pct", "mean")).reset_index()
        per = per.merge(comps, on=["point_id", "layer", "component"], how="left")
        per["dram_over_min"] = per.dram_bytes / per.bytes_min
        show("hw_counters per component (measured DRAM bytes vs closed-form minimum)", per)
        show("hw_counters attribution", hw.groupby("attribution").size().reset_index(name="kernels"))


def main():
    if not sys.argv[1:] or sys.argv[1].startswith("-"):
        print("usage: python benchmarks/summarize_hardware.py RUN_DIR [RUN_DIR ...]", file=sys.stderr)
        return 2
    print(f"provenance: {line(stamp())}")
    for arg in sys.argv[1:]:
        run = Path(arg)
        try:
            summarize(run)
        except Exception as exc:  # noqa: BLE001 - one broken run must not hide the others
            print(f"\n===== {run}: cannot summarize: {type(exc).__name__}: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
