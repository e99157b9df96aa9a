"""Never lose or touch what is not ours (issue 15): a folder full of a user's files is checksummed before and
after every CLI call, and any change the command does not own fails the test; a run directory has one live
writer; interrupts end every command with one line and 130/143; each error is one line with its exit code."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.cli import kill_group, run_cli
from support.reliability import FAST, TINY_HF, assert_one_line_error, write

from mambaprof.storage.rundir import ARTIFACT_DIRS, LOCK_FILE, MARKER, read_run_record, read_table
from mambaprof.storage.schema import TABLES

USER_FILES = {
    "runs/a.txt": "my notes on runs", "tb/b.txt": "my tensorboard notes", "io/c.txt": "my io notes",
    "README.md": "# my project", "report.html": "<html>my own page</html>", "peaks.json": '{"mine": 1}',
    "points/keep.csv": "a,b\n1,2", "ckpt/config.json": "{}", "ckpt/weights.bin": "0123",
}


def checksums(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under `root` (symlinks by their target text)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = "link:" + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


class UserFolder:
    """A folder of a user's own files; `call` runs the CLI and fails on any change outside `owns`."""

    def __init__(self, root: Path, runner=run_cli) -> None:
        self.root = root
        self.runner = runner
        for rel, text in USER_FILES.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)

    def call(self, *args: str, owns: tuple[str, ...] = (), **kw):
        """Run `mambaprof ARGS` in the folder; every file outside the `owns` prefixes must be unchanged."""
        before = checksums(self.root)
        res = self.runner(*args, cwd=self.root, **kw)
        after = checksums(self.root)

        def owned(rel: str) -> bool:  # `owns` are path prefixes ("run/" a folder, "run/points/part-" its parts)
            return any(rel.startswith(o) for o in owns)

        changed = sorted(k for k in set(before) | set(after) if not owned(k) and before.get(k) != after.get(k)
                         and k in before)
        added = sorted(k for k in set(after) - set(before) if not owned(k))
        assert not changed, f"`mambaprof {' '.join(args)}` changed or deleted files it does not own: {changed}"
        assert not added, f"`mambaprof {' '.join(args)}` wrote outside what it owns: {added}"
        return res


@pytest.fixture
def user(tmp_path, cli):
    root = tmp_path / "user"
    root.mkdir()
    return UserFolder(root, cli)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return write(tmp_path_factory.mktemp("model"), TINY_HF)


@pytest.fixture(scope="module")
def traced(tmp_path_factory, model_file, forked_cli):
    base = tmp_path_factory.mktemp("traced")
    res = forked_cli("trace", str(model_file), "--out", str(base / "run"), "--seqlens", "16", *FAST)
    assert res.returncode == 0, res.stderr
    return base / "run"


# ---- file safety -----------------------------------------------------------------------------------------
safety = pytest.mark.reliability("file-safety")


@safety
@pytest.mark.parametrize("out", [".", ""])
def test_force_on_a_users_folder_is_refused_and_touches_nothing(user, model_file, out):
    res = user.call("trace", str(model_file), "--out", out, "--force", "--seqlens", "16", *FAST)
    assert_one_line_error(res, "exists and is not empty", code=2)


@pytest.mark.slow
@safety
def test_force_replaces_only_what_mambaprof_wrote(user, model_file):
    res = user.call("trace", str(model_file), "--out", "run", "--seqlens", "16", *FAST, owns=("run/",))
    assert res.returncode == 0, res.stderr
    first = read_run_record(user.root / "run")["run_id"]
    (user.root / "run" / "points" / "mine.txt").write_text("a user's file in the run's table folder")
    (user.root / "run" / "notes.md").write_text("a user's notes beside the tables")
    res = user.call("trace", str(model_file), "--out", "run", "--force", "--seqlens", "16", "--tb", *FAST[:-1],
                    owns=(*(f"run/{t}/part-" for t in TABLES), *(f"run/{a}/" for a in ARTIFACT_DIRS),
                          f"run/{MARKER}"))
    assert res.returncode == 0, res.stderr
    run = user.root / "run"
    assert (run / "points" / "mine.txt").read_text().startswith("a user's")
    assert (run / "notes.md").is_file() and not (run / LOCK_FILE).exists()
    assert read_run_record(run)["run_id"] != first
    assert set(read_table(run, "points").column("run_id").to_pylist()) == {read_run_record(run)["run_id"]}
    assert run_cli("validate", str(run)).returncode == 0


