"""CUDA-graph timing: capture callables as graphs (warm-up on a side stream first, as torch requires) and time
their replays with CUDA events.

torch.profiler loses the module context of kernels replayed from a graph, so attribution under graphs is
measured here instead, two ways:
- `time_within_graph`: the whole step captured as one graph with external timing events recorded between its
  pieces (event-record nodes inside the graph); each replay's events give every piece's time inside the real
  graph, so the pieces telescope to the step. The event nodes' own cost is measured (the replay of the graph
  with events against the plain graph's) and kept small by spreading the events over several captures.
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
    """Per-piece times measured inside whole-sequence CUDA graphs (`time_within_graph`).

    piece_ms: median ms of each piece per replay (None for a piece no group timed).
    graph_ms: per group, median ms of one replay of its graph with the events in it (events around the replay).
    """

    piece_ms: list[float | None]
    graph_ms: list[float]


def _event() -> torch.cuda.Event:
    return torch.cuda.Event(enable_timing=True, external=True)


def time_within_graph(fns: Sequence[Callable[[], Any]], groups: Sequence[Sequence[int]], steps: int,
                      device: torch.device, warmup: int = 2) -> InGraphTimes:
    """Time pieces of a sequence inside the sequence's own CUDA graph, in ms.

    For each group (indices into `fns`), the whole sequence is captured as one graph with an external timing
    event before and after each piece of the group (one event between two neighbouring pieces); the graph is
    replayed `steps` times after `warmup`, each replay synchronised and its events read; then it is freed
    before the next group's capture. A piece's time is the median over replays of the interval around it.
    """
    _warm_up(fns, warmup)
    piece: list[float | None] = [None] * len(fns)
    graph_ms: list[float] = []
    for group in groups:
        chosen = sorted(set(group))
        marks: dict[int, torch.cuda.Event] = {}  # boundary index i: before fns[i] (i == len: after the last)
        for i in chosen:
            marks.setdefault(i, _event())
            marks.setdefault(i + 1, _event())
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for i, fn in enumerate(fns):
                if i in marks:
                    marks[i].record()
                fn()
            if len(fns) in marks:
                marks[len(fns)].record()
        for _ in range(max(warmup, 1)):
            graph.replay()
        torch.cuda.synchronize(device)
        samples: dict[int, list[float]] = {i: [] for i in chosen}
        for _ in range(max(steps, 1)):
            graph.replay()
            torch.cuda.synchronize(device)
            for i in chosen:
                samples[i].append(float(marks[i].elapsed_time(marks[i + 1])))
        graph_ms.append(time_loop(graph.replay, steps, device, warmup))
        for i in chosen:
            piece[i] = statistics.median(samples[i])
        del graph
    return InGraphTimes(piece, graph_ms)


def spread_groups(n: int, per_graph: int) -> list[list[int]]:
    """Indices 0..n-1 dealt round-robin into groups of at most `per_graph` pieces (neighbouring pieces land in
    different graphs, so no graph has many events close together)."""
    k = max(1, -(-n // max(per_graph, 1)))
    return [list(range(g, n, k)) for g in range(k)]
