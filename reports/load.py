"""Read a run directory once into DataFrames for the analyses (never re-runs a model)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.dataset as ds

from mambaprof.errors import MambaprofError
from mambaprof.reports import hardware
from mambaprof.reports.validate import Validation, require_valid
from mambaprof.storage.rundir import read_run_record, read_table
from mambaprof.storage.schema import TABLES

#: Tables of the hardware-signal collectors the report reads; each is optional (see reports/hardware.py).
OPTIONAL_TABLES = ("energy", "memory", "memory_points", "hw_counters", "collector_status")

FAMILY_LABELS = {"mamba1": "Mamba-1", "mamba2": "Mamba-2", "mixed": "hybrid", "model": "model"}


@dataclass
class RunData:
    """One run's tables: the run record, all points, the component rows of ok points, and whichever
    optional hardware tables exist (by name). `warnings` lists what validation and loading noticed;
    `variant` names the pruning variant these points measure (None: the whole run)."""

    run_dir: Path
    record: dict[str, Any]
    points: pd.DataFrame
    components: pd.DataFrame
    optional: dict[str, pd.DataFrame] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    variant: str | None = None

    def subset(self, point_ids: Collection[int], variant: str) -> RunData:
        """The same run restricted to some points (e.g. the component measurement of one pruning variant):
        every table with a point_id column keeps only their rows."""
        keep = {int(p) for p in point_ids}

        def only(frame: pd.DataFrame) -> pd.DataFrame:
            if "point_id" not in frame.columns:
                return frame
            return frame[frame.point_id.isin(keep)].reset_index(drop=True)

        return RunData(run_dir=self.run_dir, record=self.record, points=only(self.points),
                       components=only(self.components), optional={k: only(v) for k, v in self.optional.items()},
                       warnings=list(self.warnings), variant=variant)

    @property
    def run_id(self) -> str:
        """The run's identifier."""
        return str(self.record.get("run_id") or self.run_dir.name)

    @property
    def label(self) -> str:
        """Short human name: the preset or checkpoint or model file name, else the directory name (with the
        pruning variant, for one variant's points)."""
        return f"{self.model_label} · {self.variant}" if self.variant else self.model_label

    @property
    def model_label(self) -> str:
        """The label without the variant: the preset, checkpoint or model file name, else the directory name."""
        ref = self.record.get("model_ref")
        return Path(str(ref)).name if ref else self.run_dir.name

    @property
    def on_gpu(self) -> bool:
        """True when the run ran on a CUDA device."""
        return str(self.record.get("device") or "").startswith("cuda")

    @property
    def dtype(self) -> str:
        """Compute dtype of the run (e.g. `bfloat16`)."""
        return str(self.record.get("dtype") or "float32")

    @property
    def family_label(self) -> str:
        """`Mamba-1`, `Mamba-2` or `hybrid`."""
        fam = str(self.record.get("model_family") or "")
        return FAMILY_LABELS.get(fam, fam or "unknown")


def read_optional(run_dir: Path, name: str) -> pd.DataFrame | None:
    """An optional table as a DataFrame, or None when the run does not have it. Tables this mambaprof
    does not know the schema of are read as plain Parquet."""
    folder = run_dir / name
    if not folder.is_dir():
        return None
    if name in TABLES:
        return read_table(run_dir, name).to_pandas()
    dataset = ds.dataset(folder, format="parquet", partitioning="hive", ignore_prefixes=[".", "_"])
    return dataset.to_table().to_pandas()


def load_run(run_dir: Path | str) -> RunData:
    """Validate and read a run directory. Raises RunDirectoryError (one line) when it cannot be reported."""
    run_dir = Path(run_dir)
    validation: Validation = require_valid(run_dir)
    record = read_run_record(run_dir)
    points = read_table(run_dir, "points").to_pandas()
    comps = read_table(run_dir, "components").to_pandas()
    for frame in (points, comps):
        if "rank" not in frame.columns:
            frame["rank"] = 0
    ok = points.loc[points.status == "ok", ["rank", "point_id"]]
    comps = comps.merge(ok, on=["rank", "point_id"], how="inner")
    warnings = [p.one_line() for p in validation.warnings]
    optional: dict[str, pd.DataFrame] = {}
    for name in OPTIONAL_TABLES:
        try:
            frame = read_optional(run_dir, name)
        except (MambaprofError, OSError, ValueError) as exc:
            warnings.append(f"{run_dir}/{name}: unreadable ({str(exc).splitlines()[0]}); left out")
            continue
        if frame is not None:
            if "rank" not in frame.columns:
                frame["rank"] = 0
            optional[name] = frame
    cpu_run = bool(len(points)) and bool((points.get("device", pd.Series(dtype=str)) == "cpu").all())
    warnings += hardware.collector_warnings(optional, cpu_run=cpu_run)
    points = points.sort_values(["rank", "batch", "seqlen", "point_id"]).reset_index(drop=True)
    return RunData(run_dir=run_dir, record=record, points=points, components=comps.reset_index(drop=True),
                   optional=optional, warnings=warnings)