@safety
def test_report_outputs_never_overwrite_a_users_files(user, traced):
    run = str(traced)
    assert_one_line_error(user.call("report", run, "--html", "report.html", "--quiet"), "not an HTML report", 2)
    assert_one_line_error(user.call("report", run, "--parquet", ".", "--quiet"), "README.md exists", 2)
    assert_one_line_error(user.call("report", run, "--html", "ckpt", "--quiet"), "is a directory", 2)
    assert_one_line_error(user.call("report", run, "--parquet", "README.md", "--quiet"), "is a file", 2)
    res = user.call("report", run, "--html", "new.html", "--parquet", "summary", "--quiet",
                    owns=("new.html", "summary/"))
    assert res.returncode == 0, res.stderr
    again = user.call("report", run, "--html", "new.html", "--parquet", "summary", "--quiet",
                      owns=("new.html", "summary/"))  # its own outputs it may replace
    assert again.returncode == 0, again.stderr


@safety
def test_report_outputs_inside_the_runs_tables_are_refused(tmp_path, traced, cli):
    run = tmp_path / "run"
    shutil.copytree(traced, run)
    before = checksums(run)
    for option, target in (("--html", run / "points" / "r.html"), ("--parquet", run / "points"),
                           ("--parquet", run / "components" / "s"), ("--parquet", run)):
        res = cli("report", str(run), option, str(target), "--quiet")
        assert_one_line_error(res, str(target.name), 2)
    assert checksums(run) == before
    assert cli("validate", str(run)).returncode == 0


@safety
def test_prune_save_is_checked_before_any_work(user, tmp_path):
    start = time.monotonic()
    for save, expect in (("README.md", "is a file"), ("ckpt", "already exists and is not empty"),
                         ("runs", "already exists and is not empty")):
        assert_one_line_error(user.call("prune", "--save", save, "--quiet"), expect, 2)
    res = user.call("prune", "--hf", "ckpt", "--save", "ckpt", "--overwrite-save", "--quiet")
    assert_one_line_error(res, "--hf ckpt", 2)
    res = user.call("prune", "--save", "runs", "--overwrite-save", "--quiet")
    assert_one_line_error(res, "holds other files, not a checkpoint", 2)
    assert time.monotonic() - start < 600  # refused up front: no what-if ran (a bound, not a timing claim)


@safety
def test_calibrate_out_never_overwrites_a_users_file(user):
    res = user.call("calibrate", "--out", "peaks.json", "--quick", "--no-store")
    assert_one_line_error(res, "is not a peaks file mambaprof wrote", 2)


# ---- one writer per run directory ------------------------------------------------------------------------
concurrency = pytest.mark.reliability("concurrency")


def _lock(run: Path, pid: int, host: str | None = None) -> None:
    (run / LOCK_FILE).write_text(json.dumps({"pid": pid, "hostname": host or socket.gethostname(),
                                             "run_id": "20260101T000000Z-deadbeef"}))


@concurrency
def test_a_second_writer_is_refused_while_the_first_lives(tmp_path, traced, model_file, cli):
    run = tmp_path / "run"
    shutil.copytree(traced, run)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        _lock(run, sleeper.pid)
        before = checksums(run)
        res = cli("trace", str(model_file), "--out", str(run), "--force", "--seqlens", "16", *FAST)
        assert_one_line_error(res, f"is being written by another mambaprof (pid {sleeper.pid}", 2)
        assert checksums(run) == before
    finally:
        sleeper.kill()
        sleeper.wait()


@concurrency
def test_a_stale_lock_is_taken_over_with_a_note(tmp_path, traced, model_file, cli):
    run = tmp_path / "run"
    shutil.copytree(traced, run)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _lock(run, dead.pid)
    res = cli("trace", str(model_file), "--out", str(run), "--force", "--seqlens", "16", *FAST)
    assert res.returncode == 0, res.stderr
    assert f"was locked by pid {dead.pid}, which is no longer running" in res.stderr
    assert not (run / LOCK_FILE).exists()


