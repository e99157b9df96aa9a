"""`mambaprof env`: device, driver, software versions and NVML availability."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from mambaprof.cli._app import app
from mambaprof.cli.options import DEBUG_OPTION
from mambaprof.env import collect_env


@app.command()
def env(
    as_json: bool = typer.Option(False, "--json", help="Print the facts as JSON."),
    debug: bool = DEBUG_OPTION,
) -> None:
    """Show the device, driver, torch/CUDA/transformers/mamba_ssm versions and whether NVML works."""
    facts = collect_env().as_dict()
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    table = Table(title="mambaprof env", show_header=False)
    table.add_column("fact", style="bold")
    table.add_column("value")
    for key, value in facts.items():
        table.add_row(key, "-" if value is None else str(value))
    Console().print(table)
