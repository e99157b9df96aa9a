"""The typer application every sub-command registers itself on (`mambaprof.cli.commands` imports them all)."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="mambaprof",
    help="Profile selective state-space models (Mamba-1, Mamba-2, hybrids) component by component.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
