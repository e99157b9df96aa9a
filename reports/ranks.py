"""Cross-rank view of a distributed run: per-rank component times, the slowest rank per point and per
profiled step, the communication share, and how the sweep's work was spread over the ranks.

Plain functions over DataFrames of a run's tables (`mambaprof.storage.rundir.read_table(run, name).to_pandas()`,
which reads every `rank-K` partition as one table); nothing here reads files, runs a model or renders.
Times per forward are kernel-time *means* over the profiled forwards (means add up: a rank's components
sum to its forward's mean kernel time); communication only has kernel time (no marker spans it).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from mambaprof.taxonomy import component_order

POINT_KEYS = ["point_id", "batch", "seqlen"]
COMMUNICATION = "communication"


def rank_component_times(components: pd.DataFrame, value: str = "kernel_ms_mean") -> pd.DataFrame:
    """Per point, rank and component: `value` (ms per forward) summed over layers.

    Columns: point_id, batch, seqlen, rank, component, `value`; sorted by point, rank, taxonomy order.
    """
    keys = [*POINT_KEYS, "rank", "component"]
    out = components.groupby(keys, as_index=False)[value].sum(min_count=1)
    out = out.assign(_order=out.component.map(component_order))
    return out.sort_values([*POINT_KEYS, "rank", "_order"]).drop(columns="_order").reset_index(drop=True)


def communication_share(components: pd.DataFrame, value: str = "kernel_ms_mean") -> pd.DataFrame:
    """Per point and rank: communication kernel ms per forward, all kernel ms per forward, and
    communication_pct = 100 x communication / all (0 where the model never communicates).

    Columns: point_id, batch, seqlen, rank, communication_ms, total_kernel_ms, communication_pct.
    """
    keys = [*POINT_KEYS, "rank"]
    frame = components.assign(_comm=components[value].where(components.component == COMMUNICATION, 0.0))
    out = frame.groupby(keys, as_index=False).agg(communication_ms=("_comm", "sum"), total_kernel_ms=(value, "sum"))
    total = out.total_kernel_ms.where(out.total_kernel_ms > 0)
    out["communication_pct"] = (100.0 * out.communication_ms / total).fillna(0.0)
    return out.sort_values(keys).reset_index(drop=True)


def _slowest(frame: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """Per group of `keys`: slowest rank, its `value`, the fastest `value`, ranks, skew_pct."""
    frame = frame.dropna(subset=[value])
    idx = frame.groupby(keys)[value].idxmax()
    slowest = frame.loc[idx, [*keys, "rank", value]].rename(columns={"rank": "slowest_rank", value: "slowest_ms"})
    stats = frame.groupby(keys, as_index=False).agg(fastest_ms=(value, "min"), ranks=("rank", "nunique"))
    out = slowest.merge(stats, on=keys)
    fastest = out.fastest_ms.where(out.fastest_ms > 0)
    out["skew_pct"] = (100.0 * (out.slowest_ms / fastest - 1.0)).fillna(0.0)
    return out.sort_values(keys).reset_index(drop=True)


def slowest_rank_per_point(points: pd.DataFrame, value: str = "original_ms_median") -> pd.DataFrame:
    """Per point: which rank ran it slowest (by `value`, ms; points with status ok only), that time, the
    fastest rank's, how many ranks ran it, and skew_pct = 100 x (slowest / fastest - 1).

    Columns: point_id, batch, seqlen, slowest_rank, slowest_ms, fastest_ms, ranks, skew_pct. In a sharded
    sweep each point has one rank (skew 0); with --no-shard every rank runs every point.
    """
    ok = points[points.status == "ok"] if "status" in points else points
    return _slowest(ok, POINT_KEYS, value)


def slowest_rank_per_step(kernels: pd.DataFrame) -> pd.DataFrame:
    """Per point and profiled forward (`iteration`, the step): each rank's summed kernel time, and the
    slowest rank with its ms, the fastest rank's ms, the number of ranks and skew_pct (as above).

    Columns: point_id, iteration, slowest_rank, slowest_ms, fastest_ms, ranks, skew_pct.
    """
    per_rank = (kernels.groupby(["point_id", "iteration", "rank"], as_index=False).duration_us.sum()
                .assign(kernel_ms=lambda f: f.duration_us / 1000.0))
    return _slowest(per_rank, ["point_id", "iteration"], "kernel_ms")


def rank_load(points: pd.DataFrame) -> pd.DataFrame:
    """How the sweep's work was spread: per rank, points run and ok, busy_s (sum of the points' durations,
    finished_at - started_at) and span_s (first start to last finish).

    Columns: rank, points, points_ok, busy_s, span_s.
    """
    frame = points.assign(_busy=(points.finished_at - points.started_at).dt.total_seconds(),
                          _ok=(points.status == "ok").astype(int))
    out = frame.groupby("rank", as_index=False).agg(points=("point_id", "nunique"), points_ok=("_ok", "sum"),
                                                    busy_s=("_busy", "sum"), first=("started_at", "min"),
                                                    last=("finished_at", "max"))
    out["span_s"] = (out["last"] - out["first"]).dt.total_seconds()
    return out.drop(columns=["first", "last"]).sort_values("rank").reset_index(drop=True)


@dataclass
class RankView:
    """The cross-rank view of one run (see the functions above for each frame's columns)."""

    components: pd.DataFrame
    communication: pd.DataFrame
    slowest_points: pd.DataFrame
    slowest_steps: pd.DataFrame | None
    load: pd.DataFrame

    @property
    def world_size(self) -> int:
        """Ranks that wrote rows."""
        return int(self.load["rank"].nunique())


def rank_view(points: pd.DataFrame, components: pd.DataFrame, kernels: pd.DataFrame | None = None) -> RankView:
    """Every cross-rank frame of a run, from its `points`, `components` and (optional) `kernels` tables."""
    steps = slowest_rank_per_step(kernels) if kernels is not None and len(kernels) else None
    return RankView(components=rank_component_times(components), communication=communication_share(components),
                    slowest_points=slowest_rank_per_point(points), slowest_steps=steps, load=rank_load(points))
