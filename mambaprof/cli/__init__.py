"""The `mambaprof` command line (typer). Each sub-command lives in its own module here.

The top layer: it may import every other package. Every user-facing failure is one line on stderr
(`error: ...`) and a non-zero exit; a traceback is printed only with `--debug`.
"""

from __future__ import annotations

import sys

import typer

from mambaprof.errors import MambaprofError

app = typer.Typer(
    name="mambaprof",
    help="Profile selective state-space models (Mamba-1, Mamba-2, hybrids) component by component.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# sub-commands register themselves on `app` when imported
from mambaprof.cli import calibrate as _calibrate  # noqa: E402,F401
from mambaprof.cli import compare as _compare  # noqa: E402,F401
from mambaprof.cli import env as _env  # noqa: E402,F401
from mambaprof.cli import prune as _prune  # noqa: E402,F401
from mambaprof.cli import report as _report  # noqa: E402,F401
from mambaprof.cli import study as _study  # noqa: E402,F401
from mambaprof.cli import trace as _trace  # noqa: E402,F401
from mambaprof.cli import validate as _validate  # noqa: E402,F401
from mambaprof.cli import view as _view  # noqa: E402,F401


def _print_error(text: str) -> None:
    sys.stderr.write(f"error: {text}\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning errors into one line and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        app(args=args, prog_name="mambaprof")
    except MambaprofError as exc:
        if debug:
            raise
        _print_error(exc.one_line())
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _print_error("interrupted")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, not a traceback
        if debug:
            raise
        text = str(exc).strip().splitlines()
        _print_error(f"internal error: {type(exc).__name__}: {text[0] if text else ''} "
                     "(run with --debug for the traceback, and please report it)")
        sys.exit(1)
