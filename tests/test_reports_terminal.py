"""The terminal report at 100 columns: wide tables are split into column groups, never broken cells."""

from rich.console import Console
from support.synthetic_runs import L_MAX, hardware_tables, make_run

from mambaprof.reports import views
from mambaprof.reports.render_terminal import column_groups, print_report
from mambaprof.reports.run_analysis import RunAnalysis


def _report_text(analysis: RunAnalysis, width: int) -> str:
    console = Console(width=width, record=True, color_system=None)
    print_report(analysis, console)
    return console.export_text()


def test_every_header_and_number_stays_whole_at_100_columns(tmp_path):
    analysis = RunAnalysis(make_run(tmp_path / "run", extra_tables=hardware_tables), use_calibration=False)
    text = _report_text(analysis, 100)
    lines = text.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 100
    wide = views.attribution_view(analysis.components, "mamba1", 8, L_MAX, analysis.basis, compact=True)
    points = views.points_view(analysis.points, analysis.data.on_gpu)
    for view in (wide, points):
        for header in view.headers:
            assert any(header in line for line in lines), header
        for row in view.rows:
            for cell in row[1:]:
                # the cell is printed whole on a line of its row (the key cell leads every column group)
                assert any(line.startswith(row[0]) and f" {cell}" in line for line in lines), (row[0], cell)
    assert f"{wide.title} (continued)" in text  # 14 columns do not fit in 100: split, not folded


def test_a_table_that_fits_is_not_split(tmp_path):
    analysis = RunAnalysis(make_run(tmp_path / "run", extra_tables=hardware_tables), use_calibration=False)
    view = views.attribution_view(analysis.components, "mamba1", 8, L_MAX, analysis.basis, compact=True)
    assert column_groups(view, Console(width=400)) == [list(range(len(view.headers)))]
    groups = column_groups(view, Console(width=100))
    assert len(groups) > 1 and all(g[0] == 0 for g in groups)
    assert sorted(i for g in groups for i in g[1:]) == list(range(1, len(view.headers)))
    points = views.points_view(analysis.points, analysis.data.on_gpu)
    assert all(g[:2] == [0, 1] for g in column_groups(points, Console(width=100)))  # batch and seqlen lead
