"""What a collector is handed: the sweep point, the model call and how to run it plain or with windows, and
the two collector protocols (per point, per run). The run layer builds these; collectors only read them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from mambaprof.collectors.markers import Listener, Probe
from mambaprof.model.inputs import ModelCall
from mambaprof.model.structure import ModelStructure

#: Rows per table name, as collectors return them.
Rows = dict[str, list[dict[str, Any]]]


class Installer(Protocol):
    """Installs a model's component windows, delivered to a probe, for the duration of a `with`."""

    def installed(self, probe: Probe) -> AbstractContextManager[None]: ...


@dataclass
class PointSpec:
    """One sweep point and how to measure it."""

    point_id: int
    batch: int
    seqlen: int
    device: torch.device
    dtype: torch.dtype
    repeats: int
    warmup: int
    profile_repeats: int
    mode: str  # split | as-is
    trace_dir: Path | None = None
    point_seconds: float | None = None  # time cap of the timed passes (see TraceConfig.point_seconds)
    #: Under ranks that run this point together (--no-shard): the MAX of a number over those ranks (a
    #: collective every one of them calls at the same place), so that every decision that changes how many
    #: forwards run is the same on all of them; None: a single process decides alone.
    agree_max: Callable[[float], float] | None = None


@dataclass
class PointContext:
    """What extra collectors get for a point: the model call and how to run it either way."""

    spec: PointSpec
    structure: ModelStructure
    call: ModelCall
    instrumenter: Installer

    def run_original(self) -> Any:
        """One forward of the unmodified model (inference mode)."""
        with torch.inference_mode():
            return self.call()

    @contextmanager
    def instrumented(self, listeners: Sequence[Listener]) -> Iterator[Callable[[], Any]]:
        """The model with its windows installed (split or as-is per the run's mode), delivered to
        `listeners`; yields a function running one forward (inference mode). Installing the hooks is
        not part of any forward a caller times with it."""
        probe = Probe(listeners)

        def forward() -> Any:
            with torch.inference_mode():
                return self.call()

        with self.instrumenter.installed(probe):
            yield forward

    def run_instrumented(self, listeners: Sequence[Listener]) -> Any:
        """One forward with windows delivered to `listeners` (split or as-is per the run's mode)."""
        with self.instrumented(listeners) as forward:
            return forward()


class PointCollector(Protocol):
    """An extra collector (memory, NVML, ...): measures a point after the core passes.

    Returns rows per table name, and may add columns to the point's `points` row.
    """

    def measure_point(self, ctx: PointContext, point_row: dict[str, Any]) -> dict[str, list[dict[str, Any]]]: ...


class RunCollector(Protocol):
    """A collector that lives for the whole run (e.g. a sampler thread): started before the first point,
    told when each point and phase begins, asked for each point's rows (written with the point, before
    its `points` row), stopped at the end (its rows are written as run-level parts)."""

    def start_run(self, run_id: str, identity: dict[str, Any]) -> None: ...

    def begin_point(self, point_id: int) -> None: ...

    def on_phase(self, point_id: int, phase: str) -> None: ...

    def end_point(self, base: dict[str, Any]) -> Rows: ...

    def stop_run(self) -> Rows: ...
