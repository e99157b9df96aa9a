"""Component markers: windows (a span of one component or scope of one layer), the listeners that receive
their boundaries, and the probe that fans boundaries out to listeners.

A *window* is a span of one component (or scope: forward, block, mixer) of one layer. The run layer's
instrumenter opens and closes windows around a model's modules; collectors (timers, profiler ranges, memory
probes) listen to them. These types are shared by both sides, so they live here, below the run layer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from torch.autograd.profiler import record_function

from mambaprof.taxonomy import MODEL_LAYER

RANGE_PREFIX = "mambaprof/"
_RANGE_RE = re.compile(r"^mambaprof/(?:L(?P<layer>\d+)|model)/(?P<name>\w+)$")

#: scopes that are not taxonomy components
FORWARD, BLOCK, MIXER = "forward", "block", "mixer"


@dataclass(frozen=True)
class Window:
    """A marked span: `name` is a component or a scope (forward, block, mixer)."""

    layer: int
    name: str

    @property
    def range_name(self) -> str:
        """The record_function name, e.g. `mambaprof/L3/ssm_scan` or `mambaprof/model/lm_head`."""
        where = "model" if self.layer == MODEL_LAYER else f"L{self.layer}"
        return f"{RANGE_PREFIX}{where}/{self.name}"


def parse_range(name: str) -> Window | None:
    """Inverse of Window.range_name; None for names that are not mambaprof ranges."""
    m = _RANGE_RE.match(name)
    if m is None:
        return None
    layer = int(m.group("layer")) if m.group("layer") is not None else MODEL_LAYER
    return Window(layer, m.group("name"))


class Listener(Protocol):
    """Receives window boundaries, properly nested."""

    def enter(self, window: Window) -> None: ...

    def exit(self, window: Window) -> None: ...


class RangeListener:
    """Opens a torch.profiler record_function range per window (what kernel attribution reads)."""

    def __init__(self) -> None:
        self._stack: list[record_function] = []

    def enter(self, window: Window) -> None:
        rf = record_function(window.range_name)
        rf.__enter__()
        self._stack.append(rf)

    def exit(self, window: Window) -> None:
        if self._stack:
            self._stack.pop().__exit__(None, None, None)


class Probe:
    """Fans window boundaries out to listeners; enter in order, exit in reverse order."""

    def __init__(self, listeners: Sequence[Listener]) -> None:
        self.listeners = list(listeners)
        self._open: list[Window] = []

    def enter(self, window: Window) -> None:
        """Open `window`."""
        self._open.append(window)
        for listener in self.listeners:
            listener.enter(window)

    def exit(self, window: Window) -> None:
        """Close `window` (and any window left open inside it by an exception)."""
        if self._open and self._open[-1] is window:  # the common case, kept cheap
            self._open.pop()
            for listener in reversed(self.listeners):
                listener.exit(window)
            return
        if window not in self._open:
            return
        while self._open:
            top = self._open.pop()
            for listener in reversed(self.listeners):
                listener.exit(top)
            if top == window:
                break

    def close_all(self) -> None:
        """Close every open window (after an exception inside a forward)."""
        while self._open:
            self.exit(self._open[-1])

    def window(self, window: Window) -> WindowContext:
        """Context manager form of enter/exit."""
        return WindowContext(self, window)


class WindowContext:
    """`with` support for one window of one probe (a plain class: cheaper than a generator)."""

    __slots__ = ("probe", "window")

    def __init__(self, probe: Probe, window: Window) -> None:
        self.probe = probe
        self.window = window

    def __enter__(self) -> None:
        self.probe.enter(self.window)

    def __exit__(self, *exc: object) -> None:
        self.probe.exit(self.window)
