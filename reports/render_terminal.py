"""Terminal renderer: rich tables, readable at 100 columns."""

from __future__ import annotations

from rich import box
from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from mambaprof.reports import hybrids, pruning, views
from mambaprof.reports.attribution import BLOCK_FAMILIES
from mambaprof.reports.decode import DecodeAnalysis, decode_views
from mambaprof.reports.decode import run_facts as decode_facts
from mambaprof.reports.run_analysis import RunAnalysis, RunComparison


def _table(view: views.View, columns: list[int], wrap: bool) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), show_edge=False)
    for i in columns:
        table.add_column(view.headers[i], justify="left" if i == 0 else "right", no_wrap=not wrap or i < view.keys,
                         overflow="fold")
    for row in view.rows:
        table.add_row(*[row[i] for i in columns])
    return table


def _natural_width(console: Console, table: Table) -> int:
    return Measurement.get(console, console.options.update_width(10_000), table).maximum


def column_groups(view: views.View, console: Console) -> list[list[int]]:
    """Split a view's columns into groups that each fit the console's width unwrapped, every group led by
    the view's key columns; one group when the whole table fits. Each column is measured once (a table's
    width is its columns' widths plus a constant gap between columns), so a 1,000-row table stays fast."""
    n = len(view.headers)
    keys = list(range(min(view.keys, n)))
    widths = [_natural_width(console, _table(view, [i], False)) for i in range(n)]
    gap = _natural_width(console, _table(view, [0, 1], False)) - widths[0] - widths[1] if n > 1 else 0

    def width(columns: list[int]) -> int:
        return sum(widths[i] for i in columns) + gap * (len(columns) - 1)

    groups: list[list[int]] = [list(keys)]
    for i in range(len(keys), n):
        candidate = [*groups[-1], i]
        if len(groups[-1]) > len(keys) and width(candidate) > console.width:
            groups.append([*keys, i])
        else:
            groups[-1] = candidate
    return groups


def rich_table(view: views.View, console: Console) -> Group:
    """A View as its title line, rich Table(s) (first column left, numbers right) and its caption. A table
    wider than the console is split into column groups that each repeat the key columns, so no header or
    number is ever broken across lines; only a single column wider than the console wraps."""
    parts: list[RenderableType] = [Text(view.title, style="bold")]
    groups = column_groups(view, console)
    for n, columns in enumerate(groups):
        table = _table(view, columns, False)
        if _natural_width(console, table) > console.width:
            table = _table(view, columns, True)
        if n:
            parts += [Text(""), Text(f"{view.title} (continued)", style="dim")]
        parts.append(table)
    if view.caption:
        parts.append(Text(view.caption, style="dim"))
    return Group(*parts)


def _facts(console: Console, pairs: list[tuple[str, str]]) -> None:
    grid = Table(show_header=False, box=None, pad_edge=False)
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for name, value in pairs:
        grid.add_row(name, value)
    console.print(grid)
    console.print()


def _bullets(console: Console, title: str, lines: list[str], style: str = "") -> None:
    if not lines:
        return
    console.print(Text(title, style="bold"))
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for line in lines:
        grid.add_row("•", Text(line, style=style))
    console.print(grid)
    console.print()


def _longest_points(analysis: RunAnalysis) -> list[tuple[str, int, int]]:
    comps = analysis.components
    block = comps[comps.family.isin(BLOCK_FAMILIES)]
    out = []
    for (family, batch), grp in block.groupby(["family", "batch"]):
        out.append((str(family), int(batch), int(grp.seqlen.max())))
    return out


