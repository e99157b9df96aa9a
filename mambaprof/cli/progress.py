"""One rich progress bar across a whole sweep, showing the current point and phase."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mambaprof.distributed.ranks import RankInfo
from mambaprof.run.sweep import ProgressFn


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