@concurrency
def test_validate_detects_rows_of_two_runs_in_one_directory(tmp_path, traced, cli):
    run = tmp_path / "run"
    shutil.copytree(traced, run)
    part = next((run / "points").glob("part-*.parquet"))
    table = pq.read_table(part)
    other = table.set_column(table.schema.get_field_index("run_id"), "run_id",
                             pa.array(["20260101T000000Z-0badf00d"] * table.num_rows))
    pq.write_table(other.replace_schema_metadata(table.schema.metadata), run / "points" / "part-00099.parquet")
    res = cli("validate", str(run))
    assert res.returncode != 0 and "holds rows of 2 runs" in res.stdout + res.stderr
    assert "Traceback" not in res.stderr


# ---- interrupts ------------------------------------------------------------------------------------------
interrupts = pytest.mark.reliability("interrupts")


def _interrupted(args: list[str], sig: int, after_s: float, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.Popen([sys.executable, "-m", "mambaprof", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "KINETO_LOG_LEVEL": "5"},
                            start_new_session=True)
    try:
        time.sleep(after_s)
        proc.send_signal(sig)
        out, err = proc.communicate()  # a run that never stops is the test's pytest-timeout
    except BaseException:
        kill_group(proc)
        raise
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


@interrupts
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("command", [["trace", "--seqlens", "16"], ["prune"], ["report", "nowhere"],
                                     ["env"], ["validate", "nowhere"]])
def test_a_signal_in_the_first_second_is_one_line_and_the_signal_exit_code(tmp_path, sig, code, command):
    res = _interrupted([*command, "--out", str(tmp_path / "out")] if command[0] in ("trace", "prune") else command,
                       sig, 0.5, tmp_path)
    if res.returncode in (0, 2) and command[0] in ("report", "env", "validate"):
        return  # finished (or refused) before the signal came: nothing to interrupt
    assert res.returncode == code, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: interrupted by"), res.stderr


@pytest.mark.slow
@interrupts
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_prune_interrupted_is_incomplete_and_its_counts_match_the_disk(tmp_path, sig, code):
    out = tmp_path / "p"
    res = _interrupted(["prune", "--out", str(out), "--ratios", "0,0.25,0.5", "--score", "delta,random",
                        "--calib-tokens", "2048", "--eval-tokens", "2048", "--repeats", "1", "--decode-steps", "2",
                        "--quiet"], sig, 15.0, tmp_path)
    assert "Traceback" not in res.stderr
    if res.returncode == 0:
        pytest.skip("the what-if finished before the signal")
    assert res.returncode == code, res.stderr
    if not (out / "runs").is_dir():
        return  # stopped before its run directory existed
    record = read_run_record(out)
    assert record["status"] == "incomplete", record["status_reason"]
    assert record["status_reason"].startswith(f"interrupted by {signal.Signals(sig).name}")
    assert record["n_points_ok"] == read_table(out, "pruning").num_rows
    assert not (out / LOCK_FILE).exists()


# ---- one clear line per error ----------------------------------------------------------------------------
errors = pytest.mark.reliability("error-lines")


@errors
@pytest.mark.parametrize("body,expect", [
    ("import torch\nfrom torch import nn\n\ndef build_model():\n    with torch.device('meta'):\n"
     "        return nn.Linear(4, 4)\n", "is on the meta device"),
    ("import sys\n\ndef build_model():\n    sys.exit(0)\n", "called sys.exit(0)"),
    ("import sys\nsys.exit(0)\n", "called sys.exit(0)"),
])
def test_model_files_that_cannot_work_are_one_line(tmp_path, body, expect, cli):
    model = tmp_path / "model.py"
    model.write_text(body)
    assert_one_line_error(cli("trace", str(model), "--out", str(tmp_path / "o"), *FAST), expect, 2)
    assert not (tmp_path / "o").exists()


@errors
def test_a_symlink_loop_model_file_is_one_line(tmp_path, cli):
    (tmp_path / "model.py").symlink_to(tmp_path / "model.py")
    assert_one_line_error(cli("trace", str(tmp_path / "model.py"), *FAST), "cannot be opened", 2)


@errors
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1"])
def test_non_finite_or_negative_point_seconds_is_refused(tmp_path, value, cli):
    res = cli("trace", "--point-seconds", value, "--out", str(tmp_path / "o"), *FAST)
    assert_one_line_error(res, "--point-seconds", 2)
    assert not (tmp_path / "o").exists()


@errors
def test_a_foreign_parquet_file_in_a_table_folder_fails_validate_and_report_cleanly(tmp_path, traced, cli):
    run = tmp_path / "run"
    shutil.copytree(traced, run)
    pq.write_table(pa.table({"x": [1, 2, 3]}), run / "points" / "part-99999.parquet")
    res = cli("validate", str(run))
    assert res.returncode != 0 and "not a file mambaprof wrote" in res.stdout + res.stderr
    assert_one_line_error(cli("report", str(run), "--quiet"), "not a file mambaprof wrote", 2)


@errors
def test_a_write_refused_mid_run_exits_with_the_storage_code(tmp_path, model_file, cli):
    """The points/ folder of a marked run cannot take files (immutable as root, read-only otherwise): the first
    point's write is refused mid-run; one line, exit 4, the record says why."""
    out = tmp_path / "run"
    (out / "points").mkdir(parents=True)
    (out / MARKER).write_text("mambaprof run directory\n")
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(out / "points")], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available here")
        undo = ["chattr", "-i", str(out / "points")]
    else:
        os.chmod(out / "points", 0o500)
        undo = ["chmod", "700", str(out / "points")]
    try:
        res = cli("trace", str(model_file), "--out", str(out), "--force", "--seqlens", "16,32", *FAST)
    finally:
        subprocess.run(undo, check=True)
    assert_one_line_error(res, "could not write results of point 0", 4)
    record = read_run_record(out)
    assert record["status"] == "incomplete" and record["n_points_ok"] == 0
    assert "could not write" in record["status_reason"]