def print_report(analysis: RunAnalysis, console: Console, per_layer: bool = False) -> None:
    """The whole report of one run: facts, warnings, findings, attribution at the longest point, shares by
    sequence length, regime per point, scaling exponents (and per layer on demand)."""
    console.rule(f"[bold]mambaprof report: {analysis.label}")
    _facts(console, views.run_facts(analysis))
    _bullets(console, "Warnings", analysis.warnings, style="yellow")
    _bullets(console, "Findings", analysis.sentences())
    for family, batch, seqlen in _longest_points(analysis):
        console.print(rich_table(views.attribution_view(analysis.components, family, batch, seqlen, analysis.basis,
                                                        compact=True), console))
        console.print()
        console.print(rich_table(views.share_matrix(analysis.components, analysis.scaling, family, batch,
                                                    analysis.basis), console))
        console.print()
    model_rows = analysis.components[analysis.components.family == "model"]
    if not model_rows.empty:
        batch = int(model_rows.batch.max())
        seqlen = int(model_rows[model_rows.batch == batch].seqlen.max())
        console.print(rich_table(views.attribution_view(analysis.components, "model", batch, seqlen, analysis.basis,
                                                        compact=True), console))
        console.print()
    console.print(rich_table(views.points_view(analysis.points, analysis.data.on_gpu), console))
    console.print()
    console.print(rich_table(views.scaling_view(analysis.scaling, analysis.crossovers, analysis.basis), console))
    hybrid = hybrids.maybe_view(analysis.run_dir, analysis.basis)
    if hybrid is not None:
        _bullets(console, "Hybrid view (layer kinds)", hybrids.format_view(hybrid))
    if per_layer:
        for batch in sorted(analysis.layers.batch.unique()):
            seqlen = int(analysis.layers[analysis.layers.batch == batch].seqlen.max())
            console.print()
            console.print(rich_table(views.layers_view(analysis.layers, int(batch), seqlen, analysis.basis), console))


def print_comparison(comparison: RunComparison, console: Console) -> None:
    """Two runs side by side: warnings, headline findings, ratio matrix per batch, the longest common point
    in detail, and whole-forward times per point."""
    la, lb = comparison.labels
    console.rule(f"[bold]mambaprof compare: A = {la}  vs  B = {lb}")
    _bullets(console, "Warnings", comparison.warnings, style="yellow")
    _bullets(console, "Findings", comparison.sentences())
    aligned = comparison.components
    both = aligned.dropna(subset=["a_ms", "b_ms"])
    for batch in sorted(aligned.batch.unique()):
        console.print(rich_table(views.comparison_matrix(aligned, int(batch), la, lb), console))
        console.print()
        common = both[both.batch == batch]
        if not common.empty:
            seqlen = int(common.seqlen.max())
            view = views.comparison_view(aligned, int(batch), seqlen, la, lb, comparison.basis)
            console.print(rich_table(view, console))
            console.print()
    console.print(rich_table(views.compare_points_view(comparison.points, la, lb), console))
    crossings = hybrids.prefill_crossovers(comparison.a.points, comparison.b.points, comparison.a.record,
                                           comparison.b.record, la, lb, comparison.basis)
    if crossings:
        console.print()
        _bullets(console, "Transformer vs Mamba: prefill crossover",
                 hybrids.format_prefill_crossovers(crossings))


def print_pruning_report(analysis: RunAnalysis, console: Console, per_layer: bool = False) -> None:
    """The report of a prune run: facts, caveat, warnings, findings, the what-if table, throughput by
    length, the score verdicts, per-variant component times and points (and per-variant layers)."""
    pr = analysis.pruning
    assert pr is not None, "not a prune run"
    console.rule(f"[bold]mambaprof report: {analysis.data.model_label} · pruning what-if")
    _facts(console, views.pruning_facts(analysis))
    if pr.caveat:
        console.print(Text(f"CAVEAT: {pr.caveat}", style="bold red"))
        console.print()
    _bullets(console, "Warnings", analysis.warnings, style="yellow")
    _bullets(console, "Findings", [f.text for f in analysis.pruning_findings()])
    tables = [views.pruning_summary_view(pr.table), views.pruning_throughput_view(pr.table),
              views.pruning_winners_view(pr.table), views.pruning_component_view(analysis),
              views.pruning_points_view(analysis)]
    if per_layer:
        for variant in pruning.timed_variants(analysis).values():
            lv = variant.layers
            batch = int(lv.batch.max())
            view = views.layers_view(lv, batch, int(lv[lv.batch == batch].seqlen.max()), analysis.basis)
            view.title = f"{variant.data.variant}: {view.title}"
            tables.append(view)
    for view in tables:
        if view is not None:
            console.print(rich_table(view, console))
            console.print()


def print_decode_report(analysis: DecodeAnalysis, console: Console) -> None:
    """A decode run's report: facts, warnings, findings, the decode tables."""
    console.rule(f"[bold]mambaprof decode report: {analysis.record.get('model_ref')}")
    _facts(console, decode_facts(analysis))
    _bullets(console, "Warnings", analysis.warnings, style="yellow")
    _bullets(console, "Findings", analysis.sentences())
    for view in decode_views(analysis):
        console.print(rich_table(view, console))
        console.print()
