"""Physical structured state pruning: rebuild a mixer's parameters with N' states instead of N.

`select_states(view, index)` rebuilds, in place on the mixer module:
- Mamba-1: `x_proj` (dt_rank + 2N' output rows: dt rows kept, B and C rows of the kept states) and
  `A_log` (d_inner x N').
- Mamba-2: `in_proj` (the B and C rows of the kept states of each group; z, x, dt rows unchanged)
  and the depthwise `conv1d` (its B and C channels, weights and bias); N' per group; a per-row
  multiplier of the in_proj output (Falcon-H1's `mup_vector`) loses the same rows.
and sets the module's state-size attribute (and transformers Mamba2's `conv_dim`). Nothing else
changes: in/out shapes, D, dt, norms and out_proj are untouched, so the block stays a drop-in and
the mixer's own forward (fused CUDA/Triton kernels included) runs on N' states; kernels read N from
the tensor shapes (mamba_ssm) or the attribute (transformers), and decode caches are allocated from
it. An index of -1 creates an inert state (zero B and C rows/channels): its state stays 0 and adds 0
to the output, which is how checkpoints with different N' per layer are padded to one size.

`mask_states(view, pruned)` is the reference the math check compares against: it zeroes the B and
C weights of the pruned states in the unpruned module (same effect, no speed-up).
"""

from __future__ import annotations

import torch
from torch import nn

from mambaprof.pruning.mixers import MixerView

#: parameter attributes (set by mamba_ssm on A_log, D, dt bias) that must survive a rebuild
_PARAM_FLAGS = ("_no_weight_decay", "_no_reinit", "_optim")


def _new_param(old: nn.Parameter, data: torch.Tensor) -> nn.Parameter:
    param = nn.Parameter(data.contiguous(), requires_grad=old.requires_grad)
    for flag in _PARAM_FLAGS:
        if hasattr(old, flag):
            setattr(param, flag, getattr(old, flag))
    return param


