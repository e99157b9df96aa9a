"""Start a mambaprof command on N ranks of this machine through torch.distributed's elastic launcher.

`launch_distributed(["trace", ...], 2)` does what `torchrun --nproc-per-node 2 -m mambaprof trace ...`
does (the same engine: `torch.distributed.launcher.api.elastic_launch`, the one behind torchrun),
from Python, with the rendezvous store on 127.0.0.1, no restarts, and one `error:` line instead of
torchrun's failure report. Each rank then finds itself through `mambaprof.distributed.detect`.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from mambaprof.distributed.ranks import DistributedError, detect
from mambaprof.errors import BadArgumentError


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables (inherited by the ranks) for the duration of the launch."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


@contextmanager
def _quiet_launcher_logs() -> Iterator[None]:
    """The elastic agent logs each failed rank at ERROR; the summary line below says it once."""
    logger = logging.getLogger("torch.distributed.elastic")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def rank_threads(nproc: int) -> str:
    """OMP_NUM_THREADS for each of `nproc` ranks sharing this machine's cores (at least 1)."""
    return str(max(1, (os.cpu_count() or 1) // nproc))


def launch_distributed(argv: list[str], nproc: int) -> int:
    """Run `mambaprof ARGV` as `nproc` ranks on this machine, as `torchrun --nproc-per-node NPROC -m
    mambaprof ARGV` would, and return the exit code: 0 when every rank exited 0, else the code of
    the first rank that failed (1 for a rank killed by a signal, 128 + the signal when the launch itself
    was interrupted).

    Ranks inherit this environment; OMP_NUM_THREADS, when unset, shares the cores between them.
    A failure prints one line naming every rank that did not exit 0 (rank 0 of a trace has already
    printed why, one `error:` line per rank).
    """
    if nproc < 1:
        raise BadArgumentError(f"--nproc {nproc} must be at least 1")
    inside = detect()
    if inside is not None:
        raise DistributedError(f"already rank {inside.rank} of {inside.world_size}: a rank cannot launch ranks",
                               "run the command without torchrun")
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"mambaprof-{uuid.uuid4().hex}",
                          rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", local_addr="127.0.0.1",
                          max_restarts=0, monitor_interval=0.1)
    env = {} if "OMP_NUM_THREADS" in os.environ else {"OMP_NUM_THREADS": rank_threads(nproc)}
    try:
        with _environment(env), _quiet_launcher_logs():
            elastic_launch(config, entrypoint=sys.executable)("-u", "-m", "mambaprof", *argv)
    except ChildFailedError as exc:
        parts = []
        for rank, failure in sorted(exc.failures.items()):
            how = f"signal {failure.signal_name()}" if failure.exitcode < 0 else f"exit {failure.exitcode}"
            parts.append(f"rank {rank} ({how})")
        sys.stderr.write(f"error: {len(exc.failures)} of {nproc} ranks did not succeed: {', '.join(parts)}\n")
        _, first = exc.get_first_failure()
        return first.exitcode if first.exitcode > 0 else 1
    except SignalException as exc:
        sys.stderr.write(f"error: launch interrupted by {exc.sigval.name}\n")
        return 128 + int(exc.sigval)
    return 0
