"""Where each supported mixer keeps its SSM state parameters, and its Δ, B, C, x recomputed exactly.

Four mixer classes, two layouts:

- Mamba-1 (transformers `MambaMixer`, mamba_ssm `Mamba`): `x_proj` maps d_inner -> dt_rank + 2N
  with rows [dt (dt_rank) | B (N) | C (N)]; `A_log` is (d_inner, N).
- Mamba-2 (transformers `Mamba2Mixer`, mamba_ssm `Mamba2`): `in_proj` rows are
  [z0, x0 (d_mlp each, mamba_ssm only) | z (d_ssm) | x (d_ssm) | B (G*N) | C (G*N) | dt (H)] and the
  depthwise `conv1d` runs over channels [x (d_ssm) | B (G*N) | C (G*N)]; B and C of group g, state
  n sit at offset g*N + n. `A_log` is per head, so it does not depend on N.

The attribute holding N is `ssm_state_size` (transformers) or `d_state` (mamba_ssm).

Hybrids: every transformers Mamba-2 family (Bamba, Nemotron-H, Zamba2, Granite-4.0-H, Falcon-H1) has the
transformers Mamba-2 layout above; its recipe (model.adapters.recipes) says what else its forward does
(Falcon-H1: the mixer input times `ssm_in_multiplier`, the in_proj output times the `mup_vector` buffer,
whose B and C entries are pruned with the rows). Mamba-1 families with RMS norms over the state axis of B
and C (FalconMamba, Jamba) are refused: their norm's statistics run over all N states, so removing states
is not the same model as masking them (and their checkpoints could not say otherwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mambaprof.errors import UnsupportedModelError
from mambaprof.model.adapters import MixerAdapter, MixerDims, MixerRecipe
from mambaprof.model.structure import ModelStructure


@dataclass
class MixerView:
    """One mixer and the layout of its state parameters (dims are read live: pruning changes them)."""

    layer: int
    module: nn.Module
    adapter: MixerAdapter

    @property
    def kind(self) -> str:
        """`hf` (transformers) or `mamba_ssm`."""
        return "hf" if self.adapter.handles.startswith("transformers.") else "mamba_ssm"

    @property
    def dims(self) -> MixerDims:
        """Current dimensions of the mixer."""
        return self.adapter.dims(self.module)

    @property
    def family(self) -> str:
        """`mamba1` or `mamba2`."""
        return self.adapter.family

    @property
    def d_state(self) -> int:
        """N: states per channel (Mamba-1) or per group (Mamba-2)."""
        return self.dims.d_state

    @property
    def groups(self) -> int:
        """Groups sharing one B and C (1 for Mamba-1)."""
        return self.dims.ngroups if self.family == "mamba2" else 1

    @property
    def kernel_state_multiple(self) -> int:
        """Smallest step of N' the fused kernels accept: Mamba-2's causal_conv1d runs channels-last over
        x, B and C (d_inner + 2 * groups * N' channels), which must be a multiple of 8; Mamba-1: 1."""
        if self.family != "mamba2":
            return 1
        return 8 // math.gcd(8, 2 * self.groups)

    @property
    def state_attr(self) -> str:
        """Name of the attribute holding N on the module."""
        return "ssm_state_size" if self.kind == "hf" else "d_state"

    @property
    def proj(self) -> nn.Linear:
        """The projection whose rows produce B and C: x_proj (Mamba-1) or in_proj (Mamba-2)."""
        return self.module.x_proj if self.family == "mamba1" else self.module.in_proj

    @property
    def d_mlp(self) -> int:
        """Width of mamba_ssm Mamba2's gated-MLP slice at the front of in_proj (0 elsewhere)."""
        if self.family != "mamba2" or self.kind == "hf":
            return 0
        d = self.dims
        return (self.proj.out_features - 2 * d.d_inner - 2 * d.ngroups * d.d_state - d.nheads) // 2

    def bc_offsets(self) -> tuple[int, int]:
        """First row of B and of C in `proj` (row = offset + g*N + n)."""
        d = self.dims
        if self.family == "mamba1":
            return d.dt_rank, d.dt_rank + d.d_state
        b = 2 * self.d_mlp + 2 * d.d_inner
        return b, b + d.ngroups * d.d_state

    def conv_bc_offsets(self) -> tuple[int, int]:
        """First conv1d channel of B and of C (Mamba-2 only; channel = offset + g*N + n)."""
        d = self.dims
        return d.d_inner, d.d_inner + d.ngroups * d.d_state

    @property
    def recipe(self) -> MixerRecipe | None:
        """The family recipe of a transformers-style mixer (None for mamba_ssm's exact-class adapters)."""
        return getattr(self.adapter, "recipe", None)

    def in_multiplier(self) -> float:
        """Scalar the mixer input is multiplied by before in_proj (Falcon-H1's ssm_in_multiplier; else 1)."""
        r = self.recipe
        return float(getattr(self.module, r.in_multiplier)) if r is not None and r.in_multiplier else 1.0

    def proj_multiplier(self) -> torch.Tensor | None:
        """Per-row multiplier of the in_proj output (Falcon-H1's mup_vector, shape (..., in_proj rows)), or None."""
        r = self.recipe
        return getattr(self.module, r.proj_multiplier) if r is not None and r.proj_multiplier else None

    def plain_gate(self) -> bool:
        """True when gating is y * silu(z) instead of the gated RMSNorm (Falcon-H1 without mamba_rms_norm)."""
        r = self.recipe
        return bool(r is not None and r.gated_norm_flag and not getattr(self.module, r.gated_norm_flag))

    def dt_limit(self) -> tuple[float, float]:
        """Clamp applied to Δ after softplus (Mamba-2; (0, inf) means none)."""
        limit = getattr(self.module, "time_step_limit" if self.kind == "hf" else "dt_limit", (0.0, float("inf")))
        return float(limit[0]), float(limit[1])


def mixer_views(structure: ModelStructure) -> list[MixerView]:
    """A view per supported mixer, in layer order; refuses layouts pruning cannot rebuild."""
    views = []
    for site in structure.mixers:
        view = MixerView(site.layer, site.module, site.adapter)
        if view.recipe is not None and view.recipe.bcdt_norms:
            raise UnsupportedModelError(
                f"layer {site.layer} ({site.name}): {type(site.module).__name__} normalises B and C over the "
                "state axis, so removing states is not masking them",
                "state pruning supports Mamba-1/Mamba-2 mixers without norms on B/C (every Mamba-2 hybrid)")
        if type(view.proj) is not nn.Linear:
            raise UnsupportedModelError(
                f"layer {site.layer} ({site.name}): its projection is {type(view.proj).__name__}, not nn.Linear",
                "state pruning rebuilds plain nn.Linear projections (no tensor parallelism)")
        views.append(view)
    return views


@dataclass
class SSMInputs:
    """The selective SSM's inputs for one batch, in fp32.

    delta: Δ = softplus(dt + bias) (dimensionless step size): (b, l, d_inner) Mamba-1, (b, l, H) Mamba-2.
    x: the scanned input after conv + SiLU: (b, l, d_inner) Mamba-1, (b, l, H, P) Mamba-2.
    B, C: (b, l, G, N) input and output projections of the state (G = 1 for Mamba-1).
    A: the negative decay rates: (d_inner, N) Mamba-1, (H,) Mamba-2.
    D: skip weights (d_inner,) Mamba-1, (H,) or (H*P,) Mamba-2; z: the gate, (b, l, d_inner).
    """

    family: str
    delta: torch.Tensor
    x: torch.Tensor
    B: torch.Tensor
    C: torch.Tensor
    A: torch.Tensor
    D: torch.Tensor
    z: torch.Tensor


def _conv_silu(xs: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """Causal depthwise conv + SiLU over (b, l, c) -> (b, l, c), in plain fp32 multiply-adds.

    Written out (d_conv shifted products) rather than F.conv1d, which may run in TF32 on GPUs.
    """
    seqlen = xs.shape[1]
    w = conv.weight.float()[:, 0, :]  # (c, k)
    k = w.shape[-1]
    padded = F.pad(xs, (0, 0, k - 1, 0))  # (b, l + k - 1, c)
    out = sum(padded[:, j:j + seqlen] * w[:, j] for j in range(k))
    if conv.bias is not None:
        out = out + conv.bias.float()
    return F.silu(out)


def _linear(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    return F.linear(x, layer.weight.float(), layer.bias.float() if layer.bias is not None else None)


def ssm_inputs(view: MixerView, hidden: torch.Tensor) -> SSMInputs:
    """Recompute Δ, x, B, C (and A, D, z) of a mixer from its input hidden states (b, l, d_model).

    Follows the mixer's own forward in fp32 with no cache and no padding mask.
    """
    m, d = view.module, view.dims
    h = hidden.float()
    b, seqlen, _ = h.shape
    if view.family == "mamba1":
        xz = _linear(h, m.in_proj)
        x, z = xz.split(d.d_inner, dim=-1)
        x = _conv_silu(x, m.conv1d)
        dt, bb, cc = F.linear(x, m.x_proj.weight.float()).split([d.dt_rank, d.d_state, d.d_state], dim=-1)
        delta = F.softplus(_linear(dt, m.dt_proj))
        return SSMInputs("mamba1", delta, x, bb.unsqueeze(2), cc.unsqueeze(2), -torch.exp(m.A_log.float()),
                         m.D.float(), z)
    zxbcdt = _linear(h * view.in_multiplier(), m.in_proj)
    mult = view.proj_multiplier()
    if mult is not None:
        zxbcdt = zxbcdt * mult.float()
    gn = d.ngroups * d.d_state
    _, z, xbc, dt = zxbcdt.split([2 * view.d_mlp, d.d_inner, d.d_inner + 2 * gn, d.nheads], dim=-1)
    xbc = _conv_silu(xbc, m.conv1d)
    x, bb, cc = xbc.split([d.d_inner, gn, gn], dim=-1)
    delta = F.softplus(dt + m.dt_bias.float())
    lo, hi = view.dt_limit()
    if (lo, hi) != (0.0, float("inf")):
        delta = delta.clamp(lo, hi)
    return SSMInputs("mamba2", delta, x.reshape(b, seqlen, d.nheads, d.headdim),
                     bb.reshape(b, seqlen, d.ngroups, d.d_state), cc.reshape(b, seqlen, d.ngroups, d.d_state),
                     -torch.exp(m.A_log.float()), m.D.float(), z)


def mixer_output_from_scan(view: MixerView, inp: SSMInputs, y: torch.Tensor) -> torch.Tensor:
    """The mixer's output given the scan's y = sum_n C_n h_n (b, l, d_inner): D skip, gating, out_proj.

    Used to check that `ssm_inputs` + an exact scan reproduce the mixer (tests, calibration checks).
    """
    m, d = view.module, view.dims
    if view.family == "mamba1":
        out = (y + inp.x * inp.D) * F.silu(inp.z)
        return _linear(out, m.out_proj)
    if view.d_mlp:
        raise ValueError("mixer_output_from_scan does not cover mamba_ssm Mamba2 with a gated-MLP slice")
    b, seqlen = y.shape[:2]
    x = inp.x.reshape(b, seqlen, -1)
    skip = inp.D.repeat_interleave(d.headdim) if inp.D.numel() == d.nheads else inp.D
    out = y + x * skip
    if view.plain_gate():
        out = out * F.silu(inp.z)
    else:
        out = m.norm(out.to(m.norm.weight.dtype), inp.z.to(m.norm.weight.dtype)).float()
    return _linear(out, m.out_proj)


#: parameters mamba_ssm creates in fp32 whatever the model dtype (it builds them without the factory dtype)
MAMBA_SSM_FP32_PARAMS = {"mamba1": ("A_log", "D"), "mamba2": ("D",)}


def to_serving_dtype(model: nn.Module, views: list[MixerView], dtype: torch.dtype) -> nn.Module:
    """Cast a model to its serving dtype the way its framework builds it in that dtype.

    mamba_ssm keeps Mamba's A_log and D and Mamba2's D in fp32 at any dtype; a plain `.to(dtype)`
    would round them, so they are kept as they were. transformers models are cast whole.
    """
    keep = {}
    for view in views:
        if view.kind == "mamba_ssm":
            for name in MAMBA_SSM_FP32_PARAMS[view.family]:
                param = getattr(view.module, name)
                keep[id(param)] = (param, param.detach().float().clone())
    model.to(dtype=dtype)
    for param, value in keep.values():
        param.data = value.to(param.device)
    return model
