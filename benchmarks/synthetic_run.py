"""Build a large run directory from real event rows (for data-path benchmarks).

Takes a real run (e.g. the H100 trace in benchmarks/data/...) and replicates its points — each copy a
new point id with slightly perturbed timings — until the kernels table holds the requested number
of events. Writes through RunWriter exactly like a trace does, and reports the write throughput.

    python benchmarks/synthetic_run.py SOURCE_RUN OUT --kernels 1000000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from mambaprof.rundir import RunWriter, read_run_record, read_table
from mambaprof.schema import get_table


def build(source: Path, out: Path, target_kernels: int, seed: int = 0) -> dict[str, float]:
    """Write the synthetic run; return sizes and timings (seconds, rows, bytes)."""
    rng = np.random.default_rng(seed)
    points = read_table(source, "points").to_pandas()
    comps = read_table(source, "components").to_pandas()
    kernels = read_table(source, "kernels").to_pandas()
    if kernels.empty:
        raise SystemExit(f"{source} has no kernels table to replicate")
    per_point = kernels.groupby("point_id").size()
    copies = int(np.ceil(target_kernels / per_point.sum()))
    writer = RunWriter(out, force=True)
    writer.prepare()
    record = read_run_record(source)
    record.pop("run_id", None)
    record.pop("schema_version", None)
    record["n_points"] = len(points) * copies
    writer.write_run_record(record)
    t0 = time.perf_counter()
    written = 0
    next_id = 0
    for c in range(copies):
        for pid in points.point_id:
            scale = float(rng.normal(1.0, 0.02))
            p = points[points.point_id == pid].copy()
            k = kernels[kernels.point_id == pid].copy()
            cp = comps[comps.point_id == pid].copy()
            for frame in (p, k, cp):
                frame["point_id"] = next_id
                frame["run_id"] = writer.run_id
            k["duration_us"] = k["duration_us"] * scale
            for col in [c for c in cp.columns if c.endswith("_ms_median") or c.endswith("_ms_mean")]:
                cp[col] = cp[col] * scale
            writer.write_rows("kernels", k.to_dict("records"), next_id)
            writer.write_rows("components", cp.to_dict("records"), next_id)
            writer.write_rows("points", p.to_dict("records"), next_id)
            written += len(k)
            next_id += 1
            if written >= target_kernels:
                break
        if written >= target_kernels:
            break
    write_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    table = read_table(out, "kernels")
    read_s = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in (out / "kernels").glob("*.parquet"))
    return {"kernel_rows": table.num_rows, "points": next_id, "write_s": write_s, "read_kernels_s": read_s,
            "kernels_bytes": size, "write_rows_per_s": written / write_s, "read_rows_per_s": table.num_rows / read_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--kernels", type=int, default=1_000_000)
    a = ap.parse_args()
    print(json.dumps(build(a.source, a.out, a.kernels), indent=1))


assert pa and get_table  # imported for readers of this script: the schema is the contract

if __name__ == "__main__":
    main()
