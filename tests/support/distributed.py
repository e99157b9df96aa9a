"""Two ranks on the CPU for the distributed-run tests: torchrun and `launch_distributed` in fresh processes
(gloo, loopback only), the quick sweep options, a run's tables as frames."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from mambaprof.storage.rundir import read_table
from support.cli import run_process

FAST = ["--repeats", "2", "--warmup", "1", "--profile-repeats", "2", "--quiet"]
LOOPBACK = {"GLOO_SOCKET_IFNAME": "lo", "KINETO_LOG_LEVEL": "5", "OMP_NUM_THREADS": "1"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--rdzv-backend", "c10d",
            "--rdzv-endpoint", "127.0.0.1:0", "--local-addr", "127.0.0.1", "-m", "mambaprof"]


def torchrun(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`torchrun --nproc-per-node 2 -m mambaprof ARGS`; a hang is the test's pytest-timeout, which kills the ranks."""
    return run_process([*TORCHRUN, *args], cwd=cwd, env={**os.environ, **LOOPBACK, **(env or {})})


def launch(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`mambaprof.distributed.launch.launch_distributed(ARGV, 2)` in a fresh process; a hang is the test's
    pytest-timeout, which kills the launcher and its ranks."""
    code = ("import sys; from mambaprof.distributed.launch import launch_distributed; "
            f"sys.exit(launch_distributed({argv!r}, 2))")
    return run_process([sys.executable, "-c", code], env={**os.environ, **LOOPBACK, **(env or {})})


def tables(run: Path) -> dict[str, pd.DataFrame]:
    """The points, components, kernels and ranks tables of a run directory, as pandas frames."""
    return {name: read_table(run, name).to_pandas() for name in ("points", "components", "kernels", "ranks")}
