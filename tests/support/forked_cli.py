"""Run the mambaprof CLI in a fresh process forked from a warm one, without paying the imports again.

`python -m mambaprof ...` spends 2-4 s of CPU importing torch and transformers before it looks at its
arguments; the bad-input and run-directory suites run it dozens of times. `ForkedCli` keeps one helper
process per test process (the "zygote") that has imported mambaprof's CLI with its sub-commands and report
modules and the transformers Mamba models, and never run anything. Each call forks a child of it, which
sets argv, the working directory and the environment, sends its stdout/stderr (file descriptors 1 and 2)
to files, runs `mambaprof.cli.main` and exits with its exit code, the way `python -m mambaprof ARGS` would
after its imports. What the tests see (exit code, every byte written to stdout and stderr, files written)
is the child's own.

What a forked child does not re-check is the import of the package itself; every command keeps at least
one test through `support.cli.run_cli` (a real `python -m mambaprof` subprocess) for that.

A hang is caught by pytest-timeout; the caller's exception kills the child and the zygote (a new zygote
starts on the next call).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from support.cli import CliResult

# The zygote: import, then serve requests on stdin (one JSON line each), one child at a time. For each
# request it writes the child's pid, then (once the child exited) its exit code, one line each.
_ZYGOTE = r'''
import json, os, sys, traceback
sys.path[0] = os.getcwd()  # as `python -m` puts the working directory first
os.environ.setdefault("KINETO_LOG_LEVEL", "5")
import mambaprof.cli
from mambaprof.cli import main
import transformers.models.mamba.modeling_mamba, transformers.models.mamba2.modeling_mamba2  # noqa: F401
# what every call would import again (about 1 s each): the sub-commands (main's first import), the report
# modules (matplotlib) that report/compare/prune/study import on use, the option coercion typer imports
# (pydantic); importing them runs no torch op, so no intra-op thread pool exists when the zygote forks
import mambaprof.cli.commands  # noqa: F401
import mambaprof.reports.render_html, mambaprof.reports.render_terminal  # noqa: F401
import mambaprof.reports.summary_parquet, mambaprof.reports.validate, mambaprof.storage.outputs  # noqa: F401
try:
    import typer._adapters  # noqa: F401
except ImportError:
    pass
reply = os.fdopen(os.dup(1), "w", buffering=1)
requests = os.fdopen(os.dup(0), "r")
null = os.open(os.devnull, os.O_RDONLY)
os.dup2(null, 0)
os.dup2(2, 1)  # the zygote itself prints nothing; a child re-points 1 and 2 at its own files
reply.write("ready\n")
for line in requests:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            requests.close(); reply.close()
            out = os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            err = os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(out, 1); os.dup2(err, 2); os.close(out); os.close(err)
            os.setsid()  # its own process group, as a process started by the test would be killed as one
            os.environ.clear(); os.environ.update(req["env"])
            os.chdir(req["cwd"])
            sys.argv = ["mambaprof", *req["args"]]
            try:
                import numpy
                numpy.random.seed()  # fresh entropy, as a new process would have
            except ImportError:
                pass
            try:
                main(req["args"])
                code = 0
            except SystemExit as exc:
                c = exc.code
                code = 0 if c is None else c if isinstance(c, int) else 1
                if not isinstance(c, (int, type(None))):
                    print(c, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
                code = 1
        finally:
            try:
                sys.stdout.flush(); sys.stderr.flush()
            finally:
                os._exit(code)
    reply.write(f"{pid}\n")
    _, status = os.waitpid(pid, 0)
    reply.write(f"{os.waitstatus_to_exitcode(status)}\n")
'''


class ForkedCli:
    """`python -m mambaprof ARGS` as a forked child of a warm helper process (see the module docstring)."""

    def __init__(self) -> None:
        self._zygote: subprocess.Popen[str] | None = None

    def _start(self) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-c", _ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True, env={**os.environ, "KINETO_LOG_LEVEL": "5"}, start_new_session=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line != "ready\n":
            proc.kill()
            raise RuntimeError(f"the CLI zygote did not start (it said {line!r}, exit {proc.wait()})")
        return proc

    def close(self) -> None:
        """Stop the helper process."""
        if self._zygote is not None:
            self._zygote.kill()
            self._zygote.wait()
            self._zygote = None

    def __call__(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> CliResult:
        """Run `mambaprof ARGS` (in `cwd`, with `env` added to the environment) in a forked child."""
        if self._zygote is None or self._zygote.poll() is not None:
            self._zygote = self._start()
        zygote = self._zygote
        assert zygote.stdin is not None and zygote.stdout is not None
        with tempfile.TemporaryDirectory(prefix="mambaprof-cli-") as tmp:
            out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
            request = {"args": list(args), "cwd": str(cwd or Path.cwd()), "stdout": str(out), "stderr": str(err),
                       "env": {**os.environ, "KINETO_LOG_LEVEL": "5", **(env or {})}}
            pid = None
            try:
                zygote.stdin.write(json.dumps(request) + "\n")
                zygote.stdin.flush()
                pid = int(zygote.stdout.readline())
                code = int(zygote.stdout.readline())
            except BaseException:  # a timeout (pytest-timeout) or a broken zygote: kill both, start afresh next time
                if pid is not None:
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.close()
                raise
            return CliResult(code, out.read_text(), err.read_text())
