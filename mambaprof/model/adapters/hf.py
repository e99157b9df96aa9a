"""Adapters for transformers-style Mamba mixers: MambaMixer, Mamba2Mixer and every family's copy of them.

One Mamba-1 and one Mamba-2 split forward serve all families; a `MixerRecipe` (recipes.py) says what a family
does differently (norms on dt/B/C, muP multipliers, plain gating).

transformers resolves each kernel function once at import: mamba_ssm / causal_conv1d kernels when
those packages import (GPU), its reference PyTorch ops otherwise (the CPU path). The split forward
calls the very same module-level functions with the same arguments as the original forward, so it
runs the same kernels either way. Only where the scan is the reference implementation is gating
split out of the scan (the reference applies `y * silu(z)` as a separate op at its end, which the
split reproduces); with the fused CUDA scan, gating stays inside it and is reported as fused.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mambaprof.model.adapters.base import MixerAdapter, WindowFn
from mambaprof.model.adapters.dims import MixerDims
from mambaprof.model.adapters.recipes import BY_CLASS, MixerRecipe

_CACHE_KWARGS = ("cache", "cache_params")


def kernel_fn(module: nn.Module, name: str) -> Callable[..., Any] | None:
    """The module-level kernel function `name` of the file that defines the mixer's class (or, for a subclass
    defined elsewhere, of the first base class's file that has it), or None."""
    for cls in type(module).__mro__:
        mod = sys.modules.get(cls.__module__)
        fn = getattr(mod, name, None) if mod is not None else None
        if callable(fn):
            return fn
    return None


def _module_fn(module: nn.Module, name: str) -> Callable[..., Any]:
    """The kernel function `name` the mixer's own forward calls (see kernel_fn)."""
    fn = kernel_fn(module, name)
    if fn is None:
        raise RuntimeError(f"{type(module).__module__} has no {name}; this transformers version is not "
                           "supported by the split forward")
    return fn


def uses_reference(fn: Callable[..., Any]) -> bool:
    """True when a transformers kernel-or-fallback function runs its reference PyTorch code.

    Reads the decorator's `is_new_implementation` closure when present; otherwise falls back to
    whether the kernel package imports.
    """
    target = fn
    for _ in range(4):
        try:
            nonlocals = inspect.getclosurevars(target).nonlocals
        except (TypeError, ValueError):
            break
        if "is_new_implementation" in nonlocals:
            return not bool(nonlocals["is_new_implementation"])
        target = getattr(target, "__wrapped__", None)
        if target is None:
            break
    from mambaprof.env import mamba_ssm_available

    return not mamba_ssm_available()


