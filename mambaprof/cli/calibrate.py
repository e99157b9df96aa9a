"""`mambaprof calibrate`: measure copy bandwidth and GEMM throughput of the present device for the roofline."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from mambaprof.cli._app import app
from mambaprof.cli.options import DEBUG_OPTION


@app.command("calibrate")
def calibrate_command(
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    dtypes: str | None = typer.Option(None, "--dtypes", help="GEMM dtypes, e.g. bf16,fp16,fp32 (default: those "
                                      "three on GPU, fp32 on CPU)."),
    out: Path | None = typer.Option(None, "--out", help="Also write the peaks to FILE (JSON, for "
                                    "`mambaprof report --peaks FILE`)."),
    store: bool = typer.Option(True, "--store/--no-store", help="Store the result in the user config directory, "
                               "where reports of runs from this device find it."),
    quick: bool = typer.Option(False, "--quick", help="Small sizes, few repeats (seconds; lower-bound numbers)."),
    debug: bool = DEBUG_OPTION,
) -> None:
    """Measure the device's copy bandwidth (GB/s) and GEMM throughput (TFLOP/s per dtype): CUDA events on a
    GPU, perf_counter on the CPU, fastest of the repeats after warm-up."""
    from dataclasses import asdict

    from mambaprof.collectors.calibration import calibrate
    from mambaprof.model.loading import resolve_device
    from mambaprof.reports.calibration import calibrated_peaks, store_calibration
    from mambaprof.reports.peaks import canonical_dtype
    from mambaprof.storage.outputs import check_peaks_output, write_text_atomic

    if out is not None:
        check_peaks_output(out)
    dev = resolve_device(device)
    wanted = [canonical_dtype(d) for d in dtypes.split(",") if d.strip()] if dtypes else None
    console = Console(stderr=True)
    with console.status("calibrating") as status:
        name, measurements = calibrate(dev, wanted, quick=quick,
                                       progress=lambda what: status.update(f"calibrating: {what}"))
    peaks = calibrated_peaks(name, [asdict(m) for m in measurements])
    table = Table(title=f"mambaprof calibrate: {peaks.name} ({dev})")
    for col in ("measurement", "size", "median ms", "best ms", "rate"):
        table.add_column(col, justify="left" if col == "measurement" else "right")
    for m in measurements:
        table.add_row(m.what, m.size, f"{m.median_ms:.3f}", f"{m.best_ms:.3f}", f"{m.rate:,.3g} {m.unit}")
    Console().print(table)
    if store:
        typer.echo(f"stored in {store_calibration(peaks, [asdict(m) for m in measurements])}")
    if out is not None:
        write_text_atomic(out, json.dumps({"name": peaks.name, "tflop_per_s": peaks.tflop_per_s,
                                           "gb_per_s": peaks.gb_per_s, "source": peaks.source}, indent=2) + "\n")
        typer.echo(f"wrote {out}")
