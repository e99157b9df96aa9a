"""Memory collector: allocation delta and peak per component, memory per point, decode-cache sizes.

Per component, a `MemoryListener` reads an allocation source at every window boundary of one split
forward: the net change of allocated memory (what the component leaves allocated) and the peak
above the window's start (its transient working set). Nested windows are handled by resetting the
source's peak at each window start and carrying peaks up to the enclosing windows. The block's
leftover (`residual`, or the fused `norm`) and the forward's leftover (`other`) get the net change
not explained by their marked children (no peak: it cannot be separated).

Sources: on GPU the torch.cuda caching allocator's statistics (`CudaMemorySource`); on CPU, which
has no allocator statistics, torch.profiler's allocation events replayed in time order through the
same listener (`ReplaySource`). Nothing is estimated: what a device cannot measure is null.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils._pytree import tree_leaves

from mambaprof.collectors.context import PointContext
from mambaprof.collectors.markers import BLOCK, FORWARD, RangeListener, Window, parse_range
from mambaprof.collectors.nvml import NvmlSampler
from mambaprof.collectors.profiler import quiet_native_stderr
from mambaprof.collectors.rows import guarded, point_identity, run_relative
from mambaprof.model.inputs import first_tensor
from mambaprof.model.structure import ModelStructure, expected_components
from mambaprof.taxonomy import BY_NAME, MODEL_LAYER

Row = dict[str, Any]
Label = tuple[int, str]


class MemorySource(Protocol):
    """Allocated bytes now, the peak since the last reset, and the reset."""

    def allocated(self) -> int: ...

    def peak(self) -> int: ...

    def reset_peak(self) -> None: ...


class CudaMemorySource:
    """torch.cuda caching-allocator statistics of one device."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def allocated(self) -> int:
        """Bytes allocated by tensors now."""
        return int(torch.cuda.memory_allocated(self.device))

    def peak(self) -> int:
        """Largest allocated bytes since the last reset."""
        return int(torch.cuda.max_memory_allocated(self.device))

    def reset_peak(self) -> None:
        """Restart the peak at the current allocation."""
        torch.cuda.reset_peak_memory_stats(self.device)


class ReplaySource:
    """A running allocation total driven by replayed allocation events (bytes; frees are negative)."""

    def __init__(self) -> None:
        self._allocated = 0
        self._peak = 0

    def apply(self, nbytes: int) -> None:
        """One allocation (positive) or free (negative)."""
        self._allocated += nbytes
        self._peak = max(self._peak, self._allocated)

    def allocated(self) -> int:
        """Running total since the replay started."""
        return self._allocated

    def peak(self) -> int:
        """Largest running total since the last reset."""
        return self._peak

    def reset_peak(self) -> None:
        """Restart the peak at the running total."""
        self._peak = self._allocated


@dataclass
class _Frame:
    window: Window
    start: int
    peak: int
    children_delta: int = 0


@dataclass
class WindowMemory:
    """Memory of all occurrences of one window in a forward (bytes)."""

    windows: int = 0
    alloc_delta: int = 0
    own_delta: int = 0  # alloc_delta minus the marked children's
    peak_delta: int = 0
    allocated_at_start: int | None = None


class MemoryListener:
    """Listener: allocation delta and peak of every window (see the module docstring)."""

    def __init__(self, source: MemorySource) -> None:
        self.source = source
        self.frames: list[_Frame] = []
        self.windows: dict[Window, WindowMemory] = {}

    def enter(self, window: Window) -> None:
        peak = self.source.peak()
        if self.frames:
            self.frames[-1].peak = max(self.frames[-1].peak, peak)
        self.source.reset_peak()
        start = self.source.allocated()
        self.frames.append(_Frame(window, start, start))

    def exit(self, window: Window) -> None:
        if not any(f.window == window for f in self.frames):
            return
        carry = self.source.peak()
        end = self.source.allocated()
        while self.frames:
            frame = self.frames.pop()
            frame.peak = max(frame.peak, carry)
            carry = frame.peak
            delta = end - frame.start
            stats = self.windows.setdefault(frame.window, WindowMemory())
            if stats.allocated_at_start is None:
                stats.allocated_at_start = frame.start
            stats.windows += 1
            stats.alloc_delta += delta
            stats.own_delta += delta - frame.children_delta
            stats.peak_delta = max(stats.peak_delta, frame.peak - frame.start)
            if self.frames:
                self.frames[-1].children_delta += delta
            if frame.window == window:
                break
        if self.frames:
            self.frames[-1].peak = max(self.frames[-1].peak, carry)


@dataclass
class ComponentMemory:
    """Memory attributed to one (layer, component)."""

    windows: int = 0
    alloc_delta: int = 0
    peak_delta: int | None = None
    allocated_at_start: int | None = None
    direct: bool = False


