"""CUDA-graph timing: capture callables as graphs (warm-up on a side stream first, as torch requires) and time
their replays with CUDA events.

torch.profiler loses the module context of kernels replayed from a graph, so attribution under graphs is
measured here instead, two ways:
- `time_within_graph`: the whole step captured as one graph with external timing events (event-record nodes)
  around some of its pieces; each replay's events give those pieces' times inside the real graph. Spread
  over several captures, every piece is timed once while each capture carries few events, so the step runs
  nearly as the plain graph does (each capture's replay time says how nearly). Every interval also carries
  one event node's latency (a few microseconds, tens of percent over ~300 pieces); a capture with an event
  at every boundary, timed against the plain graph, measures it and it is subtracted.
- `capture_sequence` + `time_sequence`: each piece captured as its own graph (all in one memory pool, captured
  and replayed in the same order, so every piece reads the outputs the previous one wrote), an event between
  replays. Each piece then pays a graph launch and loses its overlap with its neighbours: the isolated cost.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch


def graphs_available(device: torch.device) -> bool:
    """True where CUDA graphs can be captured: a CUDA device."""
    return device.type == "cuda" and torch.cuda.is_available()


def _warm_up(fns: Sequence[Callable[[], Any]], rounds: int) -> None:
    """Run the sequence `rounds` times on a side stream (lazy init, autotuning, allocator warm-up)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(max(rounds, 1)):
            for fn in fns:
                fn()
    side.synchronize()
    torch.cuda.current_stream().wait_stream(side)


def capture(fn: Callable[[], Any], warmup: int = 2, pool: Any = None) -> torch.cuda.CUDAGraph:
    """`fn` as one CUDA graph, after `warmup` runs on a side stream. Tensors `fn` allocates become the graph's
    static outputs (keep references to them); tensors it reads must stay at the same addresses."""
    _warm_up([fn], warmup)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        fn()
    return graph


def capture_sequence(fns: Sequence[Callable[[], Any]], warmup: int = 2) -> list[torch.cuda.CUDAGraph]:
    """Each of `fns` as its own CUDA graph, captured in order into one shared memory pool (warm-up: the whole
    sequence `warmup` times on a side stream). Replay them in the same order."""
    _warm_up(fns, warmup)
    pool = torch.cuda.graph_pool_handle()
    graphs = []
    for fn in fns:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool):
            fn()
        graphs.append(graph)
    return graphs


