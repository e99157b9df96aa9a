"""Markers around components: windows, listeners, and the instrumenter that installs them.

A *window* is a span of one component (or scope: forward, block, mixer) of one layer. The
instrumenter opens and closes windows through module hooks (blocks, norms, embedding, lm_head,
the whole forward) and, in split mode, by replacing each mixer's forward with its adapter's
component-split forward. Listeners (timers, profiler ranges, memory probes) receive every
window boundary; none of them is installed when the original forward is timed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from torch import nn
from torch.autograd.profiler import record_function

from mambaprof.structure import MixerSite, ModelStructure
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


class Instrumenter:
    """Installs windows on a model for the duration of a `with instrumenter.installed(probe):`.

    split=True replaces each supported mixer's forward with the adapter's component-split forward
    (component windows inside a `mixer` window); split=False keeps the model's own forward and
    only marks the `mixer` window (as-is mode: kernels are attributed by name rules).
    """

    def __init__(self, structure: ModelStructure, split: bool = True) -> None:
        self.structure = structure
        self.split = split

    @contextmanager
    def installed(self, probe: Probe) -> Iterator[None]:
        """Hooks and patches in place; everything removed (and windows closed) on exit."""
        handles: list[Any] = []
        patched: list[nn.Module] = []
        st = self.structure

        def span(module: nn.Module, window: Window, prepend: bool = False) -> None:
            handles.append(module.register_forward_pre_hook(lambda *_: probe.enter(window), prepend=prepend))
            handles.append(module.register_forward_hook(lambda *_: probe.exit(window), always_call=True))

        try:
            span(st.root, Window(MODEL_LAYER, FORWARD), prepend=True)
            for m in st.embeddings:
                span(m, Window(MODEL_LAYER, "embedding"))
            for m in st.lm_heads:
                span(m, Window(MODEL_LAYER, "lm_head"))
            for m in st.final_norms:
                span(m, Window(MODEL_LAYER, "norm"))
            for site in st.mixers:
                if site.block is not None:
                    span(site.block, Window(site.layer, BLOCK))
                    for m in site.norms:
                        span(m, Window(site.layer, "norm"))
                    for m in site.others:
                        span(m, Window(site.layer, "other"))
                if self.split:
                    self._patch(site, probe)
                    patched.append(site.module)
                else:
                    span(site.module, Window(site.layer, MIXER))
            if st.fused_final_norm is not None:
                last_block, backbone = st.fused_final_norm
                final = Window(MODEL_LAYER, "norm")
                handles.append(last_block.register_forward_hook(lambda *_: probe.enter(final)))
                handles.append(backbone.register_forward_hook(lambda *_: probe.exit(final), always_call=True))
            yield
        finally:
            for handle in handles:
                handle.remove()
            for module in patched:
                module.__dict__.pop("forward", None)
            probe.close_all()

    @staticmethod
    def _patch(site: MixerSite, probe: Probe) -> None:
        module, adapter, layer = site.module, site.adapter, site.layer
        original: Callable[..., Any] = type(module).forward.__get__(module)
        mixer_window = Window(layer, MIXER)
        contexts: dict[str, WindowContext] = {}

        def window(component: str) -> WindowContext:
            ctx = contexts.get(component)
            if ctx is None:
                ctx = contexts[component] = WindowContext(probe, Window(layer, component))
            return ctx

        def split_forward(*args: Any, **kwargs: Any) -> Any:
            probe.enter(mixer_window)
            try:
                out = adapter.split_forward(module, window, args, kwargs)
                return original(*args, **kwargs) if out is None else out
            finally:
                probe.exit(mixer_window)

        module.forward = split_forward
