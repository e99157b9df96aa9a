"""Every sub-command, registered on the app, and `run`: the app with errors turned into one line."""

from __future__ import annotations

import sys

from mambaprof.cli import calibrate as _calibrate  # noqa: F401 - sub-commands register themselves on `app`
from mambaprof.cli import compare as _compare  # noqa: F401
from mambaprof.cli import env as _env  # noqa: F401
from mambaprof.cli import prune as _prune  # noqa: F401
from mambaprof.cli import report as _report  # noqa: F401
from mambaprof.cli import study as _study  # noqa: F401
from mambaprof.cli import trace as _trace  # noqa: F401
from mambaprof.cli import validate as _validate  # noqa: F401
from mambaprof.cli import view as _view  # noqa: F401
from mambaprof.cli._app import app
from mambaprof.errors import MambaprofError, StorageError
from mambaprof.run.sweep import STORAGE_ERRNOS


def print_error(text: str) -> None:
    """One `error: ...` line on stderr."""
    sys.stderr.write(f"error: {text}\n")
    sys.stderr.flush()


def run(args: list[str]) -> None:
    """Run the app on `args`; a MambaprofError or an unexpected exception becomes one line and an exit code
    (a traceback only with --debug). Interrupts (RunInterrupted) pass through to `mambaprof.cli.main`."""
    debug = "--debug" in args
    try:
        app(args=args, prog_name="mambaprof")
    except MambaprofError as exc:
        if debug:
            raise
        print_error(exc.one_line())
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print_error("interrupted by SIGINT")
        sys.exit(130)
    except OSError as exc:
        if debug or exc.errno not in STORAGE_ERRNOS:
            raise
        where = f" {exc.filename}" if exc.filename else ""
        print_error(f"could not write{where}: {exc.strerror or exc} (what was finished stays readable; free space "
                    "or fix the permissions, then write to a new --out)")
        sys.exit(StorageError.exit_code)
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, not a traceback
        if debug:
            raise
        text = str(exc).strip().splitlines()
        print_error(f"internal error: {type(exc).__name__}: {text[0] if text else ''} "
                    "(run with --debug for the traceback, and please report it)")
        sys.exit(1)
