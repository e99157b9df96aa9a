"""Every run directory's tables under RUNS as one CSV per table in OUT (a `run` column first, the run's folder
name); a run whose table cannot be read (it did not finish) is reported and left out. With --show TABLE:COLS,
prints those columns of that table (the ones present) for the device log.

    python3 benchmarks/tables_to_csv.py /tmp/runs_decode "$OUT" decode_points decode_components \
        --show decode_points:run,batch,status,ms_per_token
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from mambaprof.storage.rundir import read_table


def collect(runs: Path, name: str) -> pd.DataFrame | None:
    """Table `name` of every run directory under `runs`, concatenated, with the run's folder name first."""
    frames = []
    for run in sorted(p for p in runs.iterdir() if p.is_dir()):
        try:
            frame = read_table(run, name).to_pandas()
        except Exception as exc:  # noqa: BLE001 - a run that did not finish is reported, not fatal
            print(f"{run.name}: {name} unreadable: {exc}")
            continue
        frame.insert(0, "run", run.name)
        frames.append(frame)
    return pd.concat(frames) if frames else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("tables", nargs="+")
    ap.add_argument("--show", action="append", default=[], help="TABLE:COL,COL,... to print")
    a = ap.parse_args()
    shown = {t: cols.split(",") for t, _, cols in (s.partition(":") for s in a.show)}
    for name in a.tables:
        frame = collect(a.runs, name)
        if frame is None:
            continue
        frame.to_csv(a.out / f"{name}.csv", index=False)
        if name in shown:
            print(frame[[c for c in shown[name] if c in frame.columns]].to_string(index=False))


if __name__ == "__main__":
    main()