def _no_cache(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    if len(args) > 1 and args[1] is not None:
        return False
    return all(kwargs.get(k) is None for k in _CACHE_KWARGS)


def _mask(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    # same op as transformers' apply_mask_to_padding_states
    if attention_mask is not None:
        dtype = hidden.dtype
        hidden = (hidden * attention_mask[:, :, None]).to(dtype)
    return hidden


class _RecipeAdapter(MixerAdapter):
    """An adapter of transformers' Mamba-family mixers: the family's recipe and the class path it handles."""

    def __init__(self, recipe: MixerRecipe, handles: str) -> None:
        self.recipe = recipe
        self.handles = handles


class HFMamba1Like(_RecipeAdapter):
    """A transformers-style Mamba-1 mixer (MambaMixer, FalconMambaMixer, JambaMambaMixer, ...).

    Runs the family's own `causal_conv1d_fn` and `mamba_selective_scan` (reference ops on the CPU, the
    mamba_ssm / causal_conv1d kernels where transformers found them), with the recipe's dt/B/C norms.
    """

    family = "mamba1"

    def dims(self, module: nn.Module) -> MixerDims:
        return MixerDims(family="mamba1", d_model=int(module.hidden_size), d_inner=int(module.intermediate_size),
                         d_state=int(module.ssm_state_size), d_conv=int(module.conv_kernel_size),
                         dt_rank=int(module.time_step_rank))

    def fused_components(self, module: nn.Module) -> dict[str, str]:
        if uses_reference(_module_fn(module, self.recipe.scan_function)):
            return {}
        return {"gating": "fused into ssm_scan (y*silu(z) runs inside the selective-scan kernel)"}

    def split_forward(self, module: nn.Module, window: WindowFn, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> torch.Tensor | None:
        if module.training or not _no_cache(args, kwargs) or hasattr(getattr(module, "config", None), "_is_quantized"):
            return None
        m, r = module, self.recipe
        hidden_states = args[0] if args else kwargs["hidden_states"]
        attention_mask = kwargs.get("attention_mask", args[2] if len(args) > 2 else None)
        conv_fn = _module_fn(m, r.conv_fn)
        scan_fn = _module_fn(m, r.scan_function)
        split_gating = uses_reference(scan_fn)
        dtype = hidden_states.dtype
        with window("in_proj"):
            hidden_states = _mask(hidden_states, attention_mask)
            projected_states = m.in_proj(hidden_states).transpose(1, 2)
            hidden_states_b_c, gate = projected_states.chunk(2, dim=1)
        with window("conv1d"):
            hidden_states_b_c = conv_fn(hidden_states_b_c, m.conv1d.weight.squeeze(1), m.conv1d.bias,
                                        activation=m.activation)
            hidden_states_b_c = _mask(hidden_states_b_c.transpose(1, 2), attention_mask)
        with window("ssm_params"):
            time_step, b, c = torch.split(m.x_proj(hidden_states_b_c),
                                          [m.time_step_rank, m.ssm_state_size, m.ssm_state_size], dim=-1)
            if r.bcdt_norms:
                dt_norm, b_norm, c_norm = (getattr(m, n) for n in r.bcdt_norms)
                time_step, b, c = dt_norm(time_step), b_norm(b), c_norm(c)
            time_step = m.dt_proj.weight @ time_step.transpose(1, 2)
        with window("ssm_scan"):
            a = -torch.exp(m.A_log.float())
            time_proj_bias = m.dt_proj.bias.float() if m.dt_proj.bias is not None else None
            scan_output = scan_fn(
                hidden_states_b_c.transpose(1, 2), time_step, a, b.transpose(1, 2), c.transpose(1, 2),
                D=m.D.float(), z=None if split_gating else gate, delta_bias=time_proj_bias,
                delta_softplus=True, return_last_state=False,
                use_mambapy=getattr(m, "use_mambapy", False),
                use_associative_scan=getattr(m, "use_associative_scan", False),
            )
        if split_gating:
            with window("gating"):
                scan_output = scan_output * F.silu(gate)
        with window("out_proj"):
            return m.out_proj(scan_output.transpose(1, 2).to(dtype))


class HFMamba2Like(_RecipeAdapter):
    """A transformers-style Mamba-2 mixer (Mamba2Mixer, BambaMixer, NemotronHMamba2Mixer, Zamba2MambaMixer,
    GraniteMoeHybridMambaLayer, FalconH1Mixer, ...). Gating is the gated RMSNorm module (always separable),
    or `y * silu(z)` where the recipe's flag turns the norm off (Falcon-H1 without mamba_rms_norm)."""

    family = "mamba2"

    def dims(self, module: nn.Module) -> MixerDims:
        return MixerDims(family="mamba2", d_model=int(module.hidden_size), d_inner=int(module.intermediate_size),
                         d_state=int(module.ssm_state_size), d_conv=int(module.conv_kernel_size),
                         nheads=int(module.num_heads), headdim=int(module.head_dim),
                         ngroups=int(module.n_groups), chunk_size=int(module.chunk_size))

    def split_forward(self, module: nn.Module, window: WindowFn, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> torch.Tensor | None:
        if module.training or not _no_cache(args, kwargs):
            return None
        m, r = module, self.recipe
        hidden_states = args[0] if args else kwargs["hidden_states"]
        attention_mask = kwargs.get("attention_mask", args[2] if len(args) > 2 else None)
        conv_fn = _module_fn(m, r.conv_fn)
        scan_fn = _module_fn(m, r.scan_function)
        batch_size, seq_len, _ = hidden_states.shape
        dtype = hidden_states.dtype
        with window("in_proj"):
            hidden_states = _mask(hidden_states, attention_mask)
            if r.in_multiplier is not None:
                hidden_states = hidden_states * getattr(m, r.in_multiplier)
            projected_states = m.in_proj(hidden_states)
            if r.proj_multiplier is not None:
                projected_states = projected_states * getattr(m, r.proj_multiplier)
            gate, hidden_states_b_c, dt = projected_states.split(
                [m.intermediate_size, m.conv_dim, m.num_heads], dim=-1)
        with window("conv1d"):
            hidden_states_b_c = conv_fn(hidden_states_b_c.transpose(1, 2), m.conv1d.weight.squeeze(1),
                                        m.conv1d.bias, activation=m.activation)
            hidden_states_b_c = _mask(hidden_states_b_c.transpose(1, 2), attention_mask)
            hidden_states, b, c = torch.split(
                hidden_states_b_c,
                [m.intermediate_size, m.n_groups * m.ssm_state_size, m.n_groups * m.ssm_state_size], dim=-1)
        with window("ssm_scan"):
            a = -torch.exp(m.A_log.float())
            scan_output = scan_fn(
                hidden_states.view(batch_size, seq_len, m.num_heads, m.head_dim), dt, a,
                b.view(batch_size, seq_len, m.n_groups, m.ssm_state_size),
                c.view(batch_size, seq_len, m.n_groups, m.ssm_state_size),
                chunk_size=m.chunk_size, D=m.D, z=None, return_final_states=False, dt_bias=m.dt_bias,
                dt_softplus=True, initial_states=None, dt_limit=m.time_step_limit,
            )
            scan_output = scan_output.reshape(batch_size, seq_len, -1)
        with window("gating"):
            if r.gated_norm_flag is not None and not getattr(m, r.gated_norm_flag):
                scan_output = scan_output * F.silu(gate)
            else:
                scan_output = m.norm(scan_output, gate)
        with window("out_proj"):
            return m.out_proj(scan_output.to(dtype))


#: transformers' own MambaMixer and Mamba2Mixer (the adapters the sweep used before recipes; kept by name)
HFMambaAdapter = HFMamba1Like(BY_CLASS["MambaMixer"], "transformers.models.mamba.modeling_mamba.MambaMixer")
HFMamba2Adapter = HFMamba2Like(BY_CLASS["Mamba2Mixer"], "transformers.models.mamba2.modeling_mamba2.Mamba2Mixer")
