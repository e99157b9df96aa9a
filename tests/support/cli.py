"""Run the mambaprof CLI in a fresh process, as a user would; the repository's folders."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


@dataclass
class CliResult:
    """What a CLI process left: its exit code and its output."""

    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600, env: dict[str, str] | None = None) -> CliResult:
    """Run `python -m mambaprof ARGS` in a fresh process (as a user would)."""
    full_env = {**os.environ, "KINETO_LOG_LEVEL": "5", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "mambaprof", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)
