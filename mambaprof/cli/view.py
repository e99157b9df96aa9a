"""`mambaprof view RUN`: TensorBoard with the PyTorch profiler plugin on the run's tb/ traces, on loopback.

The server listens on 127.0.0.1 only (never on other interfaces), on --port or a free port; the
command waits until it answers, prints its address, and stops it on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import importlib.util
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

import typer

from mambaprof.cli._app import app
from mambaprof.cli.options import DEBUG_OPTION, parse_number
from mambaprof.errors import BadArgumentError, MambaprofError, RunDirectoryError, RunInterrupted
from mambaprof.storage.rundir import TB_DIR

HOST = "127.0.0.1"
PLUGIN_RUNS = "/data/plugin/pytorch_profiler/runs"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def check_port(port: int) -> int:
    """`port` if it is valid and free on 127.0.0.1, else BadArgumentError."""
    if not 1 <= port <= 65535:
        raise BadArgumentError(f"--port {port} is not a TCP port (1-65535)")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            raise BadArgumentError(f"--port {port} is already in use on {HOST}",
                                   "choose another port or leave --port out for a free one") from None
    return port


def trace_dir(run: Path) -> Path:
    """The run's tb/ folder, checked to hold profiler traces (RunDirectoryError otherwise)."""
    if not run.is_dir():
        raise RunDirectoryError(f"no run directory at {run}", "give the --out folder of a trace")
    tb = run / TB_DIR
    if not tb.is_dir() or not any(tb.rglob("*.pt.trace.json*")):
        raise RunDirectoryError(f"{run} has no TensorBoard trace ({tb} is missing or empty)",
                                "trace with --tb (the default) and --profile-repeats of at least 1")
    return tb


def start_tensorboard(tb: Path, port: int, log_path: Path) -> subprocess.Popen:
    """Start TensorBoard on HOST:port over `tb`, its output going to log_path."""
    if importlib.util.find_spec("torch_tb_profiler") is None:
        raise MambaprofError("TensorBoard's PyTorch profiler plugin (torch-tb-profiler) is not installed",
                             "pip install 'mambaprof[tb]'")
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(tb), "--host", HOST, "--port", str(port)]
    with open(log_path, "wb") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def wait_until_serving(port: int, proc: subprocess.Popen, log_path: Path, timeout: float) -> None:
    """Poll the profiler plugin's run list until the server answers; MambaprofError if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise MambaprofError(f"TensorBoard exited with status {proc.returncode}: {tail[0]}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}{PLUGIN_RUNS}", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise MambaprofError(f"TensorBoard did not answer on {HOST}:{port} within {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    """Terminate TensorBoard (kill after 10 s)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@app.command("view")
def view_command(
    run: Path = typer.Argument(..., help="Run directory written by `mambaprof trace`."),
    port: int | None = typer.Option(None, "--port", help="Port on 127.0.0.1 (default: a free one)."),
    start_timeout: float = typer.Option(120.0, "--start-timeout", help="Seconds to wait for TensorBoard to answer."),
    debug: bool = DEBUG_OPTION,
) -> None:
    """Open the run's kernel traces in TensorBoard (PyTorch profiler plugin), on 127.0.0.1 only."""
    start_timeout = parse_number(start_timeout, "--start-timeout", positive=True, maximum=3600.0)
    tb = trace_dir(run)
    port = check_port(port) if port is not None else free_port()
    log_path = Path(tempfile.mkstemp(prefix="mambaprof-tensorboard-", suffix=".log")[1])
    proc = start_tensorboard(tb, port, log_path)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    keep_log = True
    try:
        wait_until_serving(port, proc, log_path, start_timeout)
        typer.echo(f"TensorBoard (PyTorch profiler plugin) on {tb}: http://{HOST}:{port}/#pytorch_profiler "
                   "(Ctrl-C stops it)")
        while proc.poll() is None:
            time.sleep(0.5)
        raise MambaprofError(f"TensorBoard stopped by itself (status {proc.returncode}); its log: {log_path}")
    except (KeyboardInterrupt, RunInterrupted):  # Ctrl-C (or SIGTERM) is how a user stops it
        typer.echo("stopped TensorBoard")
        keep_log = False
    finally:
        stop(proc)
        signal.signal(signal.SIGTERM, previous)
        if not keep_log:
            log_path.unlink(missing_ok=True)
