"""Run the mambaprof CLI (or any command) in a fresh process, as a user would; the repository's folders.

No call here has a time limit of its own: a hang is caught by pytest-timeout (pyproject.toml), which names the
test. The command runs in its own process group, and when the caller is interrupted (the timeout, Ctrl-C) the
whole group is killed, so no rank or helper process outlives the test.
"""

from __future__ import annotations

import os
import signal
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


def run_process(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None,
                preexec_fn: object = None) -> subprocess.CompletedProcess[str]:
    """Run `cmd` to completion in its own process group (text output captured); killed with its group when the
    caller is interrupted."""
    with subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                          start_new_session=True, preexec_fn=preexec_fn) as proc:  # type: ignore[arg-type]
        try:
            stdout, stderr = proc.communicate()
        except BaseException:
            kill_group(proc)
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def kill_group(proc: subprocess.Popen[str], grace_s: float = 60.0) -> None:
    """Stop a process started with `start_new_session=True` and everything in its process group: SIGTERM first
    (torchrun's agent then stops its ranks, which run in sessions of their own), SIGKILL after `grace_s`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            if proc.poll() is None:
                proc.send_signal(sig)
        try:
            proc.communicate(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue
    proc.wait()


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> CliResult:
    """Run `python -m mambaprof ARGS` in a fresh process (as a user would)."""
    full_env = {**os.environ, "KINETO_LOG_LEVEL": "5", **(env or {})}
    proc = run_process([sys.executable, "-m", "mambaprof", *args], cwd=cwd, env=full_env)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)
