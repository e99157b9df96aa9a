"""Check the import contracts of pyproject.toml ([tool.importlinter]) with import-linter.

mambaprof ships `collectors/` and `reports/` as `mambaprof.collectors` and `mambaprof.reports` (setuptools
package-dir), so the installed package is not one folder that import-linter can walk. This lays the three folders
out as the installed package is (a copy of their .py files in a temporary folder), puts it first on the path and
runs `lint-imports` over it. Exit code: lint-imports' own (0 when every contract is kept).

    python tools/import_contracts.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: installed package name -> folder in the repository (as [tool.setuptools.package-dir] says)
LAYOUT = {"mambaprof": "mambaprof", "mambaprof/collectors": "collectors", "mambaprof/reports": "reports"}


def lay_out(dest: Path) -> None:
    """Copy the package's .py files into `dest` as they are laid out once installed."""
    for target, source in LAYOUT.items():
        for path in (REPO / source).rglob("*.py"):
            out = dest / target / path.relative_to(REPO / source)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, out)


def main() -> int:
    """Lay the package out in a temporary folder and run lint-imports on it."""
    lint = shutil.which("lint-imports")
    if lint is None:
        print("error: lint-imports not found: pip install -e '.[test]' (it brings import-linter)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="mambaprof-contracts-") as tmp:
        lay_out(Path(tmp))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([tmp, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        return subprocess.run([lint, str(REPO / "pyproject.toml"), "--no-cache"], env=env,
                              cwd=tmp).returncode


if __name__ == "__main__":
    sys.exit(main())
