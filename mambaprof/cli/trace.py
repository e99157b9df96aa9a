"""`mambaprof trace`: model -> collectors -> Parquet run directory (+ TensorBoard trace)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from mambaprof.cli import app
from mambaprof.cli.options import DEBUG_OPTION, MAX_BATCH, parse_int_list, parse_nonnegative
from mambaprof.cli.progress import sweep_progress
from mambaprof.errors import BadArgumentError
from mambaprof.loading import resolve_device, resolve_dtype
from mambaprof.rundir import new_run_id
from mambaprof.sweep import TraceConfig
from mambaprof.tracing import ModelSource, TraceOutcome, trace

CPU_SEQLENS = "64,128,256,512"
GPU_SEQLENS = "64,256,1024,4096,16384"


def build_config(seqlens: str | None, batch: str, dtype: str, device: str, repeats: int | None,
                 warmup: int | None, profile_repeats: int, mode: str, tensorboard: bool) -> TraceConfig:
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
        mode=mode, tensorboard=tensorboard)


def print_summary(outcome: TraceOutcome, console: Console) -> None:
    """A rich table of the sweep: one row per point."""
    table = Table(title=f"{outcome.loaded.ref} · {len(outcome.structure.mixers)} Mamba layers "
                        f"({outcome.structure.family}) · run {outcome.run_id}")
    table.box = box.SIMPLE_HEAD
    for col in ("B", "L", "status", "orig ms", "split ms", "split Δ", "kern ms", "named", "check"):
        table.add_column(col, justify="right", no_wrap=True)
    table.caption = ("B batch, L seqlen; orig/split ms: median time of the model's own forward and of the "
                     "component-split forward; kern ms: kernel time per forward; named: share of it in a component")
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
        table.add_row(str(row["batch"]), str(row["seqlen"]), "ok", fmt(row["original_ms_median"]),
                      fmt(row["split_ms_median"]), fmt(row["split_vs_original_pct"], "+.1f") + "%",
                      fmt(row["forward_kernel_ms"]), fmt(row["attributed_kernel_pct"], ".1f") + "%",
                      "[green]pass" if check == "pass" else f"[red]{check}")
    console.print(table)


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
    profile_repeats: int = typer.Option(3, "--profile-repeats", help="Forwards recorded by torch.profiler "
                                        "per point (0 disables kernel attribution)."),
    mode: str = typer.Option("split", "--mode", help="split: component-split forward with markers; as-is: the "
                             "model's own forward, kernels attributed by name rules."),
    tensorboard: bool = typer.Option(True, "--tb/--no-tb", help="Write the TensorBoard trace (tb/)."),
    out: Path | None = typer.Option(None, "--out", help="Run directory (default runs/<run id>)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing run in --out."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar or summary table."),
    debug: bool = DEBUG_OPTION,
) -> None:
    """Trace a model over a sweep of batch sizes and sequence lengths into a Parquet run directory."""
    source = ModelSource(model_file=model_file, hf_dir=hf, preset=preset, backend=backend)
    source.check()
    config = build_config(seqlens, batch, dtype, device, repeats, warmup, profile_repeats, mode, tensorboard)
    out = out or Path("runs") / new_run_id()
    console = Console(stderr=True)
    with sweep_progress("trace", console, enabled=not quiet) as progress:
        outcome = trace(source, config, out, force=force, progress=progress, debug=debug)
    if not quiet:
        print_summary(outcome, Console())
    result = outcome.result
    typer.echo(f"run directory: {outcome.run_dir}  (status {result.status}"
               f"{': ' + result.reason if result.reason else ''})")
    if result.exit_code:
        raise typer.Exit(result.exit_code)
