"""`mambaprof trace`: model -> collectors -> Parquet run directory (+ TensorBoard trace)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from mambaprof.cli._app import app
from mambaprof.cli.options import (
    DEBUG_OPTION,
    MAX_BATCH,
    parse_autotune,
    parse_int_list,
    parse_nonnegative,
    parse_number,
    parse_seconds,
)
from mambaprof.cli.progress import rank_progress, say_run_end, sweep_progress
from mambaprof.collectors.hardware import HardwareOptions, build_hardware
from mambaprof.distributed.ranks import RankInfo, detect, rank_device
from mambaprof.distributed.trace import run_distributed_trace
from mambaprof.errors import BadArgumentError
from mambaprof.model.loading import resolve_device, resolve_dtype
from mambaprof.run.sweep import RunInterrupted, TraceConfig, ignore_stop_signals, interrupts_raise, signal_exit_code
from mambaprof.run.tracing import ModelSource, TraceOutcome, trace
from mambaprof.storage.rundir import RunWriter, new_run_id

CPU_SEQLENS = "64,128,256,512"
GPU_SEQLENS = "64,256,1024,4096,16384"
AUTOTUNE_HELP = ("When Triton kernels (mamba_ssm's Mamba-2 SSD, layer norm) pick their autotuned configs: largest "
                 "(one untimed forward at the largest point before the first), first (the first point's shape "
                 "decides for all), per-point (every point retunes at its own shape).")


def build_config(seqlens: str | None, batch: str, dtype: str, device: str, repeats: int | None,
                 warmup: int | None, profile_repeats: int, mode: str, tensorboard: bool,
                 point_seconds: float | None = None, autotune: str = "largest") -> TraceConfig:
    """Check and combine the sweep options (defaults depend on the device)."""
    dev = resolve_device(device)
    if mode not in ("split", "as-is"):
        raise BadArgumentError(f"--mode {mode!r} is not split or as-is")
    on_gpu = dev.type == "cuda"
    return TraceConfig(
        seqlens=parse_int_list(seqlens if seqlens is not None else (GPU_SEQLENS if on_gpu else CPU_SEQLENS),
                               "--seqlens"),
        batches=parse_int_list(batch, "--batch", maximum=MAX_BATCH),
        device=dev, dtype=resolve_dtype(dtype, dev),
        repeats=max(1, parse_nonnegative(repeats if repeats is not None else (20 if on_gpu else 5), "--repeats")),
        warmup=parse_nonnegative(warmup if warmup is not None else (3 if on_gpu else 1), "--warmup"),
        profile_repeats=parse_nonnegative(profile_repeats, "--profile-repeats", maximum=100),
        mode=mode, tensorboard=tensorboard, point_seconds=parse_seconds(point_seconds, "--point-seconds"),
        autotune=parse_autotune(autotune))


def print_summary(outcome: TraceOutcome, console: Console) -> None:
    """A rich table of the sweep: one row per point."""
    table = Table(title=f"{outcome.loaded.ref} · {len(outcome.structure.mixers)} Mamba layers "
                        f"({outcome.structure.family}) · run {outcome.run_id}")
    table.box = box.SIMPLE_HEAD
    for col in ("B", "L", "status", "orig ms", "split Δ", "marked Δ", "kern ms", "named", "check"):
        table.add_column(col, justify="right", no_wrap=True)
    table.caption = ("B batch, L seqlen; orig ms: median time of the model's own forward; split Δ: the "
                     "component-split forward vs it (fidelity: median of back-to-back pairs ± half its 95% "
                     "interval), marked Δ: the same with its timing markers (medians); kern ms: kernel time per "
                     "forward; named: share of it in a component")
    for row in outcome.result.point_rows:
        if row["status"] != "ok":
            table.add_row(str(row["batch"]), str(row["seqlen"]), f"[red]{row['status']}", "", "", "", "", "",
                          row.get("error") or "")
            continue

        def fmt(value: float | None, spec: str = "") -> str:
            if value is None:
                return "-"
            return format(value, spec or (".3f" if value < 100 else ".1f"))

        check = row["output_check"]
        paired, lo, hi = (row.get(k) for k in ("split_bare_paired_pct", "split_bare_ci_low_pct",
                                                "split_bare_ci_high_pct"))
        split = (f"{paired:+.1f}±{(hi - lo) / 2:.1f}%" if None not in (paired, lo, hi)
                 else fmt(row.get("split_bare_vs_original_pct"), "+.1f") + "%")
        table.add_row(str(row["batch"]), str(row["seqlen"]), "ok", fmt(row["original_ms_median"]), split,
                      fmt(row["split_vs_original_pct"], "+.1f") + "%",
                      fmt(row["forward_kernel_ms"]), fmt(row["attributed_kernel_pct"], ".1f") + "%",
                      "[green]pass" if check == "pass" else f"[red]{check}")
    console.print(table)


def trace_on_rank(info: RankInfo, source: ModelSource, config: TraceConfig, out: Path | None, force: bool,
                  shard: bool, quiet: bool, debug: bool) -> int:
    """One rank of `torchrun ... -m mambaprof trace`: rank 0 shows the progress, the summary and every rank
    that is not complete (one `error:` line each); returns this rank's exit code."""
    lead = info.rank == 0
    with rank_progress("trace", info, quiet) as progress:
        outcome = run_distributed_trace(info, source, config, out, force=force, shard=shard, progress=progress,
                                        debug=debug)
    try:
        if lead:
            if not quiet and outcome.trace is not None:
                print_summary(outcome.trace, Console())
            typer.echo(f"run directory: {outcome.run_dir}  ({info.world_size} ranks, status {outcome.run_status})")
            for line in outcome.failures:
                sys.stderr.write(f"error: {line}\n")
    finally:
        outcome.release()
    return outcome.exit_code


