"""`mambaprof compare RUN_A RUN_B`: two runs aligned by point and component, with ratios B / A."""

from __future__ import annotations

from pathlib import Path

import typer

from mambaprof.cli._app import app
from mambaprof.cli.options import DEBUG_OPTION
from mambaprof.cli.report import (
    BASIS_OPTION,
    CALIBRATION_OPTION,
    PEAKS_OPTION,
    QUIET_OPTION,
    print_warnings,
    terminal_console,
)


@app.command("compare")
def compare_command(
    run_a: Path = typer.Argument(..., help="Baseline run directory (A), e.g. the Mamba-1 run."),
    run_b: Path = typer.Argument(..., help="Other run directory (B), e.g. the Mamba-2 run."),
    html: Path | None = typer.Option(None, "--html", help="Also write a self-contained HTML comparison to FILE."),
    basis: str = BASIS_OPTION,
    peaks: Path | None = PEAKS_OPTION,
    calibration: bool = CALIBRATION_OPTION,
    quiet: bool = QUIET_OPTION,
    debug: bool = DEBUG_OPTION,
) -> None:
    """Compare two runs (Mamba-1 vs Mamba-2, before vs after) component by component."""
    from mambaprof.reports.render_html import render_comparison, write_html
    from mambaprof.storage.outputs import check_html_output

    if html is not None:
        check_html_output(html)
    from mambaprof.reports.render_terminal import print_comparison
    from mambaprof.reports.run_analysis import RunComparison

    comparison = RunComparison(run_a, run_b, basis=basis, peaks_file=peaks, use_calibration=calibration)
    print_warnings(comparison.warnings)
    if not quiet:
        print_comparison(comparison, terminal_console())
    if html is not None:
        typer.echo(f"wrote {write_html(render_comparison(comparison), html)}")
