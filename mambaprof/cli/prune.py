"""`mambaprof prune`: the state-pruning what-if (throughput, memory and accuracy side by side)."""

from __future__ import annotations

from pathlib import Path

import torch
import typer
from rich.console import Console

from mambaprof.cli._app import app
from mambaprof.cli.options import DEBUG_OPTION, MAX_BATCH, parse_int_list, parse_nonnegative, parse_number
from mambaprof.cli.progress import sweep_progress
from mambaprof.errors import BadArgumentError, RunInterrupted
from mambaprof.model.loading import LoadedModel, quiet_transformers, resolve_device, resolve_dtype
from mambaprof.pruning.checkpoint import load_checkpoint
from mambaprof.pruning.ratios import check_per_layer, check_ratio, parse_ratios
from mambaprof.pruning.scores import SCORES
from mambaprof.pruning.whatif import PruneConfig, run_whatif
from mambaprof.run.sweep import ignore_stop_signals
from mambaprof.run.tracing import ModelSource
from mambaprof.storage.rundir import RunWriter, new_run_id

CPU_SEQLENS, GPU_SEQLENS = "64,256", "1024,4096,8192"


def parse_scores(values: list[str] | None) -> list[str]:
    """--score values (repeatable, or comma-separated) -> unique names in order, each checked."""
    names: list[str] = []
    for value in values or ["delta"]:
        for name in value.split(","):
            name = name.strip()
            if not name:
                raise BadArgumentError("--score has an empty item", f"scores: {', '.join(SCORES)}")
            if name not in SCORES:
                raise BadArgumentError(f"--score {name!r} is not a score", f"scores: {', '.join(SCORES)}")
            if name not in names:
                names.append(name)
    return names


def load_master(model_file: Path | None, hf: Path | None, preset: str | None, backend: str,
                device: torch.device) -> LoadedModel:
    """The model to prune, in fp32 (calibration and recovery run on this master copy)."""
    source = ModelSource(model_file=model_file, hf_dir=hf, preset=preset, backend=backend)
    source.check()
    if hf is not None:
        return load_checkpoint(hf, device, torch.float32)
    return source.load(device, torch.float32)


def check_save_dir(save: Path, hf: Path | None, out: Path | None, overwrite: bool) -> None:
    """Refuse, before any work, a --save that would overwrite what it must not: a file, the --hf model being
    read (or a folder holding it), the run directory, or an existing directory unless --overwrite-save is
    given and it holds a checkpoint (config.json or mambaprof's pruning sidecar)."""
    from mambaprof.pruning.checkpoint import SIDECAR
    from mambaprof.storage.outputs import enclosing_run, is_run_dir

    if str(save) in ("", "."):
        raise BadArgumentError("--save names the current folder", "give a new directory, e.g. --save pruned/")
    if save.exists() and not save.is_dir():
        raise BadArgumentError(f"--save {save} is a file", "give a directory for the pruned checkpoint")
    target = save.resolve()
    for other, option in ((hf, "--hf"), (out, "--out")):
        if other is None:
            continue
        source = other.resolve()
        if target == source or source.is_relative_to(target) or target.is_relative_to(source):
            raise BadArgumentError(f"--save {save} is (or holds, or is inside) {option} {other}",
                                   "the pruned model goes to a directory of its own, never over its input or the run")
    if enclosing_run(save) is not None or (save.is_dir() and is_run_dir(save)):
        raise BadArgumentError(f"--save {save} is a run directory or inside one", "give a directory of its own")
    if save.is_dir() and any(save.iterdir()):
        holds_checkpoint = (save / "config.json").is_file() or (save / SIDECAR).is_file()
        if not overwrite:
            raise BadArgumentError(f"--save {save} already exists and is not empty",
                                   "choose a new directory, or pass --overwrite-save to replace the checkpoint "
                                   "saved there" if holds_checkpoint else "choose a new directory")
        if not holds_checkpoint:
            raise BadArgumentError(f"--save {save} holds other files, not a checkpoint",
                                   "--overwrite-save replaces only a checkpoint; choose a new directory")


