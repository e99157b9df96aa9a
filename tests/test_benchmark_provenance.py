"""benchmarks/provenance.py: the stamp every benchmark writes (facts of mambaprof.env, code, date, command)."""

import importlib.util
import json
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from support.cli import run_process

from mambaprof.env import collect_env

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "provenance.py"


def load():
    spec = importlib.util.spec_from_file_location("provenance", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


prov = load()


def test_stamp_carries_the_env_facts_the_commit_and_the_command(monkeypatch):
    monkeypatch.setenv("BUDGET", "290")
    monkeypatch.delenv("STEPS", raising=False)
    facts = prov.stamp("cpu", argv=["a b", "--x"], variables=["BUDGET", "STEPS"], script="benchmarks/x.sh")
    env = collect_env("cpu").as_dict()
    assert {k: facts[k] for k in env} == env
    assert facts["command"] == "BUDGET=290 bash benchmarks/x.sh 'a b' --x"
    assert facts["variables"] == {"BUDGET": "290"}  # STEPS is not set: not recorded
    date = datetime.strptime(facts["date_utc"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert date.year >= 2026
    if shutil.which("git") and (ROOT / ".git").exists():
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        assert facts["git_commit"] == head.stdout.strip() and isinstance(facts["git_dirty"], bool)
    assert facts["source_digest"] == prov.source_digest(ROOT) and len(facts["source_digest"]) == 64
    assert json.loads(json.dumps(facts)) == facts  # plain JSON
    line = prov.line(facts)
    assert facts["date_utc"] in line and facts["device_name"] in line and facts["command"] in line


def test_python_command_defaults_to_sys_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["benchmarks/tool_overhead.py", "--batch", "8"])
    assert prov.command_line()[0] == "python benchmarks/tool_overhead.py --batch 8"


def test_source_digest_follows_the_sources_not_the_results(tmp_path, monkeypatch):
    (tmp_path / "mambaprof").mkdir()
    (tmp_path / "mambaprof" / "a.py").write_text("x = 1\n")
    (tmp_path / "benchmarks" / "data").mkdir(parents=True)
    (tmp_path / "benchmarks" / "run.sh").write_text("echo\n")
    first = prov.source_digest(tmp_path)
    (tmp_path / "benchmarks" / "data" / "result.py").write_text("not code\n")
    (tmp_path / "mambaprof" / "notes.md").write_text("not code either\n")
    assert prov.source_digest(tmp_path) == first
    (tmp_path / "mambaprof" / "a.py").write_text("x = 2\n")
    assert prov.source_digest(tmp_path) != first
    # a copy of the tree without .git: no commit unless the variable names one
    monkeypatch.delenv(prov.COMMIT_VARIABLE, raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert prov.git_commit(tmp_path) == (None, None)
    monkeypatch.setenv(prov.COMMIT_VARIABLE, "abc123")
    assert prov.git_commit(tmp_path) == ("abc123", None)


@pytest.mark.slow
def test_cli_writes_a_stamp_and_never_overwrites_another_file(tmp_path):
    out = tmp_path / "provenance.json"
    cmd = [sys.executable, str(SCRIPT), "--out", str(out), "--device", "cpu", "--script", "benchmarks/s.sh", "--",
           "--flag"]
    done = run_process(cmd)
    assert done.returncode == 0, done.stderr
    facts = json.loads(out.read_text())
    assert facts["provenance_version"] == prov.PROVENANCE_VERSION and facts["device"] == "cpu"
    assert facts["command"] == "bash benchmarks/s.sh --flag"
    assert done.stdout.startswith("provenance: ") and facts["date_utc"] in done.stdout
    assert run_process(cmd).returncode == 0  # our own stamp: replaced
    theirs = tmp_path / "theirs.json"
    theirs.write_text('{"user": 1}\n')
    done = run_process([sys.executable, str(SCRIPT), "--out", str(theirs), "--device", "cpu"])
    assert done.returncode == 2 and theirs.read_text() == '{"user": 1}\n'
    assert done.stderr.count("\n") == 1 and "not a provenance stamp" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("device", ["nope", "cuda:x", "meta", "cuda:99"])
def test_cli_bad_device_is_one_line(device, capsys):
    # the script's main() in this process (the test above runs the script as a process, its exit code included)
    code = prov.main(["--device", device])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err
