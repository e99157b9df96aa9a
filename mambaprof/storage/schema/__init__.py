"""The Parquet schema of a run directory: every table, every column, its unit and meaning.

One place for all of it. `SCHEMA_VERSION` changes whenever a table or column changes;
readers refuse runs written with a newer version. docs/SCHEMA.md is generated from these
definitions (`python -m mambaprof.storage.schema > docs/SCHEMA.md`), and a test keeps it in sync.
"""

from __future__ import annotations

from mambaprof.storage.schema import core as _core  # noqa: F401  (registers runs, points, components, kernels)
from mambaprof.storage.schema import decode as _decode  # noqa: F401  (registers decode_points, decode_components)
from mambaprof.storage.schema import distributed as _distributed  # noqa: F401  (registers ranks)
from mambaprof.storage.schema import hardware as _hardware  # noqa: F401  (nvml_samples, energy, memory, io, hw_counters, ...)
from mambaprof.storage.schema import pruning as _pruning  # noqa: F401  (registers pruning)
from mambaprof.storage.schema import summary as _summary  # noqa: F401  (registers the report's summary_* tables)
from mambaprof.storage.schema.base import (
    SCHEMA_VERSION,
    TABLES,
    Column,
    Table,
    get_table,
    newer_version,
    render_markdown,
)

__all__ = ["SCHEMA_VERSION", "TABLES", "Column", "Table", "get_table", "newer_version", "render_markdown"]
