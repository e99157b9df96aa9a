"""Recognising a Mamba mixer: user registrations, exact classes, then structure.

Order of recognition for a module:
1. classes a user registered with `register_mixer` (from their model.py, before the model is traced);
2. the exact-class adapters (mamba_ssm `Mamba` and `Mamba2`, whose fused CUDA paths need their own split);
3. structure: a module with `in_proj`, `conv1d`, `out_proj` submodules and `A_log`, `D` parameters, whose
   modeling file defines the transformers kernel functions (`causal_conv1d_fn` and `mamba_selective_scan`
   or `mamba2_chunk_scan`), is a transformers-style Mamba-1 (`x_proj`, `dt_proj`) or Mamba-2 (`dt_bias`,
   `norm`) mixer; its family's recipe (recipes.py) says what differs.

A module that looks like a Mamba mixer (its class name, or `A_log` with a `conv1d`) but matches none of
these gets a `Mismatch` naming what was missing; the caller profiles it as-is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from mambaprof.model.adapters.base import MixerAdapter, class_path
from mambaprof.model.adapters.hf import HFMamba1Like, HFMamba2Like, kernel_fn
from mambaprof.model.adapters.recipes import MixerRecipe, recipe_for
from mambaprof.model.adapters.ssm import SSMMamba2Adapter, SSMMambaAdapter

EXACT: tuple[MixerAdapter, ...] = (SSMMambaAdapter(), SSMMamba2Adapter())

#: class path -> adapter, filled by register_mixer
_REGISTERED: dict[str, MixerAdapter] = {}
#: class path -> adapter built from structure (one per class)
_STRUCTURAL: dict[str, MixerAdapter] = {}

_COMMON_SUBMODULES = ("in_proj", "conv1d", "out_proj")
_COMMON_PARAMS = ("A_log", "D")
_MAMBA1_SUBMODULES = ("x_proj", "dt_proj")
_MAMBA1_ATTRS = ("hidden_size", "intermediate_size", "ssm_state_size", "conv_kernel_size", "time_step_rank",
                 "activation")
_MAMBA2_ATTRS = ("hidden_size", "intermediate_size", "ssm_state_size", "conv_kernel_size", "num_heads", "head_dim",
                 "n_groups", "chunk_size", "conv_dim", "time_step_limit", "activation")


@dataclass(frozen=True)
class Mismatch:
    """A Mamba-like module no adapter matched: what could not be matched, in words."""

    reason: str
    family_guess: str


def register_mixer(cls: type[nn.Module] | str, *, family: str | None = None, recipe: MixerRecipe | None = None,
                   adapter: MixerAdapter | None = None) -> MixerAdapter:
    """Register a mixer class of your own (call it in model.py, before `build_model` returns).

    Give either `adapter` (your own MixerAdapter subclass instance: dims + split_forward), or a `recipe`
    (a MixerRecipe: your class runs the transformers-style Mamba-1/Mamba-2 forward with the recipe's
    differences), or just `family` (`mamba1`/`mamba2`: the plain transformers-style forward, with the knobs
    derived from the module's structure). Returns the adapter that will handle the class.
    """
    path = cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"
    if adapter is None:
        fam = recipe.family if recipe is not None else family
        if fam not in ("mamba1", "mamba2"):
            raise ValueError("register_mixer needs adapter=, recipe= or family='mamba1'|'mamba2'")
        if recipe is None:
            recipe = MixerRecipe("registered", fam, (path.rsplit(".", 1)[-1],), note=f"registered {path}")
        adapter = (HFMamba1Like if fam == "mamba1" else HFMamba2Like)(recipe, path)
    else:
        adapter.handles = adapter.handles or path
    _REGISTERED[path] = adapter
    _STRUCTURAL.pop(path, None)
    return adapter


def unregister_mixer(cls: type[nn.Module] | str) -> None:
    """Forget a registration made with register_mixer (tests, notebooks)."""
    path = cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"
    _REGISTERED.pop(path, None)


def registered_classes() -> tuple[str, ...]:
    """Class paths registered by users."""
    return tuple(_REGISTERED)


def _has_kernel_fns(module: nn.Module, names: tuple[str, ...]) -> list[str]:
    return [n for n in names if kernel_fn(module, n) is None]


def looks_mamba_like(module: nn.Module) -> bool:
    """True for modules that look like a Mamba mixer: a Mamba-ish class name, or an `A_log` next to a `conv1d`."""
    import re

    name = type(module).__name__
    if re.search(r"(Mamba\w*Mixer|^Mamba[23]?$|Mamba\w*Layer|Mixer2?$)", name) and hasattr(module, "A_log"):
        return True
    if re.search(r"(Mamba\w*Mixer|^Mamba[23]?$|Mamba\w*MixerLayer)$", name):
        return True
    return isinstance(getattr(module, "conv1d", None), nn.Module) and isinstance(
        getattr(module, "A_log", None), nn.Parameter)


def _structural(module: nn.Module) -> MixerAdapter | Mismatch | None:
    if not looks_mamba_like(module):
        return None
    missing = [n for n in _COMMON_SUBMODULES if not isinstance(getattr(module, n, None), nn.Module)]
    missing += [n for n in _COMMON_PARAMS if not isinstance(getattr(module, n, None), nn.Parameter)]
    is_m1 = all(isinstance(getattr(module, n, None), nn.Module) for n in _MAMBA1_SUBMODULES)
    is_m2 = isinstance(getattr(module, "dt_bias", None), nn.Parameter)
    family = "mamba1" if is_m1 else "mamba2"
    if not (is_m1 or is_m2):
        missing.append("x_proj+dt_proj (Mamba-1) or dt_bias (Mamba-2)")
    if missing:
        return Mismatch(f"no {', '.join(missing)}", family)
    attrs = _MAMBA1_ATTRS if is_m1 else _MAMBA2_ATTRS
    missing_attrs = [a for a in attrs if not hasattr(module, a)]
    if missing_attrs:
        return Mismatch(f"no attribute {', '.join(missing_attrs)}", family)
    recipe = recipe_for(module, family)
    missing_fns = _has_kernel_fns(module, (recipe.conv_fn, recipe.scan_function))
    if missing_fns:
        return Mismatch(f"its module {type(module).__module__} defines no {', '.join(missing_fns)}", family)
    if not is_m1 and not isinstance(getattr(module, "norm", None), nn.Module) and recipe.gated_norm_flag is None:
        return Mismatch("no gated norm module `norm`", family)
    missing_norms = [n for n in recipe.bcdt_norms if not isinstance(getattr(module, n, None), nn.Module)]
    if missing_norms:
        return Mismatch(f"recipe {recipe.name} needs {', '.join(missing_norms)}", family)
    return (HFMamba1Like if is_m1 else HFMamba2Like)(recipe, class_path(module))


def recognise(module: nn.Module) -> MixerAdapter | Mismatch | None:
    """The adapter for `module`, a Mismatch when it looks like a Mamba mixer but matches nothing, or None."""
    path = class_path(module)
    if path in _REGISTERED:
        return _REGISTERED[path]
    for adapter in EXACT:
        if adapter.matches(module):
            return adapter
    cached = _STRUCTURAL.get(path)
    if cached is not None:
        return cached
    found = _structural(module)
    if isinstance(found, MixerAdapter):
        _STRUCTURAL[path] = found
    return found


def describe(adapter: MixerAdapter) -> dict[str, Any]:
    """The adapter's recipe for the run record: name, family, note."""
    recipe = getattr(adapter, "recipe", None)
    if recipe is None:
        return {"recipe": type(adapter).__name__, "family": adapter.family, "note": ""}
    return {"recipe": recipe.name, "family": recipe.family, "note": recipe.note}
