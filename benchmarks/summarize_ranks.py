"""Print the cross-rank view of a distributed run: ranks, communication share, slowest ranks, collectives.

The first line is benchmarks/provenance.py's stamp of this summary.

    python benchmarks/summarize_ranks.py RUN_DIR
"""

from __future__ import annotations

import sys

import pandas as pd
from provenance import line, stamp

from mambaprof.reports.ranks import rank_view
from mambaprof.storage.rundir import read_run_record, read_table


def main(run: str) -> int:
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    record = read_run_record(run)
    print(f"provenance: {line(stamp())}")
    print(f"# {run}: {record['world_size']} ranks, status {record['status']}, {record['model_ref']}, "
          f"{record['n_points_ok']}/{record['n_points']} points ok; {record['status_reason'] or ''}")
    ranks = read_table(run, "ranks").to_pandas()
    print(ranks[["rank", "device", "device_name", "backend", "sharded", "status", "n_points", "n_points_ok",
                 "error"]].to_string(index=False))
    tables = {name: read_table(run, name).to_pandas() for name in ("points", "components", "kernels")}
    view = rank_view(tables["points"], tables["components"], tables["kernels"])
    print("\n## communication share (kernel ms per forward)")
    print(view.communication.to_string(index=False))
    print("\n## slowest rank per point (original_ms_median)")
    print(view.slowest_points.to_string(index=False))
    if view.slowest_steps is not None:
        print("\n## slowest rank per profiled forward")
        print(view.slowest_steps.to_string(index=False))
    kernels = tables["kernels"]
    comm = kernels[kernels.component == "communication"]
    if len(comm):
        print("\n## communication kernels (total us over profiled forwards, by layer)")
        print(comm.groupby(["rank", "layer", "name"]).duration_us.agg(["count", "sum"]).to_string())
    print("\n## load")
    print(view.load.to_string(index=False))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        print("usage: python benchmarks/summarize_ranks.py RUN_DIR", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
