"""Timers: CUDA events on GPU, perf_counter on CPU, behind one interface.

`ForwardTimer` times one whole forward; `WindowTimer` is a listener that timestamps every
window boundary of an instrumented forward and returns each window's span. Callers never
branch on the device: `make_clock(device)` picks the implementation.
"""

from __future__ import annotations

import gc
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch

from mambaprof.collectors.markers import MIXER, Window
from mambaprof.taxonomy import MIXER_COMPONENTS


class Clock:
    """Timestamps on the host (CPU device): `mark()` returns a handle, `elapsed_ms(a, b)` a span."""

    def mark(self) -> Any:
        """Record a timestamp now."""
        return time.perf_counter_ns()

    def sync(self) -> None:
        """Wait until every recorded timestamp is final (no-op on the host)."""

    def elapsed_ms(self, start: Any, end: Any) -> float:
        """Milliseconds between two marks."""
        return (end - start) / 1e6

    def reset(self) -> None:
        """Forget marks (lets implementations reuse resources)."""


class CudaClock(Clock):
    """Timestamps on the GPU stream with CUDA events (reused from a pool)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._pool: list[torch.cuda.Event] = []
        self._used = 0
        self._stream: torch.cuda.Stream | None = None

    def mark(self) -> Any:
        if self._used == len(self._pool):
            self._pool.append(torch.cuda.Event(enable_timing=True))
        event = self._pool[self._used]
        self._used += 1
        if self._stream is None:
            self._stream = torch.cuda.current_stream(self.device)
        event.record(self._stream)
        return event

    def sync(self) -> None:
        torch.cuda.synchronize(self.device)

    def elapsed_ms(self, start: Any, end: Any) -> float:
        return float(start.elapsed_time(end))

    def reset(self) -> None:
        self._used = 0
        self._stream = None


def make_clock(device: torch.device) -> Clock:
    """The clock for `device`: CUDA events for cuda, perf_counter otherwise."""
    return CudaClock(device) if device.type == "cuda" else Clock()


def synchronize(device: torch.device) -> None:
    """Wait for all work on `device` (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class ForwardTimer:
    """Times one call: device time between markers before and after, and host time including sync."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.clock = make_clock(device)

    def time(self, fn: Callable[[], Any]) -> tuple[float, float, Any]:
        """Run fn once; return (device_ms, host_ms, result).

        Python's cyclic garbage collector is paused while fn runs (as `timeit` does): a collection
        pass landing inside one forward and not the next is host jitter that a launch-bound forward
        shows in full. What fn leaves behind is collected after the timer stops."""
        self.clock.reset()
        synchronize(self.device)
        collecting = gc.isenabled()
        gc.disable()
        try:
            host0 = time.perf_counter_ns()
            start = self.clock.mark()
            result = fn()
            end = self.clock.mark()
            self.clock.sync()
            host_ms = (time.perf_counter_ns() - host0) / 1e6
        finally:
            if collecting:
                gc.enable()
        return self.clock.elapsed_ms(start, end), host_ms, result


class WindowTimer:
    """Listener: marks every window boundary; `spans()` gives ms per window, summed per forward.

    Inside a split mixer, component windows are back to back (the adapter contract: every op of the
    split forward is inside a component window), so the boundary between two components, and
    between the mixer's edge and its first/last component, is one instant: it gets one timestamp
    instead of two. That halves the CUDA events a forward records.
    """

    def __init__(self, device: torch.device) -> None:
        self.clock = make_clock(device)
        self._open: list[tuple[Window, Any]] = []
        self._closed: list[tuple[Window, Any, Any]] = []
        self._last: tuple[str, Window, Any] | None = None

    def reset(self) -> None:
        """Start a new forward."""
        self.clock.reset()
        self._open.clear()
        self._closed.clear()
        self._last = None

    def _adjacent(self, kind: str, window: Window) -> Any | None:
        """The previous boundary's timestamp when it is the same instant as this one."""
        last = self._last
        if last is None:
            return None
        last_kind, last_window, mark = last
        if last_window.layer != window.layer:
            return None
        if kind == "enter" and window.name in MIXER_COMPONENTS:
            if (last_kind == "exit" and last_window.name in MIXER_COMPONENTS) or (
                    last_kind == "enter" and last_window.name == MIXER):
                return mark
        if kind == "exit" and window.name == MIXER and last_kind == "exit" and last_window.name in MIXER_COMPONENTS:
            return mark
        return None

    def enter(self, window: Window) -> None:
        mark = self._adjacent("enter", window)
        if mark is None:
            mark = self.clock.mark()
        self._open.append((window, mark))
        self._last = ("enter", window, mark)

    def exit(self, window: Window) -> None:
        end = self._adjacent("exit", window)
        if end is None:
            end = self.clock.mark()
        while self._open:
            w, start = self._open.pop()
            self._closed.append((w, start, end))
            if w == window:
                break
        self._last = ("exit", window, end)

    def spans(self) -> dict[Window, float]:
        """Milliseconds per window for the forward since `reset()` (several occurrences add up)."""
        self.clock.sync()
        out: dict[Window, float] = defaultdict(float)
        cache: dict[tuple[int, int], float] = {}
        for window, start, end in self._closed:
            key = (id(start), id(end))
            if key not in cache:
                cache[key] = self.clock.elapsed_ms(start, end) if start is not end else 0.0
            out[window] += cache[key]
        return dict(out)
