"""The `mambaprof` command line (typer). Each sub-command lives in its own module here.

The top layer: it may import every other package. Every user-facing failure is one line on stderr
(`error: ...`) and a non-zero exit; a traceback is printed only with `--debug`.

This module stays light on purpose: `main` installs the SIGINT/SIGTERM handling before anything heavy
(typer, torch, transformers) is imported, so an interrupt at any moment, the first second included, ends
the command with one line and exit 130 / 143, never a traceback.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import Any

from mambaprof.errors import RunInterrupted, inside_import


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    exc = RunInterrupted(signal.Signals(signum).name)
    if inside_import(frame):
        # An exception raised here can cross a native extension's initialisation (torch's pybind11 modules),
        # which cannot pass it on and aborts the process (seen: "terminate called after throwing an instance of
        # 'pybind11::error_already_set'", exit -6). An import writes nothing of the user's: stop right here.
        _ignore_stop_signals()
        os.write(2, f"error: interrupted by {exc.signame}\n".encode())
        os._exit(exc.exit_code)
    raise exc


def install_interrupt_handlers() -> None:
    """SIGINT and SIGTERM raise RunInterrupted (main thread only; elsewhere nothing changes)."""
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _raise_interrupt)
    except ValueError:  # not the main thread
        pass


def _ignore_stop_signals() -> None:
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
    except ValueError:
        pass


def _restore(previous: dict[int, Any]) -> None:
    """Put back the handlers main() found (it also runs in-process, from tests and scripts), where ours is still
    installed: a command that is ending because it was signalled ignores later signals (a repeated SIGTERM
    from `timeout` must not kill it before it exits 143), and that stays so."""
    try:
        for sig, handler in previous.items():
            if signal.getsignal(sig) is _raise_interrupt:
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
    except ValueError:
        pass


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning errors into one line and an exit code (130 SIGINT, 143 SIGTERM)."""
    args = list(sys.argv[1:] if argv is None else argv)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    install_interrupt_handlers()
    try:
        from mambaprof.cli.commands import run

        run(args)
        _restore(previous)
    except SystemExit:
        _restore(previous)
        raise
    except RunInterrupted as exc:
        _ignore_stop_signals()  # stopping as asked: a repeated signal must not cut the line short
        sys.stderr.write(f"error: interrupted by {exc.signame}\n")
        sys.stderr.flush()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:  # a handler of a library replaced ours
        _ignore_stop_signals()
        sys.stderr.write("error: interrupted by SIGINT\n")
        sys.stderr.flush()
        sys.exit(130)


def __getattr__(name: str) -> Any:
    """`mambaprof.cli.app`: the typer app with every sub-command registered (imported on first use)."""
    if name == "app":
        from mambaprof.cli import commands

        return commands.app
    raise AttributeError(f"module 'mambaprof.cli' has no attribute {name!r}")
