"""CUDA-graph timing: capture callables as graphs (warm-up on a side stream first, as torch requires) and time
their replays with CUDA events.

torch.profiler loses the module context of kernels replayed from a graph, so attribution under graphs is
measured here instead: each piece of a step is captured as its own graph (all in one memory pool, captured and
replayed in the same order, so every piece reads the outputs the previous one wrote), and an event between
replays times each piece. `time_sequence` returns those per-piece times; comparing their sum with the whole
step's single graph says how much the extra graph boundaries cost.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
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
