"""`mambaprof view RUN`: the run's per-point profiler traces, read by the viewers users already have.

Every point's trace is a Chrome trace JSON file (gzipped) under RUN/tb/: Perfetto (ui.perfetto.dev, in the
browser, nothing uploaded) and chrome://tracing open it as it is. HolisticTraceAnalysis (HTA, `pip install
HolisticTraceAnalysis`) reads one trace folder per analysis, every file in it a rank of the same job; so the
points are laid out one folder each (symbolic links to the trace files, every rank's file of a point in its
folder: `--hta-dir DIR` keeps them for `TraceAnalysis(trace_dir="DIR/point0000_b1_l64")`), and, when hta is
importable, the command prints each point's kernel breakdown and temporal breakdown (GPU traces: a CPU
trace has no kernels for it to break down). TensorBoard's PyTorch profiler plugin (torch-tb-profiler,
deprecated upstream) is started only where it is installed: it listens on 127.0.0.1 only (never on other
interfaces), on --port or a free port; the command waits until it answers, prints its address, and stops it
on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib.util
import io
import json
import re
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


TRACE_GLOB = "*.pt.trace.json*"
PERFETTO = "https://ui.perfetto.dev"
#: kernels listed per point in the HTA kernel breakdown
TOP_KERNELS = 5
CPU_ONLY = "  no GPU kernels in this trace (a CPU run): HTA's kernel and temporal breakdowns need a GPU trace"
_POINT = re.compile(r"^(point\d+_b\d+_l\d+)")


def trace_dir(run: Path) -> Path:
    """The run's tb/ folder, checked to hold profiler traces (RunDirectoryError otherwise)."""
    if not run.is_dir():
        raise RunDirectoryError(f"no run directory at {run}", "give the --out folder of a trace")
    tb = run / TB_DIR
    if not tb.is_dir() or not any(tb.rglob(TRACE_GLOB)):
        raise RunDirectoryError(f"{run} has no profiler trace ({tb} is missing or empty)",
                                "trace with --tb (the default) and --profile-repeats of at least 1")
    return tb


def point_traces(tb: Path) -> dict[str, list[Path]]:
    """Point name (`point0000_b1_l64`) -> its trace files (one per rank), in point order."""
    out: dict[str, list[Path]] = {}
    for path in sorted(tb.rglob(TRACE_GLOB)):
        match = _POINT.match(path.name)
        out.setdefault(match.group(1) if match else path.name.split(".")[0], []).append(path)
    return dict(sorted(out.items()))


def hta_layout(points: dict[str, list[Path]], dest: Path) -> dict[str, Path]:
    """One folder per point under `dest` (created; it must not exist or be empty), holding symbolic links to
    that point's trace files: the layout HTA's `TraceAnalysis(trace_dir=...)` reads. Returns point -> folder."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BadArgumentError(f"--hta-dir {dest} exists and is not an empty folder",
                               "give a new folder: mambaprof writes links there and nothing else")
    out = {}
    for point, files in points.items():
        folder = dest / point
        folder.mkdir(parents=True, exist_ok=True)
        for i, path in enumerate(files):
            suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".gz") else path.suffix
            (folder / f"rank-{i}.pt.trace{suffix}").symlink_to(path.resolve())
        out[point] = folder
    return out


def has_gpu_kernels(path: Path) -> bool:
    """True when a Chrome trace file (gzipped or not) holds at least one GPU kernel event (`cat` kernel)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt") as fh:
            events = json.load(fh).get("traceEvents", [])
    except (OSError, ValueError, AttributeError):
        return False
    return any(isinstance(e, dict) and e.get("cat") == "kernel" for e in events)


