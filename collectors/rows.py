"""Row helpers shared by the hardware collectors: a point's identity columns, `collector_status` rows,
paths relative to the run directory."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mambaprof.errors import one_line
from mambaprof.storage.schema.core import identity_columns

Row = dict[str, Any]
Rows = dict[str, list[Row]]

_POINT_KEYS = tuple(c.name for c in identity_columns())


def point_identity(point_row: Row) -> Row:
    """The identity columns (run, rank, point, device, batch, seqlen, dtype) of a point's row."""
    return {k: point_row[k] for k in _POINT_KEYS if k in point_row}


def status_row(identity: Row, collector: str, status: str, reason: str | None,
               details: dict[str, Any] | None = None, point_id: int | None = None) -> Row:
    """A `collector_status` row (details serialised as JSON)."""
    return {"run_id": identity["run_id"], "rank": identity.get("rank", 0),
            "world_size": identity.get("world_size", 1), "collector": collector, "point_id": point_id,
            "status": status, "reason": reason,
            "details_json": json.dumps(details, sort_keys=True, default=str) if details is not None else None}


def collector_failed(point_row: Row, collector: str, exc: BaseException, device: torch.device) -> Rows:
    """What a collector returns when it raised: a `failed` status row (the point's other data stands)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"collector_status": [status_row(point_row, collector, "failed", one_line(exc),
                                            point_id=point_row.get("point_id"))]}


MeasureFn = Callable[[Any, Any, Row], Rows]


def guarded(collector: str) -> Callable[[MeasureFn], MeasureFn]:
    """Decorator for a collector's `measure_point(self, ctx, point_row)`: an exception becomes a `failed`
    collector_status row for the point instead of failing the point's other data."""
    def wrap(fn: MeasureFn) -> MeasureFn:
        @functools.wraps(fn)
        def measure_point(self: Any, ctx: Any, point_row: Row) -> Rows:
            try:
                return fn(self, ctx, point_row)
            except Exception as exc:  # noqa: BLE001 - recorded in collector_status
                return collector_failed(point_row, collector, exc, ctx.spec.device)
        return measure_point
    return wrap


def run_relative(path: Path, run_dir: Path | None) -> str:
    """`path` relative to the run directory when it is inside it, else as given."""
    if run_dir is not None:
        try:
            return str(Path(path).relative_to(run_dir))
        except ValueError:
            pass
    return str(path)
