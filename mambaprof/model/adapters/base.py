"""What every mixer adapter provides: recognition, dimensions, the component-split forward."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn

from mambaprof.model.adapters.dims import MixerDims

#: window(component) -> context manager that marks the component's span (ranges, timers).
WindowFn = Callable[[str], AbstractContextManager[Any]]


def class_path(obj: object) -> str:
    """`module.Class` of an object's type."""
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


class MixerAdapter(ABC):
    """Knows one mixer class: how to recognise it and run its forward component by component.

    The split forward must run the same kernels as the original forward, in the same memory
    layouts, with `window(component)` around each component; every op of the original belongs
    to exactly one component window. It returns None when it cannot split this particular call
    (e.g. a decode step with a cache); the caller then runs the original forward.
    """

    #: `mamba1` or `mamba2`
    family: str = ""
    #: the class this adapter handles, as `module.Class` (for messages and the run record)
    handles: str = ""

    def matches(self, module: nn.Module) -> bool:
        """True if `module` is exactly the class this adapter handles."""
        return class_path(module) == self.handles

    @abstractmethod
    def dims(self, module: nn.Module) -> MixerDims:
        """Dimensions of this mixer instance."""

    @abstractmethod
    def split_forward(self, module: nn.Module, window: WindowFn, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> torch.Tensor | None:
        """The component-split forward for the call `module(*args, **kwargs)`, or None."""

    def fused_components(self, module: nn.Module) -> dict[str, str]:
        """Components the split cannot separate on this instance's kernel path -> why.

        Their time is reported inside the component named in the note.
        """
        return {}

    def components(self) -> tuple[str, ...]:
        """Mixer components that exist for this family."""
        if self.family == "mamba2":
            return ("in_proj", "conv1d", "ssm_scan", "gating", "out_proj")
        return ("in_proj", "conv1d", "ssm_params", "ssm_scan", "gating", "out_proj")
