"""`mambaprof validate`: check run directories before anyone reads numbers from them."""

from __future__ import annotations

from pathlib import Path

import typer

from mambaprof.cli._app import app
from mambaprof.cli.options import DEBUG_OPTION

#: exit codes: every run valid / a run has warnings and --strict was given / a run has errors
EXIT_OK, EXIT_WARNINGS, EXIT_ERRORS = 0, 1, 2


@app.command("validate")
def validate_command(
    runs: list[Path] = typer.Argument(..., metavar="RUN...", help="Run directories (the --out of `mambaprof "
                                      "trace`, `prune` or one model's folder of a study)."),
    strict: bool = typer.Option(False, "--strict", help="Exit non-zero on warnings too (an incomplete run, "
                                "failed output checks, points missing against the run record)."),
    debug: bool = DEBUG_OPTION,
) -> None:
    """Check each run directory: schema version, required tables and columns, readable Parquet files, point
    counts against the run record, whether the run finished. Prints `ok`, or one line per problem
    (`error:` makes a report impossible, `warning:` is stated in a report); reads data only."""
    from mambaprof.reports.validate import validate_run

    worst = EXIT_OK
    for run in runs:
        result = validate_run(run)
        if result.errors:
            typer.echo(f"{run}: invalid ({len(result.errors)} error(s), {len(result.warnings)} warning(s))")
            worst = max(worst, EXIT_ERRORS)
        elif result.warnings:
            typer.echo(f"{run}: readable, {len(result.warnings)} warning(s)")
            worst = max(worst, EXIT_WARNINGS if strict else EXIT_OK)
        else:
            typer.echo(f"{run}: ok")
        for problem in result.problems:
            typer.echo(f"  {problem.severity}: {problem.one_line()}")
    if worst:
        raise typer.Exit(worst)