def _gather_rows(t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """t[rows] along dim 0, with zero rows where rows < 0."""
    out = t[rows.clamp_min(0)].clone()
    out[rows < 0] = 0
    return out


def state_rows(offset: int, d_state: int, index: torch.Tensor) -> torch.Tensor:
    """Rows (or channels) offset + g*N + index[g, k] for a (G, K) index, flattened group-major; -1 stays -1."""
    groups = index.shape[0]
    base = offset + torch.arange(groups).unsqueeze(1) * d_state
    return torch.where(index >= 0, base + index, torch.full_like(index, -1)).reshape(-1)


def _check_index(view: MixerView, index: torch.Tensor, allow_empty: bool = False) -> torch.Tensor:
    index = torch.as_tensor(index, dtype=torch.long).cpu()
    if index.dim() == 1:
        index = index.unsqueeze(0)
    if index.dim() != 2 or index.shape[0] != view.groups or (index.shape[1] < 1 and not allow_empty):
        raise ValueError(f"layer {view.layer}: state index must be (groups={view.groups}, N' >= 1), "
                         f"got {tuple(index.shape)}")
    if index.numel() and int(index.max()) >= view.d_state:
        raise ValueError(f"layer {view.layer}: state index {int(index.max())} >= d_state {view.d_state}")
    return index


def _rebuild_linear(old: nn.Linear, rows: torch.Tensor) -> nn.Linear:
    w = old.weight.detach()
    new = nn.Linear(old.in_features, rows.numel(), bias=old.bias is not None, device=w.device, dtype=w.dtype)
    new.weight = _new_param(old.weight, _gather_rows(w, rows.to(w.device)))
    if old.bias is not None:
        new.bias = _new_param(old.bias, _gather_rows(old.bias.detach(), rows.to(w.device)))
    return new


def _rebuild_conv(old: nn.Conv1d, channels: torch.Tensor) -> nn.Conv1d:
    w = old.weight.detach()
    n_ch = channels.numel()
    new = nn.Conv1d(n_ch, n_ch, kernel_size=old.kernel_size[0], groups=n_ch, padding=old.padding[0],
                    bias=old.bias is not None, device=w.device, dtype=w.dtype)
    new.weight = _new_param(old.weight, _gather_rows(w, channels.to(w.device)))
    if old.bias is not None:
        new.bias = _new_param(old.bias, _gather_rows(old.bias.detach(), channels.to(w.device)))
    return new


def select_states(view: MixerView, index: torch.Tensor) -> None:
    """Rebuild the mixer so that its state k of group g is the old state index[g, k] (-1: inert).

    index: (G, N') long tensor (a 1-D tensor is taken as G = 1). Kept states keep their weights
    exactly; the result computes what the unpruned mixer computes with the other states masked.
    """
    index = _check_index(view, index)
    m, n_old = view.module, view.d_state
    n_new = index.shape[1]
    b0, c0 = view.bc_offsets()
    rows_b, rows_c = state_rows(b0, n_old, index), state_rows(c0, n_old, index)
    if view.family == "mamba1":
        dt_rows = torch.arange(view.dims.dt_rank)
        m.x_proj = _rebuild_linear(m.x_proj, torch.cat([dt_rows, rows_b, rows_c]))
        a_log = m.A_log.detach()
        cols = index[0].to(a_log.device)
        new_a = a_log[:, cols.clamp_min(0)].clone()
        new_a[:, cols < 0] = 0.0  # A = -1 for inert states (any value works: their state stays 0)
        m.A_log = _new_param(m.A_log, new_a)
    else:
        width = m.in_proj.out_features
        groups = view.groups
        head = torch.arange(b0)
        tail = torch.arange(c0 + groups * n_old, width)
        proj_rows = torch.cat([head, rows_b, rows_c, tail])
        m.in_proj = _rebuild_linear(m.in_proj, proj_rows)
        mult = view.proj_multiplier()
        if mult is not None:  # Falcon-H1's mup_vector: one multiplier per in_proj row (a buffer)
            name = view.recipe.proj_multiplier
            new_mult = _gather_rows(mult.detach().transpose(0, -1), proj_rows.to(mult.device)).transpose(0, -1)
            new_mult[..., (proj_rows < 0).to(mult.device)] = 1.0
            if name in m._buffers:
                m._buffers[name] = new_mult.contiguous()
            else:
                setattr(m, name, new_mult.contiguous())
        cb0, cc0 = view.conv_bc_offsets()
        x_ch = torch.arange(cb0)
        m.conv1d = _rebuild_conv(m.conv1d, torch.cat([x_ch, state_rows(cb0, n_old, index),
                                                      state_rows(cc0, n_old, index)]))
        if view.kind == "hf":
            m.conv_dim = m.conv1d.weight.shape[0]
    setattr(m, view.state_attr, n_new)


def mask_states(view: MixerView, pruned: torch.Tensor) -> None:
    """Zero the B and C weights of the states in `pruned` ((G, K) indices) without changing shapes.

    The masked states then hold 0 and contribute 0 to the output: the reference that physical
    pruning must reproduce.
    """
    pruned = _check_index(view, pruned, allow_empty=True)
    if pruned.numel() == 0:
        return
    n = view.d_state
    b0, c0 = view.bc_offsets()
    rows = torch.cat([state_rows(b0, n, pruned), state_rows(c0, n, pruned)])
    with torch.no_grad():
        w = view.proj.weight
        w[rows.to(w.device)] = 0
        if view.proj.bias is not None:
            view.proj.bias[rows.to(w.device)] = 0
        if view.family == "mamba2":
            cb0, cc0 = view.conv_bc_offsets()
            ch = torch.cat([state_rows(cb0, n, pruned), state_rows(cc0, n, pruned)]).to(w.device)
            view.module.conv1d.weight[ch] = 0
            if view.module.conv1d.bias is not None:
                view.module.conv1d.bias[ch] = 0


def complement(index: torch.Tensor, d_state: int) -> torch.Tensor:
    """The state indices (G, N - N') not in `index` (G, N'), ascending."""
    keep = torch.zeros(index.shape[0], d_state, dtype=torch.bool)
    keep.scatter_(1, index.clamp_min(0), True)
    rest = [torch.nonzero(~row).flatten() for row in keep]
    return torch.stack(rest) if rest and rest[0].numel() else torch.empty(index.shape[0], 0, dtype=torch.long)
