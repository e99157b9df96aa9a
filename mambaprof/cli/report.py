"""`mambaprof report RUN`: the per-component report of one run, in the terminal, as HTML and as Parquet; for a
`mambaprof prune` run, the pruning what-if with each variant's own attribution."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from mambaprof.cli._app import app
from mambaprof.cli.options import DEBUG_OPTION
from mambaprof.errors import BadArgumentError

BASIS_HELP = ("Time basis: auto (kernel time on GPU, wall time on CPU), kernel (summed kernel durations) or wall "
              "(spans between component markers).")
PEAKS_HELP = ('JSON file of device peaks for the roofline: {"name": ..., "tflop_per_s": {"bfloat16": ...}, '
              '"gb_per_s": ...} (default: `mambaprof calibrate` result for the run\'s device, else the known-GPU '
              "table).")


BASIS_OPTION = typer.Option("auto", "--basis", help=BASIS_HELP)
PEAKS_OPTION = typer.Option(None, "--peaks", help=PEAKS_HELP)
CALIBRATION_OPTION = typer.Option(True, "--calibration/--no-calibration",
                                  help="Use a stored `mambaprof calibrate` result for the run's device.")
QUIET_OPTION = typer.Option(False, "--quiet", help="Print nothing but the files written.")


def terminal_console() -> Console:
    """A console for reports: the terminal's width, or 100 columns when the output is not a terminal."""
    console = Console()
    return console if console.is_terminal else Console(width=100)


def print_warnings(warnings: list[str]) -> None:
    """Each warning as one `warning: ...` line on stderr."""
    for line in warnings:
        typer.echo(f"warning: {line}", err=True)


@app.command("report")
def report_command(
    run: Path = typer.Argument(..., help="Run directory written by `mambaprof trace` or `mambaprof prune`."),
    html: Path | None = typer.Option(None, "--html", help="Also write a self-contained HTML report to FILE."),
    parquet: Path | None = typer.Option(None, "--parquet", help="Also write the summary tables to DIR "
                                        "(DIR/summary_*.parquet and DIR/README.md)."),
    per_layer: bool = typer.Option(False, "--per-layer", help="Add the per-layer breakdown (terminal and HTML)."),
    basis: str = BASIS_OPTION,
    peaks: Path | None = PEAKS_OPTION,
    calibration: bool = CALIBRATION_OPTION,
    quiet: bool = QUIET_OPTION,
    debug: bool = DEBUG_OPTION,
) -> None:
    """Attribution per component, regime, scaling and roofline of one run, or a prune run's what-if (never
    re-runs the model)."""
    from mambaprof.reports.render_html import render_report, write_html
    from mambaprof.reports.render_terminal import print_pruning_report, print_report
    from mambaprof.reports.run_analysis import RunAnalysis
    from mambaprof.reports.study import is_study_dir
    from mambaprof.reports.summary_parquet import write_summary
    from mambaprof.storage.outputs import check_html_output, check_summary_output

    if html is not None:
        check_html_output(html)
    if parquet is not None:
        check_summary_output(parquet)
    if is_study_dir(run):
        write_study_report(run, html, parquet, basis, peaks, calibration, quiet)
        return
    from mambaprof.reports.decode import is_decode_run

    if is_decode_run(run):
        _decode_report(run, html, parquet, peaks, quiet)
        return
    analysis = RunAnalysis(run, basis=basis, peaks_file=peaks, use_calibration=calibration)
    print_warnings(analysis.warnings)
    if not quiet:
        if analysis.pruning is not None:
            print_pruning_report(analysis, terminal_console(), per_layer=per_layer)
        else:
            print_report(analysis, terminal_console(), per_layer=per_layer)
    if html is not None:
        typer.echo(f"wrote {write_html(render_report(analysis, per_layer=per_layer), html)}")
    if parquet is not None:
        check_summary_output(parquet, subdirs=[str(v.data.variant) for v in analysis.variants.values()])
        written = write_summary(analysis, parquet)
        if analysis.pruning is not None:
            typer.echo(f"wrote summary_pruning and the summary tables of {len(analysis.variants)} variant(s) "
                       f"({', '.join(str(v.data.variant) for v in analysis.variants.values())}) to {parquet}")
        else:
            typer.echo(f"wrote {len(written) - 1} summary tables to {parquet}")


def _decode_report(run: Path, html: Path | None, parquet: Path | None, peaks: Path | None, quiet: bool) -> None:
    """The report of a `trace --phase decode` run (terminal, and HTML on request)."""
    from mambaprof.reports.decode import DecodeAnalysis
    from mambaprof.reports.render_html import render_decode_report, write_html
    from mambaprof.reports.render_terminal import print_decode_report

    if parquet is not None:
        raise BadArgumentError("--parquet summaries are not written for decode runs yet",
                               "its decode_points and decode_components tables are Parquet already")
    analysis = DecodeAnalysis.load(run, peaks_file=peaks)
    if not quiet:
        print_decode_report(analysis, terminal_console())
    if html is not None:
        typer.echo(f"wrote {write_html(render_decode_report(analysis), html)}")


def write_study_report(study_dir: Path, html: Path | None, parquet: Path | None, basis: str = "auto",
                       peaks: Path | None = None, calibration: bool = True, quiet: bool = False) -> None:
    """Report of a `mambaprof study` directory: findings in the terminal, one HTML page, per-model summaries."""
    from mambaprof.reports.render_html import render_study, write_html
    from mambaprof.reports.study import StudyAnalysis
    from mambaprof.reports.summary_parquet import write_summary
    from mambaprof.storage.outputs import check_html_output, check_summary_output

    if html is not None:
        check_html_output(html)
    study = StudyAnalysis(study_dir, basis=basis, peaks_file=peaks, use_calibration=calibration)
    for analysis in study.runs.values():
        print_warnings([f"{analysis.label}: {w}" for w in analysis.warnings])
    if not quiet:
        console = terminal_console()
        console.print(f"[bold]Study {study_dir}[/bold]: {', '.join(study.runs)}")
        for sentence in study.sentences():
            console.print(f" • {sentence}", highlight=False)
    if html is not None:
        typer.echo(f"wrote {write_html(render_study(study), html)}")
    if parquet is not None:
        check_summary_output(parquet, subdirs=list(study.runs))
        for name, analysis in study.runs.items():
            write_summary(analysis, Path(parquet) / name)
        typer.echo(f"wrote summary tables of {len(study.runs)} models to {parquet}")
