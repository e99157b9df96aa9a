"""`mambaprof trace --phase decode`: the decode sweep (batch x prompt length) into a run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from mambaprof.cli.options import MAX_BATCH, parse_int_list, parse_nonnegative
from mambaprof.cli.progress import say_run_end, sweep_progress
from mambaprof.distributed.ranks import detect
from mambaprof.errors import BadArgumentError
from mambaprof.model.loading import resolve_device, resolve_dtype
from mambaprof.model.structure import discover
from mambaprof.run.decode import DecodeConfig, run_decode_sweep
from mambaprof.run.sweep import RunInterrupted, ignore_stop_signals, interrupts_raise, signal_exit_code
from mambaprof.run.tracing import ModelSource
from mambaprof.storage.rundir import RunWriter, new_run_id


def build_decode_config(prompt_len: str, batch: str, dtype: str, device: str, repeats: int | None,
                        warmup: int | None, cuda_graphs: bool) -> DecodeConfig:
    """Check and combine the decode options (defaults depend on the device: 50 steps GPU, 5 CPU)."""
    dev = resolve_device(device)
    on_gpu = dev.type == "cuda"
    return DecodeConfig(
        seqlens=parse_int_list(prompt_len, "--prompt-len"),
        batches=parse_int_list(batch, "--batch", maximum=MAX_BATCH),
        device=dev, dtype=resolve_dtype(dtype, dev),
        repeats=max(1, parse_nonnegative(repeats if repeats is not None else (50 if on_gpu else 5), "--repeats")),
        warmup=parse_nonnegative(warmup if warmup is not None else (3 if on_gpu else 1), "--warmup"),
        profile_repeats=0, tensorboard=False, cuda_graphs=cuda_graphs)


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def print_decode_summary(rows: list[dict[str, Any]], title: str, console: Console) -> None:
    """A rich table of the decode sweep: one row per point."""
    table = Table(title=title, box=box.SIMPLE_HEAD)
    graphs_on = any(r.get("cuda_graphs") for r in rows)
    cols = ["B", "prompt", "status", "ms/token", "tok/s", "eager ms"]
    cols += ["graph ms", "parts vs graph", "launch %"] if graphs_on else []
    cols += ["generate ms", "check"]
    for col in cols:
        table.add_column(col, justify="right", no_wrap=True)
    table.caption = ("ms/token: the step from one CUDA graph in a greedy loop (GPU), else the model's own eager "
                     "step; eager ms: the split step without graphs; parts vs graph: per-component graphs summed "
                     "vs the whole-step graph; launch %: share of the eager step that graphs remove; generate ms: "
                     "the model's own generate per new token")
    for r in rows:
        if r["status"] != "ok":
            table.add_row(str(r["batch"]), str(r["seqlen"]), f"[red]{r['status']}",
                          *([""] * (len(cols) - 4)), r.get("error") or "")
            continue
        ok = r.get("tokens_match") and r.get("tokens_match_generate") is not False
        cells = [str(r["batch"]), str(r["seqlen"]), "ok", _fmt(r.get("ms_per_token")),
                 _fmt(r.get("tokens_per_s"), ".0f"), _fmt(r.get("split_eager_ms"))]
        if graphs_on:
            cells += [_fmt(r.get("graph_replay_ms")), _fmt(r.get("graph_sum_vs_whole_pct"), "+.1f") + "%",
                      _fmt(r.get("launch_bound_pct"), ".0f")]
        cells += [_fmt(r.get("generate_ms_per_token")), "[green]tokens match" if ok else "[red]tokens differ"]
        table.add_row(*cells)
    console.print(table)


def decode_command(source: ModelSource, prompt_len: str, batch: str, dtype: str, device: str,
                   repeats: int | None, warmup: int | None, cuda_graphs: bool, out: Path | None, force: bool,
                   quiet: bool, debug: bool) -> int:
    """Run the decode sweep in this process; return the exit code (0 done, 3 nothing finished, 128+N signal)."""
    if detect() is not None:
        raise BadArgumentError("--phase decode does not run under torchrun yet", "run it as one process")
    config = build_decode_config(prompt_len, batch, dtype, device, repeats, warmup, cuda_graphs)
    out = out or Path("runs") / new_run_id()
    try:
        with interrupts_raise():
            loaded = source.load(config.device, config.dtype)
            structure = discover(loaded.model)
            writer = RunWriter(out, force=force)
            writer.prepare()
            with sweep_progress("decode", Console(stderr=True), enabled=not quiet) as progress:
                result = run_decode_sweep(loaded, structure, config, writer, progress=progress, debug=debug)
    except RunInterrupted as exc:
        typer.echo(f"error: interrupted by {exc.signame}; whatever was finished in {out} stays readable", err=True)
        ignore_stop_signals()
        return signal_exit_code(exc.signame)
    if not quiet:
        n_attn = sum(1 for ls in structure.layers if ls.attention)
        layers = (f"{len(structure.mixers)} Mamba + {n_attn} attention layers" if n_attn
                  else f"{len(structure.mixers)} layers")
        print_decode_summary(result.point_rows, f"{loaded.ref} · decode · {layers} ({structure.family}) · run "
                             f"{writer.run_id}", Console())
    say_run_end(writer.out, result, noun="decode point", length="prompt", table="decode_points")
    code = result.exit_code
    if code > 128:
        ignore_stop_signals()
    return code