@interrupts
def test_a_signal_inside_an_import_ends_with_one_line_not_an_abort(monkeypatch, capsys):
    """A signal handled inside an import must not raise through native module initialisation (torch's pybind11
    modules abort the process on it: exit -6); the handler sees importlib's frames and stops at once, one line."""
    import mambaprof.cli as cli_pkg

    def fake_exit(code: int) -> None:
        raise SystemExit(code)  # os._exit never returns

    monkeypatch.setattr(cli_pkg.os, "_exit", fake_exit)
    monkeypatch.setattr(cli_pkg, "_ignore_stop_signals", lambda: None)
    frame = None

    def capture() -> None:
        nonlocal frame
        frame = sys._getframe()

    import importlib.util
    import types

    spec = importlib.util.spec_from_loader("mambaprof_test_import_frame", loader=None)
    module = types.ModuleType(spec.name)
    exec(compile("capture()", "<frozen importlib._bootstrap>", "exec"), {"capture": capture}, vars(module))
    with pytest.raises(SystemExit) as stopped:  # inside an "import": exits at once, RunInterrupted never raised
        cli_pkg._raise_interrupt(signal.SIGTERM, frame)
    assert stopped.value.code == 143
    with pytest.raises(cli_pkg.RunInterrupted):  # outside one: raises, as before
        cli_pkg._raise_interrupt(signal.SIGINT, sys._getframe())


@interrupts
def test_the_sweep_defers_a_signal_that_lands_inside_an_import_until_the_import_is_done(tmp_path, monkeypatch):
    """The sweep's guard must not raise inside an import either (same abort); it raises RunInterrupted once
    the import has finished, and gives SIGALRM and its timer back."""
    from mambaprof.run.sweep import RunInterrupted, interrupts_raise

    (tmp_path / "mambaprof_test_slow_import.py").write_text(
        "import os, signal, time\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "t = time.monotonic()\n"
        "while time.monotonic() - t < 0.3:\n"
        "    pass\n"
        "done = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    alarm_before = signal.getsignal(signal.SIGALRM)
    imported = None
    with pytest.raises(RunInterrupted) as stopped:
        with interrupts_raise() as guard:
            import mambaprof_test_slow_import as imported  # noqa: F401
            t = time.monotonic()
            while time.monotonic() - t < 5:  # the deferred signal arrives within the retry period
                pass
    assert stopped.value.signame == "SIGTERM" and guard.received == ["SIGTERM"]
    assert imported is not None and imported.done is True  # the import ran to its end
    assert sys.modules["mambaprof_test_slow_import"].done is True
    assert signal.getsignal(signal.SIGALRM) is alarm_before
    del sys.modules["mambaprof_test_slow_import"]