def component_memory(windows: dict[Window, WindowMemory], structure: ModelStructure) -> dict[Label, ComponentMemory]:
    """Per (layer, component) from window statistics: component windows directly; the block's own
    change to `residual` (or `norm` where the add is fused into the norm); the forward's own change to
    (-1, `other`). Derived rows have no peak."""
    fused = structure.fused_norm_layers
    out: dict[Label, ComponentMemory] = {}
    for w, m in windows.items():
        if w.name in BY_NAME:
            cm = out.setdefault((w.layer, w.name), ComponentMemory())
            cm.windows += m.windows
            cm.alloc_delta += m.alloc_delta
            cm.peak_delta = max(cm.peak_delta or 0, m.peak_delta)
            cm.allocated_at_start = m.allocated_at_start if cm.allocated_at_start is None else cm.allocated_at_start
            cm.direct = True
    for w, m in windows.items():
        if w.name == BLOCK:
            label = (w.layer, "norm" if w.layer in fused else "residual")
        elif w.name == FORWARD:
            label = (MODEL_LAYER, "other")
        else:
            continue
        cm = out.setdefault(label, ComponentMemory())
        cm.windows += m.windows
        cm.alloc_delta += m.own_delta
        if cm.allocated_at_start is None:
            cm.allocated_at_start = m.allocated_at_start
    return out


def replay_events(events: Iterable[tuple[int, int, Any]], listener: MemoryListener, source: ReplaySource) -> None:
    """Feed (time_ns, order, payload) events in time order: order 0 = window enter (payload Window),
    1 = allocation (payload signed bytes), 2 = window exit (payload Window)."""
    for _, order, payload in sorted(events, key=lambda e: (e[0], e[1])):
        if order == 0:
            listener.enter(payload)
        elif order == 1:
            source.apply(int(payload))
        else:
            listener.exit(payload)


def profiled_events(fn: Callable[[], Any]) -> list[tuple[int, int, Any]]:
    """Run fn once under torch.profiler (CPU, profile_memory); return its mambaprof ranges and CPU
    allocation events as replay events (see replay_events). Ranges come from record_function markers
    (run fn with a RangeListener)."""
    with quiet_native_stderr():
        prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        prof.__enter__()
    try:
        result = fn()
        del result
    finally:
        with quiet_native_stderr():
            prof.__exit__(None, None, None)
    results = prof.profiler.kineto_results
    events: list[tuple[int, int, Any]] = []
    for ev in results.events():
        name = ev.name()
        if name == "[memory]":
            if str(ev.device_type()).endswith("CPU"):
                events.append((int(ev.start_ns()), 1, int(ev.nbytes())))
            continue
        window = parse_range(name)
        if window is not None and str(ev.device_type()).endswith("CPU"):
            events.append((int(ev.start_ns()), 0, window))
            events.append((int(ev.start_ns() + ev.duration_ns()), 2, window))
    return events


def tensor_bytes(values: Any) -> int:
    """Bytes of all tensors in a nested structure."""
    return sum(t.numel() * t.element_size() for t in tree_leaves(values) if isinstance(t, torch.Tensor))