@app.command("trace")
def trace_command(
    model_file: Path | None = typer.Argument(None, help="model.py defining build_model() (and optionally "
                                             "make_inputs). Omit for the built-in default (mamba-tiny, CPU)."),
    hf: Path | None = typer.Option(None, "--hf", help="transformers save_pretrained() checkpoint directory."),
    preset: str | None = typer.Option(None, "--preset", help="Built-in config with random weights, e.g. "
                                      "mamba-130m, mamba2-1.3b, mamba-tiny."),
    backend: str = typer.Option("auto", help="For presets: auto, hf (transformers) or mamba_ssm (GPU)."),
    seqlens: str | None = typer.Option(None, "--seqlens", help=f"Sequence lengths, e.g. 64,256,1024 or 64..16384 "
                                       f"(powers of two). Default {CPU_SEQLENS} on CPU, {GPU_SEQLENS} on GPU."),
    batch: str = typer.Option("1", "--batch", help="Batch sizes, e.g. 1,8."),
    dtype: str = typer.Option("auto", "--dtype", help="fp32, bf16 or fp16 (default bf16 on GPU, fp32 on CPU)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    repeats: int | None = typer.Option(None, "--repeats", help="Timed forwards per point (default 20 GPU, 5 CPU)."),
    warmup: int | None = typer.Option(None, "--warmup", help="Warm-up forwards per point (default 3 GPU, 1 CPU)."),
    point_seconds: float = typer.Option(0.0, "--point-seconds", help="Stop timing a point once its timed "
                                        "forwards took this many seconds (at least 3 repeats; warm-up stops after "
                                        "one round past half of it); 0: always every repeat."),
    profile_repeats: int = typer.Option(3, "--profile-repeats", help="Forwards recorded by torch.profiler "
                                        "per point (0 disables kernel attribution)."),
    mode: str = typer.Option("split", "--mode", help="split: component-split forward with markers; as-is: the "
                             "model's own forward, kernels attributed by name rules."),
    tensorboard: bool = typer.Option(True, "--tb/--no-tb", help="Write the TensorBoard trace (tb/)."),
    autotune: str = typer.Option("largest", "--autotune", help=AUTOTUNE_HELP),
    out: Path | None = typer.Option(None, "--out", help="Run directory (default runs/<run id>)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing run in --out."),
    shard: bool = typer.Option(True, "--shard/--no-shard", help="Under torchrun: split the sweep points across "
                               "ranks (default), or run every point on every rank, for a model that itself runs "
                               "across ranks (data or tensor parallel; the process group is initialised for it)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar or summary table."),
    nvml: bool = typer.Option(True, "--nvml/--no-nvml", help="Sample NVML (power, energy counter, utilisation, "
                              "memory, clocks, PCIe, throttling) on a background thread; energy needs it."),
    nvml_interval_ms: float = typer.Option(10.0, "--nvml-interval-ms", help="NVML sampling interval; power and "
                                           "utilisation are read no faster than the driver updates them."),
    energy: bool = typer.Option(True, "--energy/--no-energy", help="Energy per forward and per component from "
                                "the GPU energy counter (GPU with NVML only)."),
    memory: bool = typer.Option(True, "--memory/--no-memory", help="Memory per component and per point."),
    memory_timeline: bool = typer.Option(False, "--memory-timeline", help="Also write torch's memory snapshot "
                                         "(GPU) or memory timeline (CPU) per point under memory_timeline/."),
    io: bool = typer.Option(True, "--io/--no-io", help="Host<->device copies and PCIe traffic by phase."),
    ncu: bool = typer.Option(False, "--ncu", help="Run each point under Nsight Compute (ncu): measured DRAM bytes "
                             "per component (slow; GPU only)."),
    ncu_layers: int | None = typer.Option(None, "--ncu-layers", help="With --ncu: profile only the first N Mamba "
                                          "layers' kernels (default all)."),
    phase: str = typer.Option("prefill", "--phase", help="prefill: full forwards over batch x seqlen; decode: "
                              "one generated token per sequence per step after a prompt (--prompt-len), timed per "
                              "component, with CUDA graphs on the GPU."),
    prompt_len: str = typer.Option("128", "--prompt-len", help="With --phase decode: prompt lengths, e.g. "
                                   "128,1024."),
    cuda_graphs: bool = typer.Option(True, "--cuda-graphs/--no-cuda-graphs", help="With --phase decode on the "
                                     "GPU: also replay the step from CUDA graphs (as servers run it)."),
    debug: bool = DEBUG_OPTION,
) -> None:
    """Trace a model over a sweep of batch sizes and sequence lengths into a Parquet run directory."""
    source = ModelSource(model_file=model_file, hf_dir=hf, preset=preset, backend=backend)
    source.check()
    nvml_interval_ms = parse_number(nvml_interval_ms, "--nvml-interval-ms", positive=True, maximum=60_000.0)
    if phase not in ("prefill", "decode"):
        raise BadArgumentError(f"--phase {phase!r} is not prefill or decode")
    if phase == "decode":
        from mambaprof.cli.decode import decode_command

        raise typer.Exit(decode_command(source, prompt_len, batch, dtype, device, repeats, warmup, cuda_graphs,
                                        out, force, quiet, debug))
    ranks = detect()
    if ranks is not None:
        device = rank_device(device, ranks)
    config = build_config(seqlens, batch, dtype, device, repeats, warmup, profile_repeats, mode, tensorboard,
                          point_seconds, autotune)
    if ranks is not None:
        raise typer.Exit(trace_on_rank(ranks, source, config, out, force, shard, quiet, debug))
    out = out or Path("runs") / new_run_id()
    try:
        with interrupts_raise():  # a signal outside the sweep (or a second one after it) ends the command cleanly
            code = _trace_here(source, config, out, force, quiet, debug,
                               HardwareOptions(nvml=nvml, nvml_interval_ms=nvml_interval_ms, energy=energy,
                                               memory=memory, memory_timeline=memory_timeline, io=io, ncu=ncu,
                                               ncu_layers=ncu_layers),
                               model_file, hf, preset, backend)
    except RunInterrupted as exc:
        typer.echo(f"error: interrupted by {exc.signame}; whatever was finished in {out} stays readable", err=True)
        code = signal_exit_code(exc.signame)
    if code > 128:
        ignore_stop_signals()  # asked to stop and stopping: a repeated signal must not turn exit 143 into a kill
    if code:
        raise typer.Exit(code)


def _trace_here(source: ModelSource, config: TraceConfig, out: Path, force: bool, quiet: bool, debug: bool,
                options: HardwareOptions, model_file: Path | None, hf: Path | None, preset: str | None,
                backend: str) -> int:
    """The single-process trace: run directory, hardware collectors, sweep, summary; returns the exit code
    (non-zero when the sweep did not complete)."""
    writer = RunWriter(out, force=force)
    hw = build_hardware(options, config.device, out, writer.run_id,
                        {"model_file": str(model_file.resolve()) if model_file else None,
                         "hf_dir": str(hf.resolve()) if hf else None, "preset": preset, "backend": backend},
                        str(config.dtype).replace("torch.", ""), config.mode, config.seed, config.warmup)
    console = Console(stderr=True)
    with sweep_progress("trace", console, enabled=not quiet) as progress:
        outcome = trace(source, config, out, force=force, progress=progress, debug=debug, writer=writer,
                        extra_collectors=hw.point, run_collectors=hw.run)
    if not quiet:
        print_summary(outcome, Console())
    result = outcome.result
    say_run_end(outcome.run_dir, result)
    return result.exit_code
