import os

import pytest

from mambaprof.errors import RunDirectoryError
from mambaprof.storage import rundir
from mambaprof.storage.rundir import RunWriter, read_run_record, read_table

ROW = {"rank": 0, "world_size": 1, "point_id": 0, "device": "cpu", "batch": 1, "seqlen": 64, "dtype": "float32",
       "layer": 0, "component": "ssm_scan", "wall_ms_median": 1.5}


def test_round_trip(tmp_path):
    w = RunWriter(tmp_path / "run")
    w.prepare()
    w.write_run_record({"rank": 0, "world_size": 1, "status": "running"})
    w.write_rows("components", [{**ROW, "run_id": w.run_id}], point_id=0)
    w.write_rows("components", [{**ROW, "run_id": w.run_id, "point_id": 1, "wall_ms_median": 2.5}], point_id=1)
    t = read_table(tmp_path / "run", "components")
    assert sorted(t.column("wall_ms_median").to_pylist()) == [1.5, 2.5]
    assert read_run_record(tmp_path / "run")["status"] == "running"
    # an absent table reads as empty with the right schema
    assert read_table(tmp_path / "run", "kernels").num_rows == 0


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    w = RunWriter(tmp_path / "run")
    w.prepare()

    def broken(table, where, **kw):
        with open(where.name if hasattr(where, "name") else where, "ab") as fh:
            fh.write(b"PAR1 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rundir.pq, "write_table", broken)
    with pytest.raises(OSError):
        w.write_rows("components", [{**ROW, "run_id": w.run_id}], point_id=0)
    folder = tmp_path / "run" / "components"
    assert list(folder.iterdir()) == []  # neither the part nor its temporary file


def test_refuses_existing_run_and_force_keeps_user_files(tmp_path):
    out = tmp_path / "run"
    w = RunWriter(out)
    w.prepare()
    w.write_rows("components", [{**ROW, "run_id": w.run_id}], point_id=0)
    (out / "my_notes.txt").write_text("keep me")
    with pytest.raises(RunDirectoryError, match="already holds a run"):
        RunWriter(out).prepare()
    RunWriter(out, force=True).prepare()
    assert (out / "my_notes.txt").read_text() == "keep me"
    assert not (out / "components").exists()


def test_refuses_foreign_folder_and_file(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "thesis.tex").write_text("x")
    with pytest.raises(RunDirectoryError, match="not empty"):
        RunWriter(tmp_path / "docs", force=True).prepare()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(RunDirectoryError, match="is a file"):
        RunWriter(tmp_path / "afile").prepare()


def test_corrupted_and_newer_files_are_reported(tmp_path):
    w = RunWriter(tmp_path / "run")
    w.prepare()
    path = w.write_rows("components", [{**ROW, "run_id": w.run_id}], point_id=0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(RunDirectoryError, match="unreadable"):
        read_table(tmp_path / "run", "components")
    # a file from a newer schema
    table = rundir.get_table("components").build([{**ROW, "run_id": w.run_id}])
    meta = dict(table.schema.metadata)
    meta[b"mambaprof.schema_version"] = b"999"
    rundir.write_parquet_atomic(table.replace_schema_metadata(meta), path)
    with pytest.raises(RunDirectoryError, match="newer"):
        read_table(tmp_path / "run", "components")
    assert not any(name.startswith(".") for name in os.listdir(path.parent))