@app.command("prune")
def prune_command(
    model_file: Path | None = typer.Argument(None, help="model.py defining build_model() (a byte-level LM). "
                                             "Omit for the built-in default (random weights)."),
    hf: Path | None = typer.Option(None, "--hf", help="Checkpoint directory: transformers save_pretrained() or "
                                   "mamba_ssm MambaLMHeadModel.save_pretrained() (e.g. from "
                                   "examples/train_small_lm.py)."),
    preset: str | None = typer.Option(None, "--preset", help="Built-in config with random weights."),
    backend: str = typer.Option("auto", help="For presets: auto, hf (transformers) or mamba_ssm (GPU)."),
    ratios: str = typer.Option("0,0.125,0.25,0.375,0.5", "--ratios", help="Shares of state indices to remove."),
    score: list[str] | None = typer.Option(None, "--score", help=f"State score(s): {', '.join(SCORES)} "
                                           "(repeat the option or give a comma list; default delta)."),
    per_layer: str = typer.Option("uniform", "--per-layer", help="uniform (same share per layer) or adaptive "
                                  "(a global budget split by score mass)."),
    calib: Path | None = typer.Option(None, "--calib", help="Calibration text file (its first --calib-tokens "
                                      "bytes; the recovery fine-tune trains on all of it); default: the stdlib "
                                      "source's calib split."),
    evalf: Path | None = typer.Option(None, "--eval", help="Held-out text for perplexity; default: the stdlib "
                                      "source's eval split."),
    calib_tokens: int | None = typer.Option(None, "--calib-tokens", help="Calibration tokens (bytes) to use "
                                            "(default 8192 CPU, 65536 GPU)."),
    eval_tokens: int | None = typer.Option(None, "--eval-tokens", help="Held-out tokens (bytes) to score "
                                           "(default 16384 CPU, 262144 GPU)."),
    calib_batch: int | None = typer.Option(None, "--calib-batch", help="Sequences per calibration forward "
                                           "(default 4 CPU, 32 GPU: the energy score's exact scan loops over time)."),
    seqlen_calib: int = typer.Option(256, "--calib-seqlen", help="Sequence length of calibration/eval/recovery "
                                     "windows."),
    recover_steps: int = typer.Option(0, "--recover-steps", help="Recovery fine-tune steps after pruning "
                                      "(the unpruned reference gets the same steps)."),
    recover_lr: float = typer.Option(1e-4, "--recover-lr", help="Peak learning rate of the recovery fine-tune."),
    state_multiple: int = typer.Option(1, "--state-multiple", help="Round kept state counts up to a multiple "
                                       "(kernels that pad d_state gain nothing from odd sizes)."),
    seqlens: str | None = typer.Option(None, "--seqlens", help=f"Prefill sequence lengths to time (default "
                                       f"{CPU_SEQLENS} on CPU, {GPU_SEQLENS} on GPU)."),
    batch: int | None = typer.Option(None, "--batch", help="Batch for prefill and decode timing (default 1 CPU, "
                                     "8 GPU)."),
    decode_steps: int | None = typer.Option(None, "--decode-steps", help="Decode steps timed per repeat "
                                            "(default 8 CPU, 32 GPU; 0 skips decode)."),
    decode_graph_batches: str | None = typer.Option(None, "--decode-graph-batches", help="GPU: also time the "
                                                    "decode step replayed from a CUDA graph at these batches, "
                                                    "where state traffic sets its time (default 64,256 on GPU; "
                                                    "0 turns it off)."),
    repeats: int | None = typer.Option(None, "--repeats", help="Timed repeats per model (default 3 CPU, 10 GPU)."),
    warmup: int | None = typer.Option(None, "--warmup", help="Warm-up repeats per model (default 1 CPU, 2 GPU)."),
    component_seqlen: int | None = typer.Option(None, "--component-seqlen", help="Sequence length of the "
                                                "per-component measurement (default: the largest of --seqlens)."),
    profile_repeats: int = typer.Option(1, "--profile-repeats", help="Profiled forwards of the per-component "
                                        "measurement (0: wall time only)."),
    task_episodes: int = typer.Option(256, "--task-episodes", help="Episodes per synthetic task."),
    dtype: str = typer.Option("auto", "--dtype", help="Serving dtype for evaluation and timing: fp32, bf16, fp16 "
                              "(default bf16 GPU, fp32 CPU)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random score, inputs and recovery batches."),
    save: Path | None = typer.Option(None, "--save", help="Save one pruned model here (the first --score at "
                                     "--save-ratio) in a layout its framework loads."),
    overwrite_save: bool = typer.Option(False, "--overwrite-save", help="Let --save replace a checkpoint already "
                                        "in that directory (never the --hf model being read, never other files)."),
    save_ratio: float | None = typer.Option(None, "--save-ratio", help="Ratio of the model --save writes "
                                            "(default: the largest of --ratios)."),
    out: Path | None = typer.Option(None, "--out", help="Run directory (default runs/<run id>)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing run in --out."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar or summary tables."),
    debug: bool = DEBUG_OPTION,
) -> None:
    """Prune SSM states (structured, physical) at several ratios and scores; measure speed, memory, accuracy."""
    from mambaprof.reports import plots, views
    from mambaprof.reports import pruning as report
    from mambaprof.reports.render_terminal import rich_table

    quiet_transformers()
    if save is not None:
        check_save_dir(save, hf, out, overwrite_save)
    ratio_list = parse_ratios(ratios)
    if save_ratio is not None:
        check_ratio(save_ratio, "--save-ratio")
        if save_ratio not in ratio_list and save_ratio != 0:
            raise BadArgumentError(f"--save-ratio {save_ratio} is not one of --ratios {ratios}")
    dev = resolve_device(device)
    on_gpu = dev.type == "cuda"
    calib_tokens = calib_tokens if calib_tokens is not None else (1 << 16 if on_gpu else 1 << 13)
    eval_tokens = eval_tokens if eval_tokens is not None else (1 << 18 if on_gpu else 1 << 14)
    for name, value in (("--calib-tokens", calib_tokens), ("--eval-tokens", eval_tokens),
                        ("--calib-seqlen", seqlen_calib), ("--state-multiple", state_multiple),
                        ("--calib-batch", calib_batch if calib_batch is not None else 1),
                        ("--task-episodes", task_episodes)):
        if value < 1:
            raise BadArgumentError(f"{name} {value} must be at least 1")
    parse_number(recover_lr, "--recover-lr", positive=True, maximum=10.0)
    config = PruneConfig(
        ratios=ratio_list, scores=parse_scores(score), per_layer=check_per_layer(per_layer),
        seqlens=parse_int_list(seqlens or (GPU_SEQLENS if on_gpu else CPU_SEQLENS), "--seqlens"),
        device=dev, dtype=resolve_dtype(dtype, dev),
        batch=parse_int_list(str(batch if batch is not None else (8 if on_gpu else 1)), "--batch",
                             maximum=MAX_BATCH)[0],
        repeats=max(1, parse_nonnegative(repeats if repeats is not None else (10 if on_gpu else 3), "--repeats")),
        warmup=parse_nonnegative(warmup if warmup is not None else (2 if on_gpu else 1), "--warmup"),
        decode_steps=parse_nonnegative(decode_steps if decode_steps is not None else (32 if on_gpu else 8),
                                       "--decode-steps"),
        decode_graph_batches=[] if not on_gpu or (decode_graph_batches or "").strip() == "0" else
        parse_int_list(decode_graph_batches or "64,256", "--decode-graph-batches", maximum=MAX_BATCH),
        calib_path=calib, calib_tokens=calib_tokens, calib_seqlen=seqlen_calib,
        calib_batch=calib_batch if calib_batch is not None else (32 if on_gpu else 4),
        eval_path=evalf, eval_tokens=eval_tokens, eval_seqlen=seqlen_calib,
        task_episodes=task_episodes, recover_steps=parse_nonnegative(recover_steps, "--recover-steps", 1_000_000),
        recover_lr=recover_lr, recover_seqlen=seqlen_calib, state_multiple=state_multiple,
        profile_repeats=parse_nonnegative(profile_repeats, "--profile-repeats", maximum=100),
        component_seqlen=parse_int_list(str(component_seqlen), "--component-seqlen")[0]
        if component_seqlen is not None else None,
        seed=seed, save_dir=save, save_ratio=save_ratio)
    if config.component_seqlen is not None and config.component_seqlen not in config.seqlens:
        raise BadArgumentError(f"--component-seqlen {config.component_seqlen} is not one of --seqlens",
                               "the per-component times are reported in the rows of that sequence length")
    out = out or Path("runs") / new_run_id()
    writer = RunWriter(out, force=force)
    writer.check()  # a refused --out costs no model load
    loaded = load_master(model_file, hf, preset, backend, dev)
    try:
        with sweep_progress("prune", Console(stderr=True), enabled=not quiet) as progress:
            result = run_whatif(loaded, config, writer, progress)
    except RunInterrupted as exc:
        typer.echo(f"error: interrupted by {exc.signame}; the finished variants in {writer.out} stay readable "
                   f"(mambaprof report {writer.out})", err=True)
        ignore_stop_signals()
        raise typer.Exit(exc.exit_code) from None
    df = report.read_pruning(writer.out)
    pareto = plots.pareto_plot(df, writer.out / "pareto",
                               caveat=report.perplexity_means_nothing(df, loaded.source))
    if not quiet:
        console = Console(width=max(Console().width, 100))
        console.print(rich_table(views.pruning_summary_view(df), console))
        winners = views.pruning_winners_view(df)
        if winners is not None:
            console.print(rich_table(winners, console))
    if result.caveat:
        typer.echo(f"CAVEAT: {result.caveat}")
    typer.echo(f"run directory: {writer.out}  (status {result.status}"
               f"{': ' + result.reason if result.reason else ''})")
    typer.echo(f"pareto plot: {pareto[0]}  (full report: mambaprof report {writer.out})")
    if result.saved is not None:
        typer.echo(f"pruned model saved: {result.saved}")
