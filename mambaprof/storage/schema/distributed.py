"""Tables of distributed runs (torchrun): one row per rank."""

from __future__ import annotations

import pyarrow as pa

from mambaprof.storage.schema.base import Column, Table, register
from mambaprof.storage.schema.core import I32, RUNS, TS, B, S, identity_columns


def _runs_column(name: str) -> Column:
    """A column of `runs` that means the same per rank (one definition, one doc)."""
    return next(c for c in RUNS.columns if c.name == name)


RANKS = register(Table(
    name="ranks",
    doc="One row per rank of a run started by torchrun: where the rank ran, which sweep points it had and "
        "how it ended. Each rank writes its own row (in `ranks/rank-K/`) when it starts and when it ends; "
        "rank 0 writes the row of a rank that stopped without reporting (status `lost`). The run's overall "
        "status is in `runs`, written by rank 0 once every rank has finished.",
    key=("run_id", "rank"),
    columns=identity_columns(per_point=False) + (
        Column("local_rank", I32, "", "Rank within its node (LOCAL_RANK): picks the GPU, cuda:LOCAL_RANK."),
        _runs_column("hostname"),
        _runs_column("pid"),
        Column("device", S, "", "Device the rank ran on, e.g. `cuda:1` or `cpu`."),
        _runs_column("device_name"),
        Column("sharded", B, "", "True: the sweep points were split across ranks (each point on one rank). "
               "False: every rank ran every point (a model that itself runs across ranks)."),
        Column("backend", S, "", "Process-group backend initialised for the model (`nccl` or `gloo`); null "
               "when none was (sharded sweeps need none)."),
        Column("status", S, "", "`running`, `complete` (every point of the rank ok), `incomplete` (some points "
               "oom/error, or interrupted), `failed` (the rank stopped with an error, see `error`) or `lost` (it "
               "stopped without reporting: killed, crashed or timed out)."),
        Column("status_reason", S, "", "Why the rank is not complete, else null."),
        Column("error", S, "", "One-line error that stopped the rank (status `failed`), else null."),
        Column("started_at", TS, "UTC", "When the rank started."),
        Column("finished_at", TS, "UTC", "When the rank ended (null while running)."),
        Column("point_ids", pa.list_(I32), "", "Sweep points (`points.point_id`) given to this rank."),
        Column("n_points", I32, "", "Sweep points given to this rank."),
        *(_runs_column(f"n_points_{k}") for k in ("ok", "oom", "error")),
    ),
))