def hta_breakdown(folder: Path) -> list[str]:
    """Lines of HTA's kernel breakdown (time per kernel type and the TOP_KERNELS longest kernels, us and %) and
    temporal breakdown (idle, compute and non-compute share of the GPU's time) of one point's trace folder."""
    from hta.trace_analysis import TraceAnalysis

    if not any(has_gpu_kernels(p) for p in folder.iterdir()):
        return [CPU_ONLY]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        analysis = TraceAnalysis(trace_dir=str(folder))
        by_type, kernels = analysis.get_gpu_kernel_breakdown(visualize=False, num_kernels=TOP_KERNELS)
        temporal = analysis.get_temporal_breakdown(visualize=False)
    if by_type.empty:
        return [CPU_ONLY]
    lines = ["  kernel time by type: " + ", ".join(
        f"{r.kernel_type.lower()} {r.sum:,.0f} us ({r.percentage:.1f}%)" for r in by_type.itertuples())]
    top = kernels.groupby("name", as_index=False)["sum (us)"].sum().sort_values("sum (us)", ascending=False)
    total = float(kernels["sum (us)"].sum()) or 1.0
    for name, us in zip(top.name.head(TOP_KERNELS), top["sum (us)"].head(TOP_KERNELS), strict=True):
        short = name if len(name) <= 60 else name[:57] + "..."
        lines.append(f"    {us:>12,.0f} us {100 * us / total:5.1f}%  {short}")
    t = temporal.iloc[0]
    lines.append(f"  temporal (GPU): idle {t.idle_time_pctg:.1f}%, compute {t.compute_time_pctg:.1f}%, "
                 f"non-compute {t.non_compute_time_pctg:.1f}% of the traced span")
    return lines


def hta_available() -> bool:
    """True when HolisticTraceAnalysis (module `hta`) is importable."""
    return importlib.util.find_spec("hta") is not None


def print_viewers(tb: Path, hta_dir: Path | None) -> None:
    """Print each point's trace files, how to open them in Perfetto, and (hta importable) HTA's breakdowns."""
    points = point_traces(tb)
    typer.echo(f"{len(points)} point trace(s) under {tb} (Chrome trace JSON, gzipped):")
    for point, files in points.items():
        for path in files:
            typer.echo(f"  {point}: {path}")
    typer.echo(f"Perfetto: open {PERFETTO} and drop a file on it (read in the browser, nothing uploaded); "
               "chrome://tracing opens the same files.")
    if not hta_available():
        typer.echo("HTA: not installed (pip install HolisticTraceAnalysis for each point's kernel and temporal "
                   "breakdown).")
        return
    with tempfile.TemporaryDirectory(prefix="mambaprof-hta-") as tmp:
        folders = hta_layout(points, hta_dir if hta_dir is not None else Path(tmp))
        where = f" (kept in {hta_dir})" if hta_dir is not None else ""
        typer.echo(f"HTA (HolisticTraceAnalysis): one folder per point{where}, "
                   "TraceAnalysis(trace_dir=FOLDER):")
        for point, folder in folders.items():
            typer.echo(f"{point}: {folder}" if hta_dir is not None else f"{point}:")
            try:
                lines = hta_breakdown(folder)
            except Exception as exc:  # noqa: BLE001  (HTA raises bare exceptions on traces it cannot parse)
                lines = [f"  HTA could not analyse it: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"]
            for line in lines:
                typer.echo(line)


def has_tensorboard_plugin() -> bool:
    """True when TensorBoard's PyTorch profiler plugin (torch-tb-profiler) is importable."""
    return importlib.util.find_spec("torch_tb_profiler") is not None


def start_tensorboard(tb: Path, port: int, log_path: Path) -> subprocess.Popen:
    """Start TensorBoard on HOST:port over `tb`, its output going to log_path."""
    if not has_tensorboard_plugin():
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
    hta_dir: Path | None = typer.Option(None, "--hta-dir", help="Keep the per-point folders HTA reads here (a new "
                                        "or empty folder; links to the trace files)."),
    tensorboard: bool | None = typer.Option(None, "--tensorboard/--no-tensorboard", help="Start TensorBoard's "
                                            "profiler plugin (default: where torch-tb-profiler is installed)."),
    debug: bool = DEBUG_OPTION,
) -> None:
    """List each point's trace (Perfetto opens them), print HTA's kernel and temporal breakdown per point (where
    HolisticTraceAnalysis is installed), and serve TensorBoard's profiler plugin on 127.0.0.1 where installed."""
    start_timeout = parse_number(start_timeout, "--start-timeout", positive=True, maximum=3600.0)
    tb = trace_dir(run)
    if port is not None:
        check_port(port)
    if tensorboard and not has_tensorboard_plugin():
        raise MambaprofError("TensorBoard's PyTorch profiler plugin (torch-tb-profiler) is not installed",
                             "pip install 'mambaprof[tb]', or use Perfetto or HTA (see the README)")
    print_viewers(tb, hta_dir)
    if tensorboard is False or (tensorboard is None and not has_tensorboard_plugin()):
        typer.echo("TensorBoard: not started (" + ("--no-tensorboard" if tensorboard is False else
                   "torch-tb-profiler, deprecated upstream, is not installed; pip install 'mambaprof[tb]'") + ").")
        return
    port = port if port is not None else free_port()
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
