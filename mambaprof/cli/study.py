"""`mambaprof study`: the PerfMamba study (Mamba-1 vs Mamba-2, 64..16384 tokens, batch 1 and 8)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from mambaprof.cli._app import app
from mambaprof.cli.options import DEBUG_OPTION, parse_autotune
from mambaprof.cli.progress import rank_progress, sweep_progress
from mambaprof.cli.trace import AUTOTUNE_HELP, build_config
from mambaprof.collectors.hardware import HardwareOptions
from mambaprof.distributed.launch import launch_distributed
from mambaprof.distributed.ranks import RankInfo, detect, rank_device
from mambaprof.distributed.study import run_study_on_rank
from mambaprof.errors import BadArgumentError
from mambaprof.run.study import DEFAULT_BATCHES, DEFAULT_MODELS, DEFAULT_SEQLENS, StudyOutcome, run_study
from mambaprof.run.sweep import TraceConfig


@app.command("study")
def study_command(
    out: Path = typer.Option(Path("runs/study"), "--out", help="Study directory (one run directory per model)."),
    models: str = typer.Option(",".join(DEFAULT_MODELS), "--models", help="Presets to compare (comma-separated)."),
    seqlens: str = typer.Option(DEFAULT_SEQLENS, "--seqlens", help="Sequence lengths (list or a..b powers of two)."),
    batch: str = typer.Option(DEFAULT_BATCHES, "--batch", help="Batch sizes."),
    dtype: str = typer.Option("auto", "--dtype", help="bf16 (GPU default), fp16 or fp32."),
    device: str = typer.Option("auto", "--device", help="auto, cuda, cuda:N or cpu (tiny models only)."),
    backend: str = typer.Option("auto", "--backend", help="auto (mamba_ssm where it imports), hf or mamba_ssm."),
    repeats: int = typer.Option(10, "--repeats", help="Timed forwards per point, of each of the original, the "
                                "split and the split with markers (the --point-seconds cap stops earlier)."),
    warmup: int = typer.Option(2, "--warmup", help="Warm-up forwards per point."),
    point_seconds: float = typer.Option(3.0, "--point-seconds", help="Stop timing a point once its timed forwards "
                                        "took this many seconds (at least 3 repeats); 0: always every repeat. "
                                        "Keeps the default study under 10 minutes on one H100."),
    profile_repeats: int = typer.Option(1, "--profile-repeats", help="Profiled forwards per point (kernel times "
                                        "of a forward are stable; more cost a profiler pass each)."),
    tensorboard: bool = typer.Option(False, "--tb/--no-tb", help="Also write TensorBoard traces (large)."),
    autotune: str = typer.Option("largest", "--autotune", help=AUTOTUNE_HELP),
    nvml: bool = typer.Option(True, "--nvml/--no-nvml", help="Sample NVML (power, energy, clocks, ...) during "
                              "each model's trace."),
    energy: bool = typer.Option(False, "--energy/--no-energy", help="Energy per forward and per component "
                                "(adds about 15 s per point on a GPU; off by default in a study)."),
    memory: bool = typer.Option(True, "--memory/--no-memory", help="Memory per component and point."),
    io: bool = typer.Option(False, "--io/--no-io", help="Host/device copies per phase (one extra profiled forward "
                            "per point; off by default: a forward of token ids copies a few KiB)."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write <out>/report.html and <out>/summary/ "
                                "and print the findings when the study ends."),
    force: bool = typer.Option(False, "--force", help="Replace an existing study in --out."),
    nproc: int = typer.Option(1, "--nproc", help="Ranks on this machine (one GPU each): launches the same study "
                              "through torch.distributed.run, each model's points sharded across the ranks "
                              "(hardware collectors off under ranks). Same as `torchrun --nproc-per-node N -m "
                              "mambaprof study ...`."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar or tables."),
    debug: bool = DEBUG_OPTION,
) -> None:
    """Run the PerfMamba profiling study on this machine's GPU and write its report."""
    names = [m.strip() for m in models.split(",") if m.strip()]
    if not names:
        raise BadArgumentError("--models is empty", f"for example --models {','.join(DEFAULT_MODELS)}")
    ranks = detect()
    parse_autotune(autotune)
    if nproc != 1:  # inside ranks already, launch_distributed refuses with a clear error
        argv = ["study", "--out", str(out), "--models", models, "--seqlens", seqlens, "--batch", batch,
                "--dtype", dtype, "--device", device, "--backend", backend, "--repeats", str(repeats),
                "--warmup", str(warmup), "--point-seconds", str(point_seconds),
                "--profile-repeats", str(profile_repeats), "--tb" if tensorboard else "--no-tb", "--autotune", autotune,
                "--report" if report else "--no-report"]
        argv += ["--force"] * force + ["--quiet"] * quiet + ["--debug"] * debug
        raise typer.Exit(launch_distributed(argv, nproc))
    if ranks is not None:
        device = rank_device(device, ranks)
    config = build_config(seqlens, batch, dtype, device, repeats, warmup, profile_repeats, "split", tensorboard,
                          point_seconds, autotune)
    if report:  # the report goes into the study directory: never over a file mambaprof did not write
        from mambaprof.storage.outputs import check_html_output, check_summary_output

        check_html_output(out / "report.html", "--out")
        check_summary_output(out / "summary", "--out", subdirs=names)
    big = [n for n in names if not n.endswith("-tiny")]
    if config.device.type == "cpu" and big:
        raise BadArgumentError(f"the study's default models ({', '.join(big[:2])}, ...) need a CUDA GPU",
                               "on the CPU use --models mamba-tiny,mamba2-tiny --seqlens 64..256 --batch 1")
    if ranks is not None:
        raise typer.Exit(_study_on_rank(ranks, names, config, out, backend, force, report, quiet, debug))
    with sweep_progress("study", Console(stderr=True), enabled=not quiet) as progress:
        outcome = run_study(names, config, out, backend=backend, force=force, progress=progress, debug=debug,
                            hardware=HardwareOptions(nvml=nvml, energy=energy, memory=memory, io=io))
    _finish(outcome, out, report, quiet)


def _finish(outcome: StudyOutcome, out: Path, report: bool, quiet: bool) -> None:
    """The models table, the study directory line and the report; exits 3 when no model finished a point."""
    if not quiet:
        table = Table(title=f"study {out}")
        for col in ("model", "status", "points ok", "run directory"):
            table.add_column(col)
        for m in outcome.models:
            table.add_row(m.model, m.status, f"{m.n_ok}/{m.n_points}", m.run_dir or "-")
        Console().print(table)
    typer.echo(f"study directory: {out}")
    if not outcome.run_dirs:
        raise typer.Exit(3)
    if report:
        from mambaprof.cli.report import write_study_report

        write_study_report(out, out / "report.html", out / "summary", quiet=quiet)


def _study_on_rank(info: RankInfo, names: list[str], config: TraceConfig, out: Path, backend: str, force: bool,
                   report: bool, quiet: bool, debug: bool) -> int:
    """One rank of a distributed study: rank 0 shows the progress, the models table and writes the report;
    returns this rank's exit code (non-zero when a model's trace did not complete on every rank)."""
    lead = info.rank == 0
    with rank_progress("study", info, quiet) as progress:
        result = run_study_on_rank(info, names, config, out, backend=backend, force=force, progress=progress,
                                   debug=debug)
    try:
        if lead:
            try:
                _finish(result.outcome, out, report, quiet)
            except typer.Exit as stop:
                return int(stop.exit_code or 0) or result.exit_code
    finally:
        result.release()
    return result.exit_code