def unique_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of tensors, each storage counted once (tied weights)."""
    seen: set[int] = set()
    total = 0
    for t in tensors:
        key = t.untyped_storage().data_ptr()
        if key in seen and key != 0:
            continue
        seen.add(key)
        total += t.numel() * t.element_size()
    return total


def cache_bytes(structure: ModelStructure, batch: int, elem: int) -> dict[Label, int]:
    """Decode-cache bytes per layer: recurrent state on (layer, ssm_scan), conv state on (layer, conv1d)."""
    out: dict[Label, int] = {}
    for site in structure.mixers:
        out[(site.layer, "ssm_scan")] = site.dims.recurrent_state_elems(batch) * elem
        out[(site.layer, "conv1d")] = site.dims.conv_state_elems(batch) * elem
    return out


@dataclass
class MemoryCollector:
    """PointCollector: the `memory` and `memory_points` tables (and --memory-timeline files)."""

    sampler: NvmlSampler | None = None
    run_dir: Path | None = None
    timeline_dir: Path | None = None

    def _phase(self, phase: str) -> None:
        if self.sampler is not None:
            self.sampler.set_phase(phase)

    @guarded("memory")
    def measure_point(self, ctx: PointContext, point_row: Row) -> dict[str, list[Row]]:
        """One original forward (peak, activations) and one split forward with the listener."""
        spec, st = ctx.spec, ctx.structure
        dev = spec.device
        on_gpu = dev.type == "cuda"
        ident = point_identity(point_row)
        elem = torch.empty((), dtype=spec.dtype).element_size()
        model: nn.Module = st.root
        point: Row = {**ident, "source": "cuda_allocator" if on_gpu else "profiler",
                      "weights_bytes": unique_bytes(model.parameters()),
                      "buffers_bytes": unique_bytes(model.buffers()),
                      "inputs_bytes": tensor_bytes((ctx.call.args, ctx.call.kwargs))}
        caches = cache_bytes(st, spec.batch, elem)
        point["recurrent_state_bytes"] = sum(v for (_, c), v in caches.items() if c == "ssm_scan")
        point["conv_state_bytes"] = sum(v for (_, c), v in caches.items() if c == "conv1d")
        notes = []

        self._phase("memory/forward")
        if on_gpu:
            torch.cuda.synchronize(dev)
            source: MemorySource = CudaMemorySource(dev)
            source.reset_peak()
            before = source.allocated()
            out = ctx.run_original()
            torch.cuda.synchronize(dev)
            point.update(allocated_before_bytes=before, peak_allocated_bytes=source.peak(),
                         peak_reserved_bytes=int(torch.cuda.max_memory_reserved(dev)),
                         activation_peak_bytes=source.peak() - before,
                         output_bytes=first_tensor(out).numel() * first_tensor(out).element_size())
            del out
            self._phase("memory/components")
            listener = MemoryListener(source)
            out = ctx.run_instrumented([listener])
            del out
            windows = listener.windows
        else:
            outputs: list[int] = []

            def original() -> None:
                out = ctx.run_original()
                outputs.append(first_tensor(out).numel() * first_tensor(out).element_size())

            totals = ReplaySource()
            replay_events(profiled_events(original), MemoryListener(totals), totals)
            point.update(activation_peak_bytes=totals.peak(), output_bytes=outputs[0] if outputs else None,
                         allocated_before_bytes=None, peak_allocated_bytes=None, peak_reserved_bytes=None)
            notes.append("CPU: no allocator statistics (peak allocated/reserved null); activation peak and "
                         "per-component changes from torch.profiler allocation events")
            self._phase("memory/components")
            replay_src = ReplaySource()
            listener = MemoryListener(replay_src)
            replay_events(profiled_events(lambda: ctx.run_instrumented([RangeListener()])), listener, replay_src)
            windows = listener.windows
            for stats in windows.values():
                stats.allocated_at_start = None  # relative to the replay's start: not an absolute figure
        if spec.mode != "split":
            notes.append("as-is mode: no component windows inside the mixers, mixer components have no rows")
        if self.timeline_dir is not None:
            self._phase("memory/timeline")
            point["timeline_path"] = self._timeline(ctx, point_row)
        point["note"] = "; ".join(notes) or None

        per = component_memory(windows, st)
        rows = []
        keys_expected = expected_components(st)
        for label in keys_expected + [k for k in per if k not in keys_expected]:
            cm = per.get(label)
            cache = caches.get(label)
            if cm is None and cache is None:
                continue
            row: Row = {**ident, "layer": label[0], "component": label[1],
                        "source": point["source"], "cache_state_bytes": cache}
            if cm is not None:
                row.update(windows=cm.windows, alloc_delta_bytes=cm.alloc_delta, peak_delta_bytes=cm.peak_delta,
                           allocated_at_start_bytes=cm.allocated_at_start)
            rows.append(row)
        self._phase("memory/done")
        return {"memory": rows, "memory_points": [point]}

    def _timeline(self, ctx: PointContext, point_row: Row) -> str | None:
        """Write the point's memory snapshot (GPU) or profiler memory timeline (CPU); its relative path."""
        assert self.timeline_dir is not None
        self.timeline_dir.mkdir(parents=True, exist_ok=True)
        stem = f"point{point_row['point_id']:05d}_b{ctx.spec.batch}_l{ctx.spec.seqlen}"
        dev = ctx.spec.device
        if dev.type == "cuda":
            path = self.timeline_dir / f"{stem}.pickle"
            torch.cuda.memory._record_memory_history(stacks="python", max_entries=200_000, device=dev)
            try:
                out = ctx.run_instrumented([RangeListener()])
                del out
                torch.cuda.synchronize(dev)
                torch.cuda.memory._dump_snapshot(str(path))
            finally:
                torch.cuda.memory._record_memory_history(enabled=None, device=dev)
        else:
            path = self.timeline_dir / f"{stem}.html"
            with quiet_native_stderr():
                prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                               with_stack=True)
                prof.__enter__()
            try:
                out = ctx.run_instrumented([RangeListener()])
                del out
            finally:
                with quiet_native_stderr():
                    prof.__exit__(None, None, None)
            with warnings.catch_warnings():  # deprecated for CUDA in favour of snapshots; the CPU's only timeline
                warnings.simplefilter("ignore", FutureWarning)
                prof.export_memory_timeline(str(path), device="cpu")
        return run_relative(path, self.run_dir)
