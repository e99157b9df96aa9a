"""The HTML report in a real headless Chromium: no console errors or exceptions, nothing fetched, every
plot rendered with a real size, and a full-page screenshot saved (to $MAMBAPROF_SCREENSHOT_DIR too,
when set, for a developer to look at).

Skipped without Chromium, unless MAMBAPROF_REQUIRE_CHROMIUM=1 (CI sets it), where it fails instead."""

import os
import shutil
from pathlib import Path

import pytest
from support.browser import find_chromium, render_page
from support.synthetic_runs import Spec, hardware_tables, make_run

from mambaprof.reports.render_html import render_comparison, render_report, write_html
from mambaprof.reports.run_analysis import RunAnalysis, RunComparison

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def chromium():
    path = find_chromium()
    if path is None:
        if os.environ.get("MAMBAPROF_REQUIRE_CHROMIUM") == "1":
            pytest.fail("MAMBAPROF_REQUIRE_CHROMIUM=1 but no Chromium found (apt-get install chromium)")
        pytest.skip("no Chromium (apt-get install chromium)")
    return path


def keep(screenshot: Path) -> None:
    target = os.environ.get("MAMBAPROF_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(target) / screenshot.name)


def test_the_check_catches_errors(chromium, tmp_path):
    """Control: a page with a console error, an exception and a fetch is reported as broken."""
    page = tmp_path / "broken.html"
    page.write_text('<html><body><figure class="plot" data-plot="x"><svg width="10" height="10"></svg></figure>'
                    '<img src="https://example.invalid/x.png"><script>console.error("boom"); nope();</script>'
                    "</body></html>")
    report = render_page(page, chromium=chromium)
    assert report.console_errors == ["boom"]
    assert any("nope" in e for e in report.exceptions)
    assert report.external_requests == ["https://example.invalid/x.png"]
    assert report.plots == [{"name": "x", "width": 10, "height": 10, "marks": 0}]


def _check(report, expected_plots):
    assert report.errors == [], report.errors
    assert report.external_requests == []
    names = [p["name"] for p in report.plots]
    assert names == expected_plots
    for plot in report.plots:
        assert plot["width"] > 300 and plot["height"] > 200, plot
        assert plot["marks"] > 30, plot  # axes, bars, lines, text


def test_report_page_renders_in_chromium(chromium, tmp_path):
    run = make_run(tmp_path / "run", Spec(families=("mamba1", "mamba2"), launch_overhead_ms=30.0),
                   extra_tables=hardware_tables)
    page = write_html(render_report(RunAnalysis(run, use_calibration=False), per_layer=True), tmp_path / "report.html")
    shot = tmp_path / "report.png"
    report = render_page(page, screenshot=shot, chromium=chromium)
    _check(report, ["stacked", "regime", "scaling", "roofline"])
    assert report.title == "mambaprof report: synthetic-m1"
    assert shot.read_bytes()[:8] == PNG_MAGIC and shot.stat().st_size > 50_000
    assert report.page_height > 2000
    keep(shot)


def test_comparison_page_renders_in_chromium(chromium, tmp_path):
    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "b", Spec(families=("mamba2", "mamba2"), model_ref="synthetic-m2"))
    page = write_html(render_comparison(RunComparison(a, b, use_calibration=False)), tmp_path / "compare.html")
    shot = tmp_path / "compare.png"
    report = render_page(page, screenshot=shot, chromium=chromium)
    _check(report, ["ratio"] + ["stacked", "regime", "scaling", "roofline"] * 2)
    assert shot.read_bytes()[:8] == PNG_MAGIC
    keep(shot)
