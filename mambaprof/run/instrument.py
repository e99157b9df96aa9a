"""The instrumenter: installs component windows (collectors.markers) on a model.

The instrumenter opens and closes windows through module hooks (blocks, norms, embedding, lm_head,
the whole forward) and, in split mode, by replacing each mixer's forward with its adapter's
component-split forward. Listeners (timers, profiler ranges, memory probes) receive every
window boundary; none of them is installed when the original forward is timed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

from mambaprof.collectors.markers import BLOCK, FORWARD, MIXER, Probe, Window, WindowContext
from mambaprof.model.structure import MixerSite, ModelStructure
from mambaprof.taxonomy import MODEL_LAYER


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
            # modules inside layers are marked once each, with the layer of the block that is running: a module
            # that several layers share (Zamba2's shared transformer) is counted in whichever layer calls it
            current: list[int] = []
            inner: dict[int, tuple[nn.Module, str]] = {}
            for ls in st.layers:
                if ls.block is not None:
                    def block_in(*_: Any, _l: int = ls.layer) -> None:
                        current.append(_l)
                        probe.enter(Window(_l, BLOCK))

                    def block_out(*_: Any, _l: int = ls.layer) -> None:
                        probe.exit(Window(_l, BLOCK))
                        if current:
                            current.pop()

                    handles.append(ls.block.register_forward_pre_hook(block_in))
                    handles.append(ls.block.register_forward_hook(block_out, always_call=True))
                for comp, mods in (("attention", ls.attention), ("mlp", ls.mlp), ("moe", ls.moe),
                                   ("norm", ls.norms), ("other", ls.others)):
                    for m in mods:
                        inner.setdefault(id(m), (m, comp))
                for a in ls.asis:
                    span(a.module, Window(a.layer, MIXER))
                site = ls.mixer
                if site is None:
                    continue
                if self.split:
                    self._patch(site, probe)
                    patched.append(site.module)
                else:
                    span(site.module, Window(site.layer, MIXER))
            for module, comp in inner.values():
                opened: list[Window] = []

                def enter(*_: Any, _c: str = comp, _o: list[Window] = opened) -> None:
                    w = Window(current[-1] if current else MODEL_LAYER, _c)
                    _o.append(w)
                    probe.enter(w)

                def leave(*_: Any, _o: list[Window] = opened) -> None:
                    if _o:
                        probe.exit(_o.pop())

                handles.append(module.register_forward_pre_hook(enter))
                handles.append(module.register_forward_hook(leave, always_call=True))
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
