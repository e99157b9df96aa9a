"""One rich progress bar across a whole sweep, showing the current point and phase."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mambaprof.distributed.ranks import RankInfo
from mambaprof.run.sweep import ProgressFn, SweepResult


@contextmanager
def sweep_progress(title: str, console: Console | None = None, enabled: bool = True) -> Iterator[ProgressFn]:
    """Yields progress(done, total, description); renders nothing when disabled."""
    if not enabled:
        yield lambda done, total, desc: None
        return
    progress = Progress(TextColumn("[bold]{task.fields[title]}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.description}"), TimeElapsedColumn(),
                        console=console or Console(stderr=True), transient=False)
    task = progress.add_task("", total=None, title=title)

    def update(done: int, total: int, desc: str) -> None:
        progress.update(task, completed=done, total=total, description=desc)

    with progress:
        yield update


def rank_progress(command: str, info: RankInfo, quiet: bool) -> AbstractContextManager[ProgressFn]:
    """The progress bar of one rank of a distributed command: rank 0 shows it for the whole launch."""
    return sweep_progress(f"{command} · rank 0 of {info.world_size}", Console(stderr=True),
                          enabled=info.rank == 0 and not quiet)


def say_run_end(run_dir: Path, result: SweepResult, noun: str = "point", length: str = "seqlen",
                table: str = "points") -> None:
    """The last lines of a sweep command: the run directory and its status, and, when no point finished, the
    first point's error (on stderr) with where every point's error is kept."""
    typer.echo(f"run directory: {run_dir}  (status {result.status}{': ' + result.reason if result.reason else ''})")
    errors = [r for r in result.point_rows if r.get("error")]
    if result.status == "failed" and errors:
        first = errors[0]
        typer.echo(f"error: no {noun} finished; the first (batch {first['batch']}, {length} {first['seqlen']}) failed "
                   f"with {first['error']} (every {noun}'s error is in {run_dir / table}; --debug shows the "
                   "traceback)", err=True)
