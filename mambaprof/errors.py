"""User-facing errors: each carries a one-line message saying what was wrong, where, and what to do.

The CLI prints these as a single line and exits non-zero; anything else is a bug and gets a
traceback only under `--debug`.
"""

from __future__ import annotations

from types import FrameType


def inside_import(frame: FrameType | None) -> bool:
    """Whether code interrupted at `frame` runs inside an import (importlib's frames are on the stack). An
    exception raised there can cross a native extension's initialisation (torch's pybind11 modules), which
    cannot pass it on and aborts the process."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


class MambaprofError(Exception):
    """An error the user can act on. `exit_code` is what the CLI exits with."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.one_line()

    def one_line(self) -> str:
        """The message and hint joined on one line, as the CLI prints it."""
        text = self.message.replace("\n", " ").strip()
        if self.hint:
            text = f"{text} ({self.hint.strip()})"
        return text


class ModelLoadError(MambaprofError):
    """The model file, checkpoint or preset could not be turned into an nn.Module."""


class UnsupportedModelError(MambaprofError):
    """The model has no Mamba mixer that an adapter supports."""


class BadArgumentError(MambaprofError):
    """A command-line value (seqlens, batches, dtype, paths...) is invalid."""


class StorageError(MambaprofError):
    """Results could not be written (disk full, file-size limit, read-only or vanished directory).

    The sweep stops; what was already written stays readable.
    """

    exit_code = 4


class RunDirectoryError(MambaprofError):
    """A run directory is missing, incomplete, corrupted or from a newer schema."""


class RunInterrupted(BaseException):
    """SIGINT or SIGTERM arrived: the command stops (exit 128 + the signal's number) after recording how it
    ended. A BaseException, so that no `except Exception` of a model's or library's code swallows it."""

    def __init__(self, signame: str) -> None:
        super().__init__(signame)
        self.signame = signame

    @property
    def exit_code(self) -> int:
        """128 + the signal's number: 130 for SIGINT, 143 for SIGTERM (what a shell reports)."""
        return 128 + {"SIGINT": 2, "SIGTERM": 15, "SIGHUP": 1}.get(self.signame, 2)


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message`."""
    if isinstance(exc, MambaprofError):
        return exc.one_line()
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
