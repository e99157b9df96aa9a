"""Reliability suite: every case runs for real; the summary counts cases tried and passed per category.

Mark a test with `@pytest.mark.reliability("category")`; pytest's terminal summary then prints one
line per category, e.g. `reliability bad-input: 24 tried, 24 passed`.
"""

from __future__ import annotations

from collections import Counter

import pytest

_TRIED: Counter[str] = Counter()
_PASSED: Counter[str] = Counter()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "reliability(category): a reliability case, counted per category")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("reliability")
    if marker is not None and report.when == "call":
        # user_properties travel with the report to pytest-xdist's controller, where the counting happens
        report.user_properties.append(("reliability", marker.args[0]))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count each reliability case once, in the process that prints the summary (xdist's controller too)."""
    if report.when != "call":
        return
    category = next((value for key, value in report.user_properties if key == "reliability"), None)
    if category is None:
        return
    _TRIED[category] += 1
    if report.passed:
        _PASSED[category] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _TRIED:
        return
    terminalreporter.section("reliability cases")
    for category in sorted(_TRIED):
        terminalreporter.write_line(f"reliability {category}: {_TRIED[category]} tried, {_PASSED[category]} passed")
