"""Damaged, partial and foreign run directories: `mambaprof validate` names the problem, `mambaprof report`
refuses with one line (or reads past what it can), and neither ever shows a traceback."""

from __future__ import annotations

import os
import shutil
import socket

import pyarrow.parquet as pq
import pytest
from support.reliability import FAST, TINY_HF, assert_one_line_error, write

from mambaprof.storage.rundir import read_run_record

pytestmark = pytest.mark.reliability("run-dirs")


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    from support.cli import run_cli

    base = tmp_path_factory.mktemp("good")
    model = write(base, TINY_HF)
    res = run_cli("trace", str(model), "--out", str(base / "run"), "--seqlens", "16,32", *FAST)
    assert res.returncode == 0, res.stderr
    return base / "run"


@pytest.fixture
def run(good_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(good_run, copy)
    return copy


def _validate(cli, run, *extra):
    res = cli("validate", str(run), *extra)
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
    return res


def test_an_intact_run_is_ok(cli, run):
    res = _validate(cli, run, "--strict")
    assert res.returncode == 0 and res.stdout.strip() == f"{run}: ok", res.stdout


def test_truncated_table_file(cli, run):
    part = sorted((run / "points").glob("part-*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:200])
    res = _validate(cli, run)
    assert res.returncode == 2 and "invalid" in res.stdout and "truncated or corrupted" in res.stdout, res.stdout
    assert_one_line_error(cli("report", str(run)), "truncated or corrupted")


def test_truncated_file_of_a_table_the_report_does_not_read(cli, run):
    part = sorted((run / "kernels").glob("part-*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:100])
    res = _validate(cli, run)
    assert res.returncode == 0 and f"warning: {part}: is truncated or corrupted" in res.stdout, res.stdout
    assert _validate(cli, run, "--strict").returncode == 1
    rep = cli("report", str(run))  # the report does not need the kernels table: it reads past, and says so
    assert rep.returncode == 0 and "truncated or corrupted" in rep.stdout + rep.stderr


def test_missing_table(cli, run):
    shutil.rmtree(run / "components")
    res = _validate(cli, run)
    assert res.returncode == 2 and "components: is missing" in res.stdout, res.stdout
    assert_one_line_error(cli("report", str(run)), "components")


def test_newer_schema_version(cli, run):
    part = sorted((run / "components").glob("part-*.parquet"))[0]
    table = pq.read_table(part)
    meta = dict(table.schema.metadata or {})
    meta[b"mambaprof.schema_version"] = b"99"
    pq.write_table(table.replace_schema_metadata(meta), part)
    res = _validate(cli, run)
    assert res.returncode == 2 and "schema version 99" in res.stdout, res.stdout
    assert_one_line_error(cli("report", str(run)), "newer than this mambaprof")


def test_run_still_being_written(cli, run):
    record = read_run_record(run)
    table = pq.read_table(run / "runs")
    status = table.column_names.index("status")
    pid = table.column_names.index("pid")
    host = table.column_names.index("hostname")
    table = table.set_column(status, "status", [["running"]]).set_column(pid, "pid", [[os.getpid()]])
    table = table.set_column(host, "hostname", [[socket.gethostname()]])
    shutil.rmtree(run / "runs")
    (run / "runs").mkdir()
    pq.write_table(table, run / "runs" / "part-run.parquet")
    assert read_run_record(run)["run_id"] == record["run_id"]
    res = _validate(cli, run)
    assert res.returncode == 0 and "still being written" in res.stdout, res.stdout
    assert _validate(cli, run, "--strict").returncode == 1
    rep = cli("report", str(run))
    assert rep.returncode == 0 and "still being written" in rep.stdout + rep.stderr


def test_points_missing_against_the_run_record(cli, run):
    for table in ("points", "components"):
        sorted((run / table).glob("part-*.parquet"))[-1].unlink()
    res = _validate(cli, run)
    assert res.returncode == 0 and "the run record counts 2 ok point(s), the points table has 1" in res.stdout, \
        res.stdout
    rep = cli("report", str(run))
    assert rep.returncode == 0 and "the run record counts 2 ok point(s)" in rep.stdout + rep.stderr


@pytest.mark.parametrize("kind", ["empty-folder", "file", "missing"])
def test_not_a_run_directory(cli, tmp_path, kind):
    target = tmp_path / "target"
    if kind == "empty-folder":
        target.mkdir()
    elif kind == "file":
        target.write_text("not a run")
    res = _validate(cli, target)
    expect = {"empty-folder": "is not a mambaprof run directory", "file": "is a file",
              "missing": "does not exist"}[kind]
    assert res.returncode == 2 and expect in res.stdout, res.stdout
    assert_one_line_error(cli("report", str(target)), expect)
