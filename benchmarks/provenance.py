"""One provenance stamp for every benchmark result: device, driver, library versions, code, date (UTC), command.

Built on `mambaprof.env.collect_env` (the facts `mambaprof env` prints and every run record keeps). The Python
benchmarks put `stamp()` into the JSON they write, under "provenance"; the text summaries print `line(stamp())`
first; the device scripts call the command line once, at their start:

    python3 benchmarks/provenance.py --out "$OUT/provenance.json" --script "$0" --vars BUDGET,STEPS -- "$@"

which writes the stamp (with the values of those of the named variables that are set, so that the command can
be replayed as it was run) and prints its one-line form for the log.

The code is named twice: by its git commit where the tree is a checkout, and by `source_digest`, a SHA-256 of
the project's sources, which also names a copy of the tree without its .git (the device machine gets such a
copy; set MAMBAPROF_GIT_COMMIT there to record the commit too). `python benchmarks/provenance.py --digest`
prints the digest of a tree, to match a stamp against a commit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: Bumped when a key changes meaning or goes away.
PROVENANCE_VERSION = 1
#: Where `source_digest` looks: the package, its two installed top-level folders, examples and the benchmarks.
SOURCE_DIRS = ("mambaprof", "collectors", "reports", "examples", "benchmarks")
SOURCE_SUFFIXES = (".py", ".sh")
#: Results, not code: left out of the digest.
NOT_SOURCE = ("benchmarks/data", "benchmarks/results")
COMMIT_VARIABLE = "MAMBAPROF_GIT_COMMIT"


def git_commit(root: Path = ROOT) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout at `root`: dirty when a tracked file differs from the commit. Without git
    or a .git: ($MAMBAPROF_GIT_COMMIT or None, None). Reads only."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                 capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return os.environ.get(COMMIT_VARIABLE) or None, None
    return head, bool(changed)


def source_digest(root: Path = ROOT) -> str:
    """SHA-256 (hex) over the relative path and bytes of every .py and .sh file under SOURCE_DIRS, in path order
    (results under NOT_SOURCE and __pycache__ left out): the same for a checkout and for any copy of its files."""
    digest = hashlib.sha256()
    files = []
    for sub in SOURCE_DIRS:
        base = root / sub
        if base.is_dir():
            files += [p for p in base.rglob("*") if p.suffix in SOURCE_SUFFIXES and p.is_file()]
    for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        rel = path.relative_to(root).as_posix()
        if "__pycache__" in path.parts or any(rel.startswith(f"{d}/") for d in NOT_SOURCE):
            continue
        digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def command_line(argv: Sequence[str] | None = None, variables: Sequence[str] = (),
                 script: str | None = None) -> tuple[str, dict[str, str]]:
    """The command as it was run, and the named environment variables that are set (name -> value).

    `script`: a shell script run with `argv` as its arguments (`VAR=value ... bash SCRIPT ARGS`); else a Python
    script, `argv` defaulting to sys.argv (`VAR=value ... python SCRIPT ARGS`)."""
    values = {name: os.environ[name] for name in variables if name in os.environ}
    prefix = [f"{name}={value}" for name, value in values.items()]
    if script is not None:
        words = [*prefix, "bash", script, *(argv or [])]
    else:
        words = [*prefix, "python", *(sys.argv if argv is None else argv)]
    return shlex.join(words), values


def stamp(device: str | None = None, argv: Sequence[str] | None = None, variables: Sequence[str] = (),
          script: str | None = None, root: Path = ROOT) -> dict[str, Any]:
    """The provenance of a result made now: every fact of `collect_env(device)` (device, device_name,
    driver_version, cuda_version, torch/mamba_ssm/triton/transformers/causal_conv1d versions, python, platform,
    hostname; memory in bytes), the mambaprof version, git commit and dirty flag, source digest, date (UTC, ISO
    8601 to the second) and the command line (see `command_line`)."""
    import mambaprof
    from mambaprof.env import collect_env

    command, values = command_line(argv, variables, script)
    commit, dirty = git_commit(root)
    return {"provenance_version": PROVENANCE_VERSION,
            "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": command, "variables": values,
            "git_commit": commit, "git_dirty": dirty, "source_digest": source_digest(root),
            "mambaprof_version": mambaprof.__version__,
            **collect_env(device).as_dict()}


def line(facts: dict[str, Any]) -> str:
    """One line of a stamp for logs and text summaries: date, device, driver, versions, code, command."""
    commit = facts.get("git_commit")
    code = (f"commit {commit[:12]}{'+dirty' if facts.get('git_dirty') else ''}" if commit
            else "commit unknown") + f", source {facts['source_digest'][:12]}"
    versions = ", ".join(f"{name} {facts[key]}" for name, key in (
        ("CUDA", "cuda_version"), ("torch", "torch_version"), ("mamba_ssm", "mamba_ssm_version"),
        ("triton", "triton_version")) if facts.get(key))
    return (f"{facts['date_utc']} · {facts['device_name']} ({facts['device']}), driver "
            f"{facts.get('driver_version') or 'none'} · {versions} · {code} · {facts['command']}")


def write(path: Path, facts: dict[str, Any]) -> None:
    """Write a stamp as JSON; an existing file is replaced only when it is itself a stamp (never a user's file)."""
    if path.exists():
        try:
            ours = "provenance_version" in json.loads(path.read_text())
        except (OSError, ValueError, TypeError):
            ours = False
        if not ours:
            raise FileExistsError(f"{path} exists and is not a provenance stamp; not overwriting it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(facts, indent=1) + "\n")


def check_device(device: str) -> None:
    """Raise ValueError (one line) unless `device` is cpu or a CUDA device this machine has."""
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"--device {device}: {exc}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {device}: only cpu or cuda[:N]")
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"--device {device}: no such CUDA device here ({torch.cuda.device_count()} visible)")


def main(argv: list[str] | None = None) -> int:
    """Print a stamp's line (and write the stamp with --out), or the source digest with --digest."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="write the stamp here as JSON")
    ap.add_argument("--device", default=None, help="device of the facts (default: cuda:0 if there is one, else cpu)")
    ap.add_argument("--script", default=None, help="the shell script being stamped ($0)")
    ap.add_argument("--vars", default="", help="comma list of environment variables to record when set")
    ap.add_argument("--json", action="store_true", help="print the whole stamp as JSON, not its line")
    ap.add_argument("--digest", action="store_true", help="print the source digest of this tree and stop")
    ap.add_argument("args", nargs=argparse.REMAINDER, help="-- the script's arguments")
    a = ap.parse_args(argv)
    if a.digest:
        print(source_digest())
        return 0
    args = a.args[1:] if a.args[:1] == ["--"] else a.args
    names = [v for v in a.vars.split(",") if v]
    try:
        if a.device is not None:
            check_device(a.device)
        facts = stamp(a.device, args if a.script else None, names, a.script)
        if a.out is not None:
            write(a.out, facts)
    except (FileExistsError, OSError, RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(facts, indent=1) if a.json else f"provenance: {line(facts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