def time_loop(body: Callable[[], Any], steps: int, device: torch.device, warmup: int = 2) -> float:
    """Milliseconds per iteration of `body` run `steps` times back to back, CUDA events around the whole loop
    (host launch time counts where the GPU waits for it, as in a server's decode loop)."""
    for _ in range(warmup):
        body()
    torch.cuda.synchronize(device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        body()
    end.record()
    end.synchronize()
    return float(start.elapsed_time(end)) / max(steps, 1)


def time_sequence(graphs: Sequence[torch.cuda.CUDAGraph], steps: int, device: torch.device,
                  warmup: int = 2) -> list[float]:
    """Median milliseconds of each graph when the sequence is replayed `steps` times, an event recorded
    between consecutive replays (one event per boundary)."""
    for _ in range(warmup):
        for g in graphs:
            g.replay()
    torch.cuda.synchronize(device)
    events = [[torch.cuda.Event(enable_timing=True) for _ in range(len(graphs) + 1)] for _ in range(steps)]
    for step_events in events:
        step_events[0].record()
        for g, ev in zip(graphs, step_events[1:], strict=True):
            g.replay()
            ev.record()
    torch.cuda.synchronize(device)
    per_graph: list[list[float]] = [[] for _ in graphs]
    for step_events in events:
        for i in range(len(graphs)):
            per_graph[i].append(float(step_events[i].elapsed_time(step_events[i + 1])))
    return [statistics.median(v) for v in per_graph]


@dataclass
class InGraphTimes:
    """Per-piece times measured inside whole-sequence CUDA graphs (`time_within_graph`), all in ms per replay.

    piece_ms: median interval around each piece, less `event_ms` (None for a piece no group timed).
    raw_piece_ms: the same before that correction.
    event_ms: what one event node adds to the step's timeline where it sits between two kernels: (replay of
        the step with an event at every boundary - plain replay) / events, medians of interleaved rounds. An
        interval around a piece carries this once (two events around the piece replace one kernel-to-kernel
        hand-over), so it is subtracted from every piece.
    plain_ms: the whole sequence as one graph without events (median replay).
    graph_ms: per group, median replay of its graph with the events in it.
    """

    piece_ms: list[float | None]
    raw_piece_ms: list[float | None]
    event_ms: float
    plain_ms: float
    graph_ms: list[float]


def _event() -> torch.cuda.Event:
    return torch.cuda.Event(enable_timing=True, external=True)


def _capture_with_events(fns: Sequence[Callable[[], Any]], before: dict[int, torch.cuda.Event],
                         after: dict[int, torch.cuda.Event]) -> torch.cuda.CUDAGraph:
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i, fn in enumerate(fns):
            if i in before:
                before[i].record()
            fn()
            if i in after:
                after[i].record()
    return graph


def _event_cost(fns: Sequence[Callable[[], Any]], steps: int, device: torch.device, warmup: int,
                rounds: int = 3) -> tuple[float, float]:
    """(ms one event node adds between two kernels, ms of the plain replay), from the plain graph and the graph
    with an event at every boundary, timed in interleaved rounds."""
    plain = _capture_with_events(fns, {}, {})
    marks = {i: _event() for i in range(len(fns))}
    marks_end = {len(fns) - 1: _event()}
    dense = _capture_with_events(fns, marks, marks_end)
    p, d = [], []
    for _ in range(rounds):
        p.append(time_loop(plain.replay, steps, device, warmup))
        d.append(time_loop(dense.replay, steps, device, warmup))
    del plain, dense
    plain_ms = statistics.median(p)
    return max(statistics.median(d) - plain_ms, 0.0) / (len(fns) + 1), plain_ms


def time_within_graph(fns: Sequence[Callable[[], Any]], groups: Sequence[Sequence[int]], steps: int,
                      device: torch.device, warmup: int = 2) -> InGraphTimes:
    """Time pieces of a sequence inside the sequence's own CUDA graph, in ms.

    For each group (indices into `fns`), the whole sequence is captured as one graph with an external timing
    event right before and right after each piece of the group; the graph is replayed `steps` times after
    `warmup`, each replay synchronised and its events read, then freed before the next group's capture. A
    piece's time is the median over replays of the interval around it, less `event_ms` (see InGraphTimes).
    """
    _warm_up(fns, warmup)
    event_ms, plain_ms = _event_cost(fns, steps, device, warmup)
    raw: list[float | None] = [None] * len(fns)
    graph_ms: list[float] = []
    for group in groups:
        chosen = sorted(set(group))
        before = {i: _event() for i in chosen}
        after = {i: _event() for i in chosen}
        graph = _capture_with_events(fns, before, after)
        for _ in range(max(warmup, 1)):
            graph.replay()
        torch.cuda.synchronize(device)
        samples: dict[int, list[float]] = {i: [] for i in chosen}
        for _ in range(max(steps, 1)):
            graph.replay()
            torch.cuda.synchronize(device)
            for i in chosen:
                samples[i].append(float(before[i].elapsed_time(after[i])))
        graph_ms.append(time_loop(graph.replay, steps, device, warmup))
        for i in chosen:
            raw[i] = statistics.median(samples[i])
        del graph
    piece = [None if r is None else r - event_ms for r in raw]
    return InGraphTimes(piece, raw, event_ms, plain_ms, graph_ms)


def spread_groups(n: int, per_graph: int) -> list[list[int]]:
    """Indices 0..n-1 dealt round-robin into groups of at most `per_graph` pieces (neighbouring pieces land in
    different graphs, so no graph has many events close together)."""
    k = max(1, -(-n // max(per_graph, 1)))
    return [list(range(g, n, k)) for g in range(k)]
